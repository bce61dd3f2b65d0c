"""The batch: the template course, one sandboxed worker per submission, the outputs.

1. :func:`build_template` builds a *template* nbgrader course once: ``source/{assignment}/``
   copied from the instructor's source and ``nbgrader generate_assignment`` run on it, which
   records every grade cell, locked cell and hidden test in a template ``gradebook.db``. The
   source notebooks are parsed once per batch (:class:`Sources`: grade cells, check parts,
   imports).
2. :func:`grade_one` grades every submission in its own private copy of that course (own
   ``gradebook.db``), by a separate worker process (:mod:`autograder.grade.worker`) started
   through :func:`autograder.sandbox.run_limited` (time-out, memory and process caps for the whole
   process tree, Jupyter kernel included) inside a bubblewrap sandbox when available. ``N`` run at
   once. No SQLite file is ever written by two processes.
3. Each student's feedback page goes to ``OUT/feedback/`` as soon as the worker is done; at the
   end ``OUT/grades.csv`` and ``OUT/gradebook.db`` (the template gradebook with every student's
   grades merged in, :func:`autograder.grade.merge.merge_gradebook`) are written serially.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from autograder import sandbox
from autograder.grade import records
from autograder.grade.config import (
    CHECKS_MODULE,
    GUARD_MODULE,
    ISOLATION_BWRAP,
    ISOLATION_NONE,
    JUDGE_PACKAGES,
    REPO_ROOT,
    SANDBOX_KERNEL,
    GradeConfig,
    Status,
    shard_students,
    skip_unused_imports,
)
from autograder.grade.merge import create_gradebook, merge_gradebook
from autograder.grade.outputs import CellInfo, StudentResult, write_csv, write_plain_feedback
from autograder.grade.worker import tail

NO_ISOLATION_WARNING = (
    "WARNING isolation: none -- {why}, so student code runs with this user's files, network and "
    "the other submissions in reach. Install bubblewrap (apt-get install bubblewrap) or pass "
    "--require-isolation to refuse to grade without it.")


# --------------------------------------------------------------------------------------------
# submissions and the template course


def source_notebooks(cfg: GradeConfig) -> list[Path]:
    src = cfg.source_dir / cfg.assignment
    nbs = sorted(p for p in src.glob("*.ipynb") if not p.name.startswith("."))
    if not nbs:
        raise FileNotFoundError(
            f"source_dir: no notebook in {src} (expected {src}/{cfg.assignment}.ipynb)")
    return nbs


@dataclass
class Sources:
    """The instructor's source notebooks of an assignment, parsed once for the whole batch."""

    paths: list[Path]
    nbs: dict  # notebook name -> parsed notebook

    @classmethod
    def read(cls, cfg: GradeConfig) -> "Sources":
        import nbformat

        paths = source_notebooks(cfg)
        return cls(paths, {p.stem: nbformat.read(str(p), as_version=4) for p in paths})

    def cells(self) -> list[CellInfo]:
        cells = []
        for name, nb in self.nbs.items():
            for cell in nb.cells:
                meta = cell.get("metadata", {}).get("nbgrader", {})
                if meta.get("grade"):
                    cells.append(CellInfo(name, meta["grade_id"], float(meta.get("points", 0))))
        return cells


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
        # renamed but the only notebook, or ambiguous (the worker reports it): graded as found
        found[sdir.name] = named or candidates
    return found


def build_template(cfg: GradeConfig, root: Path,
                   sources: Optional[Sources] = None) -> tuple[Path, list[CellInfo]]:
    """Create the template course at ``root/template`` and return it with its grade cells."""
    from nbgrader.apps import NbGraderAPI

    sources = sources or Sources.read(cfg)
    template = root / "template"
    src = cfg.source_dir / cfg.assignment
    shutil.copytree(src, template / "source" / cfg.assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    create_gradebook(template / "gradebook.db")  # without nbgrader's alembic subprocess
    api = NbGraderAPI(config=cfg.nbgrader_config(template))
    res = api.generate_assignment(cfg.assignment, force=True, create=True)
    if not res.get("success", False):
        raise RuntimeError(f"nbgrader generate_assignment failed for {cfg.assignment}:\n"
                           f"{res.get('error', '')}\n{res.get('log', '')}")
    return template, sources.cells()


# --------------------------------------------------------------------------------------------
# isolation: what a sandboxed worker and its kernel see (autograder/sandbox.py)


def _home() -> str:
    home = os.path.expanduser("~")
    if home == "/":
        raise RuntimeError("HOME is '/': set HOME to a folder of its own before grading")
    return home


_IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.M)


def _imported_top_levels(source_nbs) -> set[str]:
    """Top-level module names the source notebooks (parsed, or paths) import, plus the engine's
    kernel modules."""
    import nbformat

    names = {__name__.split(".")[0], GUARD_MODULE.split(".")[0], CHECKS_MODULE.split(".")[0],
             *JUDGE_PACKAGES}
    for nb in source_nbs:
        if isinstance(nb, (str, Path)):
            nb = nbformat.read(str(nb), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                names.update(_IMPORT.findall(cell.source))
    return names


def package_dirs(names) -> list[str]:
    """The folders of the importable packages ``names`` (not imported)."""
    import importlib.util

    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found.extend(os.path.realpath(p) for p in spec.submodule_search_locations)
    return found


def sandbox_binds(source_nbs, judge: bool = True) -> tuple[str, ...]:
    """Read-only folders of a sandbox: this Python and its site-packages, every package the
    grading imports that lives elsewhere (an editable install's ``cfgflow/``, and for the worker,
    which runs the judge, ``autograder/`` and ``cfgflow_ref/``: found from the modules' own paths,
    so a new package needs no change here), and the MNIST cache. Not the checkout itself: its
    ``solutions/`` and anything else in it stay outside. ``judge=False``: the kernel's view, which
    has neither the judge's packages nor the reference (:data:`JUDGE_PACKAGES`; see also
    :func:`kernel_masks` for an install inside site-packages)."""
    import importlib.util

    py = sandbox.python_paths()
    extra = []
    for name in sorted(_imported_top_levels(source_nbs) - (set() if judge else set(JUDGE_PACKAGES))):
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


def kernel_masks(kernel_binds) -> list[str]:
    """The judge's packages where the kernel's binds would show them (a regular install in
    site-packages): each is hidden behind an empty folder in the kernel's view."""
    return [d for d in package_dirs(JUDGE_PACKAGES) if sandbox._under_any(d, list(kernel_binds))]


def _write_kernelspec(jupyter_dir: Path, kernel_dir: Path, runtime: Path, cfg: GradeConfig,
                      binds: tuple) -> None:
    """A kernelspec whose kernel runs in a second, inner sandbox inside the worker's.

    The kernel (the student's code) shares the worker's network namespace (ZeroMQ over its
    loopback, nothing else) but sees only the read-only ``binds``, its connection file and empty
    size-limited tmpfs folders: its working folder, /tmp and home. Not the course copy with the
    gradebook (hidden tests), the source notebooks or the other students' files; no capabilities
    and its own pid namespace (the worker's /proc entries, and through them its files, are out of
    reach). Not the judge's packages either (``autograder``, the reference ``cfgflow_ref``): the
    judge runs in the worker, and the kernel reaches it through its socket in ``runtime`` only.
    ``JPY_PARENT_PID`` is dropped: in its own pid namespace the kernel's parent is pid 1, which
    ipykernel would take for a dead parent.
    """
    inner = sandbox.View(ro=list(binds) + [str(runtime)], rw=[],
                         tmpfs=["/tmp", _home(), str(kernel_dir)], tmpfs_mb=cfg.tmpfs_mb,
                         share_net=True, chdir=str(kernel_dir), drop_caps=True,
                         unset_env=("JPY_PARENT_PID",), masked=kernel_masks(binds))
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


@dataclass
class Batch:
    """What every submission of a batch shares (built once by :func:`grade_submissions`)."""

    cfg: GradeConfig
    template: Path
    sources: Sources
    cells: list
    work_root: Path
    isolation: str = ISOLATION_NONE
    binds: tuple = ()  # read-only folders of the worker's sandbox (sandbox_binds)
    kernel_binds: tuple = ()  # read-only folders of the kernel's sandbox (sandbox_binds, judge=False)
    feedback_dir: Optional[Path] = None  # where each student's page goes (None: not kept)
    service: str = ""  # the judge's planner, one per batch (autograder.judge.planner.Service)


def grade_one(student: str, files: list[Path], batch: Batch, index: int) -> StudentResult:
    """Grade one student in a private copy of the template course (parent side).

    The worker gets copies of the student's files and of the source notebooks inside its course,
    so that with ``isolation == "bwrap"`` its sandbox binds that one folder writable and nothing
    else of the instructor's (``batch.binds``: the read-only package folders, see
    :func:`sandbox_binds`).
    """
    cfg, isolation = batch.cfg, batch.isolation
    t0 = time.perf_counter()
    course = batch.work_root / f"{index:05d}"
    shutil.copytree(batch.template, course, ignore=shutil.ignore_patterns("release"))
    incoming = course / "incoming"
    incoming.mkdir()
    copies = []
    for i, path in enumerate(files):  # own folder per file: the student's file names are kept
        (incoming / str(i)).mkdir()
        copies.append(Path(shutil.copy2(path, incoming / str(i) / path.name)))
    (course / ".runtime").mkdir()
    job = {
        "cfg": {k: v for k, v in cfg.to_json().items() if k != "workdir"},
        "course": str(course), "student": student,
        "submission": [str(p) for p in copies],
        "source_notebooks": {p.stem: str(course / "source" / cfg.assignment / p.name)
                             for p in batch.sources.paths},
        "max_total": sum(c.max_score for c in batch.cells),
        "result": str(course / "result.json"),
        "judge_service": batch.service,
    }
    env = _worker_env(cfg, course)
    cmd = [sys.executable, "-m", "autograder.grade", "--worker-job", str(course / "job.json")]
    if isolation == ISOLATION_BWRAP:
        job["kernel_name"] = SANDBOX_KERNEL
        kernel_dir = course / "autograded" / student / cfg.assignment
        _write_kernelspec(course / "jupyter", kernel_dir, course / ".runtime", cfg, batch.kernel_binds)
        env["JUPYTER_PATH"] = str(course / "jupyter")
        # the planner's socket: the worker's judge sees it, the kernel (inner sandbox) does not
        outer = sandbox.View(ro=list(batch.binds) + [os.path.dirname(batch.service)], rw=[str(course)],
                             tmpfs=["/tmp", _home()], tmpfs_mb=cfg.tmpfs_mb, chdir=str(course),
                             new_session=True)
        cmd = outer.argv(sandbox.bwrap_path()) + cmd
    (course / "job.json").write_text(json.dumps(job))
    t_copy = time.perf_counter() - t0
    t_popen = time.time()
    res = sandbox.run_limited(cmd, timeout_s=cfg.submission_timeout_s, mem_mb=cfg.mem_mb,
                              cwd=str(course), env=env, max_procs=cfg.max_procs)
    out = StudentResult(student, isolation=isolation)
    rpath = course / "result.json"
    if res.timed_out:
        out.status, out.reason = Status.TIMEOUT, (
            f"grading stopped after the {cfg.submission_timeout_s:g} s per-submission time-out")
    elif res.mem_exceeded:
        out.status, out.reason = Status.MEMORY, f"killed: memory limit of {cfg.mem_mb} MB exceeded"
    elif res.procs_exceeded:
        out.status = Status.PROCESSES
        out.reason = f"killed: more than {cfg.max_procs} processes (a fork bomb?)"
    elif rpath.exists():
        r = json.loads(rpath.read_text())
        out.status, out.reason = Status(r["status"]), r["reason"]
        out.scores, out.notes, out.judge = r["scores"], r["notes"], r.get("judge", [])
        out.timings = r.get("timings", {})
        if r.get("feedback") and batch.feedback_dir is not None:
            batch.feedback_dir.mkdir(parents=True, exist_ok=True)
            out.feedback_path = Path(shutil.move(r["feedback"], batch.feedback_dir / f"{student}.html"))
    else:
        out.status = Status.CRASH
        out.reason = f"grader process exited with code {res.returncode}: {tail(res.stderr, 1500)}"
    if out.status.killed and res.stderr:
        out.notes.append("grader stderr (tail): " + tail(res.stderr, 800))
    out.wall_s = time.perf_counter() - t0
    out.timings.update(course_copy=t_copy, process=out.wall_s - t_copy)
    w = out.timings
    if "worker_start_epoch" in w:  # interpreter, bwrap and imports; interpreter exit
        w["worker_startup"] = w.pop("worker_start_epoch") - t_popen
        w["worker_exit"] = t_popen + res.wall_s - w.pop("worker_end_epoch", t_popen + res.wall_s)
    out.peak_rss_mb = float(getattr(res, "peak_rss_mb", 0.0) or 0.0)
    if not cfg.keep_workdirs:
        shutil.rmtree(course, ignore_errors=True)
    return out


def grade_submissions(submissions_dir: Path, cfg: GradeConfig, out_dir: Optional[Path] = None,
                      students: Optional[list[str]] = None) -> tuple[list[StudentResult], list[CellInfo]]:
    """Grade every student under ``submissions_dir``; write outputs to ``out_dir`` if given.

    Returns the results sorted by student, and the grade cells (in notebook order).
    """
    if cfg.against is not None and not Path(cfg.against).is_dir():
        raise ValueError(f"--against {cfg.against}: not a folder")
    skip_unused_imports()
    sources = Sources.read(cfg)
    isolation = cfg.isolation_mode()
    if isolation == ISOLATION_NONE:
        why = ("isolation is switched off (--no-isolation)" if cfg.isolation == ISOLATION_NONE
               else sandbox.bwrap_probe()[1])
        print(NO_ISOLATION_WARNING.format(why=why), flush=True)
    bwrap = isolation == ISOLATION_BWRAP
    binds = sandbox_binds(list(sources.nbs.values())) if bwrap else ()
    kernel_binds = sandbox_binds(list(sources.nbs.values()), judge=False) if bwrap else ()
    subs = find_submissions(Path(submissions_dir), cfg.assignment, list(sources.nbs))
    if students is not None:
        unknown = sorted(set(students) - set(subs))
        if unknown:
            raise ValueError(f"--student: no folder for {', '.join(unknown)} in {submissions_dir}")
        subs = {s: subs[s] for s in students}
    subs = {s: subs[s] for s in shard_students(list(subs), cfg.shard)}
    out_dir = None if out_dir is None else Path(out_dir)
    code = records.code_digest()
    keys = {s: records.digest(cfg, sources.paths, files, code) for s, files in subs.items()}
    done = records.reusable(out_dir, keys)
    if done:
        print(f"{len(done)} of {len(subs)} submissions already graded ({out_dir / records.RECORDS}): "
              f"grading the other {len(subs) - len(done)}", flush=True)
    own_tmp = cfg.workdir is None
    root = Path(tempfile.mkdtemp(prefix="cfgflow-grade-")) if own_tmp else Path(cfg.workdir)
    root.mkdir(parents=True, exist_ok=True)
    service = None
    try:
        service = _planner(sources)  # plans in its thread while the template is built
        template, cells = build_template(cfg, root, sources)
        batch = Batch(cfg, template, sources, cells, root / "work", isolation, binds, kernel_binds,
                      None if out_dir is None else out_dir / "feedback", service.path)
        batch.work_root.mkdir()
        results: list[StudentResult] = list(done.values())
        todo = {s: f for s, f in sorted(subs.items()) if s not in done}
        bar = _progress(len(todo), cfg)
        pool = ThreadPoolExecutor(max_workers=cfg.workers)

        outcome: dict[str, StudentResult] = {}

        def finished(s: str, fut) -> None:  # in the worker's thread, as its submission ends
            if fut.cancelled():
                return
            try:
                result = fut.result()
            except Exception:  # an engine bug for one student must not lose the batch
                reason = "engine error: " + tail(traceback.format_exc(), 1500)
                result = StudentResult(s, status=Status.CRASH, reason=reason, isolation=isolation)
            outcome[s] = result
            # kept as soon as it ends, whatever happens to the rest of the run; not a worker that
            # the run's own shutdown killed (that student is graded again next time)
            if out_dir is not None and not (STOPPING.is_set() and result.status.killed):
                records.write(out_dir, result, keys[s])

        try:
            futs = [pool.submit(grade_one, s, f, batch, i) for i, (s, f) in enumerate(todo.items())]
            for fut, s in zip(futs, todo):
                fut.add_done_callback(lambda fut, s=s: finished(s, fut))
            for _ in as_completed(futs):
                bar.update(1)
        finally:  # SIGTERM / Ctrl-C: no new submission starts; each running one records itself
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        results += [outcome[s] for s in todo]
        results.sort(key=lambda r: r.student)
        _fill_missing(results, cells)
        if out_dir is not None:
            write_outputs(out_dir, results, cells, cfg, template, subs, sources)
        return results, cells
    finally:
        if service is not None:
            service.stop()
            shutil.rmtree(os.path.dirname(service.path), ignore_errors=True)
        if own_tmp and not cfg.keep_workdirs:
            shutil.rmtree(root, ignore_errors=True)


def _planner(sources: Sources):
    """The batch's planner (:mod:`autograder.judge.planner`): plans every graded cell's part once,
    in a thread of this process, while the template course is built and the first workers start;
    their judges ask it for the plans and the verdicts, so no worker imports torch or the
    reference. Its socket is in a folder of its own, with a short path (a Unix socket's is
    limited to about 100 bytes)."""
    from autograder.judge.planner import Service
    from autograder.judge.preprocessors import graded_cells

    warm = [(s.part, s.hidden) for nb in sources.nbs.values() for s in graded_cells(nb).values()]
    return Service(os.path.join(tempfile.mkdtemp(prefix="cfgflow-judge-"), "planner.sock"), warm)


STOPPING = threading.Event()
"""Set when the run is being stopped (SIGTERM, Ctrl-C: :func:`stop_on_sigterm`)."""


def stop_on_sigterm() -> None:
    """Make SIGTERM (a scheduler's time limit) stop the run like Ctrl-C: no submission starts,
    the finished ones are on disk (``OUT/records``), the rest are graded by the next run."""
    def handler(signum, frame):
        STOPPING.set()
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


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
        r.scores = {c.key: float(r.scores.get(c.key, 0.0)) for c in cells}


def write_outputs(out_dir: Path, results: list[StudentResult], cells: list[CellInfo],
                  cfg: GradeConfig, template: Path, submissions: Optional[dict] = None,
                  sources: Optional[Sources] = None) -> None:
    """``grades.csv``, the feedback pages the workers did not write, the merged gradebook and the
    class report (``report.html``, ``report.json``; with ``submissions`` and ``sources``, the
    similarity of the hand-ins' graded code too: :mod:`autograder.similarity`)."""
    from autograder import report, similarity

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "grades.csv", results, cells, cfg.assignment)
    write_plain_feedback(out_dir / "feedback", results, cells, cfg.assignment)
    merge_gradebook(out_dir / "gradebook.db", template / "gradebook.db", results, cells, cfg.assignment)
    try:  # the grades are written: a failing report costs the report only
        sim = None
        if submissions is not None and sources is not None:
            import nbformat

            release = [nbformat.read(str(p), as_version=4)
                       for p in sorted((template / "release" / cfg.assignment).glob("*.ipynb"))]
            root = similarity.extract(out_dir, submissions, sources.nbs, release, cfg.against)
            sim = similarity.compare(root)
        report.write(out_dir, results, cells, cfg.assignment, sim)
    except Exception:
        print("warning: the class report failed (grades, feedback and gradebook are written):\n"
              + tail(traceback.format_exc(), 1500), file=sys.stderr)
