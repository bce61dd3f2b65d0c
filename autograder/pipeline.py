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
import dataclasses
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
    add_config_options,
    config_from_args,
    grade_submissions,
    score_table,
)
from cfgflow.course import ASSIGNMENTS


def cell_parts(source_nb_path: Path) -> Dict[str, str]:
    """``{"{notebook}/{grade_id}": part}`` for the judged test cells
    (:func:`autograder.judge.preprocessors.graded_cells`: the ``cfgflow.part`` metadata)."""
    from autograder.judge.preprocessors import graded_cells

    nb = nbformat.read(str(source_nb_path), as_version=4)
    return {f"{source_nb_path.stem}/{gid}": spec.part for gid, spec in graded_cells(nb).items()}


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
    p.add_argument("--assignments", nargs="+", default=list(ASSIGNMENTS))
    p.add_argument("--examples", type=Path, default=None,
                   help="grade this prepared folder ({assignment}/{student}/...) instead of fresh examples")
    # the engine's options, from the one definition (autograder/grade/config.py)
    add_config_options(p, exclude=_NOT_OPTIONS, workers=None)
    args = p.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out {args.out} exists and is not a directory")
    try:
        cfg = config_from_args(args, exclude=_NOT_OPTIONS)  # checks the values, names a bad option
    except ValueError as exc:
        p.error(str(exc))
    grade_kwargs = {f: getattr(cfg, f) for f in _ENGINE_FIELDS}
    report = run_pipeline(args.out, args.workers and cfg.workers, args.assignments, args.examples,
                          cfg.source_dir, **grade_kwargs)
    return 1 if any(rep["failures"] for rep in report.values()) else 0


# GradeConfig fields the pipeline sets itself (one run per assignment, every student, own temp dirs)
_NOT_OPTIONS = ("assignment", "shard", "workdir")
_ENGINE_FIELDS = [f.name for f in dataclasses.fields(GradeConfig)
                  if f.name not in (*_NOT_OPTIONS, "workers", "source_dir")]


if __name__ == "__main__":
    sys.exit(main())
