"""The visible checks that notebook test cells call (the student runtime)::

    from cfgflow.checks import check
    check("fourier_encoder", FourierEncoder, points=2)

Every part has one table of weighted sub-checks (see ``docs/grading-checks.md``). ``check``
prints one line per sub-check to stdout, returns the earned points (two decimals) as a float when
any sub-check passed and raises :class:`CheckFailed` (an ``AssertionError`` that Jupyter shows as
one short line, not a traceback) listing the failures when none did.

Nothing here computes a graded part's output: the checks probe properties of the student's
module, run it with test doubles, or write recorded canonical weights into it and compare its
output with the reference's output recorded on fixed inputs (``data/``). The hidden checks live
with the instructors (``autograder.checks``): a hidden test cell imports that module, which
registers its runner here (:func:`register_hidden`), and ``check(..., hidden=True)`` then runs it.

This module holds the grading key (:mod:`._gradekey`): the grading engine imports it when a
kernel starts, before any notebook cell runs, and every result of ``check`` (visible or hidden)
is signed with that one key.
"""

from __future__ import annotations

import sys
from typing import Callable, Dict, Optional

from .. import course
from . import _gradekey, _integrity, _signing
from ._core import Fail, Part, Report, SubCheck, run_part

PARTS: Dict[str, Part] = course.tables(__name__)  # the parts of cfgflow/course.py, in notebook order

__all__ = ["check", "run_check", "CheckFailed", "PARTS", "Fail", "Part", "Report", "SubCheck"]


def run_check(part: str, student_class, *, points: float = 1.0, allow_reference: bool = False,
              out=None) -> Report:
    """Run the visible checks of ``part`` and return the full :class:`Report` (no raising)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {sorted(PARTS)}, got {part!r}")
    return run_part(PARTS[part], student_class, points=points, hidden=False,
                    allow_reference=allow_reference, out=out)


class CheckFailed(AssertionError):
    """Raised by :func:`check` when no sub-check passed. nbgrader sees an error output (0 points) as
    for any exception; Jupyter shows only the one line of :meth:`_render_traceback_`, under the
    FAIL lines the check printed, instead of a traceback through the check library."""

    def __init__(self, part: str, points: float, failures):
        self.part, self.points, self.failures = part, points, list(failures)
        super().__init__(f"{part}: 0 / {points:g} points\n" + "\n".join(f"- {f}" for f in self.failures))

    def _render_traceback_(self):  # IPython's hook: the lines an error output shows
        return [f"\x1b[0;31mCheckFailed\x1b[0m: {self.part}: 0 / {self.points:g} points "
                "(the FAIL lines above say what is wrong)"]


_HIDDEN: Dict[str, Callable] = {}  # "run": the hidden runner of the grading environment


def register_hidden(run: Callable) -> None:
    """Called once, by ``autograder.checks`` when it is imported: ``check(..., hidden=True)``
    then runs ``run(part, student_class, points=..., hidden=True, out=...)``. A second
    registration (a notebook cell's own runner first) is refused, and the hidden cell fails."""
    if "run" in _HIDDEN:
        raise RuntimeError("a hidden check runner was registered before the hidden checks were imported "
                           "(tampering?): restart the kernel and run the notebook without it")
    _HIDDEN["run"] = run


def _make_check(key: Optional[bytes], nonce: str):
    """The ``check`` function; with a grading key (``._gradekey``) it signs results.

    The key and the functions the result depends on are captured here, at import (before any
    notebook cell ran), so rebinding module attributes later does not change what is signed.
    """
    run_visible = run_check
    hidden_slot = _HIDDEN
    tampering = _integrity.tampering
    signed_line = _signing.signed_line
    failed = CheckFailed

    def check(part: str, student_class, *, points: float, hidden: bool = False) -> float:
        """Grade ``student_class`` for ``part``; the cell's value is the earned points.

        Returns ``float(points)`` when every sub-check passes, the partial score when some do;
        raises :class:`CheckFailed` listing what is wrong when none does.
        """
        earned, failures = 0.0, []
        try:
            if hidden:
                if "run" not in hidden_slot:
                    raise RuntimeError("hidden checks run only in the instructor's grading environment "
                                       "(import autograder.checks there)")
                report = hidden_slot["run"](part, student_class, points=points, hidden=True, out=sys.stdout)
            else:
                report = run_visible(part, student_class, points=points, out=sys.stdout)
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
            raise failed(part, points, failures)
        return earned

    check.__qualname__ = "check"
    return check


check = _make_check(*_gradekey.take())

_integrity.register_own(sys.modules[__name__], "check", "run_check", "run_part", "register_hidden")


def _tables():
    return {name: (p.config, tuple((s.name, s.fn, s.weight) for s in p.subchecks))
            for name, p in PARTS.items()}


_integrity.register_invariant("the check tables (cfgflow.checks.PARTS)", _tables)
_integrity.register_definitions(*(m for name, m in sorted(sys.modules.items())
                                  if name.startswith(__name__ + ".") and m is not None))
