"""The time to write the class report for a large class (what a grading run adds after its last hand-in).

    python benchmarks/bench_report.py                 # 300 hand-ins of 02_dit
    python benchmarks/bench_report.py --n 100 --keep /tmp/report300

Generates the class first (not timed: :mod:`autograder.examples.cohort`, catalog code with
planted copies, and the judge's records as data), then times each step of what
:func:`autograder.grade.engine.write_outputs` does for the report: extracting every hand-in's
graded code (reading the notebooks), the similarity of every pair and of every hand-in with the
reference (copydetect; ``n * (n - 1) / 2 + n`` comparisons) with the side-by-side pages of the
top pairs, the numbers (``report.json``) and the page with its plots (``report.html``). Prints
the 1-minute load average before and after: other jobs on the machine distort the numbers.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, help="write here and keep it (default: a temporary folder)")
    args = p.parse_args(argv)

    import json

    import nbformat

    from autograder import report, similarity
    from autograder.examples import cohort
    from autograder.examples.build import REPO_ROOT
    from autograder.grade.outputs import CellInfo

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    a = cohort.ASSIGNMENT
    t = time.perf_counter()
    students = cohort.build_class(root / "handins", n=args.n, seed=args.seed,
                                  ref_copies=max(3, args.n // 50), pair_copies=max(3, args.n // 30))
    results = cohort.records_for(students, seed=args.seed)
    print(f"generated {len(students)} hand-ins of {a} and their records in {time.perf_counter() - t:.1f} s "
          "(not timed below)")

    source = nbformat.read(str(REPO_ROOT / "solutions" / a / f"{a}.ipynb"), as_version=4)
    release = nbformat.read(str(REPO_ROOT / "notebooks" / a / f"{a}.ipynb"), as_version=4)
    subs = {d.name: [d / f"{a}.ipynb"] for d in sorted((root / "handins").iterdir()) if d.is_dir()}
    cells = [CellInfo(a, c.metadata.nbgrader["grade_id"], float(c.metadata.nbgrader["points"]))
             for c in source.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    load0 = os.getloadavg()[0]
    steps = {}
    t0 = time.perf_counter()
    sim_root = similarity.extract(root / "out", subs, {a: source}, [release])
    steps["extract graded code"] = time.perf_counter() - t0
    t = time.perf_counter()
    sim = similarity.compare(sim_root)
    steps[f"similarity ({sim.compared} pairs screened, {sim.exact} exact)"] = time.perf_counter() - t
    t = time.perf_counter()
    data = report.summarize(results, cells, a, sim)
    (root / "out" / "report.json").write_text(json.dumps(data, indent=1))
    steps["numbers (report.json)"] = time.perf_counter() - t
    t = time.perf_counter()
    (root / "out" / "report.html").write_text(report.render(data))
    steps["page and plots (report.html)"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    print(f"\nreport of {len(subs)} hand-ins ({len(data['parts'])} parts), load average "
          f"{load0:.2f} -> {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs:")
    for name, dt in steps.items():
        print(f"  {name:<48} {dt:7.2f} s")
    print(f"  {'total':<48} {total:7.2f} s")
    size = (root / "out" / "report.html").stat().st_size
    print(f"\nreport.html {size / 1e6:.2f} MB; top pair {sim.pairs[0].a} / {sim.pairs[0].b} "
          f"{sim.pairs[0].score:.0%}; {root / 'out'}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
