"""The one configuration object of the engine, its command-line options and nbgrader's config.

:class:`GradeConfig` is the single source: each field that the command line can set carries its
option in the field's metadata (:func:`_opt`), :func:`add_config_options` turns those into
argparse options (``python -m autograder.grade`` and ``python -m autograder.pipeline`` both call
it, so an option is declared once), :func:`config_from_args` maps parsed options back onto the
fields, and :meth:`GradeConfig.nbgrader_config` derives the traitlets config nbgrader runs with.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from autograder import sandbox

REPO_ROOT = Path(__file__).resolve().parents[2]
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

class Status(str, enum.Enum):
    """How grading a submission ended (the CSV's ``status`` column: the value)."""

    OK = "ok"
    UNREADABLE = "unreadable"          # no notebook could be read
    NO_SUBMISSION = "no_submission"    # the student's folder holds no .ipynb
    ERROR = "error"                    # nbgrader failed (the reason says how)
    TIMEOUT = "timeout"                # the per-submission time-out ended the worker
    MEMORY = "memory"                  # the memory cap ended it
    PROCESSES = "processes"            # the process cap ended it (a fork bomb)
    CRASH = "crash"                    # the worker died without a result

    def __str__(self) -> str:
        return self.value

    @property
    def killed(self) -> bool:
        """The worker did not end by itself."""
        return self in (Status.TIMEOUT, Status.MEMORY, Status.PROCESSES, Status.CRASH)


STATUS_OK = Status.OK


class IsolationRequired(RuntimeError):
    """``--require-isolation`` and no working bubblewrap."""
ISOLATION_BWRAP, ISOLATION_NONE = "bwrap", "none"

# The module test cells call (the probes' runtime; the judge outside the kernel gives the scores).
CHECKS_MODULE = "cfgflow.checks"
GUARD_MODULE = "cfgflow._kernel_guard"  # imported by every grading kernel first
# The judge's packages (its code, the hidden configurations, the reference): the worker imports
# them, the kernel's sandbox never shows them.
JUDGE_PACKAGES = ("autograder", "cfgflow_ref")
SANDBOX_KERNEL = "cfgflow-sandbox"  # the kernelspec of a sandboxed grading kernel
# nbconvert templates: templates/feedback/ adds our page to nbgrader's "feedback" template
TEMPLATES = Path(__file__).resolve().parent / "templates"
FEEDBACK_TEMPLATE = "cfgflow_feedback.html.j2"


def _opt(default, *flags: str, factory=None, **argparse_kwargs):
    """A dataclass field whose command-line option is ``flags`` (argparse keyword arguments
    ``argparse_kwargs``); ``flags`` empty: the field has no option of its own."""
    meta = {"cli": (flags, argparse_kwargs)} if flags else {}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class GradeConfig:
    """Everything the engine needs; the CLI options are generated from these fields."""

    assignment: str = _opt("01_cfg", "--assignment",
                           help="the assignment to grade (an id of cfgflow/course.py)")
    # holds {assignment}/{notebook}.ipynb (nbgrader source)
    source_dir: Path = _opt(DEFAULT_SOURCE, "--source", type=Path,
                            help="instructor source folder holding {assignment}/ (default: solutions/)")
    workers: int = _opt(None, "--workers", factory=lambda: os.cpu_count() or 1, type=int,
                        help="grading processes at once (default: os.cpu_count())")
    cell_timeout_s: int = _opt(300, "--cell-timeout", type=int,
                               help="seconds per cell (nbgrader Execute.timeout)")
    submission_timeout_s: float = _opt(1200.0, "--submission-timeout", type=float,
                                       help="seconds per submission (whole worker process)")
    mem_mb: int = _opt(4096, "--mem-mb", type=int,
                       help="cap on the summed resident memory of a worker's process tree")
    threads_per_worker: Optional[int] = _opt(None, "--threads-per-worker", type=int,
                                             help="torch/OMP threads (default cpu_count // workers)")
    repair: bool = _opt(True, "--no-repair", action="store_false",
                        help="grade notebooks without metadata repair")
    ignore_pattern: str = _opt(DEFAULT_IGNORE_PATTERN, "--ignore-pattern",
                               help="regex of stderr output that does not zero a grade cell "
                                    "('' to disable)")
    progress: bool = _opt(True, "--no-progress", action="store_false", help="no progress bar")
    keep_workdirs: bool = False  # set by --keep-workdirs DIR (the ``workdir`` option)
    # where private course copies go; default a temp dir
    workdir: Optional[Path] = _opt(None, "--keep-workdirs", type=Path, metavar="DIR",
                                   help="keep every private course under DIR (debugging)")
    # Isolation (autograder/sandbox.py View): "auto" = bubblewrap where installed, else none with
    # a loud warning; "none" = never (debugging). require_isolation refuses to grade without it.
    isolation: str = _opt("auto", "--no-isolation", action="store_const", const=ISOLATION_NONE,
                          help="grade without the bubblewrap sandbox (debugging; results say "
                               "isolation: none)")
    require_isolation: bool = _opt(False, "--require-isolation", action="store_true",
                                   help="refuse to grade when bubblewrap (bwrap) is not installed")
    tmpfs_mb: int = _opt(256, "--tmpfs-mb", type=int,
                         help="size of each private tmpfs of a sandbox (/tmp, home, the kernel's "
                              "folder): disk fillers")
    max_procs: int = _opt(512, "--max-procs", type=int,
                          help="processes and threads per submission (stops a fork bomb)")
    # known solutions (e.g. the lab's public ones) the similarity report compares every hand-in with
    against: Optional[Path] = _opt(None, "--against", type=Path, metavar="DIR",
                                   help="folder of known solutions (notebooks or .py files, searched "
                                        "recursively) that the report's similarity section compares "
                                        "every hand-in's graded code with")
    shard: Optional[str] = _opt(None, "--shard", metavar="K/N",
                                help="grade only the K-th of N slices of the sorted students, K from 0 "
                                     "(a job array: Slurm --array=0-(N-1) with $SLURM_ARRAY_TASK_ID/N, "
                                     "a Kubernetes Indexed Job with $JOB_COMPLETION_INDEX/N); join the "
                                     "outputs with --merge")

    def __post_init__(self) -> None:
        self.source_dir = Path(self.source_dir)
        if self.workdir is not None:
            self.workdir = Path(self.workdir)
        if self.against is not None:
            self.against = Path(self.against)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.cell_timeout_s <= 0 or self.submission_timeout_s <= 0:
            raise ValueError("cell_timeout_s and submission_timeout_s must be positive")
        if self.isolation not in ("auto", ISOLATION_NONE):
            raise ValueError(f"isolation must be 'auto' or 'none', got {self.isolation!r}")
        if self.shard is not None:
            parse_shard(self.shard)

    def isolation_mode(self) -> str:
        """``bwrap`` or ``none``; raises :class:`IsolationRequired` when isolation is required but
        missing."""
        if self.isolation == "auto" and sandbox.bwrap_path():
            return ISOLATION_BWRAP
        if self.require_isolation:
            raise IsolationRequired(f"--require-isolation: {sandbox.bwrap_probe()[1]}"
                               if self.isolation == "auto" else
                               "--require-isolation contradicts isolation='none'")
        return ISOLATION_NONE

    def threads(self) -> int:
        if self.threads_per_worker:
            return self.threads_per_worker
        return max(1, (os.cpu_count() or 1) // self.workers)

    # -- the worker's copy (a JSON job file): every field, paths as strings
    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> "GradeConfig":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def nbgrader_config(self, course_root: Path, kernel_name: Optional[str] = None,
                        steps: Optional[dict] = None):
        """The traitlets Config nbgrader runs with for a private course at ``course_root``.

        The instructor's ``autograder/nbgrader_config.py`` is loaded first when present (so
        settings such as ``ClearSolutions.code_stub`` stay in one place); the course layout and
        the grading limits of this object then override it. ``kernel_name``: the
        kernelspec every notebook runs with (the sandboxed kernel), whatever the notebook's
        metadata names. ``steps``: the engine's own preprocessors' settings
        (:func:`autograder.grade.preprocessors.configure`): repair, judge, banner.
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
        for trait in ("source", "release", "submitted", "autograded", "feedback"):
            c.CourseDirectory[f"{trait}_directory"] = trait
        c.CourseDirectory.db_url = f"sqlite:///{course_root / 'gradebook.db'}"
        c.Execute.timeout = int(self.cell_timeout_s)
        c.ExecutePreprocessor.timeout = int(self.cell_timeout_s)  # older nbgrader (issue #1463)
        # A timed-out cell whose kernel does not answer the interrupt within iopub_timeout (code
        # that swallows KeyboardInterrupt, a long C call, a slow import under load) must cost that
        # cell, not the notebook: with nbgrader's default (True) nbclient raises and the whole
        # autograde fails.
        c.Execute.raise_on_iopub_timeout = False
        # Once the last cell has run, kill the kernel instead of asking it to exit: the outputs are
        # in, and a graceful exit (torch's teardown, the student's atexit code) cost 2-5 s per
        # submission. The sandboxed kernel's bwrap has --die-with-parent, and run_limited kills
        # whatever of the worker's tree is left when the worker ends.
        c.Execute.shutdown_kernel = "immediate"
        c.IgnorePattern.enabled = bool(self.ignore_pattern)
        c.IgnorePattern.pattern = self.ignore_pattern
        c.OverwriteCells.add_missing_cells = True  # re-add deleted grade/test cells
        # Before any notebook cell runs, the kernel imports the exit guard: exit(), quit() and
        # os._exit() in a cell stop that cell instead of ending the kernel (cfgflow/_kernel_guard.py).
        c.Execute.extra_arguments = [f"--InteractiveShellApp.exec_lines=__import__('{GUARD_MODULE}')"]
        if kernel_name:
            c.Execute.kernel_name = kernel_name
            # the connection file where the sandboxed kernel can read it (its /tmp is its own;
            # left unset, jupyter_client would write it to the worker's /tmp)
            c.KernelManager.connection_file = str(course_root / ".runtime" / "kernel-grading.json")
        c.Autograde.create_student = True
        c.NbGraderAPI.log_level = "WARN"
        if steps is not None:
            from autograder.grade import preprocessors

            preprocessors.configure(c, self, **steps)
        return c


def skip_unused_imports() -> None:
    """Keep a grading process (the engine, each worker) from building what it never uses.

    jsonschema, imported by nbformat's validator, imports the optional ``rfc3987_syntax`` for its
    "iri" string formats, which no notebook schema uses; that module builds a Lark grammar at
    import: 1.3 to 1.5 s in every process. Marked absent before jsonschema is first imported,
    jsonschema leaves those two formats unchecked (its documented behaviour without the package).
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)


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


# --------------------------------------------------------------------------------------------
# command-line options, generated from the fields


def _cli_fields(exclude: Iterable[str] = ()):
    return [f for f in dataclasses.fields(GradeConfig) if "cli" in f.metadata and f.name not in exclude]


def add_config_options(parser: argparse.ArgumentParser, exclude: Iterable[str] = (),
                       **defaults) -> None:
    """Add an option per :class:`GradeConfig` field (not those in ``exclude``) to ``parser``;
    ``defaults`` overrides a field's default (``workers=None``: leave it to the config)."""
    base = GradeConfig()
    for f in _cli_fields(exclude):
        flags, kwargs = f.metadata["cli"]
        if "action" not in kwargs:  # --cell-timeout CELL_TIMEOUT, not the field's name
            kwargs = {"metavar": flags[0].lstrip("-").upper().replace("-", "_"), **kwargs}
        parser.add_argument(*flags, dest=f.name, default=defaults.get(f.name, getattr(base, f.name)),
                            **kwargs)


def config_from_args(args: argparse.Namespace, exclude: Iterable[str] = (), **overrides) -> GradeConfig:
    """The :class:`GradeConfig` of parsed options (from :func:`add_config_options`); an option
    left at ``None`` by a caller's default keeps the field's default. ``ValueError`` names the
    option of a bad value."""
    kwargs = {}
    for f in _cli_fields(exclude):
        value = getattr(args, f.name)
        if value is not None or f.default is None:
            kwargs[f.name] = value
    kwargs.update(overrides)
    kwargs["keep_workdirs"] = kwargs.get("workdir") is not None
    try:
        return GradeConfig(**kwargs)
    except ValueError as exc:
        flags = {f.name: f.metadata["cli"][0][0] for f in _cli_fields()}
        named = next((flags[n] for n in flags if n in str(exc)), None)
        raise ValueError(f"{named}: {exc}" if named else str(exc)) from None
