"""Which part of the course each test cell checks: the one place the engine learns part names.

A test cell names its part in its ``cfgflow.part`` metadata (the course manifest,
cfgflow/course.py, ``cell_part``); the engine's signature check and the pipeline's expectations
both call :func:`check_parts`.
"""

from __future__ import annotations

import re

from autograder.grade.config import CHECKS_MODULE

_CALLS_CHECK = re.compile(r"(?<![\w.])(?:" + re.escape(CHECKS_MODULE + ".") + r")?check\s*\(")


def check_parts(nb) -> dict[str, list[str]]:
    """``grade_id -> part names`` (the cell's part; empty when it has none) for the test cells of
    the parsed notebook ``nb`` that call ``check``: graded code cells that are not solution cells."""
    from cfgflow.course import cell_part

    found = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if (cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")
                and _CALLS_CHECK.search(cell.source)):
            found[meta["grade_id"]] = [p for p in [cell_part(cell)] if p]
    return found
