"""mha: mutants and alternatives."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from . import alternative, mutant
from .components import FusedMHA

P = "mha"


@mutant(P, "dim**-0.5")
class DimScale(FusedMHA):
    """Scores scaled by dim**-0.5 instead of head_dim**-0.5."""

    def attend(self, q, k, v):
        dim = self.heads * self.head_dim
        return (q @ k.transpose(-2, -1) * dim ** -0.5).softmax(-1) @ v


@mutant(P, "wrong axis")
class SoftmaxQueries(FusedMHA):
    """Softmax over the queries (dim=-2)."""

    def attend(self, q, k, v):
        return (q @ k.transpose(-2, -1) * self.head_dim ** -0.5).softmax(-2) @ v


@mutant(P, "not scaled")
class NoScale(FusedMHA):
    """No 1/sqrt(head_dim)."""

    def attend(self, q, k, v):
        return (q @ k.transpose(-2, -1)).softmax(-1) @ v


@mutant(P, "output projection")
class NoOutProj(FusedMHA):
    """to_out defined but never applied."""

    def forward(self, x):
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
        return self.merge(self.attend(q, k, v))


@mutant(P, "scrambled")
class ViewSplit(FusedMHA):
    """q.view(b, h, n, hd) without the transpose: heads mix tokens."""

    def split(self, t):
        b, n, d = t.shape
        return t.reshape(b, self.heads, n, self.head_dim)


@mutant(P, "scrambled")
class ViewMerge(FusedMHA):
    """out (b, h, n, hd).reshape(b, n, d) without the transpose."""

    def merge(self, o):
        b, h, n, hd = o.shape
        return o.reshape(b, n, h * hd)


@mutant(P, "heads ignored")
class OneHead(FusedMHA):
    """A single head over the full width."""

    def split(self, t):
        return t[:, None]

    def merge(self, o):
        return o[:, 0]

    def attend(self, q, k, v):
        return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1) @ v


@alternative(P)
class SeparateSDPA(nn.Module):
    """Separate q, k, v, out Linear(dim, dim) and F.scaled_dot_product_attention."""

    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = (rearrange(m(x), "b n (h d) -> b h n d", h=self.h) for m in (self.q, self.k, self.v))
        return self.o(rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)"))


@alternative(P)
class LabBmm(nn.Module):
    """The lab's seed: fused to_qkv, view/transpose, heads folded into the batch, bmm."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.head_dim, self.scale = heads, dim // heads, (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.to_out = nn.Linear(dim, dim, bias=True)

    def forward(self, x):
        b, n, d = x.shape
        h, hd = self.heads, self.head_dim
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.view(b, n, h, hd).transpose(1, 2).contiguous().view(b * h, n, hd) for t in (q, k, v))
        out = torch.bmm(torch.bmm(q, k.transpose(1, 2)).mul(self.scale).softmax(dim=-1), v)
        return self.to_out(out.view(b, h, n, hd).transpose(1, 2).contiguous().view(b, n, d))


@alternative(P)
class TimmStyleHeadMajor(nn.Module):
    """One Linear(dim, 3 dim) laid out (h three hd) (per-head q/k/v), no biases, einsum."""

    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        q, k, v = rearrange(self.qkv(x), "b n (h three d) -> three b h n d", three=3, h=self.h)
        a = torch.einsum("bhid,bhjd->bhij", q, k).mul(q.shape[-1] ** -0.5).softmax(dim=-1)
        return self.proj(rearrange(torch.einsum("bhij,bhjd->bhid", a, v), "b h n d -> b n (h d)"))


@alternative(P)
class TorchMultihead(nn.Module):
    """nn.MultiheadAttention(batch_first=True) (its packed in_proj and out_proj)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


@alternative(P)
class SDPADropout(FusedMHA):
    """SDPA with attention dropout while training (the checks grade in eval mode)."""

    def attend(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.1 if self.training else 0.0)


@alternative(P)
class QueryAndFusedKV(nn.Module):
    """Linear(dim, dim) for q and a fused Linear(dim, 2 dim) for k, v (cross-attention habit)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x):
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.h)
        k, v = rearrange(self.to_kv(x), "b n (two h d) -> two b h n d", two=2, h=self.h)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(rearrange(o, "b h n d -> b n (h d)"))


class _Head(nn.Module):
    """One head: bias-free query, key, value Linear(dim, head_dim), ``(b, n, dim) -> (b, n, head_dim)``."""

    def __init__(self, dim, head_dim):
        super().__init__()
        self.query = nn.Linear(dim, head_dim, bias=False)
        self.key = nn.Linear(dim, head_dim, bias=False)
        self.value = nn.Linear(dim, head_dim, bias=False)

    def forward(self, x):
        q, k, v = self.query(x), self.key(x), self.value(x)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1]), dim=-1)
        return w @ v


@alternative(P)
class RealPerHeadModules(nn.Module):
    """Issue 20's real case: one small module per head (attributes head_0, head_1, ...), each with
    bias-free q, k, v Linear(dim, dim // heads), outputs concatenated, then an output Linear(dim, dim)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.n_heads = heads
        for i in range(heads):
            self.add_module(f"head_{i}", _Head(dim, dim // heads))
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        return self.out(torch.cat([getattr(self, f"head_{i}")(x) for i in range(self.n_heads)], dim=-1))


@mutant(P, "output projection")
class PerHeadNoOut(RealPerHeadModules):
    """Per-head modules, the output projection defined but never applied."""

    def forward(self, x):
        return torch.cat([getattr(self, f"head_{i}")(x) for i in range(self.n_heads)], dim=-1)


class _DimScaleHead(_Head):
    """A head that scales its scores by the model's width: ``(b, n, dim) -> (b, n, head_dim)``."""

    def forward(self, x):
        q, k, v = self.query(x), self.key(x), self.value(x)
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1]), dim=-1) @ v


@mutant(P, "dim**-0.5")
class PerHeadDimScale(RealPerHeadModules):
    """Per-head modules scaling scores by dim**-0.5 instead of head_dim**-0.5."""

    def __init__(self, dim, heads):
        super().__init__(dim, heads)
        for i in range(heads):
            self.add_module(f"head_{i}", _DimScaleHead(dim, dim // heads))


class _KeyFirstHead(nn.Module):
    """One head, key defined first, with biases: ``(b, n, dim) -> (b, n, hd)``."""

    def __init__(self, dim, head_size):
        super().__init__()
        self.key = nn.Linear(dim, head_size)
        self.query = nn.Linear(dim, head_size)
        self.value = nn.Linear(dim, head_size)

    def forward(self, x):
        k, q = self.key(x), self.query(x)
        wei = (q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5).softmax(dim=-1)
        return wei @ self.value(x)


@alternative(P)
class ModuleListOfHeads(nn.Module):
    """nn.ModuleList of heads (key, query, value with biases, in that order), concatenated, projected."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = nn.ModuleList([_KeyFirstHead(dim, dim // heads) for _ in range(heads)])
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))


@alternative(P)
class PerHeadListsSummedOut(nn.Module):
    """One ModuleList per projection (q of every head, then k, then v: Linear(dim, dim // heads)) and a
    per-head output Linear(dim // heads, dim), the heads' projected outputs summed."""

    def __init__(self, dim, heads):
        super().__init__()
        hd = dim // heads
        self.q = nn.ModuleList([nn.Linear(dim, hd) for _ in range(heads)])
        self.k = nn.ModuleList([nn.Linear(dim, hd) for _ in range(heads)])
        self.v = nn.ModuleList([nn.Linear(dim, hd) for _ in range(heads)])
        self.o = nn.ModuleList([nn.Linear(hd, dim) for _ in range(heads)])

    def forward(self, x):
        out = 0
        for q, k, v, o in zip(self.q, self.k, self.v, self.o):
            out = out + o(F.scaled_dot_product_attention(q(x), k(x), v(x)))
        return out
