"""reparameterize and vae_loss: mutants and alternatives of DiagonalGaussian.sample and
VAELoss.forward."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import alternative, mutant

R = "reparameterize"
L = "vae_loss"


# --------------------------------------------------------------------------------------------
# reparameterize


class _Gaussian:
    """The notebook's constructor; ``std`` and ``noise`` are the pieces a mutant overrides."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean, self.logvar = mean, logvar

    def std(self):
        return torch.exp(0.5 * self.logvar)

    def noise(self):
        return torch.randn_like(self.mean)

    def sample(self):
        return self.mean + self.std() * self.noise()


@alternative(R)
class RandnLike(_Gaussian):
    """mean + exp(0.5 logvar) * randn_like(mean)."""


@alternative(R)
class NormalRsample:
    """torch.distributions.Normal(mean, logvar.mul(0.5).exp()).rsample()."""

    def __init__(self, mean, logvar):
        self.mean, self.logvar = mean, logvar

    def sample(self):
        return torch.distributions.Normal(self.mean, self.logvar.mul(0.5).exp()).rsample()


@alternative(R)
class SqrtExpRandn:
    """std = sqrt(exp(logvar)), noise from torch.randn(mean.shape, device=..., dtype=...)."""

    def __init__(self, mean, logvar):
        self.mean = mean
        self.logvar = logvar

    def sample(self):
        std = torch.sqrt(torch.exp(self.logvar))
        eps = torch.randn(self.mean.shape, device=self.mean.device, dtype=self.mean.dtype)
        return eps * std + self.mean


@alternative(R)
class NormalInPlace:
    """std precomputed in __init__ and expanded to mean's shape; noise via empty_like(mean).normal_()."""

    def __init__(self, mean, logvar):
        self.mean = mean
        self.scale = (logvar / 2).exp().expand_as(mean)

    def sample(self):
        return torch.addcmul(self.mean, self.scale, torch.empty_like(self.mean).normal_())


@mutant(R, "variance used as the standard deviation")
class VarianceAsStd(_Gaussian):
    """std = exp(logvar): the variance."""

    def std(self):
        return torch.exp(self.logvar)


@mutant(R, "logvar used as the standard deviation")
class LogvarAsStd(_Gaussian):
    """std = logvar."""

    def std(self):
        return self.logvar


@mutant(R, "logvar / 2 used as the standard deviation")
class HalfLogvarAsStd(_Gaussian):
    """std = logvar / 2 (the log-std taken for the std)."""

    def std(self):
        return self.logvar / 2


@mutant(R, "inside the exponential")
class HalfOutsideExp(_Gaussian):
    """std = exp(logvar) / 2."""

    def std(self):
        return torch.exp(self.logvar) / 2


@mutant(R, "1 / std")
class InverseStd(_Gaussian):
    """std = exp(-logvar / 2)."""

    def std(self):
        return torch.exp(-self.logvar / 2)


@mutant(R, "NaN")
class SqrtLogvar(_Gaussian):
    """std = sqrt(logvar): NaN where logvar < 0."""

    def std(self):
        return torch.sqrt(self.logvar)


@mutant(R, "uniform")
class UniformNoise(_Gaussian):
    """torch.rand_like: uniform noise on [0, 1)."""

    def noise(self):
        return torch.rand_like(self.mean)


@mutant(R, "no noise")
class NoNoise(_Gaussian):
    """Returns the mean (a deterministic autoencoder)."""

    def sample(self):
        return self.mean


@mutant(R, "torch.normal")
class TorchNormal(_Gaussian):
    """torch.normal(mean, std): a draw without a gradient path."""

    def sample(self):
        return torch.normal(self.mean, self.std().expand_as(self.mean))


@mutant(R, "no gradient")
class Detached(_Gaussian):
    """The sample detached."""

    def sample(self):
        return super().sample().detach()


@mutant(R, "no gradient")
class DataAttributes(_Gaussian):
    """Computed from .data: no graph."""

    def sample(self):
        return self.mean.data + torch.exp(0.5 * self.logvar.data) * self.noise()


@mutant(R, "no gradient reaches logvar")
class StdDetached(_Gaussian):
    """std computed from logvar.detach(): the encoder's log-variance never learns."""

    def std(self):
        return torch.exp(0.5 * self.logvar.detach())


@mutant(R, "rsample")
class DistributionSample(_Gaussian):
    """Normal(mean, std).sample(): drawn under no_grad."""

    def sample(self):
        return torch.distributions.Normal(self.mean, self.std()).sample()


@mutant(R, "device")
class CpuNoise(_Gaussian):
    """torch.randn(mean.shape): noise on the CPU."""

    def noise(self):
        return torch.randn(self.mean.shape)


@mutant(R, "same sample at every call")
class NoiseInInit(_Gaussian):
    """Noise drawn once in __init__."""

    def __init__(self, mean, logvar):
        super().__init__(mean, logvar)
        self.eps = torch.randn_like(mean)

    def noise(self):
        return self.eps


@mutant(R, "same sample at every call")
class SeedEachCall(_Gaussian):
    """torch.manual_seed(0) in sample(): "reproducible" noise."""

    def noise(self):
        torch.manual_seed(0)
        return torch.randn_like(self.mean)


@mutant(R, "fixed seed")
class SeededGenerator(_Gaussian):
    """A generator seeded with 0 in __init__: every object draws the same noise."""

    def __init__(self, mean, logvar):
        super().__init__(mean, logvar)
        self.gen = torch.Generator().manual_seed(0)

    def noise(self):
        return torch.randn(self.mean.shape, generator=self.gen, dtype=self.mean.dtype).to(self.mean.device)


@mutant(R, "shared by all entries")
class NoiseLikeLogvar(_Gaussian):
    """randn_like(logvar): one draw when logvar is 0-d."""

    def noise(self):
        return torch.randn_like(self.logvar)


@mutant(R, "shared by all entries")
class ScalarNoise(_Gaussian):
    """One scalar draw for the whole tensor."""

    def noise(self):
        return torch.randn((), device=self.mean.device)


@mutant(R, "per sample")
class PerSampleNoise(_Gaussian):
    """Noise of shape (b, 1, ..., 1): one draw per sample."""

    def noise(self):
        shape = (self.mean.shape[0],) + (1,) * (self.mean.dim() - 1)
        return torch.randn(shape, device=self.mean.device)


# --------------------------------------------------------------------------------------------
# vae_loss


class _Loss(nn.Module):
    """The notebook's constructor; ``rec`` and ``kl`` (per element) and ``reduce`` are the pieces a
    mutant overrides."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def rec(self, x, x_mean, x_logvar):
        return 0.5 * ((x - x_mean) ** 2 / torch.exp(x_logvar) + x_logvar)

    def kl(self, z_mean, z_logvar):
        return 0.5 * (z_mean ** 2 + torch.exp(z_logvar) - z_logvar - 1)

    @staticmethod
    def per_sample(t, like):
        return t.expand_as(like).flatten(1).sum(1)

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = self.per_sample(self.rec(x, x_mean, x_logvar), x)
        kl = self.per_sample(self.kl(z_mean, z_logvar), z_mean)
        return (rec + self.beta * kl).mean()


@alternative(L)
class Plain(_Loss):
    """Per-element terms, summed per sample (flatten(1).sum(1)), mean over the batch."""


@alternative(L)
class FullGaussianNLL(nn.Module):
    """The full Gaussian NLL, -Normal(x_mean, exp(x_logvar / 2)).log_prob(x), and kl_divergence(q, N(0, I)).

    The NLL carries the constant 1/2 log(2 pi) per pixel: the same loss up to a constant."""

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        D = torch.distributions
        nll = -D.Normal(x_mean, torch.exp(0.5 * x_logvar)).log_prob(x)
        q = D.Normal(z_mean, torch.exp(0.5 * z_logvar))
        kl = D.kl_divergence(q, D.Normal(torch.zeros_like(z_mean), torch.ones_like(z_mean)))
        b = x.shape[0]
        return (nll.reshape(b, -1).sum(-1) + self.beta * kl.reshape(b, -1).sum(-1)).mean()


@alternative(L)
class GaussianNLLLoss(nn.Module):
    """F.gaussian_nll_loss(full=True, reduction="sum") / b and a hand-written KL summed over dims."""

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        b = x.shape[0]
        var = torch.exp(x_logvar).expand_as(x_mean)
        nll = F.gaussian_nll_loss(x_mean, x, var, full=True, eps=1e-12, reduction="sum") / b
        kl = -0.5 * torch.sum(1 + z_logvar - z_mean.pow(2) - z_logvar.exp(), dim=(1, 2, 3)).mean()
        return nll + self.beta * kl


@alternative(L)
class ExplicitConstant(nn.Module):
    """Precision weights, the constant log(2 pi) written out, sums over dims then / batch size."""

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        batch = x.size(0)
        logvar = x_logvar * torch.ones_like(x)
        rec = 0.5 * torch.sum(torch.exp(-logvar) * (x - x_mean) ** 2 + logvar + math.log(2 * math.pi))
        kl = 0.5 * torch.sum(z_mean * z_mean + z_logvar.exp() - 1.0 - z_logvar)
        return (rec + self.beta * kl) / batch


@mutant(L, "KL sign")
class KLSignFlipped(_Loss):
    """rec - beta * KL."""

    def kl(self, z_mean, z_logvar):
        return -super().kl(z_mean, z_logvar)


@mutant(L, "KL term misses its 1/2")
class KLNoHalf(_Loss):
    """KL without the 1/2."""

    def kl(self, z_mean, z_logvar):
        return z_mean ** 2 + torch.exp(z_logvar) - z_logvar - 1


@mutant(L, "reconstruction term misses its 1/2")
class RecNoHalf(_Loss):
    """Reconstruction without the 1/2."""

    def rec(self, x, x_mean, x_logvar):
        return (x - x_mean) ** 2 / torch.exp(x_logvar) + x_logvar


@mutant(L, "log standard deviation")
class RecLogStd(_Loss):
    """x_logvar used as log sigma: (x - mu)^2 / (2 sigma^2) + log sigma."""

    def rec(self, x, x_mean, x_logvar):
        return 0.5 * (x - x_mean) ** 2 * torch.exp(-2 * x_logvar) + x_logvar


@mutant(L, "log standard deviation in the KL")
class KLLogStd(_Loss):
    """z_logvar used as log sigma in the KL."""

    def kl(self, z_mean, z_logvar):
        return 0.5 * (z_mean ** 2 + torch.exp(2 * z_logvar) - 2 * z_logvar - 1)


@mutant(L, "beta multiplies the reconstruction")
class BetaOnReconstruction(_Loss):
    """beta * rec + KL."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = self.per_sample(self.rec(x, x_mean, x_logvar), x)
        kl = self.per_sample(self.kl(z_mean, z_logvar), z_mean)
        return (self.beta * rec + kl).mean()


@mutant(L, "whole loss")
class BetaOnBoth(_Loss):
    """beta * (rec + KL)."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = self.per_sample(self.rec(x, x_mean, x_logvar), x)
        kl = self.per_sample(self.kl(z_mean, z_logvar), z_mean)
        return self.beta * (rec + kl).mean()


@mutant(L, "does not change with beta")
class BetaIgnored(_Loss):
    """beta never used (rec + KL)."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = self.per_sample(self.rec(x, x_mean, x_logvar), x)
        kl = self.per_sample(self.kl(z_mean, z_logvar), z_mean)
        return (rec + kl).mean()


@mutant(L, "mean over the pixels")
class RecMeanPixels(_Loss):
    """Reconstruction averaged over the pixels of each sample."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = self.rec(x, x_mean, x_logvar).expand_as(x).flatten(1).mean(1)
        kl = self.per_sample(self.kl(z_mean, z_logvar), z_mean)
        return (rec + self.beta * kl).mean()


@mutant(L, "mean over the latent entries")
class KLMeanLatents(_Loss):
    """KL averaged over the latent entries of each sample."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = self.per_sample(self.rec(x, x_mean, x_logvar), x)
        kl = self.kl(z_mean, z_logvar).flatten(1).mean(1)
        return (rec + self.beta * kl).mean()


@mutant(L, "averaged over the latent channels")
class KLMeanChannels(_Loss):
    """KL summed over the grid, then averaged over channels and batch."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = self.per_sample(self.rec(x, x_mean, x_logvar), x).mean()
        kl = self.kl(z_mean, z_logvar).sum(dim=(2, 3)).mean()
        return rec + self.beta * kl


@mutant(L, "summed over the batch")
class SummedOverBatch(_Loss):
    """Sum over the batch instead of the mean."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        return x.shape[0] * super().forward(x, x_mean, x_logvar, z_mean, z_logvar)


@mutant(L, "KL term is not averaged over the batch")
class KLSummedOverBatch(_Loss):
    """Reconstruction averaged over the batch, KL summed over it."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = self.per_sample(self.rec(x, x_mean, x_logvar), x).mean()
        return rec + self.beta * self.kl(z_mean, z_logvar).sum()


@mutant(L, "counted once")
class XLogvarOnce(_Loss):
    """A 0-d x_logvar added once per sample, not once per pixel."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        se = ((x - x_mean) ** 2 / torch.exp(x_logvar)).flatten(1).sum(1)
        logdet = x_logvar.flatten(1).sum(1) if x_logvar.dim() else x_logvar
        rec = 0.5 * (se + logdet)
        kl = self.per_sample(self.kl(z_mean, z_logvar), z_mean)
        return (rec + self.beta * kl).mean()


@mutant(L, "wrong direction")
class KLReverse(_Loss):
    """KL(N(0, I) || q) instead of KL(q || N(0, I))."""

    def kl(self, z_mean, z_logvar):
        return 0.5 * (z_logvar + (1 + z_mean ** 2) * torch.exp(-z_logvar) - 1)


@mutant(L, "misses its - 1")
class KLNoMinusOne(_Loss):
    """KL without the - 1."""

    def kl(self, z_mean, z_logvar):
        return 0.5 * (z_mean ** 2 + torch.exp(z_logvar) - z_logvar)


@mutant(L, "exp(z_logvar) replaced by z_logvar")
class KLLogvarForExp(_Loss):
    """exp(z_logvar) written as z_logvar."""

    def kl(self, z_mean, z_logvar):
        return 0.5 * (z_mean ** 2 + z_logvar - z_logvar - 1)


@mutant(L, "MSE without the variance")
class MSEWithoutVariance(_Loss):
    """Reconstruction F.mse_loss(x_mean, x, reduction='sum') per sample: x_logvar unused."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = F.mse_loss(x_mean, x, reduction="none").flatten(1).sum(1)
        kl = self.per_sample(self.kl(z_mean, z_logvar), z_mean)
        return (rec + self.beta * kl).mean()


@mutant(L, "multiplied by exp(x_logvar)")
class VarianceMultiplied(_Loss):
    """(x - x_mean)^2 * exp(x_logvar): the variance multiplies."""

    def rec(self, x, x_mean, x_logvar):
        return 0.5 * ((x - x_mean) ** 2 * torch.exp(x_logvar) + x_logvar)


@mutant(L, "no gradient reaches x_logvar")
class DetachedXLogvar(_Loss):
    """x_logvar detached: the decoder's variance never learns."""

    def rec(self, x, x_mean, x_logvar):
        return super().rec(x, x_mean, x_logvar.detach())


@mutant(L, "gradient with respect to z_logvar does not match")
class DetachedExpInKL(_Loss):
    """exp(z_logvar.detach()) in the KL: half of z_logvar's gradient is lost."""

    def kl(self, z_mean, z_logvar):
        return 0.5 * (z_mean ** 2 + torch.exp(z_logvar.detach()) - z_logvar - 1)


@mutant(L, "mean over the pixels")
class LabPerElementMean(_Loss):
    """The lab's loss: per-element terms without the 1/2s, averaged with .mean() over everything."""

    def forward(self, x, x_mean, x_logvar, z_mean, z_logvar):
        rec = ((x - x_mean) ** 2 / torch.exp(x_logvar) + x_logvar).mean()
        kl = (z_mean ** 2 + torch.exp(z_logvar) - z_logvar - 1).mean()
        return rec + self.beta * kl
