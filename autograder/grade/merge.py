"""Gradebooks and joining results: a new gradebook, every student's grades into one gradebook, and
several runs' outputs into one."""

from __future__ import annotations

import csv
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

from autograder.grade import records
from autograder.grade.config import COURSE_ID
from autograder.grade.outputs import CellInfo, StudentResult, csv_columns, write_csv


def create_gradebook(db_path: Path) -> None:
    """A new, empty nbgrader gradebook at ``db_path``, as nbgrader's ``Gradebook`` makes one.

    nbgrader creates the tables and stamps the file with its schema's alembic revision, which it
    reads by running the ``alembic heads`` command in a subprocess: about 3 s of every batch's
    start. Here the revision comes from alembic's own API on nbgrader's migration scripts
    (``alembic heads`` is a front end to it), in-process; nbgrader then opens the file as an
    existing gradebook. tests/test_grade_engine.py checks both make the same file.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.api import Base, Gradebook, _temp_alembic_ini
    from sqlalchemy import create_engine, text

    with _temp_alembic_ini(f"sqlite:///{db_path}") as ini:
        head = ScriptDirectory.from_config(Config(ini)).get_current_head()
    engine = create_engine(f"sqlite:///{db_path}", future=True)
    try:
        Base.metadata.create_all(bind=engine)
        with engine.begin() as db:
            db.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            db.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
    finally:
        engine.dispose()
    with Gradebook(f"sqlite:///{db_path}", COURSE_ID):  # nbgrader's own check: the course row
        pass


def merge_gradebook(db_path: Path, template_db: Path, results: list[StudentResult],
                    cells: list[CellInfo], assignment: str) -> None:
    """One gradebook for the batch: the template's assignment plus every student's grades.

    A fresh copy of the template gradebook (assignment, notebooks, grade cells) each run; each
    student's submission is added and its auto scores set, serially, through nbgrader's API.
    """
    from nbgrader.api import Gradebook

    if db_path.exists():
        db_path.unlink()
    shutil.copyfile(template_db, db_path)
    with Gradebook(f"sqlite:///{db_path}", COURSE_ID) as gb, warnings.catch_warnings():
        # nbgrader's update_or_create_submission trips a harmless SQLAlchemy autoflush warning
        warnings.filterwarnings("ignore", message=".*not in session.*")
        for r in results:
            gb.update_or_create_student(r.student)
            gb.update_or_create_submission(assignment, r.student)
            for c in cells:
                g = gb.find_grade(c.grade_id, c.notebook, assignment, r.student)
                g.auto_score = r.scores[c.key]
                g.needs_manual_grade = False
            gb.db.commit()


def merge_shards(shards: list[Path], out_dir: Path, assignment: str,
                 against: Optional[Path] = None) -> list[StudentResult]:
    """Merge the outputs of several runs (e.g. one per machine) into one ``out_dir``.

    Each shard is an ``--out`` folder of this command for the same assignment and source. Their
    grade cells and maxima must agree and no student may appear twice. Writes the combined
    ``grades.csv``, ``feedback/`` and ``gradebook.db`` (rebuilt serially from the CSVs), and the
    class report of everyone (the shards' records and graded code: ``report.html``, ``report.json``;
    ``against``: more known solutions for the similarity section).
    """
    from nbgrader.api import Gradebook

    shards = [Path(s) for s in shards]
    if not shards:
        raise ValueError("merge: no shard folders given")
    with Gradebook(f"sqlite:///{shards[0] / 'gradebook.db'}", COURSE_ID) as gb:
        gb_cells = [CellInfo(nb.name, gc.name, float(gc.max_score))
                    for nb in gb.find_assignment(assignment).notebooks for gc in nb.grade_cells]
    by_col = dict(zip(csv_columns(gb_cells), gb_cells))
    with open(shards[0] / "grades.csv", newline="", encoding="utf-8") as f:
        cols = [k for k in next(csv.reader(f)) if k in by_col]  # keep the CSV's column order
    cells = [by_col[k] for k in cols]
    results: dict[str, StudentResult] = {}
    header0 = None
    for shard in shards:
        with open(shard / "grades.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        header = [k for k in rows[0] if k in by_col]
        if sorted(header) != sorted(cols) or (header0 is not None and rows[0] != header0):
            raise ValueError(f"merge: {shard}/grades.csv has other grade cells or maxima than "
                             f"{shards[0]}/grades.csv (graded from a different source?)")
        header0 = rows[0]
        for row in rows[1:]:
            if row["student"] in results:
                raise ValueError(f"merge: student {row['student']!r} appears in two shards "
                                 f"(second: {shard})")
            result = StudentResult(
                row["student"], status=row["status"], reason=row["reason"],
                notes=[n for n in row["notes"].split(" | ") if n], isolation=row.get("isolation", ""),
                scores={by_col[k].key: float(row[k]) for k in cols})
            record = shard / records.RECORDS / f"{row['student']}.json"
            full = records.load(record)  # the judge's verdicts, time and memory: the report's input
            if full is not None:
                result.judge, result.wall_s, result.peak_rss_mb = full.judge, full.wall_s, full.peak_rss_mb
                result.timings = full.timings
                (out_dir / records.RECORDS).mkdir(parents=True, exist_ok=True)
                if (out_dir / records.RECORDS / record.name).resolve() != record.resolve():
                    shutil.copyfile(record, out_dir / records.RECORDS / record.name)
            results[row["student"]] = result
        for fb in sorted((shard / "feedback").glob("*.html")):
            if fb.stem in results:
                (out_dir / "feedback").mkdir(parents=True, exist_ok=True)
                if (out_dir / "feedback" / fb.name).resolve() != fb.resolve():
                    shutil.copyfile(fb, out_dir / "feedback" / fb.name)
    merged = [results[s] for s in sorted(results)]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.db"
        shutil.copyfile(shards[0] / "gradebook.db", base)
        merge_gradebook(out_dir / "gradebook.db", base, merged, cells, assignment)
    write_csv(out_dir / "grades.csv", merged, cells, assignment)
    from autograder import report, similarity

    root = similarity.gather(out_dir, shards)
    if against is not None:
        similarity.add_known(root, Path(against))
    sim = similarity.compare(root) if (root / "code").is_dir() else None
    report.write(out_dir, merged, cells, assignment, sim)
    return merged
