"""dit_layer, dit and mnist_dit, instructor side: the hidden sizes, and mnist_dit's recorder (the
reference's parameter count for a config's first variant). dit_layer and dit record nothing: their
verdicts compare the student's outputs with each other (dit's ``sequence`` follows the layer calls
through recording test doubles), so the judge runs them with its own seed and no recording.

The tables, probes, verdicts and messages are the student runtime's (:mod:`cfgflow.checks.dit`).
"""

from __future__ import annotations

import torch

from cfgflow.checks import dit as visible

LAYER_CONFIG = {"seed": 15, "dim": 12, "heads": 3, "n": 3, "b": 1}
DIT_CONFIG = {"seed": 16, "depth": 3, "n": 3, "dim": 12, "heads": 3, "b": 1}
MNIST_CONFIG = {"seed": 19, "variants": [(4, 2, 12, 3), (2, 1, 8, 2)], "b": 3}


COMPONENTS = {"encoder": "time_embedder", "patchifier": "patchifier", "trunk": "dit",
              "depatchifier": "depatchifier"}  # a test double's role -> the reference's child


def reference_params(variant, child=None) -> int:
    """The parameter count of the reference model with ``variant = (patch size, layers, dim, heads)``,
    or of its ``child``."""
    import cfgflow_ref

    p, layers, dim, heads = variant
    with torch.random.fork_rng(devices=[]):  # building it draws initial weights: leave the caller's RNG be
        model = cfgflow_ref.MNISTDiffusionTransformer(p, layers, dim, heads)
    return sum(q.numel() for q in (getattr(model, child) if child else model).parameters())


def record_mnist(cfg, seed):
    """The reference's parameter count for ``cfg["variants"][0]`` and each component's share
    (``params_<role>``: left out where a test double stood in; ``seed``: nothing is drawn)."""
    v = cfg["variants"][0]
    values = {"params": float(reference_params(v))}
    values.update({f"params_{role}": float(reference_params(v, child)) for role, child in COMPONENTS.items()})
    return values, {}


DIT_LAYER = visible.DIT_LAYER.replaced(LAYER_CONFIG)
DIT = visible.DIT.replaced(DIT_CONFIG)
MNIST_DIT = visible.MNIST_DIT.replaced(MNIST_CONFIG, record=record_mnist)
