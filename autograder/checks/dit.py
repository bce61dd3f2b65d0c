"""dit_layer, dit and mnist_dit, instructor side: the hidden checks (other sizes and seeds; the
DiT recomputed as the student's own layers applied in sequence to x + pos; the parameter count
of the reference) and the recording of the visible checks' data (the reference's parameter count).

The tables, the property sub-checks and the messages are the student runtime's
(:mod:`cfgflow.checks.dit`).
"""

from __future__ import annotations

import torch

from cfgflow.checks import dit as visible
from cfgflow.checks._core import Fail, close, expect_shape

LAYER_CONFIG = {"seed": 15, "dim": 12, "heads": 3, "n": 3, "b": 1}
DIT_CONFIG = {"seed": 16, "depth": 3, "n": 3, "dim": 12, "heads": 3, "b": 1}
MNIST_CONFIG = {"seed": 19, "variants": [(4, 2, 12, 3), (2, 1, 8, 2)], "b": 3}


@torch.no_grad()
def _sequence(ctx):
    model, layers, pos, x, c = visible.sequence_setup(ctx)
    n, d = ctx["n"], ctx["dim"]
    trunk = {}  # the last layer's output (what follows it is the output sub-check's)
    handle = layers[-1].register_forward_hook(lambda m, i, o: trunk.__setitem__("out", o))
    try:
        out = model(x.clone(), c)
    finally:
        handle.remove()
    expect_shape(out, x.shape)
    out = trunk.get("out", out)
    h = x + pos
    for layer in layers:
        h = layer(h, c)
    if close(out, h, 1e-4):
        return
    if close(out, layers[-1](x + pos, c), 1e-4) or close(out, layers[0](x + pos, c), 1e-4):
        raise Fail(visible.ONE_LAYER)
    h = x
    for layer in layers:
        h = layer(h, c)
    if close(out, h, 1e-4):
        raise Fail(visible.NO_POS)
    h = x + pos.reshape(n, 1, d)
    for layer in layers:
        h = layer(h, c)
    if close(out, h, 1e-4):
        raise Fail(visible.POS_AXIS)
    raise Fail(visible.NOT_SEQUENCE)


def _reference_params(variant) -> int:
    import cfgflow_ref

    p, layers, dim, heads = variant
    return sum(q.numel() for q in cfgflow_ref.MNISTDiffusionTransformer(p, layers, dim, heads).parameters())


def _mparams(ctx):
    visible.count_params(ctx, _reference_params(ctx["variants"][0]))


DIT_LAYER = visible.DIT_LAYER.replaced(LAYER_CONFIG)
DIT = visible.DIT.replaced(DIT_CONFIG, sequence=_sequence)
MNIST_DIT = visible.MNIST_DIT.replaced(MNIST_CONFIG, params=_mparams)


def record():
    """The reference's parameter count for the visible sizes."""
    cfg = visible.MNIST_CONFIG
    return cfg, {"params": _reference_params(cfg["variants"][0])}, {}
