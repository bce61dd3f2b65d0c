"""After grading: the class report (from the judge's records), similarity (copydetect) and the
LMS gradebook (Canvas import CSV). Fast tests use synthetic records; one slow test builds a
generated class with planted copies (autograder/examples/cohort.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder import lms, report, similarity
from autograder.grade import records
from autograder.grade.outputs import CellInfo, StudentResult, write_csv

A = "01_cfg"
NO_SESSION = "the test cell's check did not reach the judge"
CELLS = [CellInfo(A, "test_cfg_loss", 4.0), CellInfo(A, "test_cfg_loss_hidden", 6.0),
         CellInfo(A, "test_mlp_field", 2.0), CellInfo(A, "test_mlp_field_hidden", 3.0)]


def _rec(gid, part, hidden, points, fails=(), status="judged"):
    subs = [("loss", 2.0), ("labels", 1.0)] if part == "cfg_loss" else [("shape", 1.0), ("values", 2.0)]
    results = [{"name": n, "weight": w, "passed": n not in dict(fails),
                "message": dict(fails).get(n, "")} for n, w in subs]
    earned = 0.0 if status != "judged" else round(
        points * sum(w for n, w in subs if n not in dict(fails)) / sum(w for _, w in subs), 2)
    return {"notebook": A, "grade_id": gid, "part": part, "hidden": hidden, "points": points,
            "earned": earned, "status": status,
            "lines": [] if status == "judged" else [f"[{part}] FAIL  {NO_SESSION}"],
            "results": results if status == "judged" else []}


def _student(name, cfg_fail=(), mlp_fail=(), status="ok", mlp_status="judged", wall=20.0):
    judge = [_rec("test_cfg_loss", "cfg_loss", False, 4.0, cfg_fail),
             _rec("test_cfg_loss_hidden", "cfg_loss", True, 6.0, cfg_fail),
             _rec("test_mlp_field", "mlp_field", False, 2.0, mlp_fail, mlp_status),
             _rec("test_mlp_field_hidden", "mlp_field", True, 3.0, mlp_fail, mlp_status)]
    if status != "ok":
        judge = []
    scores = ({f"{A}/{r['grade_id']}": r["earned"] for r in judge}
              or {f"{A}/{c.grade_id}": 0.0 for c in CELLS})
    return StudentResult(name, status=status, scores=scores, judge=judge, isolation="bwrap", wall_s=wall,
                         peak_rss_mb=900.0, reason="" if status == "ok" else "grading stopped")


INVERTED = [("labels", "null mask inverted: 0.71 of the labels dropped, expected 0.3")]
INVERTED2 = [("labels", "null mask inverted: 0.69 of the labels dropped, expected 0.3")]


def _class():
    return [_student("ann", INVERTED), _student("bob", INVERTED2),
            _student("cyd", mlp_fail=[("values", "max error 1.5e-01 at t=0")]),
            _student("dan", mlp_status="no_session"), _student("eve"),
            _student("fay", status="timeout", wall=1200.0)]


def test_normalise_merges_numbers_keeps_names():
    assert report.normalise("got 0.31, expected 1e-3 (shape (3, 28, 28))") == \
        "got #, expected # (shape (#, #, #))"
    assert (report.normalise("scale dim**-0.5 instead of head_dim**-0.5")
            == "scale dim**# instead of head_dim**#")
    assert report.normalise("conv2d on x1 at 0x7f3a") == "conv2d on x1 at #"


def test_summary_ranks_named_mistakes_with_students():
    data = report.summarize(_class(), CELLS, A)
    assert data["students"] == 6 and data["status"] == {"ok": 5, "timeout": 1}
    cfg, mlp = data["parts"]
    assert cfg["part"] == "cfg_loss" and cfg["points"] == 10 and mlp["points"] == 5
    top = cfg["mistakes"][0]  # two messages differing in a number: one mistake, two students
    assert top["message"] == "null mask inverted: # of the labels dropped, expected #"
    assert top["students"] == ["ann", "bob"] and top["count"] == 2
    assert top["share"] == pytest.approx(2 / 6, abs=1e-4)
    labels = next(s for s in cfg["subchecks"] if s["name"] == "labels")
    assert labels["visible"] == {"failed": 2, "judged": 5, "rate": 0.4} and labels["hidden"]["rate"] == 0.4
    # a test cell the judge never judged is a mistake of its own, not dropped
    assert [m["subcheck"] for m in mlp["mistakes"]] == [report.NO_VERDICT, "values"]
    assert mlp["mistakes"][0]["students"] == ["dan"]
    assert sum(cfg["histogram"]["counts"]) == 6 and cfg["full_marks"] == 3
    no_verdict = next(s for s in mlp["subchecks"] if s["name"] == report.NO_VERDICT)
    assert no_verdict["visible"] == {"failed": 1, "judged": 5, "rate": 0.2}  # of every test cell
    fay = next(s for s in data["submissions"] if s["student"] == "fay")
    assert fay == {**fay, "status": "timeout", "wall_s": 1200.0, "isolation": "bwrap", "total": 0.0}


def test_one_message_from_several_subchecks_is_one_mistake():
    raised = "your code raised NotImplementedError: did you fill in the cell?"
    gil = _student("gil", [("loss", raised), ("labels", raised)])
    data = report.summarize([gil, _student("hal")], CELLS, A)
    (m,) = data["parts"][0]["mistakes"]
    assert m["subcheck"] == "labels, loss" and m["students"] == ["gil"] and m["share"] == 0.5


def test_report_page_is_self_contained(tmp_path):
    data = report.write(tmp_path, _class(), CELLS, A)
    page = (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(data))
    assert page.count("data:image/png;base64,") >= 4  # overview, mistakes, two parts, runs
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "null mask inverted: # of the labels dropped" in page and "ann, bob" in page


def test_report_rebuilds_from_records(tmp_path):
    for r in _class():
        records.write(tmp_path, r, "k")
    assert [r.student for r in records.load_all(tmp_path)] == ["ann", "bob", "cyd", "dan", "eve", "fay"]
    assert report.main([str(tmp_path)]) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["assignment"] == A and data["max_total"] == 15
    assert data["parts"][0]["mistakes"][0]["count"] == 2


# --------------------------------------------------------------------------------------------
# similarity

GIVEN = "import torch\n\ndef helper(x):\n    return torch.tanh(x) * 2 + torch.sigmoid(x) - x.mean(dim=0)\n"
WRITTEN = """
class Trainer:
    def loss(self, x, y):
        mask = torch.rand(y.shape[0]) < self.eta
        y = torch.where(mask, torch.full_like(y, self.null), y)
        t = torch.rand(x.shape[0], 1) * (1 - self.eps)
        z = torch.randn_like(x)
        xt = t * x + (1 - t) * z
        return ((self.model(xt, t, y) - (x - z)) ** 2).mean()
"""
OTHER = """
class Trainer:
    def loss(self, data, labels):
        keep = []
        for i in range(len(labels)):
            keep.append(labels[i] if torch.rand(()) > self.eta else self.null)
        labels = torch.stack(keep)
        noise = torch.randn_like(data)
        times = torch.rand(len(data), 1).clamp(max=1 - self.eps)
        mixed = times * data + (1 - times) * noise
        err = self.model(mixed, times, labels) - data + noise
        return err.pow(2).mean()
"""


def _nb(solution, test="check('cfg_loss', Trainer, points=4)"):
    cells = [new_code_cell(GIVEN), new_code_cell(solution), new_code_cell(test)]
    cells[0].metadata = {"nbgrader": {"grade_id": "imports", "solution": False, "grade": False}}
    cells[1].metadata = {"nbgrader": {"grade_id": "trainer", "solution": True, "grade": False},
                         "cfgflow": {"part": "cfg_loss"}}
    cells[2].metadata = {"nbgrader": {"grade_id": "test_cfg_loss", "solution": False, "grade": True,
                                      "points": 4}, "cfgflow": {"part": "cfg_loss"}}
    return new_notebook(cells=cells)


def test_graded_code_is_the_solution_cells():
    nb = _nb(WRITTEN)
    assert similarity.solution_parts(nb) == {"trainer": "cfg_loss"}
    code = similarity.graded_code(nb, {"trainer": "cfg_loss"})
    assert "mask = torch.rand" in code and "helper" not in code and "check(" not in code
    bare = _nb(WRITTEN)
    for c in bare.cells:
        c.metadata = {}
    assert "helper" in similarity.graded_code(bare, {"trainer": "cfg_loss"})  # metadata gone: all code


def test_similarity_finds_copies_not_boilerplate(tmp_path):
    subs = tmp_path / "subs"
    hand = {"orig": WRITTEN, "copier": WRITTEN.replace("mask", "m").replace("\n", "\n# mine\n", 2),
            "other": OTHER, "given_only": "raise NotImplementedError()\n", "refcopy": OTHER + "\n"}
    files = {}
    for s, code in hand.items():
        p = subs / s / f"{A}.ipynb"
        p.parent.mkdir(parents=True)
        nbformat.write(_nb(code), str(p))
        files[s] = [p]
    against = tmp_path / "public"
    against.mkdir()
    (against / "lab_solution.py").write_text(OTHER)
    release = _nb("raise NotImplementedError()\n")
    root = similarity.extract(tmp_path / "out", files, {A: _nb(WRITTEN)}, [release], against)
    sim = similarity.compare(root)
    assert sim.known == ["[known] lab_solution.py", similarity.REFERENCE]
    assert sim.empty == ["given_only"]  # only the release's code: nothing of its own
    top = {frozenset((p.a, p.b)) for p in sim.pairs if p.score > 0.9}
    # copier/orig and other/refcopy: each both as close to one known solution, listed with it
    assert top == {frozenset(x) for x in [("orig", "[reference]"), ("copier", "[reference]"),
                                          ("other", "[known] lab_solution.py"),
                                          ("refcopy", "[known] lab_solution.py")]}
    assert sim.explained == 2
    assert all(p.score < 0.5 for p in sim.pairs if frozenset((p.a, p.b)) not in top)
    page = (tmp_path / "out" / sim.pairs[0].page).read_text()
    assert "<mark>" in page and "not proof of copying" in page
    data = report.write(tmp_path / "out", _class(), CELLS, A, sim)
    assert data["similarity"]["pairs"][0]["score"] == 1.0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "accuses nobody" in html and sim.pairs[0].page in html


def test_merge_reads_shard_records_and_code(tmp_path):
    """--merge rebuilds the report of all shards: the judge's records and the graded code."""
    from nbgrader.api import Gradebook

    from autograder.grade.merge import merge_shards

    people = _class()
    for k, shard_people in enumerate([people[:3], people[3:]]):
        shard = tmp_path / f"shard{k}"
        shard.mkdir()
        with Gradebook(f"sqlite:///{shard / 'gradebook.db'}", "cfgflow") as gb:
            gb.add_assignment(A)
            nb = gb.add_notebook(A, A)
            for c in CELLS:
                gb.add_grade_cell(c.grade_id, A, A, max_score=c.max_score, cell_type="code")
            del nb
        write_csv(shard / "grades.csv", shard_people, CELLS, A)
        for r in shard_people:
            records.write(shard, r, "k")
            code = shard / "similarity" / "code"
            code.mkdir(parents=True, exist_ok=True)
            own = WRITTEN if r.student in ("ann", "eve") else f"{r.student} = 1\n"
            (code / f"{r.student}.py").write_text(own)
    merged = merge_shards([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "out", A)
    assert [r.student for r in merged] == ["ann", "bob", "cyd", "dan", "eve", "fay"]
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["parts"][0]["mistakes"][0]["students"] == ["ann", "bob"]  # from the shards' records
    assert data["submissions"][-1]["wall_s"] == 1200.0
    assert {"ann", "eve"} == {data["similarity"]["pairs"][0]["a"], data["similarity"]["pairs"][0]["b"]}
    assert (tmp_path / "out" / "records" / "fay.json").exists()


def test_against_is_a_grade_option():
    from autograder.grade.cli import parser
    from autograder.grade.config import config_from_args

    cfg = config_from_args(parser().parse_args(["subs", "--against", "/tmp/public"]))
    assert cfg.against == Path("/tmp/public")
    assert config_from_args(parser().parse_args(["subs"])).against is None
    from autograder.grade.engine import grade_submissions

    with pytest.raises(ValueError, match="--against /nonexistent: not a folder"):
        grade_submissions(Path("subs"), config_from_args(
            parser().parse_args(["s", "--against", "/nonexistent"])))


# --------------------------------------------------------------------------------------------
# LMS

ROSTER = """Student,ID,SIS User ID,SIS Login ID,Section,student_id
    Points Possible,,,,,
"Lovelace, Ada",101,S101,ada,Sec A,ann
"Babbage, Charles",102,S102,cb,Sec A,bob
"Noether, Emmy",103,S103,emmy,Sec B,zoe
"""


def _canvas_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_canvas_csv_from_engine_outputs(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    write_csv(out / "grades.csv", _class(), CELLS, A)
    (tmp_path / "roster.csv").write_text(ROSTER)
    assert lms.main([str(out), "--roster", str(tmp_path / "roster.csv"), "--out", str(tmp_path / "c.csv"),
                     "--plain", str(tmp_path / "p.csv"), "--canvas-name", "Lab 1", "--canvas-id", "777"]) == 0
    rows = _canvas_rows(tmp_path / "c.csv")
    # Canvas's gradebook import columns, 'Name (id)' for the assignment, the Points Possible row
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 1 (777)"]
    assert rows[1] == ["    Points Possible", "", "", "", "", "15"]
    by_name = {r[0]: r for r in rows[2:]}
    assert by_name["Lovelace, Ada"][1:] == ["101", "S101", "ada", "Sec A", by_name["Lovelace, Ada"][5]]
    assert float(by_name["Lovelace, Ada"][5]) == pytest.approx(_class()[0].total())
    assert by_name["Noether, Emmy"][5] == ""  # in the roster, no grade: an empty cell, listed
    err = capsys.readouterr().err
    assert "not in the roster" in err and "cyd, dan, eve, fay" in err
    assert "without a grade" in err and "zoe" in err
    plain = {r["student"]: r for r in csv.DictReader(open(tmp_path / "p.csv"))}
    assert plain["fay"]["match"] == "not in roster" and plain["fay"]["Lab 1 status"] == "timeout"
    assert plain["zoe"]["match"] == "no grade" and plain["ann"]["match"] == "ok"
    assert len(plain) == 1 + 7  # the (max) row and everyone of either side


def test_roster_key_falls_back_to_sis_login(tmp_path):
    (tmp_path / "r.csv").write_text("Student,ID,SIS User ID,SIS Login ID,Section\nA,1,S1,ann,X\n")
    assert lms.read_roster(tmp_path / "r.csv") == {"ann": {"Student": "A", "ID": "1", "SIS User ID": "S1",
                                                           "SIS Login ID": "ann", "Section": "X"}}
    with pytest.raises(ValueError, match="--key"):
        lms.read_roster(tmp_path / "r.csv", key="netid")


def _course(tmp_path):
    import warnings

    from nbgrader.api import Gradebook

    db = tmp_path / "gradebook.db"
    with Gradebook(f"sqlite:///{db}", "cfgflow") as gb, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not in session.*")  # nbgrader's, harmless
        gb.add_assignment(A)
        gb.add_notebook(A, A)
        gb.add_grade_cell("test_cfg_loss", A, A, max_score=4, cell_type="code")
        for s in ("ann", "bob", "cyd"):
            gb.add_student(s)
        for s, score in (("ann", 3.5), ("cyd", 4.0)):
            gb.add_submission(A, s)
            gb.find_grade("test_cfg_loss", A, A, s).auto_score = score
        gb.db.commit()
    return db


def test_canvas_export_plugin(tmp_path):
    from nbgrader.api import Gradebook

    db = _course(tmp_path)
    (tmp_path / "roster.csv").write_text(ROSTER)
    plugin = lms.CanvasExportPlugin(to=str(tmp_path / "c.csv"), roster=str(tmp_path / "roster.csv"),
                                    plain=str(tmp_path / "p.csv"), canvas_ids={A: "42"})
    with Gradebook(f"sqlite:///{db}", "cfgflow") as gb:
        plugin.export(gb)
    rows = _canvas_rows(tmp_path / "c.csv")
    assert rows[0][-1] == "01_cfg (42)" and rows[1][-1] == "4"
    got = {r[0]: r[-1] for r in rows[2:]}
    assert got == {"Lovelace, Ada": "3.5", "Babbage, Charles": "", "Noether, Emmy": ""}  # bob: no submission
    plain = {r["student"]: r for r in csv.DictReader(open(tmp_path / "p.csv"))}
    assert plain["cyd"]["match"] == "not in roster" and plain["bob"]["01_cfg status"] == "no_submission"


def test_nbgrader_export_command_uses_the_plugin(tmp_path):
    _course(tmp_path)
    (tmp_path / "roster.csv").write_text(ROSTER)
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'cfgflow'\n")
    run = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--exporter",
                          "autograder.lms.CanvasExportPlugin", "--to", "canvas.csv",
                          "--CanvasExportPlugin.roster=roster.csv"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = _canvas_rows(tmp_path / "canvas.csv")
    assert rows[0][:5] == list(lms.CANVAS_COLUMNS) and rows[1][0] == lms.POINTS_POSSIBLE
    assert "not in the roster" in run.stderr and "cyd" in run.stderr


# --------------------------------------------------------------------------------------------
# a generated class


@pytest.mark.slow
def test_generated_class_ranks_planted_copies_first(tmp_path):
    """34 hand-ins of 02_dit from catalog mutants, alternatives and stubs, with 3 disguised copies of
    the reference and 3 of other students: every planted pair outranks every other pair."""
    from autograder.examples import cohort

    students = cohort.build_class(tmp_path / "handins", n=34, seed=3)
    results = cohort.records_for(students, seed=3)
    data, sim = cohort.class_report(tmp_path / "out", tmp_path / "handins", results)
    copies = [s for s in students if s.copy_of]
    planted = {frozenset((s.name, s.copy_of)) for s in copies}
    assert len(planted) == 6
    ranked = [frozenset((p.a, p.b)) for p in sim.pairs]
    assert sim.explained == 3  # the copies of the reference with each other: listed with it
    assert set(ranked[:len(planted)]) == planted, ranked[:len(planted) + 3]
    assert min(p.score for p in sim.pairs[:len(planted)]) > sim.pairs[len(planted)].score
    assert data["students"] == 34 and len(data["parts"]) == 7
    assert any(m["count"] >= 2 for p in data["parts"] for m in p["mistakes"])
    assert (tmp_path / "out" / "report.html").stat().st_size > 50_000
