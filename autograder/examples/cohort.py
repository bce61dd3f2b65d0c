"""A generated class: hand-ins built from the catalog, with planted copies, and their records.

For the report's tests and benchmark (grading hundreds of hand-ins takes hours; the report reads
records and notebooks only). Each generated student writes every graded part of an assignment
with one catalog entry's code (:mod:`autograder.catalog`): a mutant (a named mistake), an
alternative (correct, written differently) or a trivial stub; the rest of the notebook is the
release. Planted on top:

* ``copy_ref_*``: the reference solution (the instructor's source) with a few cosmetic edits,
* ``copy_of_{x}``: another generated student's notebook with a few cosmetic edits.

:func:`records_for` makes each student's judge records as the judge would: a part written with
an alternative or the reference passes, a mutant fails one sub-check with its catalog message
(and a number in it, so the report's normalisation is exercised), a stub fails all but the shape.

    python -m autograder.examples.cohort OUT --students 40   # OUT/handins/{student}/{A}.ipynb,
                                                             # OUT/records/, OUT/report.html
"""

from __future__ import annotations

import argparse
import copy
import inspect
import random
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import nbformat

from autograder.examples.build import REPO_ROOT, fill_solutions

ASSIGNMENT = "02_dit"


@dataclass
class Student:
    name: str
    choice: Dict[str, str] = field(default_factory=dict)  # part -> "reference" or a catalog entry name
    copy_of: Optional[str] = None  # planted: whose code this is (a student or "[reference]")


def _entries(part: str):
    from autograder import catalog

    found = []
    for e in catalog.entries(part):
        try:
            inspect.getsource(e.cls)
        except (OSError, TypeError):  # made by a factory (some stubs): no source of its own
            continue
        found.append(e)
    return found


def _entry_code(entry, student_class: str) -> str:
    src = textwrap.dedent(inspect.getsource(entry.cls))
    return f"{src}\n\n{student_class} = {entry.cls.__name__}\n"


def _disguise(code: str, rng: random.Random) -> str:
    """Cosmetic edits a copier makes: comments, blank lines (copydetect ignores both)."""
    lines = code.splitlines()
    out = []
    for ln in lines:
        out.append(ln)
        if ln.strip() and rng.random() < 0.12:
            indent = ln[: len(ln) - len(ln.lstrip())]
            out.append(f"{indent}# {rng.choice(['my version', 'works now', 'TODO tidy', 'see lecture'])}")
    return "\n".join(out) + "\n"


def build_class(out_dir: Path, n: int = 30, seed: int = 0, assignment: str = ASSIGNMENT,
                ref_copies: int = 3, pair_copies: int = 3) -> List[Student]:
    """Write ``n`` hand-ins ``out_dir/{student}/{assignment}.ipynb`` (planted copies included in
    ``n``) and return who is who."""
    from autograder.similarity import REFERENCE, solution_parts
    from cfgflow.course import ASSIGNMENTS

    rng = random.Random(seed)
    release = nbformat.read(str(REPO_ROOT / "notebooks" / assignment / f"{assignment}.ipynb"), as_version=4)
    source = nbformat.read(str(REPO_ROOT / "solutions" / assignment / f"{assignment}.ipynb"), as_version=4)
    complete = fill_solutions(release, source)
    parts = solution_parts(source)  # grade_id -> part
    classes = {p.name: p.student_class for p in ASSIGNMENTS[assignment].parts}
    pools = {part: _entries(part) for part in set(parts.values())}
    own = n - ref_copies - pair_copies
    if own < pair_copies:
        raise ValueError(f"n={n} leaves too few students of their own for {pair_copies} copied pairs")
    students: List[Student] = []
    nbs: Dict[str, object] = {}
    for i in range(own):
        s = Student(f"s{i:03d}")
        nb = copy.deepcopy(release)
        for cell in nb.cells:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in parts:
                r = rng.random()
                kind = "mutant" if r < 0.5 else "alternative" if r < 0.85 else "trivial"
                pool = [e for e in pools[parts[gid]] if e.kind == kind] or pools[parts[gid]]
                entry = rng.choice(pool)
                s.choice[parts[gid]] = entry.name
                cell.source = _entry_code(entry, classes[parts[gid]])
        students.append(s)
        nbs[s.name] = nb
    for i in range(ref_copies):
        s = Student(f"copy_ref_{i}", {p: "reference" for p in parts.values()}, REFERENCE)
        nb = copy.deepcopy(complete)
        for cell in nb.cells:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in parts:
                cell.source = _disguise(cell.source, rng)
        students.append(s)
        nbs[s.name] = nb
    for victim in rng.sample([s for s in students if s.copy_of is None], pair_copies):
        s = Student(f"copy_of_{victim.name}", dict(victim.choice), victim.name)
        nb = copy.deepcopy(nbs[victim.name])
        for cell in nb.cells:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in parts:
                cell.source = _disguise(cell.source, rng)
        students.append(s)
        nbs[s.name] = nb
    for s in students:
        path = Path(out_dir) / s.name / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbs[s.name], str(path))
    return students


def records_for(students: List[Student], assignment: str = ASSIGNMENT, seed: int = 0) -> list:
    """Each student's :class:`~autograder.grade.outputs.StudentResult` as the judge would record it
    (see the module docstring); a few hand-ins timed out or ran out of memory."""
    from autograder import catalog
    from autograder.checks import HIDDEN, VISIBLE
    from autograder.grade.outputs import StudentResult
    from autograder.judge.preprocessors import graded_cells

    rng = random.Random(seed)
    source = nbformat.read(str(REPO_ROOT / "solutions" / assignment / f"{assignment}.ipynb"), as_version=4)
    specs = list(graded_cells(source).values())
    by_name = {(e.part, e.name): e for e in catalog.entries()}
    out = []
    for i, s in enumerate(students):
        r = StudentResult(s.name, isolation="bwrap", wall_s=rng.uniform(18, 45),
                          peak_rss_mb=rng.uniform(700, 1600))
        if i % 29 == 11:  # about 3 % of the class
            r.status, r.reason = "timeout", "grading stopped after the 1200 s per-submission time-out"
            r.wall_s = 1200.0
        elif i % 41 == 17:
            r.status, r.reason = "memory", "killed: memory limit of 4096 MB exceeded"
        for spec in specs:
            key = f"{assignment}/{spec.grade_id}"
            if r.status != "ok":
                r.scores[key] = 0.0
                continue
            table = (HIDDEN if spec.hidden else VISIBLE)[spec.part]
            subs = table.subchecks
            choice = s.choice.get(spec.part, "reference")
            entry = by_name.get((spec.part, choice))
            results = []
            for sub in subs:
                passed = True
                message = ""
                if entry is not None and entry.kind == "trivial" and sub.name != "shape":
                    passed = False
                    message = f"output does not depend on the input (max change {rng.random():.3g})"
                elif entry is not None and entry.kind == "mutant" and sub.name == _failing(entry, subs):
                    passed = False
                    message = f"{entry.expect}: {entry.doc} (max error {rng.uniform(0.05, 3):.3f})"
                results.append({"name": sub.name, "weight": sub.weight, "passed": passed, "message": message})
            total = sum(x["weight"] for x in results)
            earned = round(spec.points * sum(x["weight"] for x in results if x["passed"]) / total, 2)
            r.scores[key] = earned
            r.judge.append({"notebook": assignment, "grade_id": spec.grade_id, "part": spec.part,
                            "hidden": spec.hidden, "points": spec.points, "earned": earned,
                            "status": "judged", "lines": [], "results": results})
        out.append(r)
    return out


def _failing(entry, subs) -> str:
    names = [s.name for s in subs]
    for name in names:
        if name in (entry.expect or "") or name in entry.doc.lower():
            return name
    return "values" if "values" in names else max(subs, key=lambda s: s.weight).name


def main(argv=None) -> int:
    from autograder.grade import records

    p = argparse.ArgumentParser(prog="python -m autograder.examples.cohort",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    students = build_class(args.out / "handins", args.students, args.seed)
    results = records_for(students, seed=args.seed)
    for r in results:
        records.write(args.out, r, "synthetic")
    t1 = time.perf_counter()
    class_report(args.out, args.out / "handins", results)
    print(f"{len(students)} hand-ins, records and report -> {args.out} (generated in {t1 - t0:.1f} s, "
          f"report in {time.perf_counter() - t1:.1f} s)")
    return 0


def class_report(out_dir: Path, handins: Path, results: list, assignment: str = ASSIGNMENT,
                 against: Optional[Path] = None):
    """The report of a generated class, as a grading run would write it (similarity included)."""
    from autograder import report, similarity
    from autograder.grade.outputs import CellInfo

    source = nbformat.read(str(REPO_ROOT / "solutions" / assignment / f"{assignment}.ipynb"), as_version=4)
    release = nbformat.read(str(REPO_ROOT / "notebooks" / assignment / f"{assignment}.ipynb"), as_version=4)
    subs = {p.name: [p / f"{assignment}.ipynb"] for p in sorted(Path(handins).iterdir()) if p.is_dir()}
    root = similarity.extract(out_dir, subs, {assignment: source}, [release], against)
    sim = similarity.compare(root)
    cells = [CellInfo(assignment, c.metadata.nbgrader["grade_id"], float(c.metadata.nbgrader["points"]))
             for c in source.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    return report.write(out_dir, results, cells, assignment, sim), sim


if __name__ == "__main__":
    raise SystemExit(main())
