"""The grading engine on a tiny throwaway nbgrader assignment (no torch in the notebook).

Covers: submission layouts (flat, nbgrader's, a renamed file), hidden tests restored from the
instructor's source (a student who edits the test cell or only satisfies the visible test gains
nothing), stderr warnings not zeroing a correct cell, an unreadable notebook, a per-cell
time-out, the CSV / feedback / merged gradebook outputs, and identical results for 1 and 2
workers.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder.grade import GradeConfig, build_template, find_submissions, grade_submissions

A = "tiny"


def _cell(src, *, grade=False, solution=False, locked=False, gid=None, points=None, kind="code"):
    cell = nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
    if gid:
        meta = {"grade": grade, "solution": solution, "locked": locked, "grade_id": gid,
                "schema_version": 3}
        if grade:
            meta["points"] = points
        cell.metadata["nbgrader"] = meta
    return cell


def make_source(root: Path) -> Path:
    """solutions-like folder: root/tiny/tiny.ipynb with 3 grade cells (2 + 3 + 1 points)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        _cell("# Tiny assignment", kind="markdown"),
        _cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
              solution=True, gid="add"),
        _cell("assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-1, 1) == 0\n"
              "### END HIDDEN TESTS", grade=True, locked=True, gid="test_add", points=2),
        _cell("def mul(a, b):\n    ### BEGIN SOLUTION\n    return a * b\n    ### END SOLUTION",
              solution=True, gid="mul"),
        _cell("assert mul(2, 3) == 6\nprint('mul ok')", grade=True, locked=True, gid="test_mul", points=3),
        _cell("import sys, warnings\nwarnings.warn('a harmless torch-style warning', UserWarning)\n"
              "assert mul(1, 1) == 1", grade=True, locked=True, gid="test_warn", points=1),
    ]
    (root / A).mkdir(parents=True)
    nbformat.write(nb, str(root / A / f"{A}.ipynb"))
    return root


def _fill(release, source):
    """The release with the source's solution code (markers removed) in every solution cell."""
    nb = copy.deepcopy(release)
    src = {c.metadata["nbgrader"]["grade_id"]: c for c in source.cells if "nbgrader" in c.metadata}
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("solution"):
            lines = src[meta["grade_id"]].source.splitlines()
            c.source = "\n".join(ln for ln in lines if "### BEGIN SOLUTION" not in ln
                                 and "### END SOLUTION" not in ln)
    return nb


def _edit(nb, gid, old, new):
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
    assert old in cell.source
    cell.source = cell.source.replace(old, new)
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinycourse")
    source = make_source(root / "solutions")
    cfg = GradeConfig(assignment=A, source_dir=source, workers=1, cell_timeout_s=8,
                      submission_timeout_s=120, progress=False)
    template, cells = build_template(cfg, root / "t")
    release = nbformat.read(str(template / "release" / A / f"{A}.ipynb"), as_version=4)
    src_nb = nbformat.read(str(source / A / f"{A}.ipynb"), as_version=4)
    complete = _fill(release, src_nb)

    subs = root / "submissions"

    def put(student, nb, rel=f"{A}.ipynb"):
        path = subs / student / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(nb, str):
            path.write_text(nb)
        else:
            nbformat.write(nb, str(path))

    put("complete", complete)
    put("untouched", release)
    put("buggy_add", _edit(complete, "add", "return a + b", "return a - b"))
    # satisfies only the visible test, and rewrites the test cell: hidden test comes back
    cheat = _edit(complete, "add", "return a + b", "return 3")
    cheat = _edit(cheat, "test_add", "assert add(1, 2) == 3", "pass")
    put("cheater", cheat)
    put("renamed", complete, rel="Copy of tiny (2).ipynb")
    put("nbgrader_layout", complete, rel=f"{A}/{A}.ipynb")
    put("broken_json", '{"cells": [ this is not json')
    put("hangs", _edit(complete, "mul", "return a * b", "import time\n    time.sleep(60)"))
    (subs / "empty_folder").mkdir()
    return {"root": root, "cfg": cfg, "subs": subs, "cells": cells}


def test_template_lists_grade_cells(course):
    assert [(c.grade_id, c.max_score) for c in course["cells"]] == [
        ("test_add", 2.0), ("test_mul", 3.0), ("test_warn", 1.0)]


def test_find_submissions_layouts(course):
    found = find_submissions(course["subs"], A, [A])
    assert found["renamed"][0].name == "Copy of tiny (2).ipynb"
    assert found["nbgrader_layout"][0].parent.name == A
    assert found["empty_folder"] == []
    assert len(found) == 9


def test_new_gradebook_is_the_one_nbgrader_makes(tmp_path):
    """create_gradebook skips nbgrader's ``alembic heads`` subprocess: same tables, same columns,
    same alembic revision, same course row as a gradebook nbgrader creates itself."""
    import sqlite3

    from nbgrader.api import Gradebook

    from autograder.grade.config import COURSE_ID
    from autograder.grade.merge import create_gradebook

    ours, theirs = tmp_path / "ours.db", tmp_path / "theirs.db"
    create_gradebook(ours)
    with Gradebook(f"sqlite:///{theirs}", COURSE_ID):
        pass

    def content(path):
        with sqlite3.connect(path) as db:
            schema = sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
            return (schema, db.execute("SELECT version_num FROM alembic_version").fetchall(),
                    db.execute("SELECT id FROM course").fetchall())

    schema, version, course = content(ours)
    assert (schema, version, course) == content(theirs)
    assert len(version) == 1 and version[0][0] and course == [(COURSE_ID,)]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="workers"):
        GradeConfig(workers=0)


@pytest.fixture(scope="module")
def graded(course):
    out = {}
    for n in (1, 2):
        cfg = GradeConfig(**{**course["cfg"].__dict__, "workers": n})
        results, cells = grade_submissions(course["subs"], cfg, course["root"] / f"out{n}")
        out[n] = {r.student: r for r in results}
    return out


EXPECTED = {  # student: (test_add, test_mul, test_warn, status)
    "complete": (2, 3, 1, "ok"),
    "untouched": (0, 0, 0, "ok"),
    "buggy_add": (0, 3, 1, "ok"),
    "cheater": (0, 3, 1, "ok"),
    "renamed": (2, 3, 1, "ok"),
    "nbgrader_layout": (2, 3, 1, "ok"),
    "broken_json": (0, 0, 0, "unreadable"),
    "hangs": (2, 0, 0, "ok"),
    "empty_folder": (0, 0, 0, "no_submission"),
}


@pytest.mark.slow
def test_scores_per_student(graded):
    res = graded[1]
    got = {s: (r.scores["tiny/test_add"], r.scores["tiny/test_mul"], r.scores["tiny/test_warn"], r.status)
           for s, r in res.items()}
    assert got == EXPECTED
    assert any("time-out" in n for n in res["hangs"].notes), res["hangs"].notes
    assert any("graded as 'tiny.ipynb'" in n for n in res["renamed"].notes)


@pytest.mark.slow
def test_one_and_two_workers_identical(graded, course):
    def key(r):
        return (r.scores, r.status, r.reason, [n for n in r.notes if "repair" not in n])

    assert {s: key(r) for s, r in graded[1].items()} == {s: key(r) for s, r in graded[2].items()}
    csv1 = (course["root"] / "out1" / "grades.csv").read_text()
    csv2 = (course["root"] / "out2" / "grades.csv").read_text()
    assert csv1 == csv2


@pytest.mark.slow
def test_outputs_written(graded, course):
    out = course["root"] / "out2"
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert rows[0]["student"] == "(max)" and rows[0]["total"] == "6"
    by = {r["student"]: r for r in rows[1:]}
    assert by["complete"]["total"] == "6" and by["buggy_add"]["test_add"] == "0"
    assert by["broken_json"]["status"] == "unreadable" and by["broken_json"]["reason"]
    fb = (out / "feedback" / "complete.html").read_text()
    assert "cfgflow-grading-notes" in fb and "6 / 6 points" in fb and "mul ok" in fb
    assert "cannot read" in (out / "feedback" / "broken_json.html").read_text()
    report = json.loads((out / "report.json").read_text())  # the class report of every run
    assert report["students"] == len(EXPECTED) and (out / "report.html").stat().st_size > 10_000
    assert report["similarity"]["students"] == len(EXPECTED)

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}", "cfgflow") as gb:
        assert sorted(s.id for s in gb.students) == sorted(EXPECTED)
        for student, exp in EXPECTED.items():
            sub = gb.find_submission(A, student)
            assert sub.score == sum(exp[:3]), student


@pytest.mark.slow
def test_stderr_warning_zeroes_the_cell_without_ignore_pattern(course):
    """nbgrader zeroes a grade cell with stderr output; our IgnorePattern is what saves test_warn."""
    cfg = GradeConfig(**{**course["cfg"].__dict__, "ignore_pattern": ""})
    (r,), _ = grade_submissions(course["subs"], cfg, None, students=["complete"])
    assert (r.scores["tiny/test_add"], r.scores["tiny/test_warn"]) == (2.0, 0.0)


@pytest.mark.slow
def test_merge_shards(graded, course, tmp_path):
    """Split one run's output in two 'machines' and merge them back: same CSV and gradebook."""
    from autograder.grade import merge_shards

    src = course["root"] / "out1"
    lines = (src / "grades.csv").read_text().splitlines(keepends=True)
    head, rows = lines[:2], lines[2:]
    for name, part in (("a", rows[:4]), ("b", rows[4:])):
        shard = tmp_path / name
        shutil.copytree(src, shard)
        (shard / "grades.csv").write_text("".join(head + part))
    merged = merge_shards([tmp_path / "a", tmp_path / "b"], tmp_path / "m", A)
    assert [r.student for r in merged] == sorted(EXPECTED)
    assert (tmp_path / "m" / "grades.csv").read_text() == (src / "grades.csv").read_text()
    assert len(list((tmp_path / "m" / "feedback").glob("*.html"))) == len(EXPECTED)
    report = json.loads((tmp_path / "m" / "report.json").read_text())  # from the shards' records
    assert report["students"] == len(EXPECTED)
    assert report == {**report, "status": json.loads((src / "report.json").read_text())["status"]}
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{tmp_path / 'm' / 'gradebook.db'}", "cfgflow") as gb:
        assert gb.find_submission(A, "complete").score == 6
    with pytest.raises(ValueError, match="appears in two shards"):
        merge_shards([tmp_path / "a", tmp_path / "a"], tmp_path / "m2", A)


def test_shard_students_split_is_a_partition():
    from autograder.grade import parse_shard, shard_students

    names = [f"s{i:02d}" for i in range(10)][::-1]
    parts = [shard_students(names, f"{k}/3") for k in range(3)]
    assert sorted(sum(parts, [])) == sorted(names)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert parts[0] == ["s00", "s03", "s06", "s09"]
    assert shard_students(names, None) == sorted(names)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_require_isolation_refuses_without_bwrap(monkeypatch):
    from autograder import sandbox

    monkeypatch.setattr(sandbox, "bwrap_probe", lambda: (None, "bubblewrap (bwrap) is not installed"))
    assert GradeConfig().isolation_mode() == "none"
    with pytest.raises(RuntimeError, match="require-isolation: bubblewrap"):
        GradeConfig(require_isolation=True).isolation_mode()


@pytest.mark.slow
def test_three_shards_merged_equal_one_run(graded, course, tmp_path):
    """``--shard K/3`` on three 'machines', then ``--merge``: the CSV is byte for byte one run's."""
    from autograder.grade import merge_shards

    shards = []
    for k in range(3):
        cfg = GradeConfig(**{**course["cfg"].__dict__, "workers": 2, "shard": f"{k}/3"})
        results, _ = grade_submissions(course["subs"], cfg, tmp_path / f"shard{k}")
        assert len(results) == 3
        shards.append(tmp_path / f"shard{k}")
    merge_shards(shards, tmp_path / "merged", A)
    one = (course["root"] / "out1" / "grades.csv").read_bytes()
    assert (tmp_path / "merged" / "grades.csv").read_bytes() == one
    assert sorted(p.name for p in (tmp_path / "merged" / "feedback").glob("*.html")) == sorted(
        f"{s}.html" for s in EXPECTED)


@pytest.mark.slow
def test_a_killed_run_keeps_what_it_finished(graded, course, tmp_path):
    """SIGTERM halfway through (a scheduler's time limit): the finished submissions' records stay
    (no CSV yet); the same command then grades only the rest and writes the same CSV as an
    uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "autograder.grade", str(course["subs"]), "--assignment", A,
           "--source", str(course["cfg"].source_dir), "--workers", "1", "--cell-timeout", "8",
           "--submission-timeout", "120", "--no-progress", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and len(list(out.glob("records/*.json"))) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=180)
    kept = sorted(p.stem for p in out.glob("records/*.json"))
    assert 3 <= len(kept) < 9, kept
    assert not (out / "grades.csv").exists()
    again = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(kept)} of 9 submissions already graded" in again.stdout
    assert (out / "grades.csv").read_text() == (course["root"] / "out1" / "grades.csv").read_text()
    assert sorted(p.stem for p in out.glob("feedback/*.html")) == sorted(
        p.stem for p in (course["root"] / "out1").glob("feedback/*.html"))


@pytest.mark.slow
def test_a_changed_hand_in_is_graded_again(graded, course, tmp_path):
    """Records are keyed by the hand-in's bytes: a rerun after one student re-submitted grades
    that student only."""
    subs = tmp_path / "subs"
    shutil.copytree(course["subs"] / "complete", subs / "complete")
    shutil.copytree(course["subs"] / "buggy_add", subs / "buggy_add")
    cfg, out = course["cfg"], tmp_path / "out"
    first = {r.student: r for r in grade_submissions(subs, cfg, out)[0]}
    shutil.copy(course["subs"] / "complete" / f"{A}.ipynb", subs / "buggy_add" / f"{A}.ipynb")
    again = {r.student: r for r in grade_submissions(subs, cfg, out)[0]}
    assert first["buggy_add"].scores["tiny/test_add"] == 0 and again["buggy_add"].scores["tiny/test_add"] == 2
    assert again["complete"].wall_s == first["complete"].wall_s  # the record, not a new grading
