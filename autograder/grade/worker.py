"""The per-submission worker: ``python -m autograder.grade --worker-job JOB.json``.

Runs in its own process (inside the sandbox and the limits of :func:`autograder.sandbox.run_limited`)
and grades one student in a private course: places the notebook at
``submitted/{student}/{assignment}/{notebook}.ipynb`` and runs nbgrader's ``autograde`` and
``generate_feedback`` through its Python API, with the engine's steps in nbgrader's chains
(:mod:`autograder.grade.preprocessors`: metadata repair, the judge, feedback banner).
nbgrader overwrites locked and test cells (hidden tests included) from the gradebook, so the tests
come from the instructor's source, never from the student's file. Writes ``result.json`` (scores,
status, notes, timings, the judge's records) and ``feedback.html`` (the student's page) into the
course.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from autograder.grade.config import STATUS_OK, GradeConfig, Status
from autograder.grade.outputs import banner_data
from autograder.grade.preprocessors import STEP_REPAIR, read_report

FEEDBACK_PAGE = "feedback.html"  # the student's page, in the worker's course folder
REPORT = "steps.jsonl"  # what the preprocessors did (autograder.grade.preprocessors.read_report)
RECORDS = "judge.jsonl"  # the judge's record of every graded test cell


def tail(text: Optional[str], n: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


def worker_main(job_path: Path) -> int:
    """Autograde one student in a private course; write ``result.json`` next to the job."""
    t_start = time.perf_counter()
    out_epoch = time.time()
    job = json.loads(Path(job_path).read_text())
    cfg = GradeConfig.from_json(job["cfg"])
    course = Path(job["course"])
    out = {"status": STATUS_OK, "reason": "", "scores": {}, "notes": [], "feedback": None,
           "timings": {"worker_start_epoch": out_epoch}}
    result_path = Path(job["result"])
    _grade(job, cfg, course, out, t_start)  # an exception: no result, the parent reports a crash
    out["timings"]["worker_total"] = time.perf_counter() - t_start
    out["timings"]["worker_end_epoch"] = time.time()
    result_path.write_text(json.dumps(out))
    return 0


def _place(job: dict, cfg: GradeConfig, course: Path, out: dict) -> Optional[list]:
    """Put the student's notebooks where nbgrader looks; ``[(file name, notebook name)]`` or
    None when there is nothing to grade (``out`` then says why)."""
    import nbformat

    submitted = [Path(p) for p in job["submission"]]
    src_nbs = job["source_notebooks"]
    if not submitted:
        out.update(status=Status.NO_SUBMISSION, reason="no .ipynb file found in the student's folder")
        return None
    if len(submitted) > 1 and not all(p.stem in src_nbs for p in submitted):
        names = ", ".join(p.name for p in submitted)
        out.update(status=Status.UNREADABLE,
                   reason=f"several notebooks and none named as expected ({names})")
        return None
    dest_dir = course / "submitted" / job["student"] / cfg.assignment
    dest_dir.mkdir(parents=True, exist_ok=True)
    placed = []
    for path in submitted:
        name = path.stem if path.stem in src_nbs else next(iter(src_nbs))
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:
            out.update(status=Status.UNREADABLE, reason=f"cannot read '{path.name}' as a notebook: {exc}")
            return None
        nbformat.write(nb, str(dest_dir / f"{name}.ipynb"))
        placed.append((path.name, name))
    return placed


def _grade(job: dict, cfg: GradeConfig, course: Path, out: dict, t_start: float) -> None:
    from nbgrader.apps import NbGraderAPI

    student, assignment = job["student"], cfg.assignment
    timings = out["timings"]
    placed = _place(job, cfg, course, out)
    if placed is None:
        return
    report, records_path = course / REPORT, course / RECORDS
    steps = {"report": str(report), "source_notebooks": job["source_notebooks"]}
    # the judge's socket in the runtime folder, which the sandboxed kernel sees (engine.py)
    judge = {"records": str(records_path), "socket_dir": str(course / ".runtime"),
             "service": job.get("judge_service", "")}
    api = NbGraderAPI(config=cfg.nbgrader_config(course, job.get("kernel_name"), steps={**steps, **judge}))
    timings["worker_setup"] = time.perf_counter() - t_start
    t0 = time.perf_counter()
    res = api.autograde(assignment, student, force=True, create=True)
    timings["autograde"] = time.perf_counter() - t0
    if not res.get("success", False):
        out.update(status=Status.ERROR,
                   reason="nbgrader autograde failed: " + tail(res.get("error") or res.get("log"), 1500))
    records = read_report(report)
    for file_name, name in placed:
        if name != Path(file_name).stem:
            out["notes"].append(f"notebook '{file_name}' graded as '{name}.ipynb'")
        out["notes"].extend(n for r in records if r["step"] == STEP_REPAIR and r["notebook"] == name
                            for n in r["notes"])
    out["judge"] = read_report(records_path)
    # scores: whatever the gradebook holds (also after a partial failure)
    try:
        out["scores"] = scores_from_gradebook(course, assignment, student)
    except Exception as exc:
        out["scores"] = {}
        if out["status"] == STATUS_OK:
            out.update(status=Status.ERROR, reason=f"no grades recorded: {exc}")
    out["notes"].extend(execution_notes(course, assignment, student, cfg))
    if out["scores"]:
        t0 = time.perf_counter()
        banner = banner_data(assignment, sum(out["scores"].values()), job["max_total"], out["status"],
                             out["reason"], out["notes"])
        api = NbGraderAPI(config=cfg.nbgrader_config(course, steps={**steps, "banner": banner}))
        fb = api.generate_feedback(assignment, student, force=True)
        htmls = sorted((course / "feedback" / student / assignment).glob("*.html"))
        if fb.get("success", False) and htmls:
            page = course / FEEDBACK_PAGE
            if len(htmls) == 1:
                htmls[0].replace(page)
            else:
                page.write_text("\n".join(h.read_text(encoding="utf-8") for h in htmls), encoding="utf-8")
            out["feedback"] = str(page)
        else:
            out["notes"].append("feedback generation failed: " + tail(fb.get("error") or fb.get("log"), 500))
        timings["feedback"] = time.perf_counter() - t0


def scores_from_gradebook(course: Path, assignment: str, student: str) -> dict:
    from nbgrader.api import Gradebook

    from autograder.grade.config import COURSE_ID

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        sub = gb.find_submission(assignment, student)
        for nb in sub.notebooks:
            for g in nb.grades:
                scores[f"{nb.name}/{g.name}"] = float(g.score or 0.0)
    return scores


def execution_notes(course: Path, assignment: str, student: str, cfg: GradeConfig) -> list:
    """Name the cells that hit the per-cell time-out or tried to end the kernel, from the
    autograded notebook."""
    import nbformat

    notes = []
    for path in sorted((course / "autograded" / student / assignment).glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for i, cell in enumerate(nb.cells):
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", f"cell {i}")
            for o in cell.get("outputs", []):
                if o.get("output_type") != "error":
                    continue
                if o.get("ename") == "CellTimeoutError":
                    notes.append(f"{path.stem}: '{gid}' stopped after the {cfg.cell_timeout_s} s "
                                 "per-cell time-out")
                elif o.get("ename") == "KernelExitBlocked":
                    what = (o.get("evalue") or "").split(" would end", 1)[0] or "exit()"
                    notes.append(f"{path.stem}: code run by '{gid}' called {what}, which would have "
                                 "ended the kernel and zeroed the notebook; blocked while grading "
                                 "(the cell stopped there, the rest of the notebook ran): remove it")
    return notes
