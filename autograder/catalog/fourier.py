"""fourier_encoder: mutants and alternatives."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from einops import rearrange

from . import alternative, mutant
from .components import Fourier

P = "fourier_encoder"

# ----------------------------------------------------------------------------- mutants


@mutant(P, "sin block first")
class SinFirst(Fourier):
    """sin block before the cos block."""

    def forward(self, t):
        f = 2 * math.pi * t.reshape(-1, 1) * self.weights[None]
        return torch.cat([torch.sin(f), torch.cos(f)], dim=-1)


@mutant(P, "sin first and times sqrt(2)")
class LabOfficial(Fourier):
    """The lab's old solution code: sin first, times sqrt(2)."""

    def forward(self, t):
        f = 2 * math.pi * t.reshape(-1, 1) * self.weights[None]
        return math.sqrt(2) * torch.cat([torch.sin(f), torch.cos(f)], dim=-1)


@mutant(P, "sqrt(2) factor")
class Sqrt2(Fourier):
    """cos first but times sqrt(2)."""

    def forward(self, t):
        return math.sqrt(2) * super().forward(t)


@mutant(P, "missing 2*pi")
class No2Pi(Fourier):
    """Frequencies w t instead of 2 pi w t."""

    def forward(self, t):
        f = t.reshape(-1, 1) * self.weights[None]
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


@mutant(P, "not learnable")
class BufferWeights(nn.Module):
    """Frequencies stored as a buffer: never trained."""

    def __init__(self, dim):
        super().__init__()
        self.register_buffer("weights", torch.randn(dim // 2))

    def forward(self, t):
        f = 2 * math.pi * t.reshape(-1, 1) * self.weights[None]
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


@mutant(P, "wrong half size")
class FullSizeWeights(Fourier):
    """dim weights instead of dim/2: output has 2 dim features."""

    def __init__(self, dim):
        super().__init__(dim)
        self.weights = nn.Parameter(torch.randn(dim))


@mutant(P, "batch size 1")
class Squeeze(Fourier):
    """t.squeeze() breaks at batch size 1."""

    def forward(self, t):
        f = 2 * math.pi * t.squeeze()[:, None] * self.weights[None]
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


@mutant(P, "(b, 1, 1, 1)")
class OnlyFlatT(Fourier):
    """t[:, None] assumes t of shape (b,)."""

    def forward(self, t):
        f = 2 * math.pi * t[:, None] * self.weights[None]
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


# ----------------------------------------------------------------------------- alternatives

@alternative(P)
class StackFlatten(nn.Module):
    """torch.stack([cos, sin], 1).flatten(1), frequencies named freqs, torch.outer."""

    def __init__(self, dim):
        super().__init__()
        self.freqs = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t):
        f = torch.outer(t.flatten(), self.freqs) * 2 * torch.pi  # (b, d/2)
        return torch.stack([f.cos(), f.sin()], dim=1).flatten(1)


@alternative(P)
class EinopsEinsum(nn.Module):
    """einsum for the frequencies, einops to lay out the two blocks."""

    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t):
        f = torch.einsum("b,k->bk", t.reshape(t.shape[0]), self.w) * (2 * math.pi)
        return rearrange(torch.stack([torch.cos(f), torch.sin(f)]), "two b k -> b (two k)")


@alternative(P)
class Plain(Fourier):
    """The notebook's formula written directly."""
