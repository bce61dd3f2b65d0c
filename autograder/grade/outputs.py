"""What a batch leaves behind: the CSV, the feedback pages' box, the plain-text score table."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from autograder.grade.config import STATUS_OK, TEMPLATES, Status


@dataclass
class CellInfo:
    notebook: str
    grade_id: str
    max_score: float

    @property
    def key(self) -> str:
        return f"{self.notebook}/{self.grade_id}"


@dataclass
class StudentResult:
    """One student's outcome. ``scores`` maps ``"{notebook}/{grade_id}"`` to points."""

    student: str
    status: Status = STATUS_OK  # how grading ended (config.Status)
    reason: str = ""
    scores: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    # the student's feedback page once written (OUT/feedback/{student}.html); None: not written
    feedback_path: Optional[Path] = None
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0  # largest summed RSS of the worker's process tree (kernel included)
    judge: list = field(default_factory=list)  # the judge's record of each graded cell (CellRecord.to_json)
    isolation: str = ""  # bwrap | none: how the submission's code was confined
    timings: dict = field(default_factory=dict)  # seconds per step (worker and parent), for benchmarks

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    def total(self) -> float:
        return float(sum(self.scores.values()))


def fmt(x: float) -> str:
    return f"{round(float(x), 4):g}"


def csv_columns(cells: list[CellInfo]) -> list[str]:
    multi = len({c.notebook for c in cells}) > 1
    return [c.key if multi else c.grade_id for c in cells]


CELLS_COLUMN = "<grade_id>"
CSV_COLUMNS = (  # (column, what it holds): the CSV's header, and docs/grading.md's table
    ("student", "the student's folder name"),
    ("assignment", "the assignment id"),
    (CELLS_COLUMN, "one column per grade cell, in notebook order (`{notebook}/{grade_id}` when an "
                   "assignment has several notebooks): the judge's points"),
    ("total", "the sum of the cells"),
    ("max_total", "the assignment's points"),
    ("status", "how grading ended: " + ", ".join(f"`{s.value}`" for s in Status)),
    ("reason", "why, when the status is not `ok`"),
    ("notes", "repairs, cells stopped by the time-out, exit() calls, renamed files (separated by a "
              "vertical bar)"),
    ("isolation", "`bwrap` (the submission ran in the sandbox) or `none`"),
)


def write_csv(path: Path, results: list[StudentResult], cells: list[CellInfo], assignment: str) -> None:
    """One row per student, a ``(max)`` row first; the columns of :data:`CSV_COLUMNS`."""
    cols = csv_columns(cells)
    max_total = sum(c.max_score for c in cells)
    header = [name for col, _ in CSV_COLUMNS for name in (cols if col == CELLS_COLUMN else [col])]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerow(["(max)", assignment, *[fmt(c.max_score) for c in cells],
                    fmt(max_total), fmt(max_total), "", "", "", ""])
        for r in results:
            w.writerow([r.student, assignment, *[fmt(r.scores[c.key]) for c in cells],
                        fmt(r.total()), fmt(max_total), r.status, r.reason, " | ".join(r.notes),
                        r.isolation])


def banner_data(assignment: str, total: float, max_total: float, status: str, reason: str,
                notes: list) -> dict:
    """What the box on top of a feedback page shows (templates/feedback/banner.html.j2)."""
    return {"assignment": assignment, "total": fmt(total), "max_total": fmt(max_total),
            "status": status, "reason": reason, "notes": [str(n) for n in notes]}


def _jinja():
    import jinja2

    from autograder.grade.preprocessors import template_filters

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES / "feedback")))
    env.filters.update(template_filters())
    return env


def plain_feedback_page(r: StudentResult, cells: list[CellInfo], assignment: str) -> str:
    """The feedback page of a student nbgrader made no page for: the box and a score table."""
    banner = banner_data(assignment, r.total(), sum(c.max_score for c in cells), r.status, r.reason,
                         r.notes)
    rows = [{"notebook": c.notebook, "grade_id": c.grade_id, "score": fmt(r.scores[c.key]),
             "max_score": fmt(c.max_score)} for c in cells]
    return _jinja().get_template("plain.html.j2").render(student=r.student, banner=banner, rows=rows)


def write_plain_feedback(fb_dir: Path, results: list[StudentResult], cells: list[CellInfo],
                         assignment: str) -> None:
    """A page for every student whose worker wrote none (the others are in place already)."""
    fb_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.feedback_path is None:
            r.feedback_path = fb_dir / f"{r.student}.html"
            r.feedback_path.write_text(plain_feedback_page(r, cells, assignment), encoding="utf-8")


def score_table(results: list[StudentResult], cells: list[CellInfo], title: str = "") -> str:
    """A plain-text table: one row per student, one column per grade cell, total, status."""
    cols = csv_columns(cells)
    header = ["student", *cols, "total", "status"]
    maxrow = ["(max)", *[fmt(c.max_score) for c in cells], fmt(sum(c.max_score for c in cells)), ""]
    rows = [[r.student, *[fmt(r.scores[c.key]) for c in cells],
             fmt(r.total()), r.status if r.status == STATUS_OK else f"{r.status}: {r.reason[:60]}"]
            for r in results]
    widths = [max(len(str(x[i])) for x in [header, maxrow, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
    out = ([title] if title else []) + [line(header), line(maxrow), "-" * (sum(widths) + 2 * len(widths))]
    return "\n".join(out + [line(r) for r in rows])
