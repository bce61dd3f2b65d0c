"""The reference of Notebook 3 (instructor side): a VAE for 32x32 MNIST and classifier-free
guidance in its latent space.

Shapes: b batch, c latent channels, h x w latent grid, k hidden channels. The encoder halves the
resolution once per entry of ``hidden_channels`` (32 -> 16 -> 8 for two entries: a 4 x 8 x 8
latent, 256 numbers, a quarter of the 1,024 pixels); the decoder doubles it as often.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from cfgflow.latent import VAE, IdentityAutoencoder, latent_scale  # noqa: F401  (re-exported: given code)
from cfgflow.simulation import sample_cfg

from .models import MHA
from .training import CFGTrainer


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))): ``logvar`` broadcastable to ``mean``."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean, self.logvar = mean, logvar

    def sample(self) -> torch.Tensor:
        """The reparameterised sample ``mean + exp(logvar / 2) * noise``, noise ~ N(0, I) of
        ``mean``'s shape on ``mean``'s device: differentiable in mean and logvar."""
        noise = torch.randn(self.mean.shape, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * noise


class VAELoss(nn.Module):
    """The beta-weighted negative ELBO, averaged over the batch, of each sample:

        1/2 sum_pixels [ (x - x_mean)^2 / exp(x_logvar) + x_logvar ]
        + beta * 1/2 sum_latent [ z_mean^2 + exp(z_logvar) - z_logvar - 1 ]

    (the Gaussian negative log-likelihood without its constant 1/2 log(2 pi) per pixel, plus
    beta times the KL divergence of N(z_mean, exp(z_logvar)) from N(0, I)).
    """

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar) -> torch.Tensor:
        rec = 0.5 * ((x - x_mean) ** 2 * torch.exp(-x_logvar) + x_logvar)  # (b, 1, 32, 32)
        kl = 0.5 * (z_mean**2 + torch.exp(z_logvar) - z_logvar - 1)  # (b, c, h, w)
        return (rec.flatten(1).sum(1) + self.beta * kl.flatten(1).sum(1)).mean()


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """``x + conv1x1(SiLU(conv3x3(SiLU(GroupNorm(x)))))``: ``(b, k, h, w)`` -> ``(b, k, h, w)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.branch = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                    nn.SiLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class AttentionBlock(nn.Module):
    """Self-attention over the h * w positions: ``x + MHA(GroupNorm(x))`` with the positions as
    tokens. ``(b, k, h, w)`` -> ``(b, k, h, w)``."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = _norm(channels)
        self.attn = MHA(channels, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        tokens = rearrange(self.norm(x), "b k h w -> b (h w) k")  # (b, h w, k)
        return x + rearrange(self.attn(tokens), "b (h w) k -> b k h w", h=h)


def _check_image(x, name: str, channels: int, factor: int):
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels \
            or x.shape[2] % factor or x.shape[3] % factor:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape (b, {channels}, h, w) with h and w divisible by {factor}, "
                         f"got {got}")


class Encoder(nn.Module):
    """``x: (b, 1, H, W)`` -> ``(z_mean, z_logvar)``, both ``(b, c, H / 2^n, W / 2^n)`` with
    ``n = len(hidden_channels)``: a 3x3 convolution, per stage a residual block and a stride-2
    convolution, then residual, attention and residual blocks and a 3x3 convolution to the
    mean and log-variance channels."""

    def __init__(self, latent_channels: int = 4, hidden_channels: Sequence[int] = (32, 64), heads: int = 4):
        super().__init__()
        hidden = list(hidden_channels)
        self.factor = 2 ** len(hidden)
        self.conv_in = nn.Conv2d(1, hidden[0], 3, padding=1)
        stages, k = [], hidden[0]
        for out in hidden:
            stages += [ResidualBlock(k), nn.Conv2d(k, out, 3, stride=2, padding=1)]
            k = out
        self.down = nn.Sequential(*stages)
        self.mid = nn.Sequential(ResidualBlock(k), AttentionBlock(k, heads), ResidualBlock(k))
        self.conv_out = nn.Sequential(_norm(k), nn.SiLU(), nn.Conv2d(k, 2 * latent_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        _check_image(x, "x", 1, self.factor)
        h = self.conv_out(self.mid(self.down(self.conv_in(x))))  # (b, 2c, h, w)
        z_mean, z_logvar = h.chunk(2, dim=1)
        return z_mean, z_logvar


class Decoder(nn.Module):
    """``z: (b, c, h, w)`` -> ``(x_mean: (b, 1, h 2^n, w 2^n), x_logvar)`` with one learned scalar
    log-variance (a 0-d tensor, broadcastable to the image): the mirror of :class:`Encoder` with
    nearest-neighbour upsampling."""

    def __init__(self, latent_channels: int = 4, hidden_channels: Sequence[int] = (64, 32), heads: int = 4):
        super().__init__()
        hidden = list(hidden_channels)
        self.latent_channels = latent_channels
        k = hidden[0]
        self.conv_in = nn.Conv2d(latent_channels, k, 3, padding=1)
        self.mid = nn.Sequential(ResidualBlock(k), AttentionBlock(k, heads), ResidualBlock(k))
        stages = []
        for out in hidden:
            stages += [ResidualBlock(k), nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(k, out, 3, padding=1)]
            k = out
        self.up = nn.Sequential(*stages)
        self.conv_out = nn.Sequential(_norm(k), nn.SiLU(), nn.Conv2d(k, 1, 3, padding=1))
        self.logvar = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        _check_image(z, "z", self.latent_channels, 1)
        x_mean = self.conv_out(self.up(self.mid(self.conv_in(z))))  # (b, 1, H, W)
        return x_mean, self.logvar


class LatentCFGTrainer(CFGTrainer):
    """The CFG flow-matching loss of Notebook 1 on scaled latents of a frozen VAE.

    One batch: (images, y) ~ ``path.p_data``; ``z = scale * vae.sample_latent(images)`` without
    gradients (the VAE is frozen); labels nulled with probability eta; t = ``sample_time``;
    x ~ p_t(x | z) on the latent path; loss = mean of ``(model(x, t, y) - u_t(x | z))^2``.
    """

    def __init__(self, path, vae, scale: float, eta: float, null_label: int, eps: float = 1e-3, **kwargs):
        super().__init__(path, eta, null_label, eps, **kwargs)
        self.vae, self.scale = vae, float(scale)

    def get_train_loss(self, batch_size: int) -> torch.Tensor:
        images, y = self.path.p_data.sample(batch_size)  # (b, 1, 32, 32), (b,)
        with torch.no_grad():
            z = self.scale * self.vae.sample_latent(images)  # (b, c, h, w)
        drop = torch.rand(batch_size, device=y.device) < self.eta  # (b,)
        y = y.masked_fill(drop, self.null_label)
        t = self.sample_time(batch_size, z.device)  # (b,)
        x = self.path.sample_conditional_path(z, t)
        return F.mse_loss(self.model(x, t, y), self.path.conditional_vector_field(x, z, t))


class LatentCFGSampler:
    """Guided samples of a latent flow model, decoded to images: integrate the CFG ODE in the
    latent space (:func:`cfgflow.simulation.sample_cfg`), undo the scale, decode once and keep
    the decoder's mean."""

    def __init__(self, model, vae, scale: float, latent_shape: Sequence[int], null_label: int = 10):
        self.model, self.vae, self.scale = model, vae, float(scale)
        self.latent_shape, self.null_label = tuple(latent_shape), null_label

    @torch.no_grad()
    def sample(self, y: torch.Tensor, guidance_scale: float, num_steps: int = 30, solver: str = "heun",
               x0: torch.Tensor = None) -> torch.Tensor:
        """``y: (b,)`` -> images ``(b, 1, 32, 32)``; ``x0``: the initial latent noise
        ``(b, *latent_shape)`` (drawn on y's device when None)."""
        z = sample_cfg(self.model, y, guidance_scale, num_steps, shape=self.latent_shape,
                       null_label=self.null_label, solver=solver, x0=x0)  # (b, c, h, w)
        return self.vae.decode(z / self.scale)[0]
