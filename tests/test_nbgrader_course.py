"""Plain nbgrader, without this project's engine: an instructor's course folder whose config
loads ``autograder/nbgrader_config.py``, and nbgrader's own ``generate_assignment``,
``autograde`` and ``export`` commands grade the example submissions of 01_cfg (built from the
sources by the ``examples`` fixture):
``complete`` 15 of 15, ``buggy`` 8.68 (the inverted null mask and the summed loss)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECTED = {"complete": 15.0, "buggy": 8.68}


def _nbgrader(course, env, *args):
    res = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"nbgrader {' '.join(args)}:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.mark.slow
def test_plain_nbgrader_grades_the_example_submissions(tmp_path, mnist_root, examples):
    a = "01_cfg"
    course = tmp_path / "course"
    (course / "source" / a).mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "solutions", a, f"{a}.ipynb"), course / "source" / a)
    for student in EXPECTED:
        (course / "submitted" / student / a).mkdir(parents=True)
        shutil.copy(examples / "ex" / a / student / f"{a}.ipynb", course / "submitted" / student / a)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"load_subconfig({os.path.join(REPO, 'autograder', 'nbgrader_config.py')!r})\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.source_directory = 'source'\n"
        "c.CourseDirectory.release_directory = 'release'\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{course / 'gradebook.db'}'\n")
    env = {**os.environ, "PYTHONPATH": REPO, "CFGFLOW_OFFLINE": "1", "CFGFLOW_DATA": mnist_root,
           "OMP_NUM_THREADS": "1"}
    env.pop("MPLBACKEND", None)

    _nbgrader(course, env, "generate_assignment", a, "--force")
    assert (course / "release" / a / f"{a}.ipynb").exists()
    for student in EXPECTED:
        _nbgrader(course, env, "db", "student", "add", student)
    _nbgrader(course, env, "autograde", a, "--force")
    _nbgrader(course, env, "export", "--to", str(tmp_path / "grades.csv"))

    with open(tmp_path / "grades.csv") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f) if r["assignment"] == a}
    scores = {s: round(float(rows[s]["score"]), 2) for s in EXPECTED}
    assert scores == EXPECTED
    assert all(float(rows[s]["max_score"]) == 15.0 for s in EXPECTED)
