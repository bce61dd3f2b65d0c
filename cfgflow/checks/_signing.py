"""Signed check results: how the grading engine tells a genuine check from a replaced one
(light: no torch; used by the check library and by the engine).

With a grading key (given by the engine, see :mod:`cfgflow.checks._gradekey`) every call of
:func:`cfgflow.checks.check` (visible or hidden) ends by printing one line to stdout::

    [cfgflow-signed] part=cfg_loss mode=visible earned=1.333300 points=4.000000 nonce=<hex> sig=<hex>

``sig`` is HMAC-SHA256(key, "part|mode|earned|points|nonce") over the printed field texts; the
nonce is random per kernel. :func:`verify_line` (used by :mod:`autograder.grade`) recomputes it.
A student cell that replaces ``check`` does not have the key, so its scores carry no valid line
and the engine gives 0 for them. Without a key nothing is printed.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

try:  # the C function, captured at import: rebinding hmac/_hashlib attributes later does not reach it
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover - Python built without OpenSSL
    import hmac as _hmac

    def _hmac_digest(key, msg, digest):
        return _hmac.new(key, msg, digest).digest()

from hmac import compare_digest as _compare_digest

PREFIX = "[cfgflow-signed]"
_LINE = re.compile(r"^\[cfgflow-signed\] part=(?P<part>[A-Za-z_][A-Za-z0-9_]*) mode=(?P<mode>visible|hidden) "
                   r"earned=(?P<earned>-?[0-9]+\.[0-9]{6}) points=(?P<points>-?[0-9]+\.[0-9]{6}) "
                   r"nonce=(?P<nonce>[0-9a-f]{8,64}) sig=(?P<sig>[0-9a-f]{64})\s*$", re.M)


def _sig(key: bytes, part: str, mode: str, earned: str, points: str, nonce: str) -> str:
    msg = "|".join((part, mode, earned, points, nonce)).encode()
    return _hmac_digest(key, msg, "sha256").hex()


def signed_line(key: bytes, nonce: str, part: str, hidden: bool, earned: float, points: float) -> str:
    """The line a genuine check prints at its end."""
    part = str(part) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)) else "invalid"
    mode = "hidden" if hidden else "visible"
    e, p = f"{float(earned):.6f}", f"{float(points):.6f}"
    return (f"{PREFIX} part={part} mode={mode} earned={e} points={p} nonce={nonce} "
            f"sig={_sig(key, part, mode, e, p, nonce)}")


def verify_line(line: str, key: bytes) -> Optional[Dict]:
    """The fields of ``line`` when it is a correctly signed check line, else ``None``."""
    m = _LINE.match(line.strip())
    if not m:
        return None
    f = m.groupdict()
    want = _sig(key, f["part"], f["mode"], f["earned"], f["points"], f["nonce"])
    if not _compare_digest(want, f["sig"]):
        return None
    return {"part": f["part"], "hidden": f["mode"] == "hidden", "earned": float(f["earned"]),
            "points": float(f["points"]), "nonce": f["nonce"]}


def valid_lines(text: str, key: bytes) -> List[Dict]:
    """Every correctly signed check line in ``text`` (a cell's stdout)."""
    found = []
    for line in text.splitlines():
        if PREFIX in line:
            v = verify_line(line[line.index(PREFIX):], key)
            if v is not None:
                found.append(v)
    return found


def matches(lines: List[Dict], score: float, max_points: float, parts=None, tol: float = 1e-6) -> bool:
    """Whether one signed line vouches for ``score`` in a test cell worth ``max_points``
    (``parts``: the parts the cell's source checks; ``None``: any). nbgrader caps a partial score
    at the cell's points."""
    for v in lines:
        if parts and v["part"] not in parts:
            continue
        if abs(v["points"] - max_points) > tol:
            continue
        if abs(min(v["earned"], v["points"]) - score) <= tol:
            return True
    return False
