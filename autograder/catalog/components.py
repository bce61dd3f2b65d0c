"""Correct building blocks written the way students write them (no cfgflow_ref graded classes:
the checks refuse those). Mutants subclass these and change one thing."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from cfgflow_ref import MLP, ConditionalVectorField


class Fourier(nn.Module):
    """cos block first, weights (dim/2,) learnable."""

    def __init__(self, dim: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t):
        t = t.reshape(-1, 1)  # (b, 1)
        f = 2 * math.pi * t * self.weights[None]  # (b, d/2)
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


class ConvPatchifier(nn.Module):
    """Conv2d(stride p) + rearrange to row-major tokens."""

    def __init__(self, img_size: int, patch_size: int, dim: int):
        super().__init__()
        self.n_tokens = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(1, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return rearrange(self.proj(x), "b d h w -> b (h w) d")


class FusedMHA(nn.Module):
    """Fused qkv Linear(dim, 3 dim), chunk, manual softmax, output projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, t):
        return rearrange(t, "b n (h d) -> b h n d", h=self.heads)

    def merge(self, o):
        return rearrange(o, "b h n d -> b n (h d)")

    def attend(self, q, k, v):
        w = (q @ k.transpose(-2, -1) * self.head_dim ** -0.5).softmax(dim=-1)
        return w @ v

    def forward(self, x):
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
        return self.out(self.merge(self.attend(q, k, v)))


class Layer(nn.Module):
    """DiT block, LayerNorm without affine, SiLU + Linear conditioning, adaLN-Zero."""

    attn_cls = FusedMHA

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = self.attn_cls(dim, heads)
        self.mlp = MLP([dim, 4 * dim, dim], activation=nn.GELU)
        self.cond = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.zero_init()

    def zero_init(self):
        nn.init.zeros_(self.cond[-1].weight)
        nn.init.zeros_(self.cond[-1].bias)

    @staticmethod
    def modulate(h, shift, scale):
        return h * (1 + scale[:, None]) + shift[:, None]

    @staticmethod
    def gated(x, gate, h):
        return x + gate[:, None] * h

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.cond(c).chunk(6, dim=-1)  # 6 x (b, d)
        x = self.gated(x, g1, self.attn(self.modulate(self.norm1(x), s1, sc1)))
        x = self.gated(x, g2, self.mlp(self.modulate(self.norm2(x), s2, sc2)))
        return x


class DiT(nn.Module):
    """Positional encoding (n, d) added out of place, ModuleList of layers."""

    layer_cls = Layer

    def __init__(self, depth: int, n_tokens: int, dim: int, **layer_kwargs):
        super().__init__()
        self.pos = nn.Parameter(0.02 * torch.randn(n_tokens, dim))
        self.layers = nn.ModuleList([self.layer_cls(dim=dim, **layer_kwargs) for _ in range(depth)])

    def forward(self, x, c):
        x = x + self.pos[None]
        for layer in self.layers:
            x = layer(x, c)
        return x


class Depatchifier(nn.Module):
    """LayerNorm, MLP to f p p, einops to the image, 3x3 conv."""

    def __init__(self, img_size: int, patch_size: int, dim: int, final_dim: int = 10):
        super().__init__()
        self.p, self.g = patch_size, img_size // patch_size
        self.norm = nn.LayerNorm(dim)
        self.mlp = MLP([dim, 4 * dim, final_dim * patch_size ** 2])
        self.conv = nn.Conv2d(final_dim, 1, kernel_size=3, padding=1)

    def to_image(self, x):
        return rearrange(x, "b (h w) (f p1 p2) -> b f (h p1) (w p2)", h=self.g, p1=self.p, p2=self.p)

    def forward(self, x):
        return self.conv(self.to_image(self.mlp(self.norm(x))))


class MNISTDiT(ConditionalVectorField):
    """Patchify, DiT on c = fourier(t) + embed(y), depatchify."""

    patch_cls, dit_cls, depatch_cls, time_cls = ConvPatchifier, DiT, Depatchifier, Fourier
    n_labels = 11

    def __init__(self, patch_size: int = 8, num_layers: int = 12, dim: int = 256, heads: int = 4):
        super().__init__()
        self.time_embedder = self.time_cls(dim)
        self.y_embedder = nn.Embedding(self.n_labels, dim)
        self.patchifier = self.patch_cls(32, patch_size, dim)
        self.dit = self.dit_cls(num_layers, self.patchifier.n_tokens, dim, heads=heads)
        self.depatchifier = self.depatch_cls(32, patch_size, dim)

    def time(self, t):
        return t.reshape(-1)

    def forward(self, x, t, y):
        c = self.time_embedder(self.time(t)) + self.y_embedder(y)  # (b, d)
        return self.depatchifier(self.dit(self.patchifier(x), c))


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)
