"""The judge's socket server: one session per graded test cell, while the cell runs.

Protocol (one JSON line each way, :mod:`cfgflow.checks._wire`)::

    kernel -> judge   {"hello": {"part": ..., "hidden": ..., "points": ...}}   (informative only)
    judge  -> kernel  {"part", "hidden", "config", "given"}                     the judge's plan
    kernel -> judge   {"report": {"probes": {sub-check: {"obs": ...} | {"fail": text}}}}
    judge  -> kernel  {"lines", "earned", "points", "failures"}                 the verdict

The part, the mode and the points are the instructor's (the cell's spec, from the source
notebook), never the kernel's. A connection while no graded cell runs, or a second one during
the same cell, gets ``{"refused": why}``: the judge is no oracle to query. A report that does not
arrive, is not data or exceeds the size limits fails the cell's sub-checks with a message that
says so; nothing a kernel sends can make the judge raise.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from autograder.judge import planner as _planner

READ_TIMEOUT_S = 5.0   # between the kernel's connect and its hello
MAX_SESSIONS = 8       # connections handled at once; more are closed unanswered
REFUSED_ORACLE = "the judge answers each graded test cell once, while that cell runs"


@dataclass(frozen=True)
class CellSpec:
    """A graded test cell as the instructor's source notebook defines it."""

    grade_id: str
    part: str
    hidden: bool
    points: float


@dataclass
class CellRecord:
    """What the judge decided for one test cell: the score and the lines a page shows."""

    grade_id: str
    part: str
    hidden: bool
    points: float
    earned: float = 0.0
    status: str = "no_session"  # judged | no_session (check() never reached the judge) | incomplete
    lines: List[str] = field(default_factory=list)
    # per sub-check: name, weight, passed, message
    results: List[Dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return dict(self.__dict__)


NO_SESSION = ("the test cell's check did not reach the judge (it was not called, or the kernel "
              "failed before it): 0 points")
INCOMPLETE = "the test cell ended before its probes reported to the judge: 0 points"


def _tag(spec: CellSpec) -> str:
    return f"[{spec.part}{' hidden' if spec.hidden else ''}]"


def _empty(spec: CellSpec, status: str) -> CellRecord:
    text = NO_SESSION if status == "no_session" else INCOMPLETE
    return CellRecord(spec.grade_id, spec.part, spec.hidden, spec.points, 0.0, status,
                      [f"{_tag(spec)} FAIL  {text}", f"{_tag(spec)} score 0 / {spec.points:g}"])


class _Open:
    def __init__(self, spec: CellSpec):
        self.spec, self.served, self.record = spec, False, None
        self.conn: Optional[socket.socket] = None


class Judge:
    """Serve one kernel's graded test cells on the Unix socket ``path``.

    The caller brackets each graded cell's execution with :meth:`open_cell` / :meth:`close_cell`
    (:class:`autograder.judge.preprocessors.JudgedExecute` does) and :meth:`stop` at the end.
    The inputs it sends and the verdicts come from ``planner`` (:mod:`.planner`: the engine's
    service, or this process's); this class reads and writes the kernel's lines only, so a worker
    that runs it imports neither torch nor the reference.
    """

    def __init__(self, path: str, planner=None):
        if len(path.encode()) > 100:
            raise ValueError(f"the judge's socket path is too long for a Unix socket ({len(path)} "
                             f"characters): {path}")
        self.path = path
        self.records: List[CellRecord] = []
        self._planner = planner or _planner.local()
        self._limit = self._planner.max_bytes  # a line from the kernel: at most this many bytes
        self._lock = threading.Lock()
        self._cell: Optional[_Open] = None
        self._active = 0
        self._stopped = threading.Event()
        if os.path.exists(path):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        os.chmod(path, 0o666)  # the sandboxed kernel may run as another user
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="cfgflow-judge", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------

    def open_cell(self, spec: CellSpec) -> None:
        with self._lock:
            self._cell = _Open(spec)

    def close_cell(self) -> CellRecord:
        """The record of the cell that just ran (0 points when no complete session happened)."""
        with self._lock:
            cell, self._cell = self._cell, None
        if cell is None:
            raise RuntimeError("close_cell() without open_cell()")
        if cell.conn is not None and cell.record is None:
            try:  # a kernel that hangs mid-session: end it
                cell.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        record = cell.record or _empty(cell.spec, "incomplete" if cell.served else "no_session")
        self.records.append(record)
        return record

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    # -- the socket's side -------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                busy = self._active >= MAX_SESSIONS
                self._active += 0 if busy else 1
            if busy:  # a kernel opening connections in a loop
                conn.close()
                continue
            # one thread per connection: a second connection while a cell's probes run (code in the
            # graded method querying the judge) is refused at once instead of waiting its turn
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._session(conn)
            except (OSError, ValueError):  # the kernel hung up or sent garbage: incomplete
                pass
            except Exception as e:  # noqa: BLE001 - the judge's own bug: recorded, never silent
                self._failed(e)
            finally:
                with self._lock:
                    self._active -= 1

    def _failed(self, e: Exception) -> None:
        """A judge error (the instructor's side: a recorder, a verdict bug) is this cell's record,
        status ``error``, with the exception named: the engine reports it, nobody gets points."""
        with self._lock:
            cell = self._cell
            if cell is not None and cell.record is None:
                spec = cell.spec
                cell.record = CellRecord(spec.grade_id, spec.part, spec.hidden, spec.points, 0.0, "error",
                                         [f"{_tag(spec)} FAIL  the judge failed ({type(e).__name__}: "
                                          f"{str(e)[:300]}): tell your instructor",
                                          f"{_tag(spec)} score 0 / {spec.points:g}"])

    def _session(self, conn: socket.socket) -> None:
        with self._lock:
            cell = self._cell
            fresh = cell is not None and not cell.served
            if fresh:
                cell.served, cell.conn = True, conn
        stream = conn.makefile("rwb")
        conn.settimeout(READ_TIMEOUT_S)
        hello = stream.readline(self._limit + 1)  # its part, mode and points are the kernel's claims
        if not fresh:
            if hello:
                _send(stream, {"refused": REFUSED_ORACLE})
            return
        spec = cell.spec
        plan = self._planner.plan(spec.part, spec.hidden, hello)  # ValueError: the hello is no data
        stream.write(plan.encode() + b"\n")
        stream.flush()
        conn.settimeout(None)  # the probes take what the cell's time-out allows (close_cell ends it)
        verdict = self._planner.verdict(spec.part, spec.hidden, spec.points,
                                        stream.readline(self._limit + 1))
        record = CellRecord(spec.grade_id, spec.part, spec.hidden, spec.points, verdict["earned"], "judged",
                            verdict["lines"], verdict["results"])
        with self._lock:
            if self._cell is not cell:
                return  # the cell ended meanwhile: its record says incomplete
            cell.record = record
        _send(stream, {"lines": record.lines, "earned": record.earned, "points": spec.points,
                       "failures": verdict["failures"]})


def _send(stream, message: Dict[str, Any]) -> None:
    """One line of plain data to the kernel (as :func:`cfgflow.checks._wire.send` writes it)."""
    stream.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    stream.flush()
