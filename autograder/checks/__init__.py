"""The hidden checks (instructor side) and the one entry point the catalogs and tests use::

    from autograder.checks import check
    check("fourier_encoder", FourierEncoder, points=3, hidden=True)  # hidden: other sizes, seeds

``check`` is the student runtime's (:func:`cfgflow.checks.check`: one function, one grading
key); importing this module registers the hidden runner with it. The hidden tables reuse the
runtime's tables, property sub-checks and messages, with other sizes and seeds and the
sub-checks that need a formula computed against the reference here. ``python -m
autograder.checks.record`` records the visible checks' data (``cfgflow/checks/data/``).
"""

from __future__ import annotations

import sys
from typing import Dict

import cfgflow.checks as _visible
from cfgflow import course
from cfgflow.checks import Fail, Part, Report, SubCheck, _integrity, check
from cfgflow.checks._core import run_part

VISIBLE: Dict[str, Part] = _visible.PARTS
HIDDEN: Dict[str, Part] = course.tables(__name__)  # the parts of cfgflow/course.py, in notebook order
PARTS = HIDDEN  # the part names, in notebook order (every part has both tables)
if list(HIDDEN) != list(VISIBLE):
    raise ImportError(f"hidden parts {list(HIDDEN)} differ from the visible parts {list(VISIBLE)}")

__all__ = ["check", "run_check", "PARTS", "VISIBLE", "HIDDEN", "Fail", "Part", "Report", "SubCheck"]


def run_check(part: str, student_class, *, points: float = 1.0, hidden: bool = False,
              allow_reference: bool = False, out=None) -> Report:
    """Run the visible (student runtime) or hidden checks of ``part``; the full :class:`Report`."""
    if part not in HIDDEN:
        raise ValueError(f"part must be one of {sorted(HIDDEN)}, got {part!r}")
    table = HIDDEN[part] if hidden else VISIBLE[part]
    return run_part(table, student_class, points=points, hidden=hidden, allow_reference=allow_reference,
                    out=out)


def _run_hidden(part: str, student_class, *, points: float, hidden: bool = True, out=None) -> Report:
    return run_check(part, student_class, points=points, hidden=True, out=out)


_visible.register_hidden(_run_hidden)
_integrity.register_own(sys.modules[__name__], "run_check", "_run_hidden")
_integrity.register_invariant("the hidden check runner", lambda: _visible._HIDDEN.get("run"))


def _tables():
    return {name: (p.config, tuple((s.name, s.fn, s.weight) for s in p.subchecks))
            for name, p in HIDDEN.items()}


_integrity.register_invariant("the hidden check tables (autograder.checks.HIDDEN)", _tables)
_integrity.register_definitions(*(m for name, m in sorted(sys.modules.items())
                                  if name.startswith(__name__ + ".") and m is not None))
