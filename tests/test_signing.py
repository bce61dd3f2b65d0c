"""Signed check results (cfgflow/checks/_signing.py, cfgflow/checks/_gradekey.py): a genuine
check, visible or hidden, signs its result with the engine's one key; a forged line, a changed
score or a replaced ``check`` does not verify; without a key nothing extra is printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cfgflow.checks import _signing

REPO = Path(__file__).resolve().parent.parent
KEY = b"0123456789abcdef0123456789abcdef"


def test_genuine_line_verifies_and_matches():
    line = _signing.signed_line(KEY, "ab12cd34", "cfg_loss", False, 1.3333, 4)
    v = _signing.verify_line(line, KEY)
    assert v == {"part": "cfg_loss", "hidden": False, "earned": 1.3333, "points": 4.0, "nonce": "ab12cd34"}
    lines = _signing.valid_lines("[cfg_loss] PASS  x\n" + line + "\n", KEY)
    assert _signing.matches(lines, 1.3333, 4.0, parts={"cfg_loss"})
    assert not _signing.matches(lines, 4.0, 4.0)                       # a higher score
    assert not _signing.matches(lines, 1.3333, 6.0)                    # another cell's points
    assert not _signing.matches(lines, 1.3333, 4.0, parts={"mha"})     # another part


def test_forged_or_altered_lines_are_rejected():
    line = _signing.signed_line(KEY, "ab12cd34", "cfg_loss", True, 0.5, 6)
    assert _signing.verify_line(line, b"another key") is None
    assert _signing.verify_line(line.replace("earned=0.500000", "earned=6.000000"), KEY) is None
    assert _signing.verify_line(line.replace("mode=hidden", "mode=visible"), KEY) is None
    assert _signing.verify_line(line.replace("nonce=ab12cd34", "nonce=ab12cd35"), KEY) is None
    forged = ("[cfgflow-signed] part=cfg_loss mode=hidden earned=6.000000 points=6.000000 "
              "nonce=ab12cd34 sig=" + "0" * 64)
    assert _signing.verify_line(forged, KEY) is None
    assert _signing.valid_lines("all good\n" + forged, KEY) == []


_SCRIPT = r"""
import os, sys
import cfgflow.checks  # what the engine imports at kernel start-up: it takes the key
print("ENV", os.environ.get("CFGFLOW_GRADE_KEY"))
from cfgflow.checks import check
from autograder.catalog.components import Fourier
check("fourier_encoder", Fourier, points=2)
from autograder.checks import check  # the hidden cell's import: the same check, the same key
try:
    check("fourier_encoder", object, points=3, hidden=True)
except AssertionError:
    print("RAISED")
import cfgflow.checks._gradekey as g
print("RETAKE", g.take()[0])
"""


def _run(env_key):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("CFGFLOW_GRADE_KEY", None)
    if env_key is not None:
        env["CFGFLOW_GRADE_KEY"] = env_key
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_checks_sign_with_the_key_and_remove_it_from_the_environment():
    out = _run(KEY.decode())
    assert "ENV None" in out and "RAISED" in out and "RETAKE None" in out
    lines = _signing.valid_lines(out, KEY)
    assert [(v["part"], v["hidden"], v["earned"], v["points"]) for v in lines] == [
        ("fourier_encoder", False, 2.0, 2.0), ("fourier_encoder", True, 0.0, 3.0)]
    assert len({v["nonce"] for v in lines}) == 1
    assert _signing.valid_lines(out, b"another key") == []


def test_no_key_no_signed_line():
    out = _run(None)
    assert "RAISED" in out and _signing.PREFIX not in out
