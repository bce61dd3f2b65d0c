"""Run one command under a wall-clock limit and a memory limit, and always clean up after it.

``run_limited`` is what the grading engine wraps around every per-submission ``nbgrader
autograde``: whatever the student's notebook does (loop forever, allocate 50 GB, fork, call
``os._exit``, print megabytes), the call returns a :class:`Result` within about
``timeout_s`` seconds and leaves no process behind.

How the limits are enforced (measured on this project's machines, torch 2.x, Linux):

* **Memory: a watchdog on the summed RSS, not ``RLIMIT_AS``.** ``import torch`` alone maps
  about 3.1 GB of virtual address space (RSS about 0.4 GB); with ``RLIMIT_AS`` below 4 GB the
  import fails with ``libtorch_cpu.so: failed to map segment``. So the limit is on resident
  memory: a thread polls ``/proc`` every ``poll_s`` seconds, sums ``VmRSS`` over the whole
  process tree and kills the tree when the sum exceeds ``mem_mb``. A generous per-process
  ``RLIMIT_AS`` (``mem_mb`` + 8 GiB, see ``AS_HEADROOM_MB``) stays as a backstop against a
  single giant allocation outrunning the poll, and ``oom_score_adj=1000`` makes the sandboxed
  processes the kernel's first choice if the machine runs out anyway.
* **The whole tree, including Jupyter kernels.** ``jupyter_client`` starts kernels with
  ``start_new_session=True``, so killing our process group would miss them, and when
  nbgrader dies first the kernel is re-parented to init. Every process is therefore tracked
  two ways: by parent links (walked at every poll, remembered once seen) and by a tag in its
  environment (``CFGFLOW_SANDBOX_TAG``, inherited by kernels), found by scanning
  ``/proc/*/environ``. On timeout, memory excess, or normal exit, every tracked process still
  alive is sent ``SIGKILL``.
* **Output is capped.** stdout and stderr are drained by threads (so a chatty child never
  blocks on a full pipe); each keeps the first and last ``max_output_bytes / 2`` bytes and
  notes how much it dropped.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

__all__ = ["Result", "run_limited", "TAG_VAR", "AS_HEADROOM_MB"]

TAG_VAR = "CFGFLOW_SANDBOX_TAG"
AS_HEADROOM_MB = 8192
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


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

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.mem_exceeded


# ----------------------------------------------------------------------------- /proc helpers


def _read_stat(pid: int) -> Optional[Tuple[int, int, str]]:
    """(ppid, start_time_ticks, state) of ``pid`` or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    rest = data[data.rfind(")") + 2:].split()
    try:
        return int(rest[1]), int(rest[19]), rest[0]
    except (IndexError, ValueError):
        return None


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def _has_tag(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in f.read()
    except OSError:
        return False


def _all_pids() -> List[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


class _Tree:
    """Every process that belongs to one sandboxed run, keyed by (pid, start time).

    The start time guards against pid reuse: a pid we remember is only killed if it is still
    the same process.
    """

    def __init__(self, root: int, tag: str):
        self.root = root
        self.needle = f"{TAG_VAR}={tag}\0".encode()
        self.known: Dict[int, int] = {}  # pid -> start time
        self._lock = threading.Lock()
        st = _read_stat(root)
        if st is not None:
            self.known[root] = st[1]

    def refresh(self, scan_env: bool) -> Dict[int, int]:
        """Update the known set; return {pid: start} of members alive now."""
        stats = {}
        for pid in _all_pids():
            st = _read_stat(pid)
            if st is not None:
                stats[pid] = st
        with self._lock:
            alive = {p: s for p, s in self.known.items() if p in stats and stats[p][1] == s}
            changed = True
            while changed:  # descendants by parent links, to a fixed point
                changed = False
                for pid, (ppid, start, _state) in stats.items():
                    if pid not in alive and ppid in alive:
                        alive[pid] = start
                        changed = True
            if scan_env:  # re-parented or new-session processes that still carry our tag
                for pid, (_ppid, start, _state) in stats.items():
                    if pid not in alive and pid != os.getpid() and _has_tag(pid, self.needle):
                        alive[pid] = start
            self.known.update(alive)
            return {p: s for p, s in alive.items() if stats[p][2] != "Z"}

    def rss_mb(self, members: Mapping[int, int]) -> float:
        return sum(_rss_kb(p) for p in members) / 1024.0

    def kill_all(self) -> None:
        """SIGKILL every live member, repeatedly until none is left (forks race us)."""
        for _ in range(20):
            members = self.refresh(scan_env=True)
            if not members:
                return
            for pid, start in members.items():
                st = _read_stat(pid)
                if st is None or st[1] != start:
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
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


def _preexec(as_bytes: Optional[int]):
    def fn() -> None:  # runs in the child between fork and exec: keep it tiny
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

    start = time.monotonic()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_preexec(as_bytes),
    )
    tree = _Tree(proc.pid, tag)
    readers = [_CappedReader(proc.stdout, max_output_bytes), _CappedReader(proc.stderr, max_output_bytes)]
    for r in readers:
        r.start()

    timed_out = mem_exceeded = False
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
        if time.monotonic() - start > timeout_s:
            timed_out = True
            break
        time.sleep(poll_s)

    # normal exit or a limit: nothing of this run may survive it
    tree.kill_all()
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
    )
