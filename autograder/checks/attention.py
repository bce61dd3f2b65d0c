"""mha: ``MHA(dim, heads)``, ``(b, n, d) -> (b, n, d)``.

The student's projections are discovered (one fused ``Linear(dim, 3 dim)``, separate q/k/v/out
``Linear(dim, dim)``, or an ``nn.MultiheadAttention``) and multi-head attention is recomputed
with them. Every layout that is a relabelling of the same function class is accepted: any
order of q/k/v blocks in the fused output, heads split ``(h hd)`` or ``(hd h)``
consistently, merged either way. Known wrong formulas name the mistake.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ._core import Fail, Part, SubCheck, close, expect_shape


def _config(hidden: bool):
    if hidden:
        return {"seed": 14, "dim": 12, "heads": 3, "n": 4, "b": 1}
    return {"seed": 4, "dim": 8, "heads": 2, "n": 5, "b": 2}


def _build(ctx):
    return ctx.new(ctx["dim"], ctx["heads"])


_SPLITS = ["(three h hd)", "(h three hd)", "(h hd three)", "(three hd h)"]
_HEADS = ["(h hd)", "(hd h)"]


_NO_OUT = "missing output projection: apply the output Linear(dim, dim) to the merged heads"


def _attend(q, k, v, scale, axis=-1):
    """``q, k, v: (b, h, n, hd)`` -> ``(b, h, n, hd)``."""
    return (q @ k.transpose(-2, -1) * scale).softmax(dim=axis) @ v


def _candidates(model, dim):
    """Yield ``(qkv_fn, outs)``: qkv_fn(x, heads) -> q, k, v as (b, h, n, hd); outs the possible
    output projections (None: no projection)."""
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    sq = [m for m in lins if m.in_features == dim and m.out_features == dim]
    fused = [(m.weight, m.bias) for m in lins if m.in_features == dim and m.out_features == 3 * dim]
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            fused.append((m.in_proj_weight, m.in_proj_bias))
            sq.append(m.out_proj)

    def proj(m):
        return lambda o: F.linear(o, m.weight, m.bias)

    for w, b in fused:
        for order in itertools.permutations(range(3)):
            for split in _SPLITS:
                def qkv(x, h, split=split, order=order, w=w, b=b):
                    parts = rearrange(F.linear(x, w, b), f"b n {split} -> three b h n hd", three=3, h=h)
                    return tuple(parts[i] for i in order)
                yield qkv, [proj(m) for m in sq] + [None]
    for kv in (m for m in lins if m.in_features == dim and m.out_features == 2 * dim):
        for q_lin in sq:
            for order in ((0, 1), (1, 0)):
                for split in ("(two h hd)", "(h two hd)", "(h hd two)"):
                    def qkv(x, h, kv=kv, q_lin=q_lin, order=order, split=split):
                        q = rearrange(F.linear(x, q_lin.weight, q_lin.bias), "b n (h hd) -> b h n hd", h=h)
                        pair = rearrange(F.linear(x, kv.weight, kv.bias), f"b n {split} -> two b h n hd",
                                         two=2, h=h)
                        return q, pair[order[0]], pair[order[1]]
                    yield qkv, [proj(m) for m in sq if m is not q_lin] + [None]
    if len(sq) >= 3:
        for perm in itertools.permutations(sq, 3):
            rest = [m for m in sq if all(m is not p for p in perm)]
            for split in ("(h hd)", "(hd h)"):
                def qkv(x, h, perm=perm, split=split):
                    return tuple(rearrange(F.linear(x, m.weight, m.bias), f"b n {split} -> b h n hd", h=h)
                                 for m in perm)
                yield qkv, [proj(m) for m in rest] + [None]


def _variants(dim, heads):
    hd = dim // heads
    yield "ok", dict(scale=hd ** -0.5), None
    yield "dimscale", dict(scale=dim ** -0.5), (
        "attention scale uses dim**-0.5: scale scores by head_dim**-0.5 = 1/sqrt(dim // heads)")
    yield "noscale", dict(scale=1.0), "scores not scaled: multiply q k^T by head_dim**-0.5"
    yield "sqrtscale", dict(scale=hd ** 0.5), "scores multiplied by sqrt(head_dim): divide by it instead"
    yield "axis", dict(scale=hd ** -0.5, axis=-2), (
        "softmax over the wrong axis: normalise over the keys (dim=-1), so each query's weights sum to 1")


@torch.no_grad()
def _values(ctx):
    model, dim, heads, n, b = _build(ctx), ctx["dim"], ctx["heads"], ctx["n"], ctx["b"]
    x = torch.randn(b, n, dim)
    out = model(x)
    expect_shape(out, (b, n, dim))
    cands = list(_candidates(model, dim))
    if not cands:
        raise Fail("no projections found: use a fused nn.Linear(dim, 3 * dim) or separate "
                   "nn.Linear(dim, dim) for q, k, v, plus an output nn.Linear(dim, dim)")
    one_head = "heads ignored: split q, k, v into `heads` heads of size dim // heads"
    diagnosis = None
    # first pass: the correct formula under every layout; second: the known mistakes
    for wanted in ("ok", "wrong"):
        for h_used, hmsg in ((heads, None), (1, one_head)):
            if wanted == "ok" and hmsg:
                continue
            for qkv, outs in cands:
                try:
                    q, k, v = qkv(x, h_used)
                except (RuntimeError, ValueError):
                    continue
                for key, kw, msg in _variants(dim, h_used):
                    if wanted == "ok" and key != "ok":
                        continue  # first pass: the correct formula only
                    if wanted == "wrong" and key == "ok" and not hmsg:
                        continue  # second pass: the mistakes (any formula with one head)
                    att = _attend(q, k, v, **kw)
                    for merge in _HEADS:
                        o = rearrange(att, f"b h n hd -> b n {merge}")
                        for p in outs:
                            if close(out, p(o) if p is not None else o, 1e-4):
                                if wanted == "ok" and p is not None:
                                    return
                                diagnosis = diagnosis or hmsg or msg or _NO_OUT
        if diagnosis:
            raise Fail(diagnosis)
    raise Fail("values differ from multi-head attention computed with your projections "
               "(softmax(q k^T / sqrt(head_dim)) v per head, heads merged, output projection)")


def _shape(ctx):
    model = _build(ctx)
    b, n, dim = ctx["b"], ctx["n"], ctx["dim"]
    expect_shape(model(torch.randn(b, n, dim)), (b, n, dim))


@torch.no_grad()
def _equivariant(ctx):
    model = _build(ctx)
    dim, n = ctx["dim"], ctx["n"]
    x = torch.randn(2, n, dim)
    perm = torch.roll(torch.arange(n), 1)
    if not close(model(x[:, perm]), model(x)[:, perm], 1e-4):
        raise Fail("permuting the tokens does not permute the output: heads split/merged in a scrambled "
                   "order "
                   "(view(b, h, n, hd) without transpose mixes tokens; use view(b, n, h, hd).transpose(1, 2) "
                   "or rearrange)")


@torch.no_grad()
def _batch(ctx):
    model = _build(ctx)
    dim, n = ctx["dim"], ctx["n"]
    x = torch.randn(3, n, dim)
    if not close(model(x)[1:2], model(x[1:2]), 1e-5):
        raise Fail("sample 1 of a batch differs from the same sample alone: attention mixes the batch "
                   "(check the head split/merge reshapes)")


PART = Part(
    "mha",
    [
        SubCheck("shape", "output shape (b, n, d)", 1, _shape),
        SubCheck("values", "multi-head attention recomputed with your projections", 2, _values),
        SubCheck("equivariant", "permuting tokens permutes the output (heads split per token)", 0.5,
                 _equivariant),
        SubCheck("batch", "works at batch size 1 and treats samples independently", 0.5, _batch),
    ],
    _config,
    {"shape '[": "view/reshape sizes must multiply to the tensor size",
     "size of tensor": "check the shapes of q, k, v: (b, h, n, head_dim)"},
)
