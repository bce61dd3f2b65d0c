"""fourier_encoder, instructor side: the hidden checks (other sizes and seeds; the formula
recomputed with the student's own weights) and the recording of the visible checks' data.

The table, the property sub-checks and the messages are the student runtime's
(:mod:`cfgflow.checks.fourier`); only ``values`` is computed here.
"""

from __future__ import annotations

import math

import torch

from cfgflow.checks import fourier as visible
from cfgflow.checks._core import Fail, close

CONFIG = {"seed": 11, "dim": 12, "b": 5}

# formula variants: the correct one ("ok") and the known-wrong ones named in visible.WRONG
VARIANTS = {
    "ok": {},
    "sin": dict(order="sin"),
    "sqrt2": dict(factor=math.sqrt(2)),
    "sin_sqrt2": dict(order="sin", factor=math.sqrt(2)),
    "no2pi": dict(two_pi=False),
    "sin_no2pi": dict(order="sin", two_pi=False),
}


def formula(t, w, order="cos", factor=1.0, two_pi=True):
    f = (2 * math.pi if two_pi else 1.0) * t.reshape(-1, 1).double() * w.detach().reshape(1, -1).double()
    a, b = (torch.cos(f), torch.sin(f)) if order == "cos" else (torch.sin(f), torch.cos(f))
    return factor * torch.cat([a, b], dim=-1)


def _values(ctx):
    enc, b, dim = visible._build(ctx), ctx["b"], ctx["dim"]
    w, _ = visible._find_weights(enc, dim)
    with torch.no_grad():
        w.copy_(torch.randn(w.shape))  # fresh values: catches hard-coded frequencies
    t = torch.rand(b)
    out = enc(t)
    if w.numel() != dim // 2:
        raise Fail(f"the weights have {w.numel()} entries: wrong half size, use dim/2 = {dim // 2}")
    if close(out, formula(t, w)):
        return
    for name, msg in visible.WRONG:
        if close(out, formula(t, w, **VARIANTS[name])):
            raise Fail(msg)
    raise Fail(visible.FINAL)


PART = visible.PART.replaced(CONFIG, values=_values)


@torch.no_grad()
def record():
    """The visible check's data: recorded frequencies and times, the reference's output on them
    and the outputs of the known-wrong formulas."""
    import cfgflow_ref

    cfg = visible.CONFIG
    g = torch.Generator().manual_seed(1001)
    w = torch.randn(cfg["dim"] // 2, generator=g)
    t = torch.rand(cfg["b"], generator=g)
    ref = cfgflow_ref.FourierEncoder(cfg["dim"])
    rw, _ = visible._find_weights(ref, cfg["dim"])
    rw.copy_(w.reshape(rw.shape))
    tensors = {"w": w, "t": t, "ok": ref(t)}
    if not close(tensors["ok"], formula(t, w)):
        raise RuntimeError("cfgflow_ref.FourierEncoder disagrees with the formula of the hidden checks")
    tensors.update({name: formula(t, w, **kw) for name, kw in VARIANTS.items() if name != "ok"})
    return cfg, {}, tensors
