"""mha, instructor side: the hidden checks (other sizes and seeds; multi-head attention
recomputed with the student's own projections under every layout) and the recording of the
visible checks' data (canonical weights, fixed input, the outputs of every formula variant).

The table, the property sub-checks and the messages are the student runtime's
(:mod:`cfgflow.checks.attention`); only ``values`` is computed here.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from einops import rearrange

from cfgflow.checks import attention as visible
from cfgflow.checks._core import Fail, close, expect_shape

CONFIG = {"seed": 14, "dim": 12, "heads": 3, "n": 4, "b": 1}
_SPLITS, _HEADS = visible.SPLITS, visible.HEADS
_build = visible._build


def _attend(q, k, v, scale, axis=-1):
    """``q, k, v: (b, h, n, hd)`` -> ``(b, h, n, hd)``."""
    return (q @ k.transpose(-2, -1) * scale).softmax(dim=axis) @ v


def _candidates(model, dim):
    """Yield ``(qkv_fn, outs)``: qkv_fn(x, heads) -> q, k, v as (b, h, n, hd); outs the possible
    output projections (None: no projection)."""
    lins, sq, fused = visible.projections(model, dim)

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
    """``(name, attention keyword arguments, message)`` in the order of ``visible.VARIANTS``."""
    hd = dim // heads
    kwargs = {"ok": dict(scale=hd ** -0.5), "dimscale": dict(scale=dim ** -0.5), "noscale": dict(scale=1.0),
              "sqrtscale": dict(scale=hd ** 0.5), "axis": dict(scale=hd ** -0.5, axis=-2)}
    for name, msg in visible.VARIANTS:
        yield name, kwargs[name], msg


@torch.no_grad()
def _values(ctx):
    model, dim, heads, n, b = _build(ctx), ctx["dim"], ctx["heads"], ctx["n"], ctx["b"]
    x = torch.randn(b, n, dim)
    out = model(x)
    expect_shape(out, (b, n, dim))
    cands = list(_candidates(model, dim))
    if not cands:
        raise Fail(visible.NO_PROJECTIONS)
    one_head = visible.ONE_HEAD
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
                                diagnosis = diagnosis or hmsg or msg or visible.NO_OUT
        if diagnosis:
            raise Fail(diagnosis)
    raise Fail(visible.FINAL)


PART = visible.PART.replaced(CONFIG, values=_values)


@torch.no_grad()
def record():
    """Canonical weights (rows and columns ``(h hd)``, zero biases), a fixed input, and the output
    of every formula variant with ``heads`` and with one head, with the output projection and
    without it (merged either way)."""
    import cfgflow_ref

    cfg = visible.CONFIG
    dim, heads, n, b = cfg["dim"], cfg["heads"], cfg["n"], cfg["b"]
    g = torch.Generator().manual_seed(1004)
    tensors = {k: torch.randn(dim, dim, generator=g) / dim ** 0.5 for k in ("wq", "wk", "wv", "wo")}
    tensors["x"] = torch.randn(b, n, dim, generator=g)
    x = tensors["x"].double()
    w = {k: v.double() for k, v in tensors.items()}
    for h in (heads, 1):
        q, k, v = (rearrange(x @ w[m].T, "b n (h hd) -> b h n hd", h=h) for m in ("wq", "wk", "wv"))
        for name, kw, _ in _variants(dim, h):
            att = _attend(q, k, v, **kw)
            merged = rearrange(att, "b h n hd -> b n (h hd)")
            tensors[visible.recorded_name(h, name, _HEADS[0], True)] = merged @ w["wo"].T
            for merge in _HEADS:
                key = visible.recorded_name(h, name, merge, False)
                tensors[key] = rearrange(att, f"b h n hd -> b n {merge}")
    ref = cfgflow_ref.MHA(dim, heads).eval()  # the reference agrees with the recorded output
    ok = tensors[visible.recorded_name(heads, "ok", _HEADS[0], True)]
    layouts = visible.candidates(ref, dim)
    if not any(_matches(ref, write, outs, tensors, heads, ok) for write, outs in layouts):
        raise RuntimeError("cfgflow_ref.MHA disagrees with the recorded multi-head attention")
    return cfg, {}, tensors


def _matches(ref, write, outs, tensors, heads, ok):
    write(heads, tensors["wq"], tensors["wk"], tensors["wv"])
    for p in outs:
        if p is not None:
            p.weight.copy_(tensors["wo"])
            if p.bias is not None:
                p.bias.zero_()
            if close(ref(tensors["x"]), ok):
                return True
    return False
