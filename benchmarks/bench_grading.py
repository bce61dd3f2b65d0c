"""Grading throughput, students per minute, before and after, side by side in one run.

    python benchmarks/bench_grading.py                         # both assignments, 6 students, 2 workers
    python benchmarks/bench_grading.py --assignments 01_cfg --n 4 --workers 1 2
    python benchmarks/bench_grading.py --before 4f7dc0b        # "before" = the engine at that commit
    python benchmarks/bench_grading.py --before none --isolation none auto   # this tree; sandbox cost
    python benchmarks/bench_grading.py --before 071480d --repeat 3   # interleaved, medians compared

Builds the example submissions from a fresh release (complete / buggy / untouched, cycled to
``--n`` students) and grades the same folder with each engine: "before" is the engine at git
revision ``--before`` (checked out with ``git worktree add`` into a temporary folder; ``none``
skips it), "after" the engine of this tree. Each grading runs in its own Python process with
``PYTHONPATH`` pointing at that engine's tree (:func:`autograder.grade.grade_submissions`:
template course, one private course and sandboxed worker per submission, CSV / feedback / merged
gradebook), one engine after the other, so they share the machine alike.

With ``--repeat R`` every configuration is graded R times, the engines interleaved (before, after,
after, before, ...: a machine that slows down or speeds up during the run weighs on both alike),
and a last table compares the median wall times: after / before per assignment. On a shared
virtual machine single runs of the same engine differ by up to 30 %; compare medians.

Prints per run: wall time, students per minute, mean seconds per student, the 1-minute load
average before and after (other jobs distort the numbers; record it), and where an engine reports
them (this tree's ``StudentResult.timings``) the mean seconds per student of each step: the course
copy, the worker's start-up (bwrap, interpreter, nbgrader and engine imports), nbgrader
``autograde`` (kernel start-up, the notebook's cells, kernel shut-down), ``generate_feedback``,
the worker's exit, and the whole sandboxed process. Also times a bare grading
kernel's start-up (the start-up imports every grading kernel runs, inside the sandbox when
bubblewrap is there) and checks that every run gave the same scores and statuses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder.examples.build import STUDENTS, build  # noqa: E402
from autograder.release import release  # noqa: E402

STEPS = ("course_copy", "worker_startup", "autograde", "feedback", "worker_exit", "process")

# Run in a fresh interpreter whose PYTHONPATH is the engine's tree: grade, print one JSON line.
_GRADE = """
import json, os, sys, time
from autograder.grade import GradeConfig, grade_submissions
subs, out, assignment, workers, isolation = sys.argv[1:6]
cfg = GradeConfig(assignment=assignment, workers=int(workers), progress=False, isolation=isolation)
load0 = os.getloadavg()[0]
t0 = time.perf_counter()
results, _ = grade_submissions(subs, cfg, out)
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "load0": load0, "load1": os.getloadavg()[0],
                  "isolation": results[0].isolation,
                  "scores": {r.student: [r.scores, r.status] for r in results},
                  "timings": [getattr(r, "timings", {}) for r in results],
                  "wall_per": [r.wall_s for r in results]}))
"""

# A bare grading kernel: started as the engine starts it (start-up imports), time to first reply.
_KERNEL = """
import json, sys, time
from jupyter_client.manager import start_new_kernel
from autograder.grade.config import CHECKS_MODULE, GUARD_MODULE
lines = f"__import__('{GUARD_MODULE}'); __import__('{CHECKS_MODULE}')"
t0 = time.perf_counter()
km, kc = start_new_kernel(extra_arguments=["--InteractiveShellApp.exec_lines=" + lines], startup_timeout=300)
kc.get_shell_msg(timeout=300) if kc.execute("1") else None
print(json.dumps({"kernel_start_s": time.perf_counter() - t0}))
kc.stop_channels(); km.shutdown_kernel(now=True)
"""


def make_batch(assignment: str, n: int, root: Path) -> Path:
    release([assignment], out_dir=str(root / "release"), source_dir=str(REPO / "solutions"))
    build(root / "release", REPO / "solutions", root / "ex", [assignment])
    subs = root / "subs"
    for i in range(n):
        kind = STUDENTS[i % len(STUDENTS)]
        shutil.copytree(root / "ex" / assignment / kind, subs / f"s{i:03d}_{kind}")
    return subs


def _run(code: str, tree: Path, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), CFGFLOW_OFFLINE=os.environ.get("CFGFLOW_OFFLINE", "1"))
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=str(tree), env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])


def before_tree(rev: str, tmp: Path) -> Path:
    """The engine at git revision ``rev``, in a worktree under ``tmp`` (removed at the end)."""
    path = tmp / f"before-{rev}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True, text=True)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--assignments", nargs="+", default=["01_cfg", "02_dit"])
    p.add_argument("--n", type=int, default=6, help="students per batch")
    p.add_argument("--workers", type=int, nargs="+", default=[2])
    p.add_argument("--before", default="4f7dc0b",
                   help="git revision of the 'before' engine ('none': only this tree)")
    p.add_argument("--repeat", type=int, default=1,
                   help="grade each configuration this many times, engines interleaved; compare medians")
    p.add_argument("--isolation", nargs="+", default=["auto"], choices=["auto", "none"],
                   help="grade once per isolation mode (none: no sandbox; auto: bwrap if installed)")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be >= 1, got {args.n}")
    if args.repeat < 1:
        p.error(f"--repeat must be >= 1, got {args.repeat}")

    rows, same = [], True
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        trees = [("after", REPO)]
        if args.before.lower() != "none":
            trees.insert(0, ("before", before_tree(args.before, tmp)))
        try:
            kernel = _run(_KERNEL, REPO)["kernel_start_s"]
            for a in args.assignments:
                subs = make_batch(a, args.n, tmp / a)
                scores = {}
                for rep, iso, w in [(k, i, w) for k in range(args.repeat) for i in args.isolation
                                    for w in args.workers]:
                    for label, tree in (trees if rep % 2 == 0 else trees[::-1]):
                        # a fresh OUT per run: a rerun into the same OUT would reuse its records
                        out = tmp / a / f"out-{label}-{iso}{w}-{rep}"
                        r = _run(_GRADE, tree, str(subs), str(out), a, str(w), iso)
                        scores[label, iso, w, rep] = r["scores"]
                        rows.append((a, label, w, r["isolation"], r, len(r["scores"])))
                        print(f"  {a} {label} workers={w} isolation={r['isolation']}: "
                              f"{len(r['scores'])} students in {r['wall']:.1f} s", file=sys.stderr,
                              flush=True)
                same = same and all(sc == next(iter(scores.values())) for sc in scores.values())
        finally:
            for label, tree in trees:
                if label == "before":
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                                   capture_output=True)

    print(f"\nbench_grading: {args.n} students per assignment, {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}, before = {args.before}")
    head = (f"{'assignment':<10}  {'engine':<6}  {'workers':>7}  {'isolation':>9}  {'wall_s':>7}  "
            f"{'students/min':>12}  {'s/student':>9}  " + "  ".join(f"{s:>12}" for s in STEPS)
            + f"  {'load':>9}")
    print(head)
    for a, label, w, iso, r, n in rows:
        steps = []
        for s in STEPS:
            vals = [t[s] for t in r["timings"] if s in t]
            steps.append(f"{sum(vals) / len(vals):>12.1f}" if vals else f"{'-':>12}")
        print(f"{a:<10}  {label:<6}  {w:>7}  {iso:>9}  {r['wall']:>7.1f}  {60 * n / r['wall']:>12.2f}  "
              f"{sum(r['wall_per']) / n:>9.1f}  " + "  ".join(steps)
              + f"  {r['load0']:>4.1f}/{r['load1']:<4.1f}")
    print(f"steps: mean seconds per student (process = the sandboxed worker process, wall; autograde "
          f"includes the kernel's start-up); a bare grading kernel starts in {kernel:.1f} s here")
    if len(trees) == 2:
        print(f"\nmedian wall over {args.repeat} run(s) each (after / before: below 1 is faster)")
        for a in args.assignments:
            for iso, w in sorted({(row[3], row[2]) for row in rows if row[0] == a}):
                med = {label: statistics.median(row[4]["wall"] for row in rows
                                                if row[:4] == (a, label, w, iso))
                       for label, _ in trees}
                n = next(row[5] for row in rows if row[0] == a)
                print(f"{a:<10}  workers={w}  {iso:>5}:  before {med['before']:6.1f} s "
                      f"({60 * n / med['before']:5.2f} students/min)   after {med['after']:6.1f} s "
                      f"({60 * n / med['after']:5.2f} students/min)   after / before "
                      f"{med['after'] / med['before']:.3f}")
    print("scores and statuses identical across runs:", same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
