"""The instructor side of the checks: hidden sizes, recorders and the judge's choice of inputs.

Every part has one table (the student runtime's, :mod:`cfgflow.checks`: probes, verdicts,
messages); this package adds, per part, the hidden sizes and a recorder that draws inputs and
canonical weights from a seed and computes the expected outputs with the reference
(``cfgflow_ref``). Nothing here runs in a grading kernel:

* :func:`plan` is what the judge (:mod:`autograder.judge`) does for a test cell: the table, the
  config and a fresh recording, visible cells included (the recording shipped to students is
  public; a graded visible cell uses other inputs drawn with an instructor-side seed, the same on
  every regrade).
* :func:`run_check` probes and judges in this process (catalogs, tests): ``hidden=False`` is the
  student's self-check (the shipped recording), ``hidden=True`` the judge's hidden cell,
  ``graded=True`` the judge's visible cell.

``python -m autograder.checks.record`` writes the shipped recordings (``cfgflow/checks/data/``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, Tuple

import cfgflow.checks as _visible
from cfgflow import course
from cfgflow.checks._core import CheckTable, Expect, Fail, Report, SubCheck, judge_part, run_part

VISIBLE: Dict[str, CheckTable] = _visible.TABLES
HIDDEN: Dict[str, CheckTable] = course.tables(__name__)  # the parts of cfgflow/course.py, in notebook order
if list(HIDDEN) != list(VISIBLE):
    raise ImportError(f"hidden parts {list(HIDDEN)} differ from the visible parts {list(VISIBLE)}")

__all__ = ["run_check", "plan", "judge", "VISIBLE", "HIDDEN", "Fail", "CheckTable", "Report", "SubCheck"]

SALT = "cfgflow judge inputs v1"
"""Mixed into the judge's seeds. Instructor side only: a student cannot know the inputs a graded
cell will get, and a regrade draws the same ones (change it for a new term)."""


def judge_seed(part: str, hidden: bool) -> int:
    digest = hashlib.sha256(f"{SALT}|{part}|{'hidden' if hidden else 'visible'}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1)


def plan(part: str, hidden: bool) -> Tuple[CheckTable, Dict[str, Any], Dict[str, Any]]:
    """``(table, config, recording)`` the judge uses for a graded test cell of ``part``: the
    hidden or visible sizes, the judge's seed, and the inputs and expectations drawn with it."""
    if part not in HIDDEN:
        raise ValueError(f"part must be one of {sorted(HIDDEN)}, got {part!r}")
    table = HIDDEN[part] if hidden else VISIBLE[part]
    seed = judge_seed(part, hidden)
    cfg = {**table.config, "seed": seed}
    record = HIDDEN[part].record
    values, tensors = record(cfg, seed) if record is not None else ({}, {})
    return table.replaced(cfg), cfg, {"values": values, "tensors": tensors}


def judge(part: str, hidden: bool, sent: Any, *, points: float,
          planned: Tuple[CheckTable, Dict[str, Any], Dict[str, Any]]) -> Report:
    """The verdicts on what a kernel sent for a planned cell (``planned``: :func:`plan`'s result)."""
    table, cfg, data = planned
    return judge_part(table, sent, Expect(cfg, data), points=points, hidden=hidden)


def run_check(part: str, student_class, *, points: float = 1.0, hidden: bool = False, graded: bool = False,
              allow_reference: bool = False, out=None) -> Report:
    """Probe and judge ``student_class`` in this process; the full :class:`Report`. ``hidden``:
    the hidden cell as the judge grades it; ``graded``: the visible cell as the judge grades it;
    neither: the student's self-check on the shipped recording."""
    if part not in HIDDEN:
        raise ValueError(f"part must be one of {sorted(HIDDEN)}, got {part!r}")
    if not (hidden or graded):
        return run_part(VISIBLE[part], student_class, points=points, hidden=False,
                        allow_reference=allow_reference, out=out)
    table, _, data = plan(part, hidden)
    return run_part(table, student_class, points=points, hidden=hidden, data=data,
                    allow_reference=allow_reference, out=out)
