"""encoder and decoder: mutants and alternatives.

The base designs (:class:`Enc`, :class:`Dec`) are the reference's architecture written as a
student would, with the student's own MHA of Notebook 2 (:class:`~.attention.LabBmm`) in the
attention block; each mutant overrides one piece of them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from cfgflow.data import MNIST_MEAN, MNIST_STD

from . import alternative, mutant
from .attention import LabBmm

E, D = "encoder", "decoder"


def _norm(k: int) -> nn.Module:
    return nn.GroupNorm(min(8, k), k)


class Res(nn.Module):
    """x + conv1x1(SiLU(conv3x3(SiLU(norm(x)))))."""

    def __init__(self, k: int, norm=_norm):
        super().__init__()
        self.branch = nn.Sequential(norm(k), nn.SiLU(), nn.Conv2d(k, k, 3, padding=1), nn.SiLU(),
                                    nn.Conv2d(k, k, 1))

    def forward(self, x):
        return x + self.branch(x)


class Attn(nn.Module):
    """x + MHA(norm(x)) over the h * w positions as tokens, with the student's MHA."""

    def __init__(self, k: int, heads: int, norm=_norm):
        super().__init__()
        self.norm, self.attn = norm(k), LabBmm(k, heads)

    def tokens(self, h):
        return rearrange(h, "b k h w -> b (h w) k")  # (b, h w, k)

    def forward(self, x):
        out = self.attn(self.tokens(self.norm(x)))
        return x + rearrange(out, "b (h w) k -> b k h w", h=x.shape[2])


class Enc(nn.Module):
    """The reference-like encoder: conv in, per stage a residual block and a stride-2 conv, residual
    / attention / residual, a conv to 2c channels chunked into mean and log-variance."""

    norm = staticmethod(_norm)

    def __init__(self, latent_channels=4, hidden_channels=(32, 64), heads=4):
        super().__init__()
        hidden = self.stages(list(hidden_channels))
        self.conv_in = nn.Conv2d(1, hidden[0], 3, padding=1)
        layers, k = [], hidden[0]
        for out in hidden:
            layers += [Res(k, self.norm), nn.Conv2d(k, out, 3, stride=2, padding=1)]
            k = out
        self.down = nn.Sequential(*layers)
        self.mid = nn.Sequential(Res(k, self.norm), self.attention(k, heads), Res(k, self.norm))
        c_out = self.out_channels(latent_channels)
        self.conv_out = nn.Sequential(self.norm(k), nn.SiLU(), nn.Conv2d(k, c_out, 3, padding=1))

    def stages(self, hidden):
        return hidden

    def attention(self, k, heads):
        return Attn(k, heads, self.norm)

    def out_channels(self, c):
        return 2 * c

    def features(self, x):
        return self.mid(self.down(self.conv_in(x)))

    def forward(self, x):
        z_mean, z_logvar = self.conv_out(self.features(x)).chunk(2, dim=1)
        return z_mean, z_logvar


class Dec(nn.Module):
    """The reference-like decoder: conv in, residual / attention / residual, per stage a residual
    block, 2x nearest upsampling and a conv; a learned scalar log-variance."""

    norm = staticmethod(_norm)

    def __init__(self, latent_channels=4, hidden_channels=(64, 32), heads=4):
        super().__init__()
        hidden = list(hidden_channels)
        k = hidden[0]
        self.conv_in = nn.Conv2d(latent_channels, k, 3, padding=1)
        self.mid = nn.Sequential(Res(k, self.norm), self.attention(k, heads), Res(k, self.norm))
        layers = []
        for out in self.stages(hidden):
            layers += [Res(k, self.norm), nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(k, out, 3, padding=1)]
            k = out
        self.up = nn.Sequential(*layers)
        c_out = self.out_channels(latent_channels)
        self.conv_out = nn.Sequential(self.norm(k), nn.SiLU(), nn.Conv2d(k, c_out, 3, padding=1))
        self.logvar = nn.Parameter(torch.zeros(()))

    def stages(self, hidden):
        return hidden

    def attention(self, k, heads):
        return Attn(k, heads, self.norm)

    def out_channels(self, c):
        return 1

    def image(self, z):
        return self.conv_out(self.up(self.mid(self.conv_in(z))))  # (b, 1, H, W)

    def forward(self, z):
        return self.image(z), self.logvar


# ----------------------------------------------------------------------------- encoder mutants


@mutant(E, "one stride-2 stage per entry")
class ExtraStage(Enc):
    """One downsampling stage too many (range(len(hidden) + 1)): the latent is half as wide."""

    def stages(self, hidden):
        return hidden + hidden[-1:]


@mutant(E, "one stride-2 stage per entry")
class FixedTwoStages(Enc):
    """Two stages whatever hidden_channels says (hard-coded for the default (32, 64))."""

    def stages(self, hidden):
        return [hidden[0], hidden[-1]]


@mutant(E, "(latent_channels)")
class HalfChannels(Enc):
    """The last conv makes latent_channels channels, then chunks them into mean and log-variance."""

    def out_channels(self, c):
        return c


@mutant(E, "not broadcastable")
class PooledLogvar(Enc):
    """One log-variance per sample and channel, (b, c), from pooled features: no spatial axes."""

    def forward(self, x):
        z_mean, z_logvar = super().forward(x)
        return z_mean, z_logvar.mean(dim=(2, 3))


@mutant(E, "z_logvar is not learned")
class FixedLogvar(Enc):
    """A fixed log-variance torch.zeros(()) stored as a plain tensor: not a parameter, not learned."""

    def __init__(self, latent_channels=4, hidden_channels=(32, 64), heads=4):
        super().__init__(latent_channels, hidden_channels, heads)
        self.fixed_logvar = torch.zeros(())

    def forward(self, x):
        z_mean, _ = super().forward(x)
        return z_mean, self.fixed_logvar


@mutant(E, "z_logvar is not learned")
class DetachedLogvar(Enc):
    """z_logvar.detach() ('for stability'): the log-variance head never learns."""

    def forward(self, x):
        z_mean, z_logvar = super().forward(x)
        return z_mean, z_logvar.detach()


class _BatchStatsNorm(nn.BatchNorm2d):
    def __init__(self, k):
        super().__init__(k, track_running_stats=False)


@mutant(E, "mixes the batch")
class BatchStatsNorm(Enc):
    """BatchNorm2d(track_running_stats=False) for GroupNorm: batch statistics even in eval mode."""

    norm = staticmethod(_BatchStatsNorm)


class _BatchAxisAttention(Attn):
    """nn.MultiheadAttention without batch_first=True on (b, h w, k) tokens: attends over the batch."""

    def __init__(self, k, heads, norm=_norm):
        super().__init__(k, heads, norm)
        self.attn = nn.MultiheadAttention(k, heads)

    def forward(self, x):
        t = self.tokens(self.norm(x))
        out = self.attn(t, t, t, need_weights=False)[0]
        return x + rearrange(out, "b (h w) k -> b k h w", h=x.shape[2])


@mutant(E, "batch_first=True")
class BatchAxisAttention(Enc):
    """nn.MultiheadAttention(k, heads) fed (b, h w, k): sequence-first by default, so it mixes samples."""

    def attention(self, k, heads):
        return _BatchAxisAttention(k, heads, self.norm)


@mutant(E, "mixes the batch")
class CentredLatent(Enc):
    """'Centres' the latent means with the batch mean: z_mean - z_mean.mean(0)."""

    def forward(self, x):
        z_mean, z_logvar = super().forward(x)
        return z_mean - z_mean.mean(dim=0, keepdim=True), z_logvar


class _SqueezeAttn(Attn):
    def tokens(self, h):
        return h.flatten(2).transpose(1, 2).squeeze()  # (b, h w, k), but (h w, k) at b = 1


@mutant(E, "drops the batch axis")
class SqueezeTokens(Enc):
    """Tokens made with .squeeze(): at batch size 1 the batch axis goes and the MHA fails."""

    def attention(self, k, heads):
        return _SqueezeAttn(k, heads, self.norm)


@mutant(E, "does not depend on x")
class LearnedConstant(Enc):
    """Returns a learned latent whatever the image (the output ignores the input)."""

    def __init__(self, latent_channels=4, hidden_channels=(32, 64), heads=4):
        super().__init__(latent_channels, hidden_channels, heads)
        side = 32 >> len(hidden_channels)
        self.z0 = nn.Parameter(torch.randn(latent_channels, side, side))
        self.lv0 = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.z0.expand(x.shape[0], *self.z0.shape), self.lv0


@mutant(E, "not a function of the inputs")
class SampledLatent(Enc):
    """Returns a reparameterised sample as the mean (the sampling belongs to DiagonalGaussian)."""

    def forward(self, x):
        z_mean, z_logvar = super().forward(x)
        return z_mean + torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean), z_logvar


@mutant(E, "cuts the graph")
class DetachedTrunk(Enc):
    """The downsampling trunk's features detached: conv_in and the stages never learn."""

    def features(self, x):
        return self.mid(self.down(self.conv_in(x)).detach())


@mutant(E, "cuts the graph")
class ItemGain(Enc):
    """A learned output gain used through .item(): it changes z_mean but gets no gradient."""

    def __init__(self, latent_channels=4, hidden_channels=(32, 64), heads=4):
        super().__init__(latent_channels, hidden_channels, heads)
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x):
        z_mean, z_logvar = super().forward(x)
        return z_mean * self.gain.item(), z_logvar


@mutant(E, "modified in place")
class InplaceCentring(Enc):
    """x -= x.mean(...) per image: Python's -= writes into the caller's tensor."""

    def forward(self, x):
        x -= x.mean(dim=(1, 2, 3), keepdim=True)
        return super().forward(x)


@mutant(E, "for a blank image")
class StandardisedImage(Enc):
    """Standardises each image by its own mean and std: 0 / 0 for a blank image."""

    def forward(self, x):
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)
        return super().forward(x)


# ----------------------------------------------------------------------------- encoder alternatives


@alternative(E)
class ConvHeads(nn.Module):
    """No attention: stride-2 convs, GroupNorm + ReLU; separate 1x1 heads for mean and log-variance.

    The log-variance is per entry (the mean's shape)."""

    def __init__(self, latent_channels=4, hidden_channels=(32, 64), heads=4):
        super().__init__()
        layers, k = [], 1
        for out in hidden_channels:
            layers += [nn.Conv2d(k, out, 4, stride=2, padding=1), nn.GroupNorm(1, out), nn.ReLU()]
            k = out
        self.body = nn.Sequential(*layers)
        self.mean_head = nn.Conv2d(k, latent_channels, 1)
        self.logvar_head = nn.Conv2d(k, latent_channels, 1)

    def forward(self, x):
        h = self.body(x)
        return self.mean_head(h), self.logvar_head(h)


@alternative(E)
class MLPEncoder(nn.Module):
    """An MLP on the flattened image to the flattened latent mean; one learned scalar log-variance."""

    def __init__(self, latent_channels=4, hidden_channels=(32, 64), heads=4):
        super().__init__()
        self.side = 32 >> len(hidden_channels)
        self.c = latent_channels
        width = 16 * hidden_channels[-1]
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, width), nn.SiLU(), nn.Linear(width, width),
                                 nn.SiLU(), nn.Linear(width, latent_channels * self.side**2))
        self.logvar = nn.Parameter(torch.tensor(-1.0))

    def forward(self, x):
        z_mean = self.net(x).view(x.shape[0], self.c, self.side, self.side)
        return z_mean, self.logvar


@alternative(E)
class RefLikeEncoder(Enc):
    """The reference's architecture with the student's own MHA (the lab's bmm version)."""


@alternative(E)
class TorchAttentionPool(nn.Module):
    """Average pooling, a frozen position embedding, nn.MultiheadAttention, a (c, 1, 1) log-variance.

    The embedding is a Parameter with requires_grad=False (meant to get no gradient); the attention
    is batch_first=True; the log-variance is learned per channel."""

    def __init__(self, latent_channels=4, hidden_channels=(32, 64), heads=4):
        super().__init__()
        layers, k = [nn.Conv2d(1, hidden_channels[0], 3, padding=1)], hidden_channels[0]
        for out in hidden_channels:
            layers += [nn.GroupNorm(min(8, k), k), nn.SiLU(), nn.Conv2d(k, out, 3, padding=1),
                       nn.AvgPool2d(2)]
            k = out
        self.body = nn.Sequential(*layers)
        side = 32 >> len(hidden_channels)
        self.pos = nn.Parameter(0.1 * torch.randn(side * side, k), requires_grad=False)  # (h w, k), fixed
        self.norm = nn.LayerNorm(k)
        self.attn = nn.MultiheadAttention(k, heads, batch_first=True)
        self.head = nn.Conv2d(k, latent_channels, 1)
        self.logvar = nn.Parameter(torch.zeros(latent_channels, 1, 1))

    def forward(self, x):
        h = self.body(x)
        b, k, hh, ww = h.shape
        t = self.norm(h.flatten(2).transpose(1, 2) + self.pos)  # (b, hh ww, k)
        h = h + self.attn(t, t, t, need_weights=False)[0].transpose(1, 2).reshape(b, k, hh, ww)
        return self.head(h), self.logvar


@alternative(E)
class UnusedLayer(Enc):
    """The reference-like encoder with a layer defined but never used (not a mistake)."""

    def __init__(self, latent_channels=4, hidden_channels=(32, 64), heads=4):
        super().__init__(latent_channels, hidden_channels, heads)
        self.spare = nn.Linear(8, 8)


# ----------------------------------------------------------------------------- decoder mutants


@mutant(D, "one 2x upsampling per entry")
class MissingStage(Dec):
    """One upsampling stage too few (hidden[:-1]): the image comes out half as wide."""

    def stages(self, hidden):
        return hidden[:-1]


@mutant(D, "one 2x upsampling per entry")
class FixedTwoUpsamplings(Dec):
    """Two upsampling stages whatever hidden_channels says (hard-coded for the default (64, 32))."""

    def stages(self, hidden):
        return [hidden[0], hidden[-1]]


@mutant(D, "expected 1 (one image channel)")
class LatentChannelsOut(Dec):
    """The last conv makes latent_channels channels (copied from the encoder)."""

    def out_channels(self, c):
        return c


@mutant(D, "not broadcastable")
class PerSampleLogvar(Dec):
    """One log-variance per sample, shape (b,): it lines up with the image's width, not its batch."""

    def forward(self, z):
        return self.image(z), self.logvar.expand(z.shape[0])


@mutant(D, "x_logvar is not learned")
class FixedUnitVariance(Dec):
    """A fixed x_logvar = torch.zeros(()): unit variance, never learned."""

    def forward(self, z):
        return self.image(z), torch.zeros(())


@mutant(D, "x_logvar is not learned")
class DetachedDecoderLogvar(Dec):
    """The learned scalar returned detached: it never gets a gradient."""

    def forward(self, z):
        return self.image(z), self.logvar.detach()


@mutant(D, "mixes the batch")
class DecoderBatchStatsNorm(Dec):
    """BatchNorm2d(track_running_stats=False) for GroupNorm: batch statistics even in eval mode."""

    norm = staticmethod(_BatchStatsNorm)


@mutant(D, "batch_first=True")
class DecoderBatchAxisAttention(Dec):
    """nn.MultiheadAttention(k, heads) fed (b, h w, k): it attends over the batch axis."""

    def attention(self, k, heads):
        return _BatchAxisAttention(k, heads, self.norm)


@mutant(D, "drops the batch axis")
class DecoderSqueezeTokens(Dec):
    """Tokens made with .squeeze(): at batch size 1 the batch axis goes and the MHA fails."""

    def attention(self, k, heads):
        return _SqueezeAttn(k, heads, self.norm)


@mutant(D, "does not depend on z")
class LearnedImage(Dec):
    """Returns a learned image whatever the latent (the output ignores the input)."""

    def __init__(self, latent_channels=4, hidden_channels=(64, 32), heads=4):
        super().__init__(latent_channels, hidden_channels, heads)
        self.x0 = nn.Parameter(torch.randn(1, 32, 32))

    def forward(self, z):
        return self.x0.expand(z.shape[0], 1, 32, 32), self.logvar


@mutant(D, "not a function of the inputs")
class SampledImage(Dec):
    """Returns a sample of the decoder's Gaussian instead of its mean."""

    def forward(self, z):
        x_mean = self.image(z)
        return x_mean + torch.exp(0.5 * self.logvar) * torch.randn_like(x_mean), self.logvar


@mutant(D, "no gradient back to z")
class DetachedLatent(Dec):
    """z.detach() on the way in: the decoder learns, the encoder gets nothing from the reconstruction."""

    def forward(self, z):
        return super().forward(z.detach())


@mutant(D, "cuts the graph")
class DecoderDetachedMid(Dec):
    """The features after the middle blocks detached: conv_in and the middle never learn."""

    def image(self, z):
        return self.conv_out(self.up(self.mid(self.conv_in(z)).detach()))


@mutant(D, "modified in place")
class InplaceLatent(Dec):
    """z -= z.mean(...) per sample: Python's -= writes into the caller's latent."""

    def forward(self, z):
        z -= z.mean(dim=(1, 2, 3), keepdim=True)
        return super().forward(z)


@mutant(D, "for z = 0")
class NormalisedLatent(Dec):
    """Divides each latent by its own std: 0 / 0 at z = 0, the prior's mean."""

    def forward(self, z):
        return super().forward(z / z.std(dim=(1, 2, 3), keepdim=True))


@mutant(D, "never negative")
class SigmoidOutput(Dec):
    """A sigmoid on the mean (the BCE-VAE habit): (0, 1) cannot reach the normalised data."""

    def image(self, z):
        return torch.sigmoid(super().image(z))


@mutant(D, "never negative")
class ReluOutput(Dec):
    """A ReLU after the last conv: the normalised background (about -0.45) is out of reach."""

    def image(self, z):
        return F.relu(super().image(z))


# ----------------------------------------------------------------------------- decoder alternatives


@alternative(D)
class ConvTransposeDecoder(nn.Module):
    """No attention: ConvTranspose2d(k, out, 4, stride=2, padding=1) per stage; a scalar log-variance.

    GroupNorm + ReLU before each transposed convolution."""

    def __init__(self, latent_channels=4, hidden_channels=(64, 32), heads=4):
        super().__init__()
        k = hidden_channels[0]
        layers = [nn.Conv2d(latent_channels, k, 3, padding=1)]
        for out in hidden_channels:
            layers += [nn.GroupNorm(1, k), nn.ReLU(), nn.ConvTranspose2d(k, out, 4, stride=2, padding=1)]
            k = out
        self.body = nn.Sequential(*layers, nn.GroupNorm(1, k), nn.ReLU(), nn.Conv2d(k, 1, 3, padding=1))
        self.log_sigma2 = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return self.body(z), self.log_sigma2


@alternative(D)
class MLPDecoder(nn.Module):
    """An MLP from the flattened latent, with two heads: the mean image and a per-pixel log-variance."""

    def __init__(self, latent_channels=4, hidden_channels=(64, 32), heads=4):
        super().__init__()
        side = 32 >> len(hidden_channels)
        width = 16 * hidden_channels[0]
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(latent_channels * side**2, width), nn.SiLU(),
                                   nn.Linear(width, width), nn.SiLU())
        self.mean_head, self.logvar_head = nn.Linear(width, 32 * 32), nn.Linear(width, 32 * 32)

    def forward(self, z):
        h = self.trunk(z)
        b = z.shape[0]
        return self.mean_head(h).view(b, 1, 32, 32), self.logvar_head(h).view(b, 1, 32, 32)


@alternative(D)
class RefLikeDecoder(Dec):
    """The reference's architecture, the student's own MHA, a per-pixel log-variance from a 2nd channel.

    The last conv makes two channels, split into the mean and the log-variance."""

    def __init__(self, latent_channels=4, hidden_channels=(64, 32), heads=4):
        super().__init__(latent_channels, hidden_channels, heads)
        del self.logvar

    def out_channels(self, c):
        return 2

    def forward(self, z):
        x_mean, x_logvar = self.image(z).chunk(2, dim=1)
        return x_mean, x_logvar


@alternative(D)
class PixelShuffleSigmoidRange(nn.Module):
    """PixelShuffle upsampling, (sigmoid - mean) / std output (about [-0.45, 3.0]), a (1, 1, 1) log-variance.

    A sigmoid in pixel space mapped to the normalised range can reach the data: a valid bounded output."""

    def __init__(self, latent_channels=4, hidden_channels=(64, 32), heads=4):
        super().__init__()
        k = hidden_channels[0]
        layers = [nn.Conv2d(latent_channels, k, 3, padding=1)]
        for out in hidden_channels:
            layers += [nn.GroupNorm(min(8, k), k), nn.SiLU(), nn.Conv2d(k, 4 * out, 3, padding=1),
                       nn.PixelShuffle(2)]
            k = out
        self.body = nn.Sequential(*layers, nn.GroupNorm(min(8, k), k), nn.SiLU(),
                                  nn.Conv2d(k, 1, 3, padding=1))
        self.logvar = nn.Parameter(torch.zeros(1, 1, 1))

    def forward(self, z):
        return (torch.sigmoid(self.body(z)) - MNIST_MEAN) / MNIST_STD, self.logvar


@alternative(D)
class DecoderUnusedLayer(Dec):
    """The reference-like decoder with a layer defined but never used (not a mistake)."""

    def __init__(self, latent_channels=4, hidden_channels=(64, 32), heads=4):
        super().__init__(latent_channels, hidden_channels, heads)
        self.spare = nn.Conv2d(1, 1, 1)
