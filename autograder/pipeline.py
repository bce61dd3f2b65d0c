"""The project's main job: release -> example submissions -> parallel autograde -> report.

    python -m autograder.pipeline                      # both assignments, into ./pipeline_out
    python -m autograder.pipeline --out OUT --workers 2 --assignments 01_cfg

1. Regenerates the student release from ``solutions/`` into a temporary folder
   (:func:`autograder.release.release`, nbgrader ``generate_assignment``).
2. Builds the example submissions from that release (:mod:`autograder.examples.build`):
   ``complete``, ``untouched`` and ``buggy`` per assignment (``--examples DIR`` grades a
   prepared folder instead, e.g. one written by ``python -m autograder.examples.build --out DIR``).
3. Autogrades them with the engine (:mod:`autograder.grade`): ``N`` worker processes, each
   submission in its own private nbgrader course.
4. Prints a per-student, per-question score table, checks the examples' expected outcome
   (complete: full marks; untouched: 0 on every graded cell; buggy: points lost exactly on the
   test cells of the parts its bugs break), and writes ``OUT/{assignment}/grades.csv``,
   ``OUT/{assignment}/feedback/{student}.html``, ``OUT/{assignment}/gradebook.db`` and
   ``OUT/summary.csv``. Exit status 1 when an expectation fails: the job doubles as the
   end-to-end test of notebooks, checks and grader.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import nbformat

from autograder.examples.build import BUGS, buggy_parts, build
from autograder.grade import (
    DEFAULT_SOURCE,
    CellInfo,
    GradeConfig,
    StudentResult,
    grade_submissions,
    score_table,
)
from cfgflow.course import ASSIGNMENTS, cell_part


def cell_parts(source_nb_path: Path) -> Dict[str, str]:
    """``{"{notebook}/{grade_id}": part}`` for grade cells with a part (``cfgflow.part`` metadata)."""
    nb = nbformat.read(str(source_nb_path), as_version=4)
    parts = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and cell_part(cell):
            parts[f"{source_nb_path.stem}/{meta['grade_id']}"] = cell_part(cell)
    return parts


def expectation_failures(assignment: str, results: Sequence[StudentResult], cells: Sequence[CellInfo],
                         source_dir: Path = DEFAULT_SOURCE) -> List[str]:
    """What is wrong with the examples' scores (empty list: all as expected)."""
    parts = cell_parts(Path(source_dir) / assignment / f"{assignment}.ipynb")
    broken = set(buggy_parts(assignment))
    by = {r.student: r for r in results}
    fails = []
    for c in cells:
        key = f"{c.notebook}/{c.grade_id}"
        if "complete" in by and by["complete"].scores[key] != c.max_score:
            fails.append(f"complete: {key} scored {by['complete'].scores[key]} of {c.max_score}")
        if "untouched" in by and by["untouched"].scores[key] != 0:
            fails.append(f"untouched: {key} scored {by['untouched'].scores[key]} (expected 0)")
        if "buggy" in by:
            got = by["buggy"].scores[key]
            if parts.get(key) in broken and not got < c.max_score:
                fails.append(f"buggy: {key} ({parts[key]}) kept full marks despite the bug")
            if parts.get(key) not in broken and got != c.max_score:
                fails.append(f"buggy: {key} ({parts.get(key)}) lost points ({got} of {c.max_score}) "
                             "but no bug touches it")
    for r in results:
        if r.student in ("complete", "untouched", "buggy") and r.status != "ok":
            fails.append(f"{r.student}: status {r.status}: {r.reason}")
    return fails


def run_pipeline(out_dir: Path, workers: Optional[int] = None,
                 assignments: Sequence[str] = ASSIGNMENTS, examples: Optional[Path] = None,
                 source_dir: Path = DEFAULT_SOURCE, progress: bool = True,
                 **grade_kwargs) -> Dict[str, dict]:
    """Run the main job; returns ``{assignment: {"results", "cells", "failures", "wall_s"}}``."""
    from autograder.release import release

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: Dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="cfgflow-pipeline-") as tmp:
        tmp = Path(tmp)
        if examples is None:
            t0 = time.perf_counter()
            release(list(assignments), out_dir=str(tmp / "release"), source_dir=str(source_dir))
            build(tmp / "release", source_dir, tmp / "examples", assignments)
            examples = tmp / "examples"
            print(f"release + examples regenerated in {time.perf_counter() - t0:.1f} s", flush=True)
        for a in assignments:
            cfg_kwargs = dict(assignment=a, source_dir=source_dir, progress=progress, **grade_kwargs)
            if workers:
                cfg_kwargs["workers"] = workers
            cfg = GradeConfig(**cfg_kwargs)
            t0 = time.perf_counter()
            results, cells = grade_submissions(Path(examples) / a, cfg, out_dir / a)
            wall = time.perf_counter() - t0
            fails = expectation_failures(a, results, cells, source_dir)
            report[a] = {"results": results, "cells": cells, "failures": fails, "wall_s": wall,
                         "workers": cfg.workers}
            print()
            print(score_table(results, cells, title=f"== {a} ({len(results)} submissions, "
                                                    f"{wall:.1f} s, {cfg.workers} workers)"))
            for r in results:
                for n in r.notes:
                    print(f"  note [{r.student}]: {n}")
            if a in BUGS:
                print("  buggy example: " + "; ".join(b.why for b in BUGS[a]))
            print("  expectations: " + ("OK" if not fails else "FAILED\n    " + "\n    ".join(fails)))
    write_summary(out_dir / "summary.csv", report)
    print(f"\nwrote {out_dir}/summary.csv and {out_dir}/<assignment>/grades.csv, feedback/, gradebook.db")
    return report


def write_summary(path: Path, report: Dict[str, dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["assignment", "student", "total", "max_total", "status", "wall_s", "peak_rss_mb"])
        for a, rep in report.items():
            mx = sum(c.max_score for c in rep["cells"])
            for r in rep["results"]:
                w.writerow([a, r.student, f"{r.total():g}", f"{mx:g}", r.status, f"{r.wall_s:.1f}",
                        f"{r.peak_rss_mb:.0f}"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("pipeline_out"))
    p.add_argument("--workers", type=int, default=None, help="default: os.cpu_count()")
    p.add_argument("--assignments", nargs="+", default=list(ASSIGNMENTS))
    p.add_argument("--examples", type=Path, default=None,
                   help="grade this prepared folder ({assignment}/{student}/...) instead of fresh examples")
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--cell-timeout", type=int, default=GradeConfig.cell_timeout_s)
    p.add_argument("--submission-timeout", type=float, default=GradeConfig.submission_timeout_s)
    p.add_argument("--mem-mb", type=int, default=GradeConfig.mem_mb)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out {args.out} exists and is not a directory")
    report = run_pipeline(args.out, args.workers, args.assignments, args.examples, args.source,
                          progress=not args.no_progress, cell_timeout_s=args.cell_timeout,
                          submission_timeout_s=args.submission_timeout, mem_mb=args.mem_mb)
    return 1 if any(rep["failures"] for rep in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
