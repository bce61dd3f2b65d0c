"""mlp_field, instructor side: the hidden sizes and the recorder (the judge's inputs and canonical
weights for the values sub-check, and the reference's output with them, with and without t). The
table, probes, verdicts and messages are the student runtime's (:mod:`cfgflow.checks.mlp_field`).
"""

from __future__ import annotations

import torch

from cfgflow.checks import mlp_field as visible

CONFIG = {"seed": 12, "dim": 3, "hidden_dim": 16, "class_dim": 5, "num_classes": 4, "b": 6}


@torch.no_grad()
def record(cfg, seed):
    """Inputs x (b, dim), t (b,), labels y (b,), the canonical embedding table and Linear weights
    (``N(0, 1 / fan_in)``, biases ``N(0, 0.3^2)``) drawn with ``seed`` for ``cfg``'s sizes; the
    reference's output with them (``ok``) and with t = 0 (``no_t``)."""
    import cfgflow_ref

    g = torch.Generator().manual_seed(seed)
    b = cfg["b"]
    ref = cfgflow_ref.MLPConditionalVectorField(cfg["dim"], cfg["hidden_dim"], cfg["class_dim"],
                                                cfg["num_classes"]).eval()
    emb, mlp = visible._parts(ref)
    tensors = {"x": torch.randn(b, cfg["dim"], generator=g), "t": torch.rand(b, generator=g),
               "y": torch.randint(0, cfg["num_classes"], (b,), generator=g).double()}
    tensors["emb"] = torch.randn(emb.weight.shape, generator=g)
    emb.weight.copy_(tensors["emb"])
    lins = visible.linears(mlp)
    if len(lins) != visible.LAYERS:
        raise RuntimeError(f"cfgflow_ref's MLP has {len(lins)} Linear layers, the checks give "
                           f"{visible.LAYERS}")
    for i, m in enumerate(lins):
        tensors[f"w{i}"] = torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5
        tensors[f"b{i}"] = 0.3 * torch.randn(m.bias.shape, generator=g)
        m.weight.copy_(tensors[f"w{i}"])
        m.bias.copy_(tensors[f"b{i}"])
    x, t, y = tensors["x"], tensors["t"], tensors["y"].long()
    tensors["ok"] = ref(x, t, y)
    tensors["no_t"] = ref(x, torch.zeros_like(t), y)
    return {"layers": len(lins)}, tensors


PART = visible.PART.replaced(CONFIG, record=record)
