"""fourier_encoder, instructor side: the hidden sizes and the recorder (the judge's fresh inputs
and the expected outputs: the reference's, and the known-wrong formulas named in
:data:`cfgflow.checks.fourier.WRONG`). The table, probes, verdicts and messages are the student
runtime's (:mod:`cfgflow.checks.fourier`).
"""

from __future__ import annotations

import math

import torch

from cfgflow.checks import fourier as visible
from cfgflow.checks._core import close

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


@torch.no_grad()
def record(cfg, seed):
    """Frequencies and times drawn with ``seed``, the reference's output on them and the outputs
    of the known-wrong formulas."""
    import cfgflow_ref

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(cfg["dim"] // 2, generator=g)
    t = torch.rand(cfg["b"], generator=g)
    ref = cfgflow_ref.FourierEncoder(cfg["dim"])
    rw, _ = visible._find_weights(ref, cfg["dim"])
    rw.copy_(w.reshape(rw.shape))
    tensors = {"w": w, "t": t, "ok": ref(t)}
    if not close(tensors["ok"], formula(t, w)):
        raise RuntimeError("cfgflow_ref.FourierEncoder disagrees with the formula of the hidden checks")
    tensors.update({name: formula(t, w, **kw) for name, kw in VARIANTS.items() if name != "ok"})
    return {}, tensors



PART = visible.PART.replaced(CONFIG, record=record)
