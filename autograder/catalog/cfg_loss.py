"""cfg_loss: mutants and alternatives of CFGTrainer.get_train_loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cfgflow_ref import Trainer

from . import alternative, mutant

P = "cfg_loss"


class _Base(Trainer):
    """The notebook's constructor."""

    def __init__(self, path, eta: float, null_label: int, eps: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.path, self.eta, self.null_label, self.eps = path, eta, null_label, eps

    # pieces a mutant overrides
    def mask(self, y):
        return torch.rand(y.shape[0], device=y.device) < self.eta

    def times(self, z):
        return (1 - self.eps) * torch.rand(z.shape[0], device=z.device)

    def null(self, y, drop):
        return y.masked_fill(drop, self.null_label)

    def objective(self, pred, target):
        return F.mse_loss(pred, target)

    def get_train_loss(self, batch_size: int):
        z, y = self.path.p_data.sample(batch_size)
        y = self.null(y, self.mask(y))
        t = self.times(z)
        x = self.path.sample_conditional_path(z, t)
        return self.objective(self.model(x, t, y), self.path.conditional_vector_field(x, z, t))


@mutant(P, "mask inverted")
class InvertedMask(_Base):
    """Labels nulled when rand > eta (probability 1 - eta)."""

    def mask(self, y):
        return torch.rand(y.shape[0], device=y.device) > self.eta


@mutant(P, "device=y.device")
class CpuMask(_Base):
    """The lab's mask: torch.rand(batch_size) on the CPU, combined with torch.where."""

    def mask(self, y):
        return torch.rand(y.shape[0]) < self.eta

    def null(self, y, drop):
        return torch.where(drop, torch.ones_like(y) * self.null_label, y)


@mutant(P, "device=y.device")
class CpuTime(_Base):
    """t drawn on the CPU."""

    def times(self, z):
        return (1 - self.eps) * torch.rand(z.shape[0])


@mutant(P, "torch.randn")
class RandnTime(_Base):
    """t ~ N(0, 1)."""

    def times(self, z):
        return torch.randn(z.shape[0], device=z.device)


@mutant(P, "above 1 - eps")
class TimeToOne(_Base):
    """t ~ U[0, 1): ignores eps."""

    def times(self, z):
        return torch.rand(z.shape[0], device=z.device)


@mutant(P, "summed")
class SummedLoss(_Base):
    """Sum of squared errors."""

    def objective(self, pred, target):
        return ((pred - target) ** 2).sum()


@mutant(P, "sums over the data dimensions")
class PerSampleNorm(_Base):
    """Mean over the batch of the squared norm per sample."""

    def objective(self, pred, target):
        return (pred - target).pow(2).sum(-1).mean()


@mutant(P, "norm over the whole batch")
class WholeBatchNorm(_Base):
    """The norm of the whole batch's error."""

    def objective(self, pred, target):
        return torch.linalg.norm(pred - target)


@mutant(P, "x where z belongs")
class XInTarget(_Base):
    """Target u_t(x | x)."""

    def get_train_loss(self, batch_size):
        z, y = self.path.p_data.sample(batch_size)
        y = self.null(y, self.mask(y))
        t = self.times(z)
        x = self.path.sample_conditional_path(z, t)
        return F.mse_loss(self.model(x, t, y), self.path.conditional_vector_field(x, x, t))


@mutant(P, "the model sees z")
class ModelSeesZ(_Base):
    """Model evaluated at z instead of the noisy x."""

    def get_train_loss(self, batch_size):
        z, y = self.path.p_data.sample(batch_size)
        y = self.null(y, self.mask(y))
        t = self.times(z)
        x = self.path.sample_conditional_path(z, t)
        return F.mse_loss(self.model(z, t, y), self.path.conditional_vector_field(x, z, t))


@mutant(P, "use self.null_label")
class HardCodedNull(_Base):
    """Null label hard-coded to 10."""

    def null(self, y, drop):
        return y.masked_fill(drop, 10)


@mutant(P, "t has shape")
class ImageShapedTime(_Base):
    """t of shape (b, 1, 1, 1) as the lab's hint said."""

    def times(self, z):
        return (1 - self.eps) * torch.rand(z.shape[0], 1, 1, 1, device=z.device)


@mutant(P, "expected eta")
class BatchWideMask(_Base):
    """One coin for the whole batch."""

    def mask(self, y):
        return (torch.rand(1, device=y.device) < self.eta).expand(y.shape[0])


@alternative(P)
class WhereFull(_Base):
    """torch.where with full_like, rand_like, manual mean of squares, sample_conditioning_variable."""

    def get_train_loss(self, batch_size):
        z, y = self.path.sample_conditioning_variable(batch_size)
        keep = torch.rand_like(y, dtype=torch.float) >= self.eta
        y = torch.where(keep, y, torch.full_like(y, self.null_label))
        t = torch.rand(batch_size, device=z.device) * (1.0 - self.eps)
        x = self.path.sample_conditional_path(z, t)
        err = self.model(x, t, y) - self.path.conditional_vector_field(x, z, t)
        return (err ** 2).mean()


@alternative(P)
class BernoulliUniform(_Base):
    """Bernoulli mask, boolean index assignment, t via uniform_."""

    def get_train_loss(self, batch_size):
        z, y = self.path.p_data.sample(batch_size)
        drop = torch.bernoulli(torch.full((batch_size,), self.eta, device=y.device)).bool()
        y = y.clone()
        y[drop] = self.null_label
        t = torch.empty(batch_size, device=z.device).uniform_(0, 1 - self.eps)
        x = self.path.sample_conditional_path(z, t)
        target = self.path.conditional_vector_field(x, z, t)
        return F.mse_loss(self.model(x, t, y), target, reduction="mean")


@alternative(P)
class Plain(_Base):
    """masked_fill and F.mse_loss."""
