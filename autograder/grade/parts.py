"""Which part of the check library each test cell checks: the one place that learns part names.

Today the names are read off the test cells' source (``check("fourier", ...)``); a course
manifest can replace :func:`check_parts` without any other change (the engine's signature check
and the pipeline's expectations both call it).
"""

from __future__ import annotations

import re

from autograder.grade.config import CHECKS_MODULE

_CALLS_CHECK = re.compile(r"(?<![\w.])(?:" + re.escape(CHECKS_MODULE + ".") + r")?check\s*\(")
_CHECK_PART = re.compile(r"check\s*\(\s*[\"'](\w+)[\"']")


def check_parts(nb) -> dict[str, list[str]]:
    """``grade_id -> part names`` (in the order the cell names them, possibly none) for the
    test cells of the parsed notebook ``nb`` that call ``check``: graded code cells that are not
    solution cells."""
    found = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if (cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")
                and _CALLS_CHECK.search(cell.source)):
            found[meta["grade_id"]] = list(dict.fromkeys(_CHECK_PART.findall(cell.source)))
    return found
