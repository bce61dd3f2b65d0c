"""patchifier and depatchifier, instructor side: the hidden sizes and seeds. Both are checked by
probing the student's module (basis images, per-token perturbations), the same sub-checks as the
student runtime's (:mod:`cfgflow.checks.patches`); nothing is recorded."""

from __future__ import annotations

from cfgflow.checks import patches as visible

PATCHIFIER = visible.PATCHIFIER.replaced({"seed": 13, "img": 12, "p": 3, "dim": 5, "b": 1})
DEPATCHIFIER = visible.DEPATCHIFIER.replaced({"seed": 18, "img": 12, "p": 4, "dim": 6, "b": 1})
