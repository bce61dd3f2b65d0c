"""Keep a grading kernel alive when a student's cell asks it to die (light: no torch).

In a Jupyter kernel, ``exit()`` / ``quit()`` (ipykernel's ``ZMQExitAutocall``) shut the kernel
down and ``os._exit(n)`` ends the process at once. Left in one cell, either made nbgrader fail
the whole autograde and the notebook score 0, although every other part was right. The engine
(:mod:`autograder.grade`) makes each grading kernel import this module before any notebook cell
runs (IPython ``exec_lines``); from then on, *while a cell runs*, those calls raise
:class:`KernelExitBlocked` (a ``SystemExit``: IPython shows it as the cell's error and keeps
the kernel) and the engine notes the cell in the student's feedback. The rest of the
notebook runs and is graded as usual.

``os._exit`` keeps its meaning in every other process (forked ``multiprocessing`` / DataLoader
workers end with it) and outside cells (kernel shut-down). Code that ends the process by other
means (``os.kill``, a crash) still fails that notebook, and the engine says so.
"""

from __future__ import annotations

import os

MARKER = "blocked by the cfgflow autograder"


class KernelExitBlocked(SystemExit):
    """Raised instead of ending the grading kernel."""


_STATE = {"in_cell": False, "pid": os.getpid(), "installed": False}
_real_exit = os._exit


def _blocked(what: str):
    raise KernelExitBlocked(f"{what} would end the grading kernel and lose every grade of this "
                            f"notebook; {MARKER}: this cell stops here and the notebook goes on")


def _guarded_os_exit(status=0):
    if _STATE["in_cell"] and os.getpid() == _STATE["pid"]:
        _blocked(f"os._exit({status!r})")
    _real_exit(status)


class _ExitGuard:
    """Stands in for IPython's ``exit`` / ``quit`` in the user namespace."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        _blocked(f"{self.name}()")

    def __repr__(self) -> str:
        return f"<{self.name}: {MARKER} while grading>"


def install(shell=None) -> bool:
    """Install the guards in ``shell`` (default: the running IPython); False outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or _STATE["installed"]:
        return _STATE["installed"]
    _STATE["pid"] = os.getpid()

    def pre(*_args):
        _STATE["in_cell"] = True

    def post(*_args):
        _STATE["in_cell"] = False

    shell.events.register("pre_run_cell", pre)
    shell.events.register("post_run_cell", post)
    shell.user_ns["exit"] = _ExitGuard("exit")
    shell.user_ns["quit"] = _ExitGuard("quit")
    os._exit = _guarded_os_exit
    _STATE["installed"] = True
    return True


install()
