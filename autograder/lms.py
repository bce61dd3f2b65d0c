"""Grades into the LMS: a Canvas gradebook-import CSV and a plain CSV.

From the engine's outputs::

    python -m autograder.lms OUT --roster roster.csv --out canvas.csv [--plain grades_lms.csv]
        [--canvas-name "Lab 1: CFG"] [--canvas-id 123456] [--key "SIS Login ID"]

and from any nbgrader gradebook, as an export plugin (plain nbgrader courses too)::

    nbgrader export --exporter autograder.lms.CanvasExportPlugin --to canvas.csv \\
        --CanvasExportPlugin.roster=roster.csv [--CanvasExportPlugin.plain=grades_lms.csv]

**The Canvas file** has the columns of Canvas's own gradebook export, which its gradebook import
reads back: ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, then one column per
assignment, ``Name (id)`` for an existing Canvas assignment (its id in the column name) or
``Name`` for a new one; the second row is ``Points Possible``. **The roster** maps our student ids
(the hand-in folder names, nbgrader's student ids) to the LMS: a CSV with those five columns
(Canvas's gradebook export is one: download it, add nothing) and the column ``--key`` that holds
our ids (default ``student_id``, else ``SIS Login ID``).

Nobody is dropped: a roster student with no grade gets an empty cell (Canvas leaves it as it is)
and is listed; a graded student missing from the roster cannot go into the Canvas file (Canvas
would not know whom) and is listed, and kept in the plain CSV (one row per student of either
side, with a ``match`` column).
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from nbgrader.plugins import ExportPlugin
from traitlets import Dict as TDict
from traitlets import Unicode

CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "    Points Possible"  # the second row's first cell, as Canvas exports it
DEFAULT_KEY = "student_id"
FALLBACK_KEY = "SIS Login ID"
PLAIN_COLUMNS = ("student", "match", "Student", "ID", "SIS User ID", "SIS Login ID", "Section")


@dataclass
class Column:
    """One assignment: its Canvas column and every student's score (None: no grade)."""

    name: str  # the assignment's name in Canvas
    points: float
    scores: Dict[str, Optional[float]] = field(default_factory=dict)
    status: Dict[str, str] = field(default_factory=dict)
    canvas_id: str = ""

    @property
    def header(self) -> str:
        return f"{self.name} ({self.canvas_id})" if self.canvas_id else self.name


def read_roster(path: Path, key: Optional[str] = None) -> Dict[str, Dict[str, str]]:
    """``our student id -> {Canvas column: value}`` of a roster CSV (see the module docstring).
    A ``Points Possible`` row (a Canvas export's) is skipped."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
        header = list(rows[0]) if rows else []
    if key is None:
        key = DEFAULT_KEY if DEFAULT_KEY in header else FALLBACK_KEY
    if key not in header:
        raise ValueError(f"roster {path}: no column {key!r} with the students' ids (columns: "
                         f"{', '.join(header)}); name it with --key")
    missing = [c for c in CANVAS_COLUMNS if c not in header]
    if "ID" in missing and "SIS User ID" in missing and "Student" in missing:
        raise ValueError(f"roster {path}: Canvas needs one of Student, ID or SIS User ID per row")
    roster = {}
    for row in rows:
        if (row.get("Student") or "").strip() == POINTS_POSSIBLE.strip():
            continue
        sid = (row.get(key) or "").strip()
        if sid:
            roster[sid] = {c: (row.get(c) or "").strip() for c in CANVAS_COLUMNS}
    return roster


def from_outputs(out_dir: Path, name: Optional[str] = None, canvas_id: str = "") -> Column:
    """The column of an engine run: ``OUT/grades.csv`` (its ``(max)`` row gives the points)."""
    with open(Path(out_dir) / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or rows[0]["student"] != "(max)":
        raise ValueError(f"{out_dir}/grades.csv: no '(max)' row: not an output of "
                         "python -m autograder.grade")
    col = Column(name or rows[0]["assignment"], float(rows[0]["total"]), canvas_id=canvas_id)
    for row in rows[1:]:
        col.scores[row["student"]] = float(row["total"])
        col.status[row["student"]] = row.get("status", "")
    return col


def from_gradebook(gb, assignments: Optional[List[str]] = None, students: Optional[List[str]] = None,
                   canvas_ids: Optional[Dict[str, str]] = None) -> List[Column]:
    """One column per assignment of an nbgrader :class:`~nbgrader.api.Gradebook`; a student with no
    submission has no grade (None), not a zero: the instructor decides."""
    import warnings

    from nbgrader.api import MissingEntry

    canvas_ids = canvas_ids or {}
    cols = []
    with warnings.catch_warnings():
        # nbgrader's score properties trip a harmless SQLAlchemy autoflush warning
        warnings.filterwarnings("ignore", message=".*not in session.*")
        for a in gb.assignments:
            if assignments and a.name not in assignments:
                continue
            cols.append(_column(gb, a, students, canvas_ids, MissingEntry))
    return cols


def _column(gb, a, students, canvas_ids, MissingEntry) -> Column:
    """The column of one nbgrader assignment ``a``."""
    col = Column(a.name, float(a.max_score), canvas_id=str(canvas_ids.get(a.name, "")))
    for s in gb.students:
        if students and s.id not in students:
            continue
        try:
            sub = gb.find_submission(a.name, s.id)
        except MissingEntry:
            col.scores[s.id], col.status[s.id] = None, "no_submission"
            continue
        col.scores[s.id] = max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0.0))
        col.status[s.id] = "ok"
    return col


def _fmt(x: Optional[float]) -> str:
    return "" if x is None else f"{round(float(x), 4):g}"


@dataclass
class Matched:
    not_in_roster: List[str]  # graded, not in the roster: not in the Canvas file
    no_grade: List[str]  # in the roster, no grade in any column: an empty cell

    def lines(self) -> List[str]:
        out = []
        if self.not_in_roster:
            out.append(f"{len(self.not_in_roster)} graded student(s) not in the roster (NOT in the Canvas "
                       f"file; add them to the roster): {', '.join(self.not_in_roster)}")
        if self.no_grade:
            out.append(f"{len(self.no_grade)} roster student(s) without a grade (empty cell): "
                       f"{', '.join(self.no_grade)}")
        return out


def write(columns: List[Column], roster: Dict[str, Dict[str, str]], canvas: Optional[Path] = None,
          plain: Optional[Path] = None) -> Matched:
    """Write the Canvas import file and/or the plain CSV; returns who is missing from either side."""
    graded = sorted({s for c in columns for s, v in c.scores.items() if v is not None})
    everyone = sorted({s for c in columns for s in c.scores} | set(roster))
    matched = Matched(sorted(s for s in graded if s not in roster),
                      sorted(s for s in roster if all(c.scores.get(s) is None for c in columns)))
    if canvas is not None:
        with open(canvas, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([*CANVAS_COLUMNS, *[c.header for c in columns]])
            w.writerow([POINTS_POSSIBLE, *[""] * (len(CANVAS_COLUMNS) - 1),
                        *[_fmt(c.points) for c in columns]])
            for s in sorted(roster, key=lambda s: (roster[s]["Student"].lower(), s)):
                w.writerow([roster[s][k] for k in CANVAS_COLUMNS]
                           + [_fmt(c.scores.get(s)) for c in columns])
    if plain is not None:
        with open(plain, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([*PLAIN_COLUMNS, *[c.header for c in columns],
                        *[f"{c.name} status" for c in columns]])
            w.writerow(["(max)", "", *[""] * len(CANVAS_COLUMNS), *[_fmt(c.points) for c in columns],
                        *[""] * len(columns)])
            for s in everyone:
                match = ("not in roster" if s not in roster else
                         "no grade" if all(c.scores.get(s) is None for c in columns) else "ok")
                lms = roster.get(s, {})
                w.writerow([s, match, *[lms.get(k, "") for k in CANVAS_COLUMNS],
                            *[_fmt(c.scores.get(s)) for c in columns],
                            *[c.status.get(s, "") for c in columns]])
    return matched


class CanvasExportPlugin(ExportPlugin):
    """``nbgrader export --exporter autograder.lms.CanvasExportPlugin``: the gradebook as a Canvas
    gradebook-import CSV (``--to``, default ``canvas.csv``), matched through a roster."""

    roster = Unicode("", help="roster CSV: Canvas's gradebook columns plus the key column of "
                     "nbgrader's student ids (required)").tag(config=True)
    key = Unicode("", help=f"the roster's column of nbgrader's student ids (default {DEFAULT_KEY}, "
                  f"else {FALLBACK_KEY})").tag(config=True)
    plain = Unicode("", help="also write the plain CSV here").tag(config=True)
    canvas_ids = TDict({}, help="assignment name -> its Canvas assignment id (the column becomes "
                       "'name (id)'; without one Canvas creates a new assignment)").tag(config=True)

    def export(self, gradebook) -> None:
        if not self.roster:
            raise ValueError("CanvasExportPlugin: set --CanvasExportPlugin.roster=ROSTER.csv")
        roster = read_roster(Path(self.roster), self.key or None)
        cols = from_gradebook(gradebook, [str(a) for a in self.assignment] or None,
                              [str(s) for s in self.student] or None, dict(self.canvas_ids))
        dest = Path(self.to or "canvas.csv")
        matched = write(cols, roster, dest, Path(self.plain) if self.plain else None)
        self.log.info("Canvas gradebook import file: %s (%d students, %d assignments)", dest,
                      len(roster), len(cols))
        for line in matched.lines():
            self.log.warning(line)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder.lms", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="an --out folder of python -m autograder.grade")
    p.add_argument("--roster", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("canvas.csv"), help="the Canvas import file")
    p.add_argument("--plain", type=Path, help="also write the plain CSV here")
    p.add_argument("--key", help=f"the roster's column of our student ids (default {DEFAULT_KEY}, "
                   f"else {FALLBACK_KEY})")
    p.add_argument("--canvas-name", help="the assignment's name in Canvas (default: the assignment id)")
    p.add_argument("--canvas-id", default="", help="the Canvas assignment's id (an existing assignment)")
    args = p.parse_args(argv)
    try:
        roster = read_roster(args.roster, args.key)
        col = from_outputs(args.out_dir, args.canvas_name, args.canvas_id)
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    matched = write([col], roster, args.out, args.plain)
    print(f"wrote {args.out}: {len(roster)} roster students, column {col.header!r} of "
          f"{col.points:g} points" + (f"; {args.plain}" if args.plain else ""))
    for line in matched.lines():
        print("warning: " + line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
