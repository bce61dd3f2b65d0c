"""The reference implementations of the graded models (instructor side): the MLP field for
2-D toy data and a diffusion transformer (DiT, Peebles & Xie 2023) for 32x32 MNIST. The given
``MLP`` and ``ConditionalVectorField`` live in :mod:`cfgflow.models` and are re-exported.

Shapes: b batch, n tokens, d model width, h heads, p patch size, f depatchifier channels.
Every model takes t as ``(b,)`` or ``(b, 1, 1, 1)`` and works at batch size 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from cfgflow.models import (  # noqa: F401  (re-exported: the given code)
    MLP,
    ConditionalVectorField,
    _check_input,
    count_parameters,
)
from cfgflow.paths import check_time


class MLPConditionalVectorField(ConditionalVectorField):
    """u_t(x | y) = MLP([x, embed(y), t]) for flat data ``x: (b, dim)``.

    ``num_classes + 1`` embedding rows: the last one is the null label.
    """

    def __init__(self, dim: int, hidden_dim: int, class_dim: int, num_classes: int):
        super().__init__()
        self.dim = dim
        self.mlp = MLP([dim + class_dim + 1, hidden_dim, hidden_dim, dim])
        self.class_embedding = nn.Embedding(num_classes + 1, class_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x: (b, dim)``, ``t: (b,)``/``(b, 1, 1, 1)``, ``y: (b,)`` -> ``(b, dim)``."""
        _check_input(x, "x", f"(b, {self.dim})", 2, self.dim)
        b = x.shape[0]
        t = check_time(t, b)
        if not isinstance(y, torch.Tensor) or y.shape != (b,):
            raise ValueError(f"y must have shape (b,) = ({b},), got {tuple(getattr(y, 'shape', ()))}")
        h = torch.cat([x, self.class_embedding(y), t[:, None]], dim=-1)  # (b, dim + class_dim + 1)
        return self.mlp(h)


class FourierEncoder(nn.Module):
    """Random Fourier features of time with learnable frequencies w ~ N(0, 1):

        emb(t) = [cos(2 pi w_1 t), ..., cos(2 pi w_k t), sin(2 pi w_1 t), ..., sin(2 pi w_k t)]

    with k = dim / 2 (cos block first, no extra scale factor).
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be a positive even number, got {dim}")
        self.weights = nn.Parameter(torch.randn(dim // 2))  # (d/2,)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t: (b,)`` or ``(b, 1, 1, 1)`` -> ``(b, d)``."""
        t = check_time(t, t.shape[0] if t.dim() else 0)
        freqs = 2 * math.pi * t[:, None] * self.weights[None, :]  # (b, d/2)
        return torch.cat([torch.cos(freqs), torch.sin(freqs)], dim=-1)


class Patchifier(nn.Module):
    """Image -> tokens: a p x p, stride p convolution (= a linear map of each patch),
    tokens in row-major ``(h w)`` order of the patch grid.

    ``(b, c, img, img)`` -> ``(b, n, d)`` with ``n = (img / p)^2``.
    """

    def __init__(self, img_size: int, patch_size: int, dim: int, in_channels: int = 1):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be divisible by patch_size {patch_size}")
        self.img_size, self.patch_size, self.in_channels = img_size, patch_size, in_channels
        self.n_tokens = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, c, img, img)`` -> ``(b, n, d)``."""
        expected = (self.in_channels, self.img_size, self.img_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (b, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        x = self.proj(x)  # (b, d, img/p, img/p)
        return rearrange(x, "b d h w -> b (h w) d")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention from scratch: ``softmax(q k^T / sqrt(head_dim)) v``.

    ``q, k, v: (b, h, n, hd)`` -> ``(b, h, n, hd)``. Each query's weights sum to 1 over keys.
    """
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5  # (b, h, n_q, n_k)
    return scores.softmax(dim=-1) @ v


class MHA(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection.

    ``to_qkv`` output is laid out ``(three h hd)``: q, k, v blocks in that order, each split
    into heads head-major. Uses PyTorch's fused kernel, equal to :func:`attention`.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, n, d)`` -> ``(b, n, d)``."""
        _check_input(x, "x", f"(b, n, {self.dim})", 3, self.dim)
        q, k, v = rearrange(self.to_qkv(x), "b n (three h hd) -> three b h n hd", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, h, n, hd)
        return self.to_out(rearrange(out, "b h n hd -> b n (h hd)"))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``; ``x: (b, n, d)``, shift/scale ``(b, d)``."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiffusionTransformerLayer(nn.Module):
    """One DiT block with adaLN-Zero conditioning.

    From ``c: (b, d)`` a SiLU + Linear regresses six ``(b, d)`` vectors: shift, scale, gate
    for the attention branch and for the MLP branch. The Linear is zero-initialised, so
    every gate is 0 and the block is the identity map at initialisation.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.dim = dim
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MHA(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP([dim, mlp_ratio * dim, dim], activation=nn.GELU)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.adaLN[-1].weight)
        nn.init.zeros_(self.adaLN[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x: (b, n, d)``, ``c: (b, d)`` -> ``(b, n, d)``."""
        _check_input(x, "x", f"(b, n, {self.dim})", 3, self.dim)
        _check_input(c, "c", f"(b, {self.dim})", 2, self.dim)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=-1)  # 6 x (b, d)
        x = x + gate1[:, None, :] * self.attn(modulate(self.norm1(x), shift1, scale1))
        x = x + gate2[:, None, :] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class DiffusionTransformer(nn.Module):
    """Learned positional encodings plus ``depth`` DiT layers: ``(b, n, d)`` -> ``(b, n, d)``."""

    def __init__(self, depth: int, n_tokens: int, dim: int, **layer_kwargs):
        super().__init__()
        self.n_tokens, self.dim = n_tokens, dim
        self.pos = nn.Parameter(0.02 * torch.randn(n_tokens, dim))  # (n, d)
        self.layers = nn.ModuleList(
            [DiffusionTransformerLayer(dim=dim, **layer_kwargs) for _ in range(depth)]
        )

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x: (b, n, d)``, ``c: (b, d)`` -> ``(b, n, d)``."""
        _check_input(x, "x", f"(b, {self.n_tokens}, {self.dim})", 3, self.dim, self.n_tokens)
        x = x + self.pos[None]  # out of place: never modify the caller's tensor
        for layer in self.layers:
            x = layer(x, c)
        return x


class Depatchifier(nn.Module):
    """Tokens -> image, the inverse layout of :class:`Patchifier`.

    LayerNorm, an MLP to ``f * p * p`` features per token, token ``(i, j)`` (row-major) to
    the p x p patch at grid position ``(i, j)``, then a 3x3 convolution ``f -> 1`` channel.
    ``(b, n, d)`` -> ``(b, 1, img, img)``.
    """

    def __init__(self, img_size: int, patch_size: int, dim: int, final_dim: int = 10):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be divisible by patch_size {patch_size}")
        self.patch_size, self.grid, self.dim = patch_size, img_size // patch_size, dim
        self.n_tokens = self.grid**2
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP([dim, 4 * dim, final_dim * patch_size**2])
        self.conv = nn.Conv2d(final_dim, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, n, d)`` -> ``(b, 1, img, img)``."""
        _check_input(x, "x", f"(b, {self.n_tokens}, {self.dim})", 3, self.dim, self.n_tokens)
        x = self.mlp(self.norm(x))  # (b, n, f p p)
        x = rearrange(x, "b (h w) (f p1 p2) -> b f (h p1) (w p2)",
                      h=self.grid, p1=self.patch_size, p2=self.patch_size)
        return self.conv(x)


class MNISTDiffusionTransformer(ConditionalVectorField):
    """u_t^theta(x | y) for ``(b, 1, 32, 32)`` images: patchify, DiT conditioned on
    ``c = FourierEncoder(t) + Embedding(y)``, depatchify. Label ``num_classes`` is null."""

    def __init__(self, patch_size: int = 8, num_layers: int = 12, dim: int = 256, heads: int = 4,
                 *, img_size: int = 32, num_classes: int = 10):
        super().__init__()
        self.num_classes = num_classes
        self.time_embedder = FourierEncoder(dim)
        self.y_embedder = nn.Embedding(num_classes + 1, dim)
        self.patchifier = Patchifier(img_size, patch_size, dim)
        self.dit = DiffusionTransformer(num_layers, self.patchifier.n_tokens, dim, heads=heads)
        self.depatchifier = Depatchifier(img_size, patch_size, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x: (b, 1, 32, 32)``, ``t: (b,)``/``(b, 1, 1, 1)``, ``y: (b,)`` -> ``(b, 1, 32, 32)``."""
        b = x.shape[0]
        t = check_time(t, b)
        if y.shape != (b,):
            raise ValueError(f"y must have shape (b,) = ({b},), got {tuple(y.shape)}")
        c = self.time_embedder(t) + self.y_embedder(y)  # (b, d)
        return self.depatchifier(self.dit(self.patchifier(x), c))
