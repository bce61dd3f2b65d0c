"""The main job on the real assignments: release -> examples -> autograde -> report.

Fast tests cover the example builder and the expectation logic; the slow ones run the real
thing (``python -m autograder.pipeline`` end to end on both assignments with 2 workers, then
01_cfg again with 1 worker, which must give the identical grades.csv).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.examples.build import BUGS, Bug, apply_bugs, fill_solutions
from autograder.grade import CellInfo, GradeConfig, StudentResult, grade_submissions
from autograder.pipeline import cell_parts, expectation_failures
from cfgflow import course

REPO = Path(__file__).resolve().parent.parent
SOL = REPO / "solutions"
ASSIGNMENTS = tuple(course.ASSIGNMENTS)


def _read(p):
    return nbformat.read(str(p), as_version=4)


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_examples_built_from_release(examples, a):
    rel = _read(examples / "release" / a / f"{a}.ipynb")
    comp = _read(examples / "ex" / a / "complete" / f"{a}.ipynb")
    untouched = _read(examples / "ex" / a / "untouched" / f"{a}.ipynb")
    buggy = _read(examples / "ex" / a / "buggy" / f"{a}.ipynb")
    assert [c.source for c in untouched.cells] == [c.source for c in rel.cells]
    assert "raise NotImplementedError()" in "".join(c.source for c in rel.cells)
    sol = [c for c in comp.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert sol
    for c in sol:  # every stub filled, no markers left, metadata kept
        assert "# YOUR CODE HERE" not in c.source and "### BEGIN SOLUTION" not in c.source
    assert [c.metadata for c in comp.cells] == [c.metadata for c in rel.cells]
    changed = {c.metadata["nbgrader"]["grade_id"] for c, d in zip(comp.cells, buggy.cells)
               if c.source != d.source}
    assert changed == {b.cell for b in BUGS[a]}


def test_apply_bugs_fails_loudly_on_stale_text(examples):
    comp = _read(examples / "ex" / "01_cfg" / "complete" / "01_cfg.ipynb")
    with pytest.raises(ValueError, match="not found in cell 'cfg_trainer'"):
        apply_bugs(comp, [Bug("cfg_trainer", "no such code", "x", "cfg_loss", "stale")])


def test_fill_solutions_strips_markers():
    src = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")])
    src.cells[0].metadata["nbgrader"] = {"solution": True, "grade_id": "f"}
    stub = "def f():\n    raise NotImplementedError()"
    rel = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(stub)])
    rel.cells[0].metadata["nbgrader"] = {"solution": True, "grade_id": "f"}
    assert fill_solutions(rel, src).cells[0].source == "def f():\n    return 1"


def test_cell_parts_maps_test_cells_to_checks():
    """Both test cells of every part of cfgflow/course.py, found by their cfgflow metadata."""
    parts = cell_parts(SOL / "02_dit" / "02_dit.ipynb")
    assert parts == {f"02_dit/test_{p.name}{kind}": p.name
                     for p in course.ASSIGNMENTS["02_dit"].parts for kind in ("", "_hidden")}


def test_expectation_failures_logic():
    cells = [CellInfo("01_cfg", "test_cfg_loss", 4.0), CellInfo("01_cfg", "test_mlp_field", 2.0)]

    def r(student, a, b):
        return StudentResult(student, scores={"01_cfg/test_cfg_loss": a, "01_cfg/test_mlp_field": b})

    good = [r("complete", 4, 2), r("untouched", 0, 0), r("buggy", 1, 2)]
    assert expectation_failures("01_cfg", good, cells, SOL) == []
    bad = [r("complete", 4, 1), r("untouched", 0, 0.5), r("buggy", 4, 1)]
    fails = expectation_failures("01_cfg", bad, cells, SOL)
    assert len(fails) == 4, fails  # complete short, untouched scored, bug missed, collateral loss


# ------------------------------------------------------------------------------------ slow


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline_out")
    proc = subprocess.run([sys.executable, "-m", "autograder.pipeline", "--out", str(out),
                           "--workers", "2", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    return out, proc


def _grades(path):
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    return rows[0], {r["student"]: r for r in rows[1:]}


@pytest.mark.slow
def test_pipeline_end_to_end(pipeline_run):
    out, proc = pipeline_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.count("expectations: OK") == len(ASSIGNMENTS), proc.stdout
    for a in ASSIGNMENTS:
        mx, rows = _grades(out / a / "grades.csv")
        assert set(rows) == {"complete", "untouched", "buggy"}
        assert rows["complete"]["total"] == mx["total"] and float(mx["total"]) > 0
        assert float(rows["untouched"]["total"]) == 0
        assert 0 < float(rows["buggy"]["total"]) < float(mx["total"])
        for s in rows:
            assert (out / a / "feedback" / f"{s}.html").stat().st_size > 1000
        assert (out / a / "gradebook.db").exists()
    assert (out / "summary.csv").exists()


@pytest.mark.slow
def test_one_worker_matches_two(pipeline_run, examples, tmp_path):
    out, proc = pipeline_run
    assert proc.returncode == 0, proc.stdout[-4000:]
    cfg = GradeConfig(assignment="01_cfg", source_dir=SOL, workers=1, progress=False)
    grade_submissions(examples / "ex" / "01_cfg", cfg, tmp_path / "one")
    one = (tmp_path / "one" / "grades.csv").read_text()
    two = (out / "01_cfg" / "grades.csv").read_text()
    assert one == two
