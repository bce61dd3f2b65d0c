"""Parallel batch autograding with nbgrader.

``python -m autograder.grade SUBMISSIONS_DIR --assignment 01_cfg --workers N --out OUTDIR``

How it works (see docs/grading.md for the instructor's view):

1. The parent builds a *template* nbgrader course once: ``source/{assignment}/`` copied from the
   instructor's source (``solutions/`` by default) and ``nbgrader generate_assignment`` run on it,
   which records every grade cell, locked cell and hidden test in a template ``gradebook.db``.
2. Every submission is graded in its own private copy of that course (own ``gradebook.db``), by a
   separate ``python -m autograder.grade --worker-job JOB.json`` process started through
   :func:`autograder.sandbox.run_limited` (time-out and memory cap for the whole process tree,
   Jupyter kernel included). ``N`` such processes run at once. No SQLite file is ever written by two
   processes: each worker owns its database, and the parent merges serially at the end.
3. Inside the worker: the notebook is read, repaired (``autograder.repair.repair_submission``
   restores lost or duplicated nbgrader metadata), placed at
   ``submitted/{student}/{assignment}/{notebook}.ipynb``, and ``nbgrader autograde`` +
   ``generate_feedback`` run through nbgrader's Python API. nbgrader overwrites locked and test
   cells (hidden tests included) from the gradebook, so the tests come from the instructor's
   source, never from the student's file. The worker writes per-cell scores as JSON.
4. The parent collects results (any order), then serially writes ``OUTDIR/grades.csv``,
   ``OUTDIR/feedback/{student}.html`` and ``OUTDIR/gradebook.db`` (the template gradebook with
   every student's grades merged in through nbgrader's ``Gradebook`` API).

A submission that cannot be read, crashes the grader, times out or is killed for memory still gets
a row: 0 for every cell not graded and a ``status`` / ``reason``. Results do not depend on the
number of workers (rows sorted by student; each grading is independent).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import html
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from autograder import sandbox
from autograder.sandbox import run_limited

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT / "solutions"
COURSE_ID = "cfgflow"

# stderr output nbgrader should ignore in graded cells. nbgrader 0.9 zeroes a grade cell that
# wrote *anything* to stderr; a deprecation warning from torch or a tqdm bar must not cost points.
# IgnorePattern drops a whole stderr output whose text matches (re.search); errors (tracebacks)
# are separate "error" outputs and are never affected.
DEFAULT_IGNORE_PATTERN = (
    r"(?m)(?:^|\s)(?:\w+\.)*(?:UserWarning|FutureWarning|DeprecationWarning|"
    r"PendingDeprecationWarning|RuntimeWarning|ResourceWarning)\b"
    r"|^\s*\d+%\|"  # tqdm progress bars
)

STATUS_OK = "ok"
ISOLATION_BWRAP, ISOLATION_NONE = "bwrap", "none"
NO_ISOLATION_WARNING = (
    "WARNING isolation: none -- {why}, so student code runs with this user's files, network and "
    "the other submissions in reach. Install bubblewrap (apt-get install bubblewrap) or pass "
    "--require-isolation to refuse to grade without it.")

# Signed check results: test cells that call the check library must show a line signed with the
# submission's key for every point they score (cfgflow/checks/_signing.py).
# CHECKS_MODULE is the one place naming the module a signed kernel imports at start-up (it takes
# the key); a move of the check library changes this line only. Signing is imported from
# cfgflow.checks._signing in _verify_signatures only.
CHECKS_MODULE = "cfgflow.checks"
GUARD_MODULE = "autograder._kernel_guard"  # imported by every grading kernel first
# The hidden checks (autograder.checks) run the reference implementations: the grading kernel
# imports this package although no notebook cell names it.
REFERENCE_PACKAGE = "cfgflow_ref"
GRADE_KEY_ENV = "CFGFLOW_GRADE_KEY"
_CALLS_CHECK = re.compile(r"(?<![\w.])(?:" + re.escape(CHECKS_MODULE + ".") + r")?check\s*\(")
TAMPER_NOTE = ("test cell {grade_id}: the check library did not run or was replaced (tampering?) "
               "-> 0 points")


@dataclass
class GradeConfig:
    """Everything the engine needs; the CLI flags map one to one onto these fields."""

    assignment: str = "01_cfg"
    source_dir: Path = DEFAULT_SOURCE  # holds {assignment}/{notebook}.ipynb (nbgrader source)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    cell_timeout_s: int = 300  # nbgrader Execute.timeout, per cell
    submission_timeout_s: float = 1200.0  # whole worker process (kernel start + all cells)
    mem_mb: int = 4096  # cap on the summed resident memory of the worker process tree
    threads_per_worker: Optional[int] = None  # torch/OMP threads; default cpu_count // workers
    repair: bool = True
    ignore_pattern: str = DEFAULT_IGNORE_PATTERN
    progress: bool = True
    keep_workdirs: bool = False
    workdir: Optional[Path] = None  # where private course copies go; default a temp dir
    # Isolation (autograder/sandbox.py View): "auto" = bubblewrap where installed, else none with
    # a loud warning; "none" = never (debugging). require_isolation refuses to grade without it.
    isolation: str = "auto"
    require_isolation: bool = False
    tmpfs_mb: int = 256  # size of each private tmpfs (/tmp, home, the kernel's folder): disk fillers
    max_procs: int = 512  # processes + threads per submission (a fork bomb), see run_limited
    shard: Optional[str] = None  # "K/N": grade the K-th of N slices of the sorted students (K from 0)

    def __post_init__(self) -> None:
        self.source_dir = Path(self.source_dir)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.cell_timeout_s <= 0 or self.submission_timeout_s <= 0:
            raise ValueError("cell_timeout_s and submission_timeout_s must be positive")
        if self.isolation not in ("auto", ISOLATION_NONE):
            raise ValueError(f"isolation must be 'auto' or 'none', got {self.isolation!r}")
        if self.shard is not None:
            parse_shard(self.shard)

    def isolation_mode(self) -> str:
        """``bwrap`` or ``none``; raises ``RuntimeError`` when isolation is required but missing."""
        if self.isolation == "auto" and sandbox.bwrap_path():
            return ISOLATION_BWRAP
        if self.require_isolation:
            raise RuntimeError(f"--require-isolation: {sandbox.bwrap_probe()[1]}"
                               if self.isolation == "auto" else
                               "--require-isolation contradicts isolation='none'")
        return ISOLATION_NONE

    def threads(self) -> int:
        if self.threads_per_worker:
            return self.threads_per_worker
        return max(1, (os.cpu_count() or 1) // self.workers)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` (0-based, like ``SLURM_ARRAY_TASK_ID`` of
    ``--array=0-(N-1)`` and a Kubernetes Indexed Job's ``JOB_COMPLETION_INDEX``)."""
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard must be 'K/N' with integers, e.g. '0/3', got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard {text!r}: need N >= 1 and 0 <= K < N")
    return k, n


def shard_students(students: list[str], shard: Optional[str]) -> list[str]:
    """The students of one shard: every N-th of the sorted list, starting at K (round robin keeps
    the shards' sizes within one and spreads alphabetical clusters of slow submissions)."""
    names = sorted(students)
    if shard is None:
        return names
    k, n = parse_shard(shard)
    return names[k::n]


@dataclass
class CellInfo:
    notebook: str
    grade_id: str
    max_score: float


@dataclass
class StudentResult:
    """One student's outcome. ``scores`` maps ``"{notebook}/{grade_id}"`` to points."""

    student: str
    status: str = STATUS_OK  # ok | unreadable | no_submission | error | timeout | memory | crash
    reason: str = ""
    scores: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    feedback_html: Optional[str] = None
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0  # largest summed RSS of the worker's process tree (kernel included)
    # cells zeroed because their score had no valid signed check line: key -> nbgrader's auto score
    tampered: dict = field(default_factory=dict)
    isolation: str = ""  # bwrap | none: how the submission's code was confined

    def total(self) -> float:
        return float(sum(self.scores.values()))


# --------------------------------------------------------------------------------------------
# nbgrader configuration


def nbgrader_config(course_root: Path, cfg: GradeConfig, signed: bool = False,
                    kernel_name: Optional[str] = None):
    """A traitlets Config for a private course at ``course_root``.

    The instructor's ``autograder/nbgrader_config.py`` is loaded first when present (so settings
    such as ``ClearSolutions.code_stub`` stay in one place); the course layout and the grading
    limits from ``cfg`` then override it. ``signed``: the kernel imports the check library at
    start-up (for the signed check results, see :func:`_verify_signatures`). ``kernel_name``:
    the kernelspec every notebook runs with (the sandboxed kernel, see :func:`_write_kernelspec`),
    whatever the notebook's metadata names.
    """
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    c = Config()
    shared = REPO_ROOT / "autograder" / "nbgrader_config.py"
    if shared.exists():
        try:
            c.merge(PyFileConfigLoader(shared.name, path=str(shared.parent)).load_config())
        except Exception as exc:  # a broken shared config must not stop grading
            print(f"warning: ignoring {shared}: {exc}", file=sys.stderr)
    c.CourseDirectory.root = str(course_root)
    c.CourseDirectory.course_id = COURSE_ID
    for trait in ("source_directory", "release_directory", "submitted_directory",
                  "autograded_directory", "feedback_directory"):
        c.CourseDirectory[trait] = {"source_directory": "source",
                                    "release_directory": "release",
                                    "submitted_directory": "submitted",
                                    "autograded_directory": "autograded",
                                    "feedback_directory": "feedback"}[trait]
    c.CourseDirectory.db_url = f"sqlite:///{course_root / 'gradebook.db'}"
    c.Execute.timeout = int(cfg.cell_timeout_s)
    c.ExecutePreprocessor.timeout = int(cfg.cell_timeout_s)  # older nbgrader (issue #1463)
    # A timed-out cell whose kernel does not answer the interrupt within iopub_timeout (code that
    # swallows KeyboardInterrupt, a long C call, a slow import under load) must cost that cell, not
    # the notebook: with nbgrader's default (True) nbclient raises and the whole autograde fails.
    c.Execute.raise_on_iopub_timeout = False
    c.IgnorePattern.enabled = bool(cfg.ignore_pattern)
    c.IgnorePattern.pattern = cfg.ignore_pattern
    c.OverwriteCells.add_missing_cells = True  # re-add deleted grade/test cells
    # Before any notebook cell runs, the kernel imports the exit guard (exit(), quit() and
    # os._exit() in a cell stop that cell instead of ending the kernel: autograder/_kernel_guard.py)
    # and, for signed results, the check library: it takes the grading key out of the environment
    # (see cfgflow/checks/_gradekey.py) before student code can read it, and captures the functions it
    # relies on unpatched. That import (torch) then happens during kernel start-up: allow for it.
    start_up = [f"__import__('{GUARD_MODULE}')"] + ([f"__import__('{CHECKS_MODULE}')"] if signed else [])
    c.Execute.extra_arguments = ["--InteractiveShellApp.exec_lines=" + "; ".join(start_up)]
    if signed:
        c.Execute.startup_timeout = max(120, int(cfg.cell_timeout_s))
    if kernel_name:
        c.Execute.kernel_name = kernel_name
        # the connection file where the sandboxed kernel can read it (its /tmp is its own; left
        # unset, jupyter_client would write it to the worker's /tmp)
        c.KernelManager.connection_file = str(course_root / ".runtime" / "kernel-grading.json")
    c.Autograde.create_student = True
    c.NbGraderAPI.log_level = "WARN"
    return c


def _api(course_root: Path, cfg: GradeConfig, signed: bool = False, kernel_name: Optional[str] = None):
    from nbgrader.apps import NbGraderAPI

    return NbGraderAPI(config=nbgrader_config(course_root, cfg, signed, kernel_name))


# --------------------------------------------------------------------------------------------
# submissions and the template course


def source_notebooks(cfg: GradeConfig) -> list[Path]:
    src = cfg.source_dir / cfg.assignment
    nbs = sorted(p for p in src.glob("*.ipynb") if not p.name.startswith("."))
    if not nbs:
        raise FileNotFoundError(
            f"source_dir: no notebook in {src} (expected {src}/{cfg.assignment}.ipynb)")
    return nbs


def find_submissions(submissions_dir: Path, assignment: str,
                     notebook_names: list[str]) -> dict[str, list[Path]]:
    """Map each student to their submitted notebook files.

    Accepted layouts, per student folder ``{student}/``:
      * ``{student}/{assignment}.ipynb`` (or ``{notebook}.ipynb``),
      * nbgrader's ``{student}/{assignment}/*.ipynb``,
      * any single ``.ipynb`` in either place (a renamed file: ``Copy of 01_cfg (3).ipynb``).
    A student folder with no notebook maps to ``[]`` (graded as missing, score 0).
    """
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise NotADirectoryError(f"SUBMISSIONS_DIR {submissions_dir} is not a directory")
    loose = sorted(p.name for p in submissions_dir.glob("*.ipynb"))
    if loose:
        print(f"warning: ignoring notebooks directly in {submissions_dir} (expected one folder per "
              f"student): {', '.join(loose[:5])}{' ...' if len(loose) > 5 else ''}", file=sys.stderr)
    found: dict[str, list[Path]] = {}
    for sdir in sorted(p for p in submissions_dir.iterdir() if p.is_dir()):
        if sdir.name.startswith("."):
            continue
        inner = sdir / assignment
        candidates = []
        for where in (inner, sdir):
            if where.is_dir():
                candidates = sorted(p for p in where.glob("*.ipynb")
                                    if not p.name.startswith(".") and p.is_file())
                if candidates:
                    break
        if not candidates:
            found[sdir.name] = []
            continue
        named = [p for p in candidates if p.stem in notebook_names]
        if not named and candidates[0].stem == assignment:
            named = candidates[:1]
        if named:
            found[sdir.name] = named
        elif len(candidates) == 1:
            found[sdir.name] = candidates  # renamed, but the only notebook
        else:
            found[sdir.name] = candidates  # ambiguous; the worker reports it
    return found


def build_template(cfg: GradeConfig, root: Path) -> tuple[Path, list[CellInfo]]:
    """Create the template course at ``root/template`` and return it with its grade cells."""
    import nbformat

    template = root / "template"
    src = cfg.source_dir / cfg.assignment
    shutil.copytree(src, template / "source" / cfg.assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    api = _api(template, cfg)
    res = api.generate_assignment(cfg.assignment, force=True, create=True)
    if not res.get("success", False):
        raise RuntimeError(f"nbgrader generate_assignment failed for {cfg.assignment}:\n"
                           f"{res.get('error', '')}\n{res.get('log', '')}")
    cells = []
    for nb_path in source_notebooks(cfg):
        nb = nbformat.read(str(nb_path), as_version=4)
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade"):
                cells.append(CellInfo(nb_path.stem, meta["grade_id"], float(meta.get("points", 0))))
    return template, cells


# --------------------------------------------------------------------------------------------
# the worker (runs in its own process, inside run_limited)


def _worker_main(job_path: Path) -> int:
    """Autograde one student in a private course; write ``result.json`` next to the job."""
    job = json.loads(Path(job_path).read_text())
    cfg = GradeConfig(**{k: v for k, v in job["cfg"].items()
                         if k in {f.name for f in dataclasses.fields(GradeConfig)}})
    course = Path(job["course"])
    student, assignment = job["student"], cfg.assignment
    out = {"status": STATUS_OK, "reason": "", "scores": {}, "notes": [], "feedback_html": None}
    result_path = Path(job["result"])

    def finish() -> int:
        result_path.write_text(json.dumps(out))
        return 0

    import nbformat

    submitted = [Path(p) for p in job["submission"]]
    src_nbs = {Path(p).stem: Path(p) for p in job["source_notebooks"]}
    if not submitted:
        out.update(status="no_submission", reason="no .ipynb file found in the student's folder")
        return finish()
    if len(submitted) > 1 and not all(p.stem in src_nbs for p in submitted):
        names = ", ".join(p.name for p in submitted)
        out.update(status="unreadable",
                   reason=f"several notebooks and none named as expected ({names})")
        return finish()
    dest_dir = course / "submitted" / student / assignment
    dest_dir.mkdir(parents=True, exist_ok=True)
    for path in submitted:
        name = path.stem if path.stem in src_nbs else next(iter(src_nbs))
        if name != path.stem:
            out["notes"].append(f"notebook '{path.name}' graded as '{name}.ipynb'")
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:
            out.update(status="unreadable", reason=f"cannot read '{path.name}' as a notebook: {exc}")
            return finish()
        if cfg.repair:
            repair = _load_repair()
            if repair is not None:
                try:
                    source_nb = nbformat.read(str(src_nbs[name]), as_version=4)
                    nb, notes = repair(nb, source_nb)
                    out["notes"].extend(str(n) for n in notes)
                except Exception as exc:
                    out["notes"].append(f"metadata repair failed ({type(exc).__name__}: {exc}); "
                                        "graded as submitted")
        nbformat.write(nb, str(dest_dir / f"{name}.ipynb"))

    # A fresh key per submission, for the kernel only (it inherits this process's environment and
    # removes the variable at start-up); the check library signs every result with it.
    signed = _uses_check_library(src_nbs.values())
    key = secrets.token_hex(32) if signed else None
    api = _api(course, cfg, signed, kernel_name=job.get("kernel_name"))
    if key:
        os.environ[GRADE_KEY_ENV] = key
    try:
        res = api.autograde(assignment, student, force=True, create=True)
    finally:
        os.environ.pop(GRADE_KEY_ENV, None)
    if not res.get("success", False):
        out.update(status="error",
                   reason="nbgrader autograde failed: " + _tail(res.get("error") or res.get("log"), 1500))
    if key:
        try:
            tampered = _verify_signatures(course, assignment, student, key.encode(), src_nbs)
        except Exception as exc:  # no gradebook (autograde failed early): nothing to verify
            tampered = {}
            if out["status"] == STATUS_OK:
                out.update(status="error", reason=f"signed check results not verified: {exc}")
        out["tampered"] = tampered
        out["notes"].extend(TAMPER_NOTE.format(grade_id=k.split("/", 1)[1]) for k in tampered)
    # scores: whatever the gradebook holds (also after a partial failure)
    try:
        out["scores"] = _scores_from_gradebook(course, assignment, student)
    except Exception as exc:
        out["scores"] = {}
        if out["status"] == STATUS_OK:
            out.update(status="error", reason=f"no grades recorded: {exc}")
    out["notes"].extend(_execution_notes(course, assignment, student, cfg))
    if out["scores"]:
        fb = api.generate_feedback(assignment, student, force=True)
        htmls = sorted((course / "feedback" / student / assignment).glob("*.html"))
        if fb.get("success", False) and htmls:
            out["feedback_html"] = "\n".join(h.read_text(encoding="utf-8") for h in htmls)
        else:
            out["notes"].append("feedback generation failed: " + _tail(fb.get("error") or fb.get("log"), 500))
    return finish()


def _uses_check_library(source_nbs) -> bool:
    """Whether the assignment's test cells call the check library (then results are signed)."""
    return any(CHECKS_MODULE in Path(p).read_text(encoding="utf-8") for p in source_nbs)


def _check_cells(source_nb: Path) -> dict:
    """``grade_id -> parts`` for the source's test cells that call ``check`` (parts: the cell's
    ``cfgflow.part`` metadata, cfgflow/course.py; empty when it has none)."""
    import nbformat

    from cfgflow.course import cell_part

    nb = nbformat.read(str(source_nb), as_version=4)
    found = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if (cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")
                and _CALLS_CHECK.search(cell.source)):
            found[meta["grade_id"]] = {cell_part(cell)} - {""}
    return found


def _stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _verify_signatures(course: Path, assignment: str, student: str, key: bytes,
                       src_nbs: dict) -> dict:
    """Zero every test cell that scored points without a matching signed check line.

    For each grade cell of the source that calls ``check`` and got an auto score > 0, its stdout
    in the autograded notebook must hold a line signed with ``key`` for one of the cell's parts,
    with the cell's points and an earned value equal to the score (nbgrader caps it at the
    points). Otherwise the genuine check did not produce that score (it was replaced or did not
    run): the grade gets ``manual_score = 0`` in the course's gradebook, so nbgrader's totals and
    feedback follow. Returns ``{"{notebook}/{grade_id}": auto_score}`` of the zeroed cells.
    """
    import nbformat
    from nbgrader.api import Gradebook

    from cfgflow.checks import _signing

    tampered = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        sub = gb.find_submission(assignment, student)
        for nb_sub in sub.notebooks:
            if nb_sub.name not in src_nbs:
                continue
            cells = _check_cells(src_nbs[nb_sub.name])
            graded = course / "autograded" / student / assignment / f"{nb_sub.name}.ipynb"
            outputs = {}
            if graded.exists():
                for cell in nbformat.read(str(graded), as_version=4).cells:
                    gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                    if gid in cells:
                        outputs[gid] = _stdout_of(cell)
            for g in nb_sub.grades:
                if g.name not in cells or not g.auto_score or g.auto_score <= 0:
                    continue
                lines = _signing.valid_lines(outputs.get(g.name, ""), key)
                if not _signing.matches(lines, float(g.auto_score), float(g.max_score), cells[g.name]):
                    tampered[f"{nb_sub.name}/{g.name}"] = float(g.auto_score)
                    g.manual_score = 0.0
                    g.needs_manual_grade = False
        gb.db.commit()
    return tampered


def _load_repair():
    try:
        from autograder.repair import repair_submission
    except ImportError:  # the repair module is optional
        return None
    return repair_submission


def _tail(text: Optional[str], n: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


def _scores_from_gradebook(course: Path, assignment: str, student: str) -> dict:
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        sub = gb.find_submission(assignment, student)
        for nb in sub.notebooks:
            for g in nb.grades:
                scores[f"{nb.name}/{g.name}"] = float(g.score or 0.0)
    return scores


def _execution_notes(course: Path, assignment: str, student: str, cfg: GradeConfig) -> list:
    """Name the cells that hit the per-cell time-out or tried to end the kernel, from the
    autograded notebook."""
    import nbformat

    notes = []
    for path in sorted((course / "autograded" / student / assignment).glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for i, cell in enumerate(nb.cells):
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", f"cell {i}")
            for o in cell.get("outputs", []):
                if o.get("output_type") != "error":
                    continue
                if o.get("ename") == "CellTimeoutError":
                    notes.append(f"{path.stem}: '{gid}' stopped after the {cfg.cell_timeout_s} s "
                                 "per-cell time-out")
                elif o.get("ename") == "KernelExitBlocked":
                    what = (o.get("evalue") or "").split(" would end", 1)[0] or "exit()"
                    notes.append(f"{path.stem}: code run by '{gid}' called {what}, which would have "
                                 "ended the kernel and zeroed the notebook; blocked while grading "
                                 "(the cell stopped there, the rest of the notebook ran): remove it")
    return notes


# --------------------------------------------------------------------------------------------
# isolation: what a sandboxed worker and its kernel see (autograder/sandbox.py)


def _home() -> str:
    home = os.path.expanduser("~")
    if home == "/":
        raise RuntimeError("HOME is '/': set HOME to a folder of its own before grading")
    return home


def _imported_top_levels(source_nbs: list[Path]) -> set[str]:
    """Top-level module names the source notebooks import, plus the engine's kernel modules."""
    import nbformat

    names = {__name__.split(".")[0], GUARD_MODULE.split(".")[0], CHECKS_MODULE.split(".")[0],
             REFERENCE_PACKAGE}
    pattern = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.M)
    for path in source_nbs:
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type == "code":
                names.update(pattern.findall(cell.source))
    return names


def sandbox_binds(source_nbs: list[Path]) -> tuple[str, ...]:
    """Read-only folders of a sandbox: this Python and its site-packages, every package the
    grading imports that lives elsewhere (an editable install's ``autograder/``, ``cfgflow_ref/``:
    found from the modules' own paths, so a new package needs no change here), and the MNIST
    cache. Not the checkout itself: its ``solutions/`` and anything else in it stay outside."""
    import importlib.util

    py = sandbox.python_paths()
    extra = []
    for name in sorted(_imported_top_levels(source_nbs)):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin in (None, "built-in", "frozen"):
            if spec is not None and spec.submodule_search_locations:  # namespace package
                extra.extend(spec.submodule_search_locations)
            continue
        where = (list(spec.submodule_search_locations) if spec.submodule_search_locations
                 else [spec.origin])
        extra.extend(p for p in where if not any(p == r or p.startswith(r + "/") for r in py))
    from cfgflow.data import default_root

    data = default_root()
    if os.path.isdir(data):
        extra.append(data)
    return tuple(sandbox._outermost(py + [os.path.realpath(p) for p in extra]))


def _write_kernelspec(jupyter_dir: Path, kernel_dir: Path, runtime: Path, cfg: GradeConfig,
                      binds: tuple) -> None:
    """A kernelspec whose kernel runs in a second, inner sandbox inside the worker's.

    The kernel (the student's code) shares the worker's network namespace (ZeroMQ over its
    loopback, nothing else) but sees only the read-only ``binds``, its connection file and empty
    size-limited tmpfs folders: its working folder, /tmp and home. Not the course copy with the
    gradebook (hidden tests), the source notebooks or the other students' files; no capabilities
    and its own pid namespace (the worker's /proc entries, and through them its files, are out of
    reach). ``JPY_PARENT_PID`` is dropped: in its own pid namespace the kernel's parent is pid 1,
    which ipykernel would take for a dead parent.
    """
    inner = sandbox.View(ro=list(binds) + [str(runtime)], rw=[],
                         tmpfs=["/tmp", _home(), str(kernel_dir)], tmpfs_mb=cfg.tmpfs_mb,
                         share_net=True, chdir=str(kernel_dir), drop_caps=True,
                         unset_env=("JPY_PARENT_PID",))
    spec = {"argv": inner.argv(sandbox.bwrap_path()) + [sys.executable, "-m", "ipykernel_launcher",
                                                        "-f", "{connection_file}"],
            "display_name": "Python 3 (cfgflow grading sandbox)", "language": "python",
            # a cell time-out interrupts through the control channel: a SIGINT to the process
            # group would end bwrap itself, and with it the kernel
            "interrupt_mode": "message"}
    folder = jupyter_dir / "kernels" / SANDBOX_KERNEL
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))


# --------------------------------------------------------------------------------------------
# running the workers


def _worker_env(cfg: GradeConfig, course: Path) -> dict:
    env = dict(os.environ)
    n = str(cfg.threads())
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = n
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["JUPYTER_RUNTIME_DIR"] = str(course / ".runtime")
    env["MPLBACKEND"] = "Agg"
    env.setdefault("CFGFLOW_OFFLINE", "1")  # no MNIST download per submission (empty value: allow)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("NBGRADER_EXECUTION", None)  # nbgrader sets it to 'autograde' around execution
    return env


SANDBOX_KERNEL = "cfgflow-sandbox"  # the kernelspec of a sandboxed grading kernel


def grade_one(student: str, files: list[Path], template: Path, src_nbs: list[Path],
              cfg: GradeConfig, work_root: Path, index: int,
              isolation: str = ISOLATION_NONE, binds: tuple = ()) -> StudentResult:
    """Grade one student in a private copy of the template course (parent side).

    The worker gets copies of the student's files and of the source notebooks inside its course,
    so that with ``isolation == "bwrap"`` its sandbox binds that one folder writable and nothing
    else of the instructor's (``binds``: the read-only package folders, see :func:`sandbox_binds`).
    """
    t0 = time.perf_counter()
    course = work_root / f"{index:05d}"
    shutil.copytree(template, course, ignore=shutil.ignore_patterns("release"))
    incoming = course / "incoming"
    incoming.mkdir()
    copies = []
    for i, path in enumerate(files):  # own folder per file: the student's file names are kept
        (incoming / str(i)).mkdir()
        copies.append(Path(shutil.copy2(path, incoming / str(i) / path.name)))
    (course / ".runtime").mkdir()
    job = {
        "cfg": {k: (str(v) if isinstance(v, Path) else v)
                for k, v in dataclasses.asdict(cfg).items() if k != "workdir"},
        "course": str(course), "student": student,
        "submission": [str(p) for p in copies],
        "source_notebooks": [str(course / "source" / cfg.assignment / p.name) for p in src_nbs],
        "result": str(course / "result.json"),
    }
    env = _worker_env(cfg, course)
    cmd = [sys.executable, "-m", "autograder.grade", "--worker-job", str(course / "job.json")]
    if isolation == ISOLATION_BWRAP:
        job["kernel_name"] = SANDBOX_KERNEL
        kernel_dir = course / "autograded" / student / cfg.assignment
        _write_kernelspec(course / "jupyter", kernel_dir, course / ".runtime", cfg, binds)
        env["JUPYTER_PATH"] = str(course / "jupyter")
        outer = sandbox.View(ro=list(binds), rw=[str(course)], tmpfs=["/tmp", _home()],
                             tmpfs_mb=cfg.tmpfs_mb, chdir=str(course), new_session=True)
        cmd = outer.argv(sandbox.bwrap_path()) + cmd
    (course / "job.json").write_text(json.dumps(job))
    res = run_limited(cmd, timeout_s=cfg.submission_timeout_s, mem_mb=cfg.mem_mb,
                      cwd=str(course), env=env, max_procs=cfg.max_procs)
    out = StudentResult(student, isolation=isolation)
    rpath = course / "result.json"
    if res.timed_out:
        out.status, out.reason = "timeout", (
            f"grading stopped after the {cfg.submission_timeout_s:g} s per-submission time-out")
    elif res.mem_exceeded:
        out.status, out.reason = "memory", f"killed: memory limit of {cfg.mem_mb} MB exceeded"
    elif res.procs_exceeded:
        out.status, out.reason = "processes", f"killed: more than {cfg.max_procs} processes (a fork bomb?)"
    elif rpath.exists():
        r = json.loads(rpath.read_text())
        out.status, out.reason = r["status"], r["reason"]
        out.scores, out.notes, out.feedback_html = r["scores"], r["notes"], r["feedback_html"]
        out.tampered = r.get("tampered", {})
    else:
        out.status = "crash"
        out.reason = f"grader process exited with code {res.returncode}: {_tail(res.stderr, 1500)}"
    if out.status in ("timeout", "memory", "processes", "crash") and res.stderr:
        out.notes.append("grader stderr (tail): " + _tail(res.stderr, 800))
    out.wall_s = time.perf_counter() - t0
    out.peak_rss_mb = float(getattr(res, "peak_rss_mb", 0.0) or 0.0)
    if not cfg.keep_workdirs:
        shutil.rmtree(course, ignore_errors=True)
    return out


def grade_submissions(submissions_dir: Path, cfg: GradeConfig, out_dir: Optional[Path] = None,
                      students: Optional[list[str]] = None) -> tuple[list[StudentResult], list[CellInfo]]:
    """Grade every student under ``submissions_dir``; write outputs to ``out_dir`` if given.

    Returns the results sorted by student, and the grade cells (in notebook order).
    """
    src_nbs = source_notebooks(cfg)
    isolation = cfg.isolation_mode()
    if isolation == ISOLATION_NONE:
        why = ("isolation is switched off (--no-isolation)" if cfg.isolation == ISOLATION_NONE
               else sandbox.bwrap_probe()[1])
        print(NO_ISOLATION_WARNING.format(why=why), flush=True)
    binds = sandbox_binds(src_nbs) if isolation == ISOLATION_BWRAP else ()
    subs = find_submissions(Path(submissions_dir), cfg.assignment, [p.stem for p in src_nbs])
    if students is not None:
        subs = {s: subs[s] for s in students}
    subs = {s: subs[s] for s in shard_students(list(subs), cfg.shard)}
    own_tmp = cfg.workdir is None
    root = Path(tempfile.mkdtemp(prefix="cfgflow-grade-")) if own_tmp else Path(cfg.workdir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        template, cells = build_template(cfg, root)
        work_root = root / "work"
        work_root.mkdir()
        results: list[StudentResult] = []
        bar = _progress(len(subs), cfg)
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            futs = {pool.submit(grade_one, s, f, template, src_nbs, cfg, work_root, i,
                                isolation, binds): s
                    for i, (s, f) in enumerate(sorted(subs.items()))}
            for fut in as_completed(futs):
                s = futs[fut]
                try:
                    results.append(fut.result())
                except Exception:  # an engine bug for one student must not lose the batch
                    reason = "engine error: " + _tail(traceback.format_exc(), 1500)
                    results.append(StudentResult(s, status="crash", reason=reason, isolation=isolation))
                bar.update(1)
        bar.close()
        results.sort(key=lambda r: r.student)
        _fill_missing(results, cells)
        if out_dir is not None:
            write_outputs(Path(out_dir), results, cells, cfg, template)
        return results, cells
    finally:
        if own_tmp and not cfg.keep_workdirs:
            shutil.rmtree(root, ignore_errors=True)


def _progress(total: int, cfg: GradeConfig):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or not cfg.progress:
        class _Null:
            def update(self, n):
                pass

            def close(self):
                pass
        return _Null()
    return tqdm(total=total, desc=f"autograde {cfg.assignment}", unit="sub", file=sys.stderr)


def _fill_missing(results: list[StudentResult], cells: list[CellInfo]) -> None:
    """Every student gets every grade cell; cells not graded score 0."""
    for r in results:
        full = {}
        for c in cells:
            key = f"{c.notebook}/{c.grade_id}"
            full[key] = float(r.scores.get(key, 0.0))
        r.scores = full


# --------------------------------------------------------------------------------------------
# outputs (parent, serial)


def write_outputs(out_dir: Path, results: list[StudentResult], cells: list[CellInfo],
                  cfg: GradeConfig, template: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "grades.csv", results, cells, cfg.assignment)
    fb_dir = out_dir / "feedback"
    fb_dir.mkdir(exist_ok=True)
    for r in results:
        (fb_dir / f"{r.student}.html").write_text(feedback_page(r, cells, cfg.assignment), encoding="utf-8")
    merge_gradebook(out_dir / "gradebook.db", template / "gradebook.db", results, cells, cfg.assignment)


def csv_columns(cells: list[CellInfo]) -> list[str]:
    multi = len({c.notebook for c in cells}) > 1
    return [f"{c.notebook}/{c.grade_id}" if multi else c.grade_id for c in cells]


def write_csv(path: Path, results: list[StudentResult], cells: list[CellInfo], assignment: str) -> None:
    """``student, assignment, <one column per grade cell>, total, max_total, status, reason, notes,
    isolation``."""
    cols = csv_columns(cells)
    max_total = sum(c.max_score for c in cells)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "assignment", *cols, "total", "max_total", "status", "reason", "notes",
                    "isolation"])
        w.writerow(["(max)", assignment, *[_fmt(c.max_score) for c in cells],
                    _fmt(max_total), _fmt(max_total), "", "", "", ""])
        for r in results:
            w.writerow([r.student, assignment,
                        *[_fmt(r.scores[f"{c.notebook}/{c.grade_id}"]) for c in cells],
                        _fmt(r.total()), _fmt(max_total), r.status, r.reason, " | ".join(r.notes),
                        r.isolation])


def _fmt(x: float) -> str:
    return f"{round(float(x), 4):g}"


def feedback_page(r: StudentResult, cells: list[CellInfo], assignment: str) -> str:
    """nbgrader's feedback HTML with a box of our notes on top (or a plain page if none)."""
    items = []
    if r.status != STATUS_OK:
        items.append(f"<li><b>{html.escape(r.status)}</b>: {html.escape(r.reason)}</li>")
    items += [f"<li>{html.escape(n)}</li>" for n in r.notes]
    total = sum(c.max_score for c in cells)
    box = (f'<div id="cfgflow-grading-notes" style="border:2px solid #c60;padding:8px;margin:8px">'
           f"<h3>{html.escape(assignment)}: {_fmt(r.total())} / {_fmt(total)} points</h3>"
           + (f"<ul>{''.join(items)}</ul>" if items else "") + "</div>")
    if r.feedback_html:
        m = re.search(r"<body[^>]*>", r.feedback_html)
        if m:
            return r.feedback_html[:m.end()] + box + r.feedback_html[m.end():]
        return box + r.feedback_html
    rows = "".join(f"<tr><td>{html.escape(c.notebook)}</td><td>{html.escape(c.grade_id)}</td>"
                   f"<td>{_fmt(r.scores[f'{c.notebook}/{c.grade_id}'])} / {_fmt(c.max_score)}</td></tr>"
                   for c in cells)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(r.student)} "
            f"{html.escape(assignment)}</title></head><body>{box}<table>{rows}</table></body></html>")


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
    import warnings

    with Gradebook(f"sqlite:///{db_path}", COURSE_ID) as gb, warnings.catch_warnings():
        # nbgrader's update_or_create_submission trips a harmless SQLAlchemy autoflush warning
        warnings.filterwarnings("ignore", message=".*not in session.*")
        for r in results:
            gb.update_or_create_student(r.student)
            gb.update_or_create_submission(assignment, r.student)
            for c in cells:
                key = f"{c.notebook}/{c.grade_id}"
                g = gb.find_grade(c.grade_id, c.notebook, assignment, r.student)
                if key in r.tampered:  # nbgrader's score kept, overridden (the notes say why)
                    g.auto_score, g.manual_score = r.tampered[key], 0.0
                else:
                    g.auto_score = r.scores[key]
                g.needs_manual_grade = False
            gb.db.commit()


def merge_shards(shards: list[Path], out_dir: Path, assignment: str) -> list[StudentResult]:
    """Merge the outputs of several runs (e.g. one per machine) into one ``out_dir``.

    Each shard is an ``--out`` folder of this command for the same assignment and source. Their
    grade cells and maxima must agree and no student may appear twice. Writes the combined
    ``grades.csv``, ``feedback/`` and ``gradebook.db`` (rebuilt serially from the CSVs).
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
            results[row["student"]] = StudentResult(
                row["student"], status=row["status"], reason=row["reason"],
                notes=[n for n in row["notes"].split(" | ") if n], isolation=row.get("isolation", ""),
                scores={f"{by_col[k].notebook}/{by_col[k].grade_id}": float(row[k]) for k in cols})
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
    return merged


def score_table(results: list[StudentResult], cells: list[CellInfo], title: str = "") -> str:
    """A plain-text table: one row per student, one column per grade cell, total, status."""
    cols = csv_columns(cells)
    header = ["student", *cols, "total", "status"]
    maxrow = ["(max)", *[_fmt(c.max_score) for c in cells], _fmt(sum(c.max_score for c in cells)), ""]
    rows = [[r.student, *[_fmt(r.scores[f"{c.notebook}/{c.grade_id}"]) for c in cells],
             _fmt(r.total()), r.status if r.status == STATUS_OK else f"{r.status}: {r.reason[:60]}"]
            for r in results]
    widths = [max(len(str(x[i])) for x in [header, maxrow, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
    out = ([title] if title else []) + [line(header), line(maxrow), "-" * (sum(widths) + 2 * len(widths))]
    return "\n".join(out + [line(r) for r in rows])


# --------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    d = GradeConfig()
    p = argparse.ArgumentParser(prog="python -m autograder.grade", description=__doc__.split("\n\n")[0])
    p.add_argument("submissions", nargs="?", type=Path,
                   help="folder of {student}/{assignment}.ipynb or {student}/{assignment}/*.ipynb")
    p.add_argument("--assignment", default=d.assignment)
    p.add_argument("--source", type=Path, default=d.source_dir,
                   help="instructor source folder holding {assignment}/ (default: solutions/)")
    p.add_argument("--workers", type=int, default=d.workers, help="grading processes at once")
    p.add_argument("--out", type=Path, default=Path("grading_out"))
    p.add_argument("--cell-timeout", type=int, default=d.cell_timeout_s, help="seconds per cell")
    p.add_argument("--submission-timeout", type=float, default=d.submission_timeout_s,
                   help="seconds per submission (whole worker process)")
    p.add_argument("--mem-mb", type=int, default=d.mem_mb, help="memory cap per worker process tree")
    p.add_argument("--threads-per-worker", type=int, default=None)
    p.add_argument("--no-repair", action="store_true", help="grade notebooks without metadata repair")
    p.add_argument("--ignore-pattern", default=d.ignore_pattern,
                   help="regex of stderr output that does not zero a grade cell ('' to disable)")
    p.add_argument("--student", action="append", help="grade only these students (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--keep-workdirs", type=Path, default=None, metavar="DIR",
                   help="keep every private course under DIR (debugging)")
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="grade only the K-th of N slices of the sorted students, K from 0 (a job "
                        "array: Slurm --array=0-(N-1) with $SLURM_ARRAY_TASK_ID/N, a Kubernetes "
                        "Indexed Job with $JOB_COMPLETION_INDEX/N); join the outputs with --merge")
    p.add_argument("--require-isolation", action="store_true",
                   help="refuse to grade when bubblewrap (bwrap) is not installed")
    p.add_argument("--no-isolation", action="store_true",
                   help="grade without the bubblewrap sandbox (debugging; results say isolation: none)")
    p.add_argument("--tmpfs-mb", type=int, default=d.tmpfs_mb,
                   help="size of each private tmpfs of a sandbox (/tmp, home, the kernel's folder)")
    p.add_argument("--max-procs", type=int, default=d.max_procs,
                   help="processes and threads per submission (stops a fork bomb)")
    p.add_argument("--merge", type=Path, nargs="+", metavar="SHARD_OUT",
                   help="merge the --out folders of several runs into --out instead of grading")
    p.add_argument("--worker-job", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker_job:
        return _worker_main(args.worker_job)
    if args.merge:
        merged = merge_shards(args.merge, args.out, args.assignment)
        print(f"merged {len(args.merge)} shards: {len(merged)} students -> {args.out}/grades.csv, "
              f"{args.out}/feedback/, {args.out}/gradebook.db")
        return 0
    if args.submissions is None:
        _parser().error("SUBMISSIONS_DIR is required")
    cfg = GradeConfig(assignment=args.assignment, source_dir=args.source, workers=args.workers,
                      cell_timeout_s=args.cell_timeout, submission_timeout_s=args.submission_timeout,
                      mem_mb=args.mem_mb, threads_per_worker=args.threads_per_worker,
                      repair=not args.no_repair, ignore_pattern=args.ignore_pattern,
                      progress=not args.no_progress, keep_workdirs=args.keep_workdirs is not None,
                      workdir=args.keep_workdirs, shard=args.shard,
                      isolation="none" if args.no_isolation else "auto",
                      require_isolation=args.require_isolation, tmpfs_mb=args.tmpfs_mb,
                      max_procs=args.max_procs)
    t0 = time.perf_counter()
    try:
        results, cells = grade_submissions(args.submissions, cfg, args.out, students=args.student)
    except RuntimeError as exc:
        if "--require-isolation" not in str(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(score_table(results, cells, title=f"{cfg.assignment}: {len(results)} submissions"))
    print(f"\n{len(results)} submissions in {dt:.1f} s with {cfg.workers} workers; "
          f"wrote {args.out}/grades.csv, {args.out}/feedback/, {args.out}/gradebook.db")
    return 0


if __name__ == "__main__":
    sys.exit(main())
