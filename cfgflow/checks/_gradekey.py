"""The grading key of one autograded kernel (light: no torch; imported at kernel start-up).

The engine (:mod:`autograder.grade`) gives each submission's Jupyter kernel a fresh random key
in the environment variable ``CFGFLOW_GRADE_KEY`` and makes the kernel import
``cfgflow.checks`` (which imports this module) before any notebook cell runs (IPython
``exec_lines``). Importing it removes the variable from ``os.environ`` (so child processes do
not inherit it) and overwrites the bytes of the original ``NAME=value`` string in the
process's environment block (so ``/proc/self/environ`` no longer shows it).
:mod:`cfgflow.checks` takes the key once with :func:`take` and signs every check result with
it; the engine rejects scores without a valid signature.

This is a defence against monkeypatching the check library, not a sandbox: code running in the
same process could still dig the key out of the interpreter's memory.
"""

from __future__ import annotations

import os
import secrets
from typing import Optional, Tuple

ENV_VAR = "CFGFLOW_GRADE_KEY"


def _scrub_process_environ(name: str) -> None:
    """Overwrite the value of ``name=`` in the C environment block in place (best effort)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
        prefix = (name + "=").encode()
        i = 0
        while environ[i]:
            addr = environ[i]
            if ctypes.string_at(addr, len(prefix)) == prefix:
                n = len(ctypes.string_at(addr + len(prefix)))
                ctypes.memset(addr + len(prefix), ord("0"), n)
            i += 1
    except Exception:  # noqa: BLE001 - no libc/ctypes: the os.environ removal still happens
        pass


def _read_key() -> Optional[bytes]:
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    _scrub_process_environ(ENV_VAR)
    os.environ.pop(ENV_VAR, None)
    return value.encode() if value else None


_STATE = {"key": _read_key(), "taken": False}


def take() -> Tuple[Optional[bytes], str]:
    """``(key, nonce)`` the first time (key ``None`` when no key was given); ``(None, nonce)``
    afterwards, so a second importer (a reload of the check library) cannot sign."""
    key = None if _STATE["taken"] else _STATE["key"]
    _STATE["taken"] = True
    _STATE["key"] = None
    return key, secrets.token_hex(16)
