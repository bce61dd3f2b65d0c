"""Checks that nbgrader test cells call::

    from autograder.checks import check
    check("fourier_encoder", FourierEncoder, points=2)               # visible
    check("fourier_encoder", FourierEncoder, points=3, hidden=True)  # hidden: other sizes, seeds

Every part has one table of weighted sub-checks (see ``docs/grading-checks.md``). ``check``
prints one line per sub-check to stdout, returns the earned points as a float when any sub-check
passed and raises ``AssertionError`` listing the failures when none did.
"""

from __future__ import annotations

import sys
from typing import Dict

from . import _integrity
from ._core import Fail, Part, Report, SubCheck, run_part
from .attention import PART as _MHA
from .cfg_loss import PART as _CFG_LOSS
from .dit import DIT as _DIT
from .dit import DIT_LAYER as _DIT_LAYER
from .dit import MNIST_DIT as _MNIST_DIT
from .fourier import PART as _FOURIER
from .mlp_field import PART as _MLP_FIELD
from .patches import DEPATCHIFIER as _DEPATCHIFIER
from .patches import PATCHIFIER as _PATCHIFIER

PARTS: Dict[str, Part] = {p.name: p for p in (
    _CFG_LOSS, _MLP_FIELD, _FOURIER, _PATCHIFIER, _MHA, _DIT_LAYER, _DIT, _DEPATCHIFIER, _MNIST_DIT)}

__all__ = ["check", "run_check", "PARTS", "Fail", "Part", "Report", "SubCheck"]


def run_check(part: str, student_class, *, points: float = 1.0, hidden: bool = False,
              allow_reference: bool = False, out=None) -> Report:
    """Run the checks of ``part`` and return the full :class:`Report` (no raising)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {sorted(PARTS)}, got {part!r}")
    return run_part(PARTS[part], student_class, points=points, hidden=hidden,
                    allow_reference=allow_reference, out=out)


def check(part: str, student_class, *, points: float, hidden: bool = False) -> float:
    """Grade ``student_class`` for ``part``; the cell's value is the earned points.

    Returns ``float(points)`` when every sub-check passes, the partial score when some do;
    raises ``AssertionError`` listing what is wrong when none does.
    """
    report = run_check(part, student_class, points=points, hidden=hidden, out=sys.stdout)
    if report.earned <= 0:
        raise AssertionError(f"{part}: 0 / {points:g} points\n" + "\n".join(
            f"- {f}" for f in report.failures))
    return float(report.earned)


_integrity.register_own(sys.modules[__name__], "check", "run_check")


def _tables():
    return {name: (p.config, tuple((s.name, s.fn, s.weight) for s in p.subchecks))
            for name, p in PARTS.items()}


_integrity.register_invariant("the check tables (autograder.checks.PARTS)", _tables)
