"""mlp_field, instructor side: the hidden checks (other sizes and seeds; ``mlp(cat(blocks))``
recomputed with the student's own modules for every block order) and the recording of the
visible checks' data (the reference with canonical weights on fixed inputs).

The table, the property sub-checks and the messages are the student runtime's
(:mod:`cfgflow.checks.mlp_field`); only ``values`` is computed here.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn

from cfgflow.checks import mlp_field as visible
from cfgflow.checks._core import Fail, close

CONFIG = {"seed": 12, "dim": 3, "hidden_dim": 16, "class_dim": 5, "num_classes": 4, "b": 6}


def _in_features(mlp):
    for m in mlp.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
    return -1


def _values(ctx):
    model = visible._build(ctx)
    x, t, y = visible._inputs(ctx)
    out = model(x, t, y)
    emb, mlp = visible._parts(model)
    with torch.no_grad():
        blocks = {"x": x, "emb(y)": emb(y), "t": t.reshape(-1, 1)}
        for order in itertools.permutations(blocks):
            h = torch.cat([blocks[k] for k in order], dim=-1)
            if h.shape[-1] == _in_features(mlp) and close(out, mlp(h)):
                return
        if close(out, mlp(torch.cat([x, emb(y), torch.zeros_like(t).reshape(-1, 1)], -1))):
            raise Fail(visible.NO_T)
        if close(model(x, t, (y + 1) % ctx["num_classes"]), out, 1e-7):
            raise Fail(visible.NO_Y)
    raise Fail(visible.FINAL)


PART = visible.PART.replaced(CONFIG, values=_values)


@torch.no_grad()
def record():
    """Fixed inputs, canonical weights, and the reference's output with and without t."""
    import cfgflow_ref

    cfg = visible.CONFIG
    g = torch.Generator().manual_seed(1002)
    b = cfg["b"]
    ref = cfgflow_ref.MLPConditionalVectorField(cfg["dim"], cfg["hidden_dim"], cfg["class_dim"],
                                                cfg["num_classes"]).eval()
    emb, mlp = visible._parts(ref)
    tensors = {"x": torch.randn(b, cfg["dim"], generator=g), "t": torch.rand(b, generator=g),
               "y": torch.randint(0, cfg["num_classes"], (b,), generator=g).double()}
    tensors["emb"] = torch.randn(emb.weight.shape, generator=g)
    emb.weight.copy_(tensors["emb"])
    lins = visible.linears(mlp)
    for i, m in enumerate(lins):
        tensors[f"w{i}"] = torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5
        tensors[f"b{i}"] = 0.3 * torch.randn(m.bias.shape, generator=g)
        m.weight.copy_(tensors[f"w{i}"])
        m.bias.copy_(tensors[f"b{i}"])
    x, t, y = tensors["x"], tensors["t"], tensors["y"].long()
    tensors["ok"] = ref(x, t, y)
    tensors["no_t"] = ref(x, torch.zeros_like(t), y)
    return cfg, {"layers": len(lins)}, tensors
