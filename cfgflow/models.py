"""Given building blocks of the models: the :class:`ConditionalVectorField` interface and
:class:`MLP`. The graded models (the MLP field, the DiT and its parts) are the student's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Type

import torch
import torch.nn as nn


def _check_input(x: torch.Tensor, name: str, shape_doc: str, ndim: int, last: int = None,
                 second: int = None):
    """Raise a ValueError naming ``name`` unless ``x`` has ``ndim`` dims, ``x.shape[-1] == last``
    and ``x.shape[1] == second`` (each check only when given)."""
    ok = (isinstance(x, torch.Tensor) and x.dim() == ndim
          and (last is None or x.shape[-1] == last) and (second is None or x.shape[1] == second))
    if not ok:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape {shape_doc}, got {got}")


class ConditionalVectorField(nn.Module, ABC):
    """u_t^theta(x | y)."""

    @abstractmethod
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x: (b, ...)``, ``t: (b,)`` or ``(b, 1, 1, 1)``, ``y: (b,)`` int -> ``(b, ...)``."""


class MLP(nn.Module):
    """Linear layers of widths ``dims`` with ``activation`` between them (not after the last)."""

    def __init__(self, dims: List[int], activation: Type[nn.Module] = nn.SiLU):
        super().__init__()
        layers = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(activation())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dims[0])`` -> ``(..., dims[-1])``."""
        return self.net(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
