"""Conditional probability paths p_t(x | z) that interpolate noise (t = 0) and data (t = 1).

The Gaussian path is ``x_t = alpha_t z + beta_t eps`` with ``eps ~ N(0, I)``; all methods
take ``t`` of shape ``(b,)`` and data of any shape ``(b, ...)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from torch.func import grad, vmap

from .distributions import IsotropicGaussian, LabeledSampleable, Sampleable


def _autograd_dt(fn, t: torch.Tensor) -> torch.Tensor:
    """d/dt fn(t) for each entry of a ``(b,)`` tensor, by automatic differentiation."""
    return vmap(grad(lambda s: fn(s.reshape(1)).sum()))(t)


class _Schedule(ABC):
    """A scalar schedule s(t) with fixed endpoint values, checked at construction."""

    value_at_0: float
    value_at_1: float

    def __init__(self):
        for t, want in ((0.0, self.value_at_0), (1.0, self.value_at_1)):
            got = self(torch.tensor([t]))
            # atol: float32 rounding, e.g. cos(pi / 2) = -4.4e-8, must not reject a schedule.
            if not torch.allclose(got, torch.tensor([want], dtype=got.dtype), atol=1e-6):
                raise ValueError(
                    f"{type(self).__name__} must satisfy s({t:g}) = {want:g}, got {got.item():g}"
                )

    @abstractmethod
    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """Evaluate the schedule: ``(b,) -> (b,)``."""

    def dt(self, t: torch.Tensor) -> torch.Tensor:
        """d/dt of the schedule, ``(b,) -> (b,)``. Autograd by default; override with the
        closed form where one is known."""
        return _autograd_dt(self, t)


class Alpha(_Schedule):
    """Data coefficient alpha_t: alpha_0 = 0, alpha_1 = 1."""

    value_at_0, value_at_1 = 0.0, 1.0


class Beta(_Schedule):
    """Noise coefficient beta_t: beta_0 = 1, beta_1 = 0."""

    value_at_0, value_at_1 = 1.0, 0.0


class LinearAlpha(Alpha):
    """alpha_t = t."""

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def dt(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)


class LinearBeta(Beta):
    """beta_t = 1 - t."""

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - t

    def dt(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.ones_like(t)


def check_time(t: torch.Tensor, batch: int, name: str = "t") -> torch.Tensor:
    """Return ``t`` as shape ``(b,)``; accepts ``(b,)``, ``(b, 1)`` or ``(b, 1, 1, 1)``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of shape (b,), got {type(t).__name__}")
    if t.dim() == 0 or t.shape[0] != batch or t.numel() != batch:
        raise ValueError(
            f"{name} must have shape (b,) or (b, 1, 1, 1) with b = {batch}, "
            f"got {tuple(t.shape)}"
        )
    return t.reshape(batch)


class ConditionalProbabilityPath(nn.Module, ABC):
    """A family of distributions p_t(x | z) with p_0 = p_simple and p_1(. | z) = delta_z."""

    def __init__(self, p_simple: Sampleable, p_data: LabeledSampleable):
        super().__init__()
        self.p_simple = p_simple
        self.p_data = p_data

    def sample_marginal_path(self, t: torch.Tensor) -> torch.Tensor:
        """Sample x ~ p_t(x) = E_z p_t(x | z); ``t: (b,)`` -> ``(b, ...)``."""
        z, _ = self.sample_conditioning_variable(t.shape[0])
        return self.sample_conditional_path(z, t)

    @abstractmethod
    def sample_conditioning_variable(self, num_samples: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sample (z, y) ~ p_data: ``(b, ...)`` and ``(b,)``."""

    @abstractmethod
    def sample_conditional_path(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample x ~ p_t(x | z); ``z: (b, ...)``, ``t: (b,)`` -> ``(b, ...)``."""

    @abstractmethod
    def conditional_vector_field(
        self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """u_t(x | z); ``x, z: (b, ...)``, ``t: (b,)`` -> ``(b, ...)``."""

    @abstractmethod
    def conditional_score(self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x | z); ``x, z: (b, ...)``, ``t: (b,)`` -> ``(b, ...)``."""


class GaussianConditionalProbabilityPath(ConditionalProbabilityPath):
    """p_t(x | z) = N(alpha_t z, beta_t^2 I).

    Args:
        p_data: the labelled data distribution.
        p_simple_shape: shape of one sample, e.g. ``[2]`` or ``[1, 32, 32]``.
        alpha, beta: the schedules.
    """

    def __init__(
        self, p_data: LabeledSampleable, p_simple_shape: Sequence[int], alpha: Alpha, beta: Beta
    ):
        super().__init__(IsotropicGaussian(shape=p_simple_shape, std=1.0), p_data)
        self.alpha = alpha
        self.beta = beta
        self.data_ndim = len(p_simple_shape)

    def _per_sample(self, s: torch.Tensor) -> torch.Tensor:
        """``(b,)`` -> ``(b, 1, ..., 1)`` so it broadcasts against one sample per row."""
        return s.reshape(-1, *([1] * self.data_ndim))

    def _coefficients(self, z: torch.Tensor, t: torch.Tensor):
        t = check_time(t, z.shape[0])
        return t, self._per_sample(self.alpha(t)), self._per_sample(self.beta(t))

    def sample_conditioning_variable(self, num_samples: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.p_data.sample(num_samples)

    def sample_conditional_path(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _, alpha_t, beta_t = self._coefficients(z, t)
        return alpha_t * z + beta_t * torch.randn_like(z)

    def conditional_vector_field(
        self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        # x = alpha z + beta eps  =>  eps = (x - alpha z) / beta, and
        # u = d/dt x = alpha' z + beta' eps = (alpha' - beta'/beta * alpha) z + beta'/beta * x.
        # Divides by beta_t, which is 0 at t = 1: train on t in [0, 1 - eps).
        t, alpha_t, beta_t = self._coefficients(z, t)
        d_alpha = self._per_sample(self.alpha.dt(t))
        d_beta = self._per_sample(self.beta.dt(t))
        return (d_alpha - d_beta / beta_t * alpha_t) * z + d_beta / beta_t * x

    def conditional_score(self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _, alpha_t, beta_t = self._coefficients(z, t)
        return (alpha_t * z - x) / beta_t**2
