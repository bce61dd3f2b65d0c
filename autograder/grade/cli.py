"""``python -m autograder.grade``: grade a folder, one shard of it, or merge shards' outputs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional

from autograder.grade.config import (
    IsolationRequired,
    add_config_options,
    config_from_args,
    skip_unused_imports,
)


def parser() -> argparse.ArgumentParser:
    import autograder.grade

    p = argparse.ArgumentParser(prog="python -m autograder.grade",
                                description=autograder.grade.__doc__.split("\n\n")[0])
    p.add_argument("submissions", nargs="?", type=Path,
                   help="folder of {student}/{assignment}.ipynb or {student}/{assignment}/*.ipynb")
    add_config_options(p)  # one option per GradeConfig field (autograder/grade/config.py)
    p.add_argument("--out", type=Path, default=Path("grading_out"))
    p.add_argument("--student", action="append", help="grade only these students (repeatable)")
    p.add_argument("--merge", type=Path, nargs="+", metavar="SHARD_OUT",
                   help="merge the --out folders of several runs into --out instead of grading")
    p.add_argument("--worker-job", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.worker_job:
        skip_unused_imports()
        from autograder.grade.worker import worker_main

        code = worker_main(args.worker_job)
        # result.json is written and closed and nbgrader has shut the kernel down: skip the
        # interpreter's teardown of nbgrader, nbconvert and their threads (about 1 s a submission)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    from autograder.grade.engine import grade_submissions, stop_on_sigterm
    from autograder.grade.merge import merge_shards
    from autograder.grade.outputs import score_table

    if args.merge:
        merged = merge_shards(args.merge, args.out, args.assignment, against=args.against)
        print(f"merged {len(args.merge)} shards: {len(merged)} students -> {args.out}/grades.csv, "
              f"{args.out}/feedback/, {args.out}/gradebook.db, {args.out}/report.html")
        return 0
    if args.submissions is None:
        p.error("SUBMISSIONS_DIR is required")
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        p.error(str(exc))
    t0 = time.perf_counter()
    stop_on_sigterm()
    try:
        results, cells = grade_submissions(args.submissions, cfg, args.out, students=args.student)
    except ValueError as exc:  # e.g. --student naming no folder
        p.error(str(exc))
    except IsolationRequired as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(score_table(results, cells, title=f"{cfg.assignment}: {len(results)} submissions"))
    print(f"\n{len(results)} submissions in {dt:.1f} s with {cfg.workers} workers; "
          f"wrote {args.out}/grades.csv, {args.out}/feedback/, {args.out}/gradebook.db, "
          f"{args.out}/report.html")
    return 0
