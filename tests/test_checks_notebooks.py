"""The course's own notebooks against the checks: every test cell's part gets full marks with
the solution code (solutions/) and nothing with the released stubs (notebooks/)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from autograder.checks import run_check
from cfgflow import course

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = list(course.ASSIGNMENTS)
CHECK_CALL = re.compile(r'check\("(\w+)",\s*(\w+),')


def _namespace_and_calls(path: Path):
    """Execute the imports cell and every solution cell; collect (part, class) of test cells."""
    nb = json.loads(path.read_text())
    ns, calls = {"__name__": "notebook"}, []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        src = "".join(cell["source"])
        if meta.get("grade_id") == "imports" or meta.get("solution"):
            exec(compile(src, f"{path.name}:{meta.get('grade_id')}", "exec"), ns)
        calls += CHECK_CALL.findall(src)
    return ns, sorted(set(calls))


@pytest.mark.slow  # executes the notebooks' imports (matplotlib, data) and the meta-device warm-up
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("folder, full", [("solutions", True), ("notebooks", False)])
def test_notebook_classes(assignment, folder, full, capsys):
    path = ROOT / folder / assignment / f"{assignment}.ipynb"
    if not path.exists():
        pytest.skip(f"{path} not generated")
    ns, calls = _namespace_and_calls(path)
    assert calls, "no check(...) calls found in the test cells"
    for part, name in calls:
        for hidden in (False, True):
            rep = run_check(part, ns[name], points=1, hidden=hidden, out=io.StringIO())
            if full:
                assert rep.earned == 1.0, (part, hidden, rep.text)
            else:
                assert rep.earned == 0.0 and "NotImplementedError" in rep.text, (part, hidden, rep.text)

