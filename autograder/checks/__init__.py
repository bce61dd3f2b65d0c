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
from typing import Dict, Optional

from .. import _gradekey, _signing
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


def _make_check(key: Optional[bytes], nonce: str):
    """The ``check`` function; with a grading key (``autograder._gradekey``) it signs results.

    The key and the functions the result depends on are captured here, at import (before any
    notebook cell ran), so rebinding module attributes later does not change what is signed.
    """
    run = run_check
    tampering = _integrity.tampering
    signed_line = _signing.signed_line

    def check(part: str, student_class, *, points: float, hidden: bool = False) -> float:
        """Grade ``student_class`` for ``part``; the cell's value is the earned points.

        Returns ``float(points)`` when every sub-check passes, the partial score when some do;
        raises ``AssertionError`` listing what is wrong when none does.
        """
        earned, failures = 0.0, []
        try:
            report = run(part, student_class, points=points, hidden=hidden, out=sys.stdout)
            earned, failures = float(report.earned), list(report.failures)
            problems = tampering()
            if problems:
                earned, failures = 0.0, ["the functions the checks rely on were replaced ("
                                         + ", ".join(problems) + "): restart the kernel and run "
                                         "the notebook without monkeypatching"]
        finally:
            if key is not None:  # graded by the engine: one signed line per call, 0 on errors
                print(signed_line(key, nonce, part, hidden, earned, points), file=sys.stdout)
        if earned <= 0:
            raise AssertionError(f"{part}: 0 / {points:g} points\n" + "\n".join(
                f"- {f}" for f in failures))
        return earned

    check.__qualname__ = "check"
    return check


check = _make_check(*_gradekey.take())

_integrity.register_own(sys.modules[__name__], "check", "run_check", "run_part")


def _tables():
    return {name: (p.config, tuple((s.name, s.fn, s.weight) for s in p.subchecks))
            for name, p in PARTS.items()}


_integrity.register_invariant("the check tables (autograder.checks.PARTS)", _tables)
_integrity.register_definitions(*(m for name, m in sorted(sys.modules.items())
                                  if name.startswith(__name__ + ".") and m is not None))
