"""The checks that notebook test cells call (the student runtime)::

    from cfgflow.checks import check
    check("fourier_encoder", FourierEncoder, points=2)

Every part has one table of weighted sub-checks (see ``docs/grading-checks.md``), each a probe
(runs the student's code on given inputs and reports what came out) and a verdict (a pure
function from that report and the expectations to pass or fail and a message). ``check`` prints
one line per sub-check, returns the earned points (two decimals) as a float when any sub-check
passed and raises :class:`CheckFailed` (an ``AssertionError`` that Jupyter shows as one short
line, not a traceback) listing the failures when none did.

Two modes:

* **Self-check** (the student's machine, Colab): the probes run on the inputs recorded in
  ``data/``, the verdicts compare with the reference's outputs recorded there. Nothing here
  computes a graded part's output.
* **Graded** (the environment variable :data:`JUDGE_ENV` names the judge's socket): the judge,
  a process outside this kernel that holds the reference and the hidden configurations, sends
  the inputs, the probes run here and report their observations, and the judge answers with the
  verdicts and the points, which it records itself. What this function returns or prints then
  decides nothing: the grading engine replaces the test cell's output with the judge's record.
  Hidden test cells (``hidden=True``) exist only there.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Dict

from .. import course
from . import _wire
from ._core import CheckTable, Fail, Report, SubCheck, probe_part, run_part

TABLES: Dict[str, CheckTable] = course.tables(__name__)  # the parts of cfgflow/course.py, in notebook order
JUDGE_ENV = course.JUDGE_ENV  # path of the judge's Unix socket in a graded kernel

__all__ = ["check", "run_check", "CheckFailed", "TABLES", "Fail", "CheckTable", "Report", "SubCheck"]


def run_check(part: str, student_class, *, points: float = 1.0, allow_reference: bool = False,
              out=None) -> Report:
    """Self-check ``part`` (the shipped recording) and return the full :class:`Report` (no raising)."""
    if part not in TABLES:
        raise ValueError(f"part must be one of {sorted(TABLES)}, got {part!r}")
    return run_part(TABLES[part], student_class, points=points, hidden=False,
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


class JudgeUnavailable(RuntimeError):
    """The judge did not answer (this is not a graded test cell, or the grading run ended)."""


def _exchange(stream, message) -> dict:
    _wire.send(stream, message)
    try:
        answer = _wire.receive(stream)
    except _wire.WireError as e:
        raise JudgeUnavailable(f"the judge's answer could not be read: {e}") from e
    if not isinstance(answer, dict):
        raise JudgeUnavailable("the judge's answer is not a message")
    if "refused" in answer:
        raise JudgeUnavailable(str(answer["refused"]))
    return answer


def _judged(path: str, part: str, student_class, points: float, hidden: bool):
    """One session with the judge: hello, the judge's plan, the probes' report, the verdict.
    Returns ``(lines, earned, points, failures)`` as the judge sent them."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            with sock.makefile("rwb") as stream:
                plan = _exchange(stream, {"hello": {"part": part, "hidden": bool(hidden), "points": points}})
                table = TABLES[plan["part"]]
                sent = probe_part(table, student_class, plan["config"], plan["given"], hidden=plan["hidden"])
                verdict = _exchange(stream, {"report": sent})
    except OSError as e:
        raise JudgeUnavailable(f"the judge did not answer ({type(e).__name__}: {e})") from e
    return verdict["lines"], float(verdict["earned"]), float(verdict["points"]), verdict["failures"]


class HiddenChecksNotHere(RuntimeError):
    """``check(..., hidden=True)`` outside a graded run: there is no judge to hold the hidden
    checks, and the cell must not pass (nbgrader would give it full points)."""

    def _render_traceback_(self):
        return [f"\x1b[0;31mHiddenChecksNotHere\x1b[0m: {self}"]


def check(part: str, student_class, *, points: float, hidden: bool = False) -> float:
    """Grade ``student_class`` for ``part``; the cell's value is the earned points.

    Returns ``float(points)`` when every sub-check passes, the partial score when some do;
    raises :class:`CheckFailed` listing what is wrong when none does.
    """
    path = os.environ.get(JUDGE_ENV)
    if path:
        lines, earned, points, failures = _judged(path, part, student_class, points, hidden)
        print("\n".join(lines))
    elif hidden:  # outside grading: no score (a silent pass would be full points to nbgrader)
        raise HiddenChecksNotHere(f"{part}: the hidden checks run only when the notebook is graded "
                                  "(the judge holds them)")
    else:
        report = run_check(part, student_class, points=points, out=sys.stdout)
        earned, failures = float(report.earned), report.failures
    if earned <= 0:
        raise CheckFailed(part, points, failures)
    return earned
