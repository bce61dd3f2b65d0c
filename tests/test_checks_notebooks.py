"""The course's own notebooks against the checks: every test cell's part gets full marks with
the solution code (solutions/) and nothing with the released stubs (notebooks/)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from autograder.checks import run_check

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ["01_cfg", "02_dit"]
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


@pytest.mark.slow  # nbgrader generate_assignment + autograde of two examples (about 2 minutes)
def test_plain_nbgrader_grades_the_examples(tmp_path):
    """Without the engine (no grading key, no start-up import): a course folder with the source
    notebook, ``nbgrader generate_assignment`` and ``nbgrader autograde`` as an instructor runs
    them. The visible cells use the student runtime, the hidden cells import autograder.checks."""
    import os
    import shutil
    import sqlite3
    import subprocess
    import sys

    a = "01_cfg"
    (tmp_path / "source" / a).mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / a / f"{a}.ipynb", tmp_path / "source" / a)
    for student in ("complete", "buggy"):
        dest = tmp_path / "submitted" / student / a
        dest.mkdir(parents=True)
        shutil.copy(ROOT / "autograder" / "examples" / a / student / f"{a}.ipynb", dest)
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'plain'\nc.Execute.timeout = 300\n"
        "c.Autograde.create_student = True\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               CFGFLOW_OFFLINE="1", MPLBACKEND="Agg")
    env.pop("CFGFLOW_GRADE_KEY", None)
    for cmd in (["generate_assignment", a, "--force"], ["autograde", a, "--force"]):
        proc = subprocess.run([sys.executable, "-m", "nbgrader", *cmd], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    with sqlite3.connect(tmp_path / "gradebook.db") as db:
        rows = db.execute(
            "SELECT student.id, SUM(COALESCE(grade.manual_score, grade.auto_score)) FROM grade "
            "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
            "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
            "JOIN student ON submitted_assignment.student_id = student.id GROUP BY student.id").fetchall()
    totals = {s: round(t, 2) for s, t in rows}
    assert totals == {"complete": 15.0, "buggy": 8.33}, totals
