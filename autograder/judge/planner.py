"""The judge's plans and verdicts, computed once per batch outside the grading worker.

A :class:`~autograder.judge.server.Judge` serves a kernel's test cells; what it sends and decides
comes from a planner:

* ``plan(part, hidden, hello)``: the judge's inputs for a test cell of ``part`` (the line it sends
  the kernel). The plan and the expectations are the same for every submission (the judge's seed
  is per part and mode: :func:`autograder.checks.judge_seed`), so a planner computes them once
  per ``(part, hidden)`` and keeps them.
* ``verdict(part, hidden, points, report)``: the verdicts and points on the kernel's report line.

:class:`Planner` computes in this process (torch, the recorders, the reference). The engine runs
one per batch behind a Unix socket (:class:`Service`, in the engine's process) and each worker's
judge asks it (:class:`Remote`): the workers import neither torch nor the reference, and nothing
is planned twice. The service's socket is in a folder the worker's sandbox shows and the kernel's
does not: the kernel talks to its judge only. Plain ``nbgrader autograde`` uses :func:`local`.

This module imports nothing heavy: a worker loads it for :class:`Remote`.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from typing import Any, Dict, Iterable, Tuple


class Planner:
    """Plans (cached per ``(part, hidden)``, thread-safe) and verdicts, in this process."""

    def __init__(self):
        self._plans: Dict[Tuple[str, bool], Tuple[Any, str]] = {}
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        from cfgflow.checks._wire import LIMITS

        return LIMITS.bytes

    def planned(self, part: str, hidden: bool) -> Tuple[Any, str]:
        """``(checks.plan(part, hidden), the plan's line for the kernel)``, computed once."""
        key = (part, bool(hidden))
        with self._lock:
            if key not in self._plans:
                from autograder import checks
                from cfgflow.checks import _wire
                from cfgflow.checks._core import given_of

                planned = checks.plan(part, hidden)
                table, cfg, data = planned
                line = _wire.encode({"part": part, "hidden": hidden, "config": cfg,
                                     "given": given_of(table, data)})
                self._plans[key] = (planned, line)
            return self._plans[key]

    def plan(self, part: str, hidden: bool, hello: bytes) -> str:
        """The plan's line; a ``ValueError`` when the kernel's hello is not data (the session is
        then incomplete). The hello's part, mode and points are the kernel's claims: not used."""
        from cfgflow.checks import _wire

        _wire.parse(hello)
        return self.planned(part, hidden)[1]

    def verdict(self, part: str, hidden: bool, points: float, report: bytes) -> Dict[str, Any]:
        """``{earned, lines, failures, results}`` on the kernel's report line (as read: at most
        ``max_bytes + 1`` bytes; empty when nothing arrived)."""
        from autograder import checks
        from cfgflow.checks import _wire

        try:
            message = _wire.parse(report)
            sent = message.get("report") if isinstance(message, dict) else None
            if sent is None:
                sent = {"malformed": "the message holds no report"}
        except _wire.WireError as e:
            sent = {"malformed": str(e)[:300]}
        r = checks.judge(part, hidden, sent, points=points, planned=self.planned(part, hidden)[0])
        return {"earned": r.earned, "lines": r.lines(), "failures": r.failures,
                "results": [{"name": x.name, "weight": x.weight, "passed": x.passed, "message": x.message}
                            for x in r.results]}


_LOCAL = Planner()


def local() -> Planner:
    """The planner of this process (plain nbgrader: plans kept across its notebooks)."""
    return _LOCAL


class _Handler(socketserver.StreamRequestHandler):
    """One request: a JSON header line ``{"op", "part", "hidden", "points", "size"}`` and ``size``
    bytes (the kernel's line); the answer is one JSON line ``{"ok": ...}``, ``{"invalid": why}``
    (a ``ValueError``: the session is incomplete) or ``{"error": [type, why]}`` (a judge error)."""

    def handle(self):
        planner: Planner = self.server.planner
        try:
            head = json.loads(self.rfile.readline(10_000))
            data = self.rfile.read(min(int(head.get("size", 0)), planner.max_bytes + 1))
            if head["op"] == "limits":
                out = {"ok": planner.max_bytes}
            elif head["op"] == "plan":
                out = {"ok": planner.plan(head["part"], head["hidden"], data)}
            else:
                out = {"ok": planner.verdict(head["part"], head["hidden"], head["points"], data)}
        except ValueError as e:
            out = {"invalid": str(e)}
        except Exception as e:  # noqa: BLE001 - the worker's judge records it as the cell's error
            out = {"error": [type(e).__name__, str(e)]}
        self.wfile.write(json.dumps(out).encode() + b"\n")


class Service(socketserver.ThreadingUnixStreamServer):
    """A :class:`Planner` behind the Unix socket ``path``, served from a thread of this process;
    ``warm``: the ``(part, hidden)`` to plan at once, in a background thread (the workers start
    meanwhile)."""

    daemon_threads = True

    def __init__(self, path: str, warm: Iterable[Tuple[str, bool]] = (), planner: Planner = None):
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(path, _Handler)
        self.path, self.planner = path, planner or Planner()
        threading.Thread(target=self.serve_forever, name="cfgflow-judge-service", daemon=True).start()
        threading.Thread(target=self._warm, args=(list(warm),), daemon=True).start()

    def _warm(self, keys) -> None:
        for part, hidden in keys:
            try:
                self.planner.planned(part, hidden)
            except Exception:  # noqa: BLE001 - the cell that needs it gets the error
                pass

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Remote:
    """A worker's view of the engine's :class:`Service`: :class:`Planner`'s methods over its socket."""

    def __init__(self, path: str):
        self.path = path
        self.max_bytes = int(self._call({"op": "limits"}))

    def _call(self, head: dict, data: bytes = b"") -> Any:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(self.path)
                sock.sendall(json.dumps({**head, "size": len(data)}).encode() + b"\n" + data)
                with sock.makefile("rb") as f:
                    answer = json.loads(f.readline())
        except (OSError, ValueError) as e:  # the engine's side: a judge error, not the kernel's
            raise RuntimeError(f"the judge's service did not answer ({type(e).__name__}: {e})") from e
        if "invalid" in answer:
            raise ValueError(answer["invalid"])
        if "error" in answer:
            name, why = answer["error"]
            raise type(name, (RuntimeError,), {})(why)
        return answer["ok"]

    def plan(self, part: str, hidden: bool, hello: bytes) -> str:
        return self._call({"op": "plan", "part": part, "hidden": hidden}, hello)

    def verdict(self, part: str, hidden: bool, points: float, report: bytes) -> Dict[str, Any]:
        return self._call({"op": "verdict", "part": part, "hidden": hidden, "points": points}, report)
