"""Grading throughput: submissions per minute with 1 and 2 (or more) workers, side by side.

    python benchmarks/bench_grading.py                      # 01_cfg, 4 submissions, workers 1 and 2
    python benchmarks/bench_grading.py --assignment 02_dit --n 6 --workers 1 2 4
    python benchmarks/bench_grading.py --workers 2 --isolation none auto   # cost of the sandbox

Builds the example submissions from a fresh release (complete / buggy / untouched, cycled to
``--n`` students), grades the same folder once per worker count with the real engine
(:func:`autograder.grade.grade_submissions`: template course, one private course and
``run_limited`` process per submission, CSV / feedback / merged gradebook), and prints wall
time, submissions per minute, mean and max per-submission wall time, and the 1-minute load
average before and after each run (other jobs on the machine distort the numbers; record it).
Also checks that every worker count gave the same scores. ``--isolation none auto`` grades the
same batch without and with the bubblewrap sandbox (``auto``: bwrap where installed), side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder.examples.build import STUDENTS, build  # noqa: E402
from autograder.grade import GradeConfig, grade_submissions  # noqa: E402
from autograder.release import release  # noqa: E402


def make_batch(assignment: str, n: int, root: Path) -> Path:
    release([assignment], out_dir=str(root / "release"), source_dir=str(REPO / "solutions"))
    build(root / "release", REPO / "solutions", root / "ex", [assignment])
    subs = root / "subs"
    for i in range(n):
        kind = STUDENTS[i % len(STUDENTS)]
        dest = subs / f"s{i:03d}_{kind}"
        shutil.copytree(root / "ex" / assignment / kind, dest)
    return subs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--assignment", default="01_cfg")
    p.add_argument("--n", type=int, default=4, help="submissions in the batch")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--isolation", nargs="+", default=["auto"], choices=["auto", "none"],
                   help="grade once per isolation mode too (none: no sandbox; auto: bwrap if installed)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        subs = make_batch(args.assignment, args.n, tmp)
        rows, scores = [], {}
        runs = [(iso, w) for iso in args.isolation for w in args.workers]
        for iso, w in runs:
            load0 = os.getloadavg()[0]
            cfg = GradeConfig(assignment=args.assignment, workers=w, progress=False, isolation=iso)
            t0 = time.perf_counter()
            results, _ = grade_submissions(subs, cfg, tmp / f"out{iso}{w}")
            wall = time.perf_counter() - t0
            per = [r.wall_s for r in results]
            rows.append((w, results[0].isolation, wall, 60 * len(results) / wall, sum(per) / len(per),
                         max(per), max(r.peak_rss_mb for r in results), load0, os.getloadavg()[0]))
            scores[iso, w] = {r.student: (r.scores, r.status) for r in results}
            print(f"  workers={w} isolation={results[0].isolation}: {len(results)} submissions in "
                  f"{wall:.1f} s", file=sys.stderr, flush=True)

    print(f"\nbench_grading: {args.assignment}, {args.n} submissions, {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}")
    print(f"{'workers':>7}  {'isolation':>9}  {'wall_s':>7}  {'subs/min':>8}  {'mean_s/sub':>10}  "
          f"{'max_s/sub':>9}  {'peak_rss_mb':>11}  {'load_before':>11}  {'load_after':>10}")
    for w, iso, wall, spm, mean, mx, rss, l0, l1 in rows:
        print(f"{w:>7}  {iso:>9}  {wall:>7.1f}  {spm:>8.2f}  {mean:>10.1f}  {mx:>9.1f}  {rss:>11.0f}  "
              f"{l0:>11.2f}  {l1:>10.2f}")
    if len(args.workers) > 1:
        print(f"speed-up {rows[len(args.workers) - 1][0]} vs {rows[0][0]} workers: "
              f"{rows[len(args.workers) - 1][3] / rows[0][3]:.2f}x")
    same = all(sc == scores[runs[0]] for sc in scores.values())
    print("scores identical across runs:", same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
