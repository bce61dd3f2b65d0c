"""Run one command under a wall-clock limit and a memory limit, and always clean up after it.

``run_limited`` is what the grading engine wraps around every per-submission ``nbgrader
autograde``: whatever the student's notebook does (loop forever, allocate 50 GB, fork, call
``os._exit``, print megabytes), the call returns a :class:`Result` within about
``timeout_s`` seconds and leaves no process behind.

How the limits are enforced (measured on this project's machines, torch 2.x, Linux):

* **Memory: a watchdog on the summed RSS, not ``RLIMIT_AS``.** ``import torch`` alone maps
  about 3.1 GB of virtual address space (RSS about 0.4 GB); with ``RLIMIT_AS`` below 4 GB the
  import fails with ``libtorch_cpu.so: failed to map segment``. So the limit is on resident
  memory: the watchdog reads the process table through psutil every ``poll_s`` seconds, sums
  the resident memory over the whole process tree and kills the tree when the sum exceeds
  ``mem_mb``. A generous per-process
  ``RLIMIT_AS`` (``mem_mb`` + 8 GiB, see ``AS_HEADROOM_MB``) stays as a backstop against a
  single giant allocation outrunning the poll, and ``oom_score_adj=1000`` makes the sandboxed
  processes the kernel's first choice if the machine runs out anyway.
* **The whole tree, including Jupyter kernels.** ``jupyter_client`` starts kernels with
  ``start_new_session=True``, so killing our process group would miss them, and when
  nbgrader dies first the kernel is re-parented to init. Every process is therefore tracked
  two ways: by parent links (walked at every poll, remembered once seen) and by a tag in its
  environment (``CFGFLOW_SANDBOX_TAG``, inherited by kernels), found through psutil's
  ``Process.environ()``. On timeout, memory excess, or normal exit, every tracked process still
  alive is sent ``SIGKILL``.
* **Output is capped.** stdout and stderr are drained by threads (so a chatty child never
  blocks on a full pipe); each keeps the first and last ``max_output_bytes / 2`` bytes and
  notes how much it dropped.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import psutil

__all__ = ["Result", "run_limited", "TAG_VAR", "AS_HEADROOM_MB"]

TAG_VAR = "CFGFLOW_SANDBOX_TAG"
AS_HEADROOM_MB = 8192


@dataclass
class Result:
    """Outcome of :func:`run_limited`.

    ``returncode`` is the child's exit status (negative: killed by that signal; ``-9`` after a
    timeout or memory kill). ``timed_out`` / ``mem_exceeded`` say which limit, if any, ended
    the run. ``stdout`` / ``stderr`` are decoded (UTF-8, invalid bytes replaced) and capped.
    ``peak_rss_mb`` is the largest summed RSS of the process tree the watchdog saw.
    """

    returncode: int
    timed_out: bool
    mem_exceeded: bool
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float = 0.0
    procs_exceeded: bool = False  # the watchdog's process count (no pids cgroup) ended the run
    pids_cgroup: bool = False  # max_procs was enforced by a pids cgroup

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 and not self.timed_out and not self.mem_exceeded
                and not self.procs_exceeded)


# ----------------------------------------------------------------------------- process tree (psutil)


def _stat(proc: "psutil.Process") -> Optional[Tuple[int, float, str]]:
    """(ppid, create_time, status) of ``proc`` or None when it is gone."""
    try:
        with proc.oneshot():
            return proc.ppid(), proc.create_time(), proc.status()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0.0


def _has_tag(pid: int, tag: str) -> bool:
    try:
        return psutil.Process(pid).environ().get(TAG_VAR) == tag
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False


class _Tree:
    """Every process that belongs to one sandboxed run, keyed by (pid, start time).

    The start time guards against pid reuse: a pid we remember is only killed if it is still
    the same process.
    """

    def __init__(self, root: int, tag: str, cgroup: Optional["_PidsCgroup"] = None):
        self.root = root
        self.tag = tag
        self.cgroup = cgroup
        self.known: Dict[int, float] = {}  # pid -> start time
        self._lock = threading.Lock()
        try:
            self.known[root] = psutil.Process(root).create_time()
        except psutil.Error:
            pass

    def refresh(self, scan_env: bool) -> Dict[int, float]:
        """Update the known set; return {pid: start} of members alive now."""
        stats = {}
        for proc in psutil.process_iter():
            st = _stat(proc)
            if st is not None:
                stats[proc.pid] = st
        with self._lock:
            alive = {p: s for p, s in self.known.items() if p in stats and stats[p][1] == s}
            in_cgroup = set(self.cgroup.pids()) if self.cgroup is not None else set()
            for pid in in_cgroup:
                if pid in stats and pid not in alive:
                    alive[pid] = stats[pid][1]
            changed = True
            while changed:  # descendants by parent links, to a fixed point
                changed = False
                for pid, (ppid, start, _state) in stats.items():
                    if pid not in alive and ppid in alive:
                        alive[pid] = start
                        changed = True
            if scan_env:  # re-parented or new-session processes that still carry our tag
                for pid, (_ppid, start, _state) in stats.items():
                    if pid not in alive and pid != os.getpid() and _has_tag(pid, self.tag):
                        alive[pid] = start
            self.known.update(alive)
            return {p: s for p, s in alive.items() if stats[p][2] != psutil.STATUS_ZOMBIE}

    def rss_mb(self, members: Mapping[int, float]) -> float:
        return sum(_rss_mb(p) for p in members)

    def kill_all(self) -> None:
        """SIGKILL every live member, repeatedly until none is left (forks race us)."""
        for _ in range(20):
            members = self.refresh(scan_env=True)
            if not members:
                return
            for pid, start in members.items():
                try:
                    proc = psutil.Process(pid)
                    if proc.create_time() == start:
                        proc.kill()
                except psutil.Error:
                    pass
            time.sleep(0.05)


class _PidsCgroup:
    """A ``pids`` cgroup (v1 or v2) that caps how many processes and threads one run may have.

    ``RLIMIT_NPROC`` does not bind root (the kernel exempts uid 0), so a fork bomb in a submission
    graded by root is stopped here: ``fork`` fails with ``EAGAIN`` once ``max_procs`` tasks exist.
    :meth:`create` returns None where no writable pids hierarchy exists (an unprivileged user
    without cgroup delegation); the watchdog's process count is the fallback then.
    """

    ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def create(cls, name: str, max_procs: int) -> Optional["_PidsCgroup"]:
        for root in cls.ROOTS:
            if not os.path.exists(os.path.join(root, "pids.max")) and not os.path.exists(
                    os.path.join(root, "cgroup.procs")):
                continue
            path = os.path.join(root, name)
            try:
                os.mkdir(path)
            except OSError:
                continue
            try:
                with open(os.path.join(path, "pids.max"), "w") as f:
                    f.write(str(int(max_procs)))
                return cls(path)
            except OSError:  # no pids controller in this hierarchy
                os.rmdir(path)
        return None

    def pids(self) -> List[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def join_fn(self):
        procs = os.path.join(self.path, "cgroup.procs")

        def join() -> None:  # in the child, before exec
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        return join

    def remove(self) -> None:
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:  # members still exiting
                for pid in self.pids():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.05)


# ----------------------------------------------------------------------------- output capture


class _CappedReader(threading.Thread):
    """Drain one pipe; keep the first and last ``cap / 2`` bytes."""

    def __init__(self, stream, cap: int):
        super().__init__(daemon=True)
        self.stream = stream
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def run(self) -> None:
        try:
            while True:
                chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(65536)
                if not chunk:
                    break
                room = self.half - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self.tail += chunk
                    if len(self.tail) > self.half:
                        cut = len(self.tail) - self.half
                        self.dropped += cut
                        del self.tail[:cut]
        except (OSError, ValueError):  # pipe closed under us after a kill
            pass

    def text(self) -> str:
        out = self.head.decode("utf-8", "replace")
        if self.dropped:
            out += f"\n[... {self.dropped} bytes of output dropped by the sandbox ...]\n"
        return out + self.tail.decode("utf-8", "replace")


# ----------------------------------------------------------------------------- main entry


def _preexec(as_bytes: Optional[int], join_cgroup=None):
    def fn() -> None:  # runs in the child between fork and exec: keep it tiny
        if join_cgroup is not None:
            join_cgroup()
        if as_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass

    return fn


def run_limited(
    cmd: Sequence[str],
    *,
    timeout_s: float,
    mem_mb: float,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    max_output_bytes: int = 1_000_000,
    poll_s: float = 0.1,
    address_space_backstop: bool = True,
    max_procs: Optional[int] = None,
) -> Result:
    """Run ``cmd`` (an argv list, no shell) with a wall-clock and a memory limit.

    Args:
        cmd: argv of the command, e.g. ``["nbgrader", "autograde", "01_cfg"]``.
        timeout_s: wall-clock seconds before the whole process tree is killed.
        mem_mb: limit on the summed resident memory (MiB) of the process tree.
        cwd: working directory of the child.
        env: full environment of the child (default: a copy of ``os.environ``).
        max_output_bytes: bytes kept per stream (head and tail halves).
        poll_s: watchdog period.
        address_space_backstop: also set ``RLIMIT_AS`` to ``mem_mb + AS_HEADROOM_MB``.
        max_procs: cap on the processes and threads of the run (a fork bomb): a ``pids`` cgroup
            where one can be created (``fork`` then fails with ``EAGAIN``), else the watchdog
            kills the tree once it counts more than ``max_procs`` processes.

    Returns:
        :class:`Result`. Never raises for anything the child does; raises ``ValueError`` for
        bad arguments and ``FileNotFoundError`` / ``PermissionError`` if ``cmd[0]`` cannot be
        started at all.
    """
    if isinstance(cmd, (str, bytes)) or not cmd:
        raise ValueError(f"cmd must be a non-empty argv list, got {cmd!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    if not mem_mb > 0:
        raise ValueError(f"mem_mb must be > 0, got {mem_mb!r}")

    tag = uuid.uuid4().hex
    child_env = dict(os.environ if env is None else env)
    child_env[TAG_VAR] = tag
    as_bytes = int((mem_mb + AS_HEADROOM_MB) * 1024 * 1024) if address_space_backstop else None

    cgroup = _PidsCgroup.create(f"cfgflow-{tag}", max_procs) if max_procs else None
    start = time.monotonic()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_preexec(as_bytes, cgroup.join_fn() if cgroup else None),
    )
    tree = _Tree(proc.pid, tag, cgroup)
    readers = [_CappedReader(proc.stdout, max_output_bytes), _CappedReader(proc.stderr, max_output_bytes)]
    for r in readers:
        r.start()

    timed_out = mem_exceeded = procs_exceeded = False
    peak = 0.0
    polls = 0
    seen: Set[int] = set()
    while True:
        if proc.poll() is not None:
            break
        # the env scan costs a few ms per hundred processes: every 10th poll is enough to catch
        # re-parented kernels, parent links catch the rest at every poll
        members = tree.refresh(scan_env=(polls % 10 == 0))
        seen.update(members)
        polls += 1
        rss = tree.rss_mb(members)
        peak = max(peak, rss)
        if rss > mem_mb:
            mem_exceeded = True
            break
        if max_procs and cgroup is None and len(members) > max_procs:
            procs_exceeded = True
            break
        if time.monotonic() - start > timeout_s:
            timed_out = True
            break
        time.sleep(poll_s)

    # normal exit or a limit: nothing of this run may survive it
    tree.kill_all()
    if cgroup is not None:
        cgroup.remove()
    try:
        returncode = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
        returncode = -signal.SIGKILL
    wall = time.monotonic() - start
    for r in readers:
        r.join(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:
            pass
    return Result(
        returncode=returncode,
        timed_out=timed_out,
        mem_exceeded=mem_exceeded,
        stdout=readers[0].text(),
        stderr=readers[1].text(),
        wall_s=wall,
        peak_rss_mb=peak,
        procs_exceeded=procs_exceeded,
        pids_cgroup=cgroup is not None,
    )


# ----------------------------------------------------------------------------- bubblewrap views

# What every view of the system holds: the system's programs and libraries read-only, and from
# /etc only the files a Python process needs (not shadow, ssh host keys, the instructor's tokens).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ENTRIES = ("passwd", "group", "hosts", "nsswitch.conf", "host.conf", "ld.so.cache", "ld.so.conf",
               "ld.so.conf.d", "localtime", "timezone", "alternatives", "fonts", "mime.types",
               "matplotlibrc")


def bwrap_path() -> Optional[str]:
    """The ``bwrap`` executable, or None where bubblewrap is missing or cannot sandbox here."""
    return bwrap_probe()[0]


@functools.lru_cache(maxsize=None)
def bwrap_probe() -> Tuple[Optional[str], str]:
    """``(path, "")`` when ``bwrap`` can build the engine's two nested sandboxes on this machine,
    else ``(None, why)``: not installed (macOS, a bare image), or present but refused (a
    container whose seccomp profile forbids namespaces). Run once per process."""
    path = shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap (bwrap) is not installed"
    base = ["--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    inner = [path, "--unshare-pid"] + (["--unshare-user"] if os.geteuid() != 0 else []) + base
    try:
        res = subprocess.run([path, "--unshare-all"] + base + inner + ["true"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bwrap cannot run here ({exc})"
    if res.returncode != 0:
        return None, f"bwrap cannot build a sandbox here ({res.stderr.strip()[:200]})"
    return path, ""


def python_paths() -> List[str]:
    """Folders of this Python: prefixes, standard library and site-packages (read-only in a view)."""
    cands = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    cands.update(site.getsitepackages())
    user_site = site.getusersitepackages()
    if isinstance(user_site, str):
        cands.add(user_site)
    cands.update(p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p))
    return _outermost(p for p in cands if os.path.isdir(p) and not _under_any(p, SYSTEM_DIRS))


def _under_any(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _outermost(paths: Iterable[str]) -> List[str]:
    """Drop every path that lies inside another one of the list; sorted."""
    paths = sorted({os.path.abspath(p) for p in paths})
    keep: List[str] = []
    for p in paths:
        if not _under_any(p, keep):
            keep.append(p)
    return keep


@dataclass
class View:
    """One bubblewrap sandbox: what a process sees of the file system, and which namespaces it has.

    ``ro`` / ``rw``: host paths bound read-only / writable at the same path. ``tmpfs``: fresh
    empty file systems of at most ``tmpfs_mb`` MiB each (the process's /tmp, the home folder, a
    scratch folder; /dev/shm always); they are mounted first, so ``ro`` paths inside them (a
    Python under ``~/.pyenv``) show through. Nothing else of the host exists inside, and
    everything else is read-only. ``share_net=False``
    gives the process a network namespace of its own with only a loopback interface.
    ``drop_caps``: no capabilities at all (the process cannot mount, unmount or nest a sandbox).
    """

    ro: List[str]
    rw: List[str]
    tmpfs: List[str]
    tmpfs_mb: int = 256
    share_net: bool = False
    chdir: Optional[str] = None
    drop_caps: bool = False
    new_session: bool = False
    unset_env: Tuple[str, ...] = ()
    masked: List[str] = field(default_factory=list)  # paths inside ``ro`` replaced by an empty folder

    def argv(self, bwrap: str) -> List[str]:
        """``bwrap`` and its options; append the command to run inside."""
        if self.share_net:
            # a view nested in another one (the kernel in the worker's sandbox): every namespace
            # but the network's. Not a user namespace of its own where the outer one is root's:
            # a fresh /proc for the new pid namespace may not be mounted from a nested user
            # namespace (the kernel refuses it, the outer /proc having covered parts).
            a = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
            if os.geteuid() != 0:
                a += ["--unshare-user"]
        else:
            a = [bwrap, "--unshare-all"]
        a += ["--die-with-parent"] + (["--new-session"] if self.new_session else [])
        if self.drop_caps:
            a += ["--cap-drop", "ALL"]
        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                a += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                a += ["--ro-bind", d, d]
        for e in ETC_ENTRIES:
            a += ["--ro-bind-try", f"/etc/{e}", f"/etc/{e}"]
        a += ["--proc", "/proc", "--dev", "/dev"]
        # /dev/shm too: bwrap's own is an unbounded tmpfs (memory that no RSS count sees)
        for t in sorted(set(self.tmpfs) | {"/dev/shm"}, key=lambda p: p.count("/")):
            a += ["--size", str(int(self.tmpfs_mb) * 2**20), "--tmpfs", t]
        for p in sorted(set(self.ro), key=lambda p: p.count("/")):
            a += ["--ro-bind", p, p]
        for p in sorted(set(self.rw), key=lambda p: p.count("/")):
            a += ["--bind", p, p]
        for p in sorted(set(self.masked), key=lambda p: p.count("/")):
            a += ["--size", "4096", "--tmpfs", p, "--remount-ro", p]
        for var in self.unset_env:
            a += ["--unsetenv", var]
        if self.chdir:
            a += ["--chdir", self.chdir]
        # bwrap's root (and the folders it creates for mount points) is an unbounded tmpfs:
        # read-only, so that only the size-limited tmpfs folders and ``rw`` take writes
        return a + ["--remount-ro", "/", "--"]
