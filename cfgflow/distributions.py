"""Distributions we can sample from: the noise p_simple and labelled data p_data.

Every distribution is an ``nn.Module`` so that ``.to(device)`` moves it, and every sample
is drawn directly on the module's device (no CPU round trip, no device mismatch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn


class Sampleable(ABC):
    """A distribution that can be sampled from."""

    @abstractmethod
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw ``num_samples`` samples, shape ``(b, ...)``."""


class LabeledSampleable(ABC):
    """A joint distribution over data and labels, p(z, y)."""

    @abstractmethod
    def sample(self, num_samples: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Draw ``num_samples`` pairs: samples ``(b, ...)`` and labels ``(b,)`` (int64)."""


def check_num_samples(num_samples) -> int:
    """Validate a sample count; returns it as an int."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    return num_samples


class _DeviceAnchor(nn.Module):
    """Mixin holding a 0-d buffer so ``self.device`` follows ``.to(device)``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device


class IsotropicGaussian(_DeviceAnchor, Sampleable):
    """N(0, std^2 I) over tensors of a fixed ``shape`` (e.g. ``[2]`` or ``[1, 32, 32]``)."""

    def __init__(self, shape: Sequence[int], std: float = 1.0):
        super().__init__()
        self.shape = list(shape)
        self.std = float(std)

    def sample(self, num_samples: int) -> torch.Tensor:
        """Returns ``(b, *shape)`` on this module's device."""
        check_num_samples(num_samples)
        return self.std * torch.randn(num_samples, *self.shape, device=self.device)


class GMM(nn.Module, LabeledSampleable):
    """Isotropic Gaussian mixture; the label of a sample is the index of its component.

    Args:
        means: ``(k, d)`` component means.
        stds: ``(k,)`` per-component standard deviations (the lab called them "covariances").
        weights: ``(k,)`` mixture weights (normalised here).
    """

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor):
        super().__init__()
        if means.dim() != 2:
            raise ValueError(f"means must have shape (k, d), got {tuple(means.shape)}")
        k = means.shape[0]
        if stds.shape != (k,) or weights.shape != (k,):
            raise ValueError(
                f"stds and weights must have shape ({k},), got {tuple(stds.shape)} "
                f"and {tuple(weights.shape)}"
            )
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        self.register_buffer("means", means.float())
        self.register_buffer("stds", stds.float())
        self.register_buffer("weights", weights.float() / weights.sum())

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def sample(self, num_samples: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns samples ``(b, d)`` and labels ``(b,)``, both on the module's device."""
        check_num_samples(num_samples)
        labels = torch.multinomial(self.weights, num_samples, replacement=True)
        noise = torch.randn(num_samples, self.means.shape[1], device=self.means.device)
        samples = self.means[labels] + self.stds[labels, None] * noise
        return samples, labels

    @classmethod
    def symmetric_2d(cls, nmodes: int = 3, radius: float = 2.0, std: float = 0.2) -> "GMM":
        """The lab's sanity-check mixture: ``nmodes`` equal modes on a circle."""
        angles = torch.arange(nmodes) * (2 * torch.pi / nmodes)
        means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        return cls(means, torch.full((nmodes,), std), torch.ones(nmodes))
