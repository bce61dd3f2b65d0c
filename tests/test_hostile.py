"""The hostile batch: every broken or hostile submission is graded, none breaks the batch.

One run of the grading engine (``python -m autograder.grade``, two workers, per-cell time-out
20 s, per-submission 120 s, memory cap 3 GB; ``CFGFLOW_HOSTILE_CELL_TIMEOUT`` /
``CFGFLOW_HOSTILE_SUBMISSION_TIMEOUT`` raise the time-outs on a loaded machine) grades the hostile cases of
:mod:`autograder.hostile` together with the complete solution and the untouched release. To fit
a few minutes on two cores, source and release are trimmed of the ungraded demonstration cells
(figures, the GMM training run; :func:`autograder.hostile.trim_for_ci`); every solution, test
and import cell stays. A second run grades the complete solution alone.

``CFGFLOW_HOSTILE_ONLY=tamper_check,sys_exit`` grades only those cases (plus the two controls);
the outcome tests of the other cases are then skipped.

The escape attempts aim at planted secrets: a fake ``~/.ssh/id_rsa`` in a temporary home (the
grading runs with ``HOME`` pointing there; the real home is never touched), a file in the
instructor's source folder, a file in another student's folder, a TCP port this test listens on
(127.0.0.1 only; the outside address 10.255.255.1 gets a 1 s connect time-out and no traffic).
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from autograder.hostile import Targets, build_cases, parts_of, trim_for_ci, write_batch
from autograder.sandbox import bwrap_path

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "01_cfg"
# Small limits, as the brief of the suite asks; on a loaded shared machine the imports cell alone can
# pass 20 s, so both time-outs can be raised through the environment without editing the test.
CELL_TIMEOUT = os.environ.get("CFGFLOW_HOSTILE_CELL_TIMEOUT", "20")
SUBMISSION_TIMEOUT = os.environ.get("CFGFLOW_HOSTILE_SUBMISSION_TIMEOUT", "120")
ONLY = [n for n in os.environ.get("CFGFLOW_HOSTILE_ONLY", "").split(",") if n.strip()] or None
LIMITS = ["--cell-timeout", CELL_TIMEOUT, "--submission-timeout", SUBMISSION_TIMEOUT, "--mem-mb", "3000"]
_SRC = REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
_REL = REPO / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

pytestmark = pytest.mark.skipif(not (_SRC.exists() and _REL.exists()), reason="assignment notebooks missing")


def _read(path):
    return nbformat.read(str(path), as_version=4)


SECRETS = {"ssh": "SSH-KEY-SECRET-91bc", "source": "SOURCE-SECRET-7f3a", "other": "OTHER-STUDENT-SECRET-55d0"}


def _grade(subs: Path, source_dir: Path, out: Path, *extra: str, home: Path = None) -> dict:
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = str(home)
    env.setdefault("CFGFLOW_OFFLINE", "1")
    env.setdefault("CFGFLOW_DATA", "/tmp/mnistcache")
    cmd = [sys.executable, "-m", "autograder.grade", str(subs), "--assignment", ASSIGNMENT,
           "--source", str(source_dir), "--workers", "2", "--out", str(out), "--no-progress", *LIMITS, *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout)
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {r["student"]: r for r in rows}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    src, rel = trim_for_ci(_read(_SRC)), trim_for_ci(_read(_REL))
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(src, str(root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    # planted secrets (see the module's docstring)
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SECRETS["ssh"])
    (root / "source" / ASSIGNMENT / "answers.txt").write_text(SECRETS["source"])
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    connections = []

    def accept():
        while True:
            try:
                connections.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    other = root / "subs" / "complete" / "notes.txt"
    targets = Targets(files=["~/.ssh/id_rsa", str(root / "source" / ASSIGNMENT / "answers.txt")],
                      port=srv.getsockname()[1], other_submission=str(other))
    cases = write_batch(root / "subs", src, rel, ASSIGNMENT, only=ONLY, targets=targets)
    other.write_text(SECRETS["other"])
    try:
        batch = _grade(root / "subs", root / "source", root / "out", home=home)
    finally:
        srv.close()
    alone = _grade(root / "subs", root / "source", root / "out_alone", "--student", "complete")
    return {"cases": {c.name: c for c in cases}, "parts": parts_of(src), "batch": batch, "alone": alone,
            "root": root, "home": home, "connections": connections}


def test_builders_cover_the_brief():
    cases = build_cases(_read(_SRC), _read(_REL))
    names = {c.name for c in cases}
    assert names >= {"infinite_loop", "stuck_kernel", "memory_blowup", "sys_exit", "os_exit", "stderr_spam",
                     "import_error", "deleted_tests", "test_to_markdown", "metadata_stripped",
                     "duplicate_grade_id", "reordered", "renamed_file", "cuda_only", "nan_outputs",
                     "tamper_allclose", "tamper_check", "reference_import", "read_secrets",
                     "read_other_submission", "network", "write_outside", "fork_bomb", "disk_filler",
                     "zeros_stub", "forge_key", "judge_lines", "protocol_forger", "oversized", "oracle",
                     "lookup_table", "answer_reader", "flood"}
    for c in cases:
        nbformat.validate(c.nb)


@pytest.mark.slow
def test_every_submission_gets_a_row_with_a_score(graded):
    batch = graded["batch"]
    assert set(batch) - {"(max)"} == set(graded["cases"])
    for name, row in batch.items():
        float(row["total"])  # a number for everyone
        if name != "(max)" and row["status"] != "ok":
            assert row["reason"].strip(), f"{name}: status {row['status']} without a reason"


@pytest.mark.slow
def test_complete_solution_grade_is_the_same_alone(graded):
    b, a = graded["batch"]["complete"], graded["alone"]["complete"]
    p = graded["parts"]
    assert b["status"] == "ok"
    assert {g: b[g] for g in p.all_tests} == {g: a[g] for g in p.all_tests}
    assert float(b["total"]) == float(b["max_total"])


# Known holes found by this suite (xfail, strict: the mark must go once a hole is closed). The
# former ``tamper_check`` and key-stealing holes (a student cell rebinding ``check``, or reading
# the grading key out of its closure) are closed by the judge: scores are born outside the kernel.
_KNOWN_HOLES: dict = {}


def _case_names():
    if not (_SRC.exists() and _REL.exists()):
        return []
    names = [c.name for c in build_cases(_read(_SRC), _read(_REL))] + ["complete", "release"]
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=_KNOWN_HOLES[n]))
            if n in _KNOWN_HOLES else n for n in names]


@pytest.mark.slow
@pytest.mark.parametrize("name", _case_names())
def test_case_outcome(graded, name):
    if name not in graded["cases"]:
        pytest.skip(f"{name} not graded in this run (CFGFLOW_HOSTILE_ONLY)")
    case, row, p = graded["cases"][name], graded["batch"][name], graded["parts"]
    exp = case.expect
    info = f"{name}: {row['status']} {row['reason'][:300]} notes={row['notes'][:600]}"
    assert row["status"] in exp["status"], info
    for k in exp.get("zero", []):
        assert sum(float(row[g]) for g in p.tests[k]) == 0, info
    for k in exp.get("full", []):
        assert sum(float(row[g]) for g in p.tests[k]) == p.max_of(k), info
    for k in exp.get("below_full", []):
        assert sum(float(row[g]) for g in p.tests[k]) < p.max_of(k), info
    if "note" in exp:
        assert exp["note"].lower() in row["notes"].lower(), info
    if "at_most" in exp and exp["at_most"] in graded["batch"]:
        stub = graded["batch"][exp["at_most"]]
        for k, tests in enumerate(p.tests):
            assert sum(float(row[g]) for g in tests) <= sum(float(stub[g]) for g in tests) + 1e-9, (
                f"{name} earns more than {exp['at_most']} on part {k}: {info}")
    if row["status"] == "ok" and float(row["total"]) < float(row["max_total"]):
        # points lost: the student's feedback says why (the failing test's output)
        fb = graded["root"] / "out" / "feedback" / f"{name}.html"
        assert fb.exists(), info


@pytest.mark.slow
def test_escape_attempts_leak_nothing(graded):
    """No planted secret in any feedback page or the CSV; no connection arrived; no file escaped."""
    root = graded["root"]
    texts = [(root / "out" / "grades.csv").read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in (root / "out" / "feedback").glob("*.html")]
    for name, secret in SECRETS.items():
        assert not any(secret in t for t in texts), f"the {name} secret leaked into the results"
    assert not graded["connections"], "a submission connected to a port on the grading machine"
    assert not (root / "subs" / "escaped.txt").exists() and not (root / "escaped.txt").exists()
    assert not (graded["home"] / "cfgflow-escaped.txt").exists()


@pytest.mark.slow
def test_isolation_column(graded):
    want = "bwrap" if bwrap_path() else "none"
    assert {r["isolation"] for n, r in graded["batch"].items() if n != "(max)"} == {want}


def _page(graded, name: str) -> str:
    import html
    import re

    raw = (graded["root"] / "out" / "feedback" / f"{name}.html").read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def _answer_lines() -> set:
    """Distinctive lines of the reference, the hidden configurations, the recorders, the catalogs
    and the judge: none is in the student package, the release, the solutions or the hostile
    cases (a hand-in's own code is on its page), so none may reach a feedback page."""
    public = ""
    for path in [*(REPO / "cfgflow").rglob("*.py"), *(REPO / "solutions").glob("*/*.py"),
                 *(REPO / "notebooks").glob("*/*.ipynb"), *(REPO / "autograder" / "hostile").glob("*.py")]:
        public += path.read_text(encoding="utf-8")
    found = set()
    for folder in ("cfgflow_ref", "autograder/checks", "autograder/judge", "autograder/catalog"):
        for path in (REPO / folder).glob("*.py"):
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if len(line) >= 30 and not line.startswith("#") and line not in public:
                    found.add(line)
    return found


@pytest.mark.slow
def test_no_feedback_page_holds_an_answer(graded):
    """The answer-key reader finds nothing to print (its imports fail, its files do not exist in
    the kernel's view); no page of the batch holds a line of the reference's source, the hidden
    configurations' or recorders' code, or the judge's."""
    if "answer_reader" not in graded["cases"]:
        pytest.skip("answer_reader not graded in this run")
    reader = _page(graded, "answer_reader")
    assert "answer-key reader found 0 modules" in reader
    assert not any(f"LEAKED {name}" in reader for name in ("cfgflow_ref", "autograder", "solutions"))
    lines = _answer_lines()
    assert len(lines) > 200  # the check is not vacuous
    for fb in (graded["root"] / "out" / "feedback").glob("*.html"):
        text = _page(graded, fb.stem)
        leaked = [line for line in lines if line in text]
        assert not leaked, f"{fb.name} holds answer lines: {leaked[:3]}"


@pytest.mark.slow
def test_flood_is_capped_on_its_page(graded):
    if "flood" not in graded["cases"]:
        pytest.skip("flood not graded in this run")
    page = graded["root"] / "out" / "feedback" / "flood.html"
    assert page.stat().st_size < 2_000_000, page.stat().st_size
    assert "the grader cut" in _page(graded, "flood")


@pytest.mark.slow
def test_the_judge_answers_no_oracle(graded):
    """20 queries outside a test cell and one from inside the graded method: all refused, while the
    genuine checks of the same notebook earn full marks."""
    if "oracle" not in graded["cases"]:
        pytest.skip("oracle not graded in this run")
    text = _page(graded, "oracle")
    assert "oracle queries refused: 20" in text and "ORACLE ANSWERED" not in text


@pytest.mark.slow
def test_forged_lines_never_reach_a_page_as_scores(graded):
    """Each test cell of the forgers shows the judge's record (no session: 0), not the full-marks
    lines the forged check printed there."""
    for name in ("forge_key", "judge_lines"):
        if name not in graded["cases"]:
            continue
        text = _page(graded, name)
        assert text.count("did not reach the judge") == len(graded["parts"].all_tests), name
        assert "PASS  every sub-check" not in text, name


@pytest.fixture(scope="module", params=["02_dit", "03_latent"])
def graded_reader(request, tmp_path_factory):
    """A later assignment's complete solution with the answer-key reader's cell, graded by the
    engine (the reference of every assignment is one package: a reader in any of them must find
    nothing)."""
    from autograder.hostile import _READER, _append, _escape, complete_submission

    a = request.param
    src = trim_for_ci(_read(REPO / "solutions" / a / f"{a}.ipynb"))
    rel = trim_for_ci(_read(REPO / "notebooks" / a / f"{a}.ipynb"))
    root = tmp_path_factory.mktemp(f"hostile_{a}")
    (root / "source" / a).mkdir(parents=True)
    nbformat.write(src, str(root / "source" / a / f"{a}.ipynb"))
    nb = complete_submission(src, rel)
    first = next(c.metadata["nbgrader"]["grade_id"] for c in src.cells
                 if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    _append(nb, first, _escape(_READER))
    (root / "subs" / "answer_reader").mkdir(parents=True)
    nbformat.write(nb, str(root / "subs" / "answer_reader" / f"{a}.ipynb"))
    env = {**os.environ, "CFGFLOW_OFFLINE": "1"}
    env.setdefault("CFGFLOW_DATA", "/tmp/mnistcache")
    cmd = [sys.executable, "-m", "autograder.grade", str(root / "subs"), "--assignment", a, "--source",
           str(root / "source"), "--workers", "1", "--out", str(root / "out"), "--no-progress", *LIMITS]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(root / "out" / "grades.csv", newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["student"] == "answer_reader")
    return {"row": row, "page": root / "out" / "feedback" / "answer_reader.html"}


@pytest.mark.slow
def test_answer_reader_finds_nothing_in_later_assignments(graded_reader):
    """In 02_dit and 03_latent too (whose references the 01_cfg reader would have handed back
    weeks early): full marks, nothing found, no answer line on the page."""
    import html
    import re

    row = graded_reader["row"]
    assert row["status"] == "ok" and float(row["total"]) == float(row["max_total"]), row
    text = html.unescape(re.sub(r"<[^>]+>", "", graded_reader["page"].read_text(encoding="utf-8")))
    assert "answer-key reader found 0 modules" in text
    assert not any(f"LEAKED {name}" in text for name in ("cfgflow_ref", "autograder", "solutions"))
    leaked = [line for line in _answer_lines() if line in text]
    assert not leaked, leaked[:3]
