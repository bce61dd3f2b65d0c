"""mha, instructor side: the hidden sizes and the recorder (the judge's fresh input and canonical
weights, and the outputs of the correct formula and of every known-wrong variant, with ``heads``
heads and with one, with the output projection and without it).

The table, the probes, the verdicts and the messages are the student runtime's
(:mod:`cfgflow.checks.attention`).
"""

from __future__ import annotations

import torch
from einops import rearrange

from cfgflow.checks import attention as visible
from cfgflow.checks._core import close

CONFIG = {"seed": 14, "dim": 12, "heads": 3, "n": 4, "b": 1}
_HEADS = visible.HEADS


def _attend(q, k, v, scale, axis=-1):
    """``q, k, v: (b, h, n, hd)`` -> ``(b, h, n, hd)``."""
    return (q @ k.transpose(-2, -1) * scale).softmax(dim=axis) @ v


def _variants(dim, heads):
    """``(name, attention keyword arguments, message)`` in the order of ``visible.VARIANTS``."""
    hd = dim // heads
    kwargs = {"ok": dict(scale=hd ** -0.5), "dimscale": dict(scale=dim ** -0.5), "noscale": dict(scale=1.0),
              "sqrtscale": dict(scale=hd ** 0.5), "axis": dict(scale=hd ** -0.5, axis=-2)}
    for name, msg in visible.VARIANTS:
        yield name, kwargs[name], msg


@torch.no_grad()
def record(cfg, seed):
    """Canonical weights ``wq, wk, wv, wo: (dim, dim)`` (rows and columns ``(h hd)``, zero biases)
    and an input ``x: (b, n, dim)`` drawn with ``seed``, and the output ``(b, n, dim)`` of every
    formula variant with ``heads`` heads and with one, with the output projection and without it
    (merged either way)."""
    import cfgflow_ref

    dim, heads, n, b = cfg["dim"], cfg["heads"], cfg["n"], cfg["b"]
    g = torch.Generator().manual_seed(seed)
    tensors = {k: torch.randn(dim, dim, generator=g) / dim ** 0.5 for k in ("wq", "wk", "wv", "wo")}
    tensors["x"] = torch.randn(b, n, dim, generator=g)
    x = tensors["x"].double()
    w = {k: v.double() for k, v in tensors.items()}
    for h in dict.fromkeys((heads, 1)):
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
    return {}, tensors


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


PART = visible.PART.replaced(CONFIG, record=record)
