"""Tests of autograder.sandbox.run_limited: limits hold and nothing outlives a run."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest

from autograder.sandbox import Result, run_limited


def _py(code: str):
    return [sys.executable, "-c", textwrap.dedent(code)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_normal_exit_codes_and_output_pass_through():
    res = run_limited(_py("import sys; print('hello'); print('oops', file=sys.stderr); sys.exit(3)"),
                      timeout_s=20, mem_mb=500)
    assert isinstance(res, Result)
    assert res.returncode == 3
    assert not res.timed_out and not res.mem_exceeded
    assert res.stdout.strip() == "hello"
    assert res.stderr.strip() == "oops"
    assert not res.ok
    ok = run_limited(_py("pass"), timeout_s=20, mem_mb=500)
    assert ok.returncode == 0 and ok.ok


def test_cwd_and_env_are_used(tmp_path):
    res = run_limited(_py("import os; print(os.getcwd()); print(os.environ['FOO'])"),
                      timeout_s=20, mem_mb=500, cwd=str(tmp_path), env={**os.environ, "FOO": "bar"})
    assert res.stdout.split() == [str(tmp_path), "bar"]


def test_timeout_kills_child_and_grandchildren_in_other_sessions(tmp_path):
    """A grandchild in its own session (like a Jupyter kernel) dies with the run."""
    pidfile = tmp_path / "pids"
    code = f"""
        import os, subprocess, sys, time
        kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
        kernel = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],
                                  start_new_session=True)
        open({str(pidfile)!r}, 'w').write(f'{{kid.pid}} {{kernel.pid}}')
        time.sleep(600)
    """
    t0 = time.monotonic()
    res = run_limited(_py(code), timeout_s=2, mem_mb=2000)
    elapsed = time.monotonic() - t0
    assert res.timed_out and not res.mem_exceeded
    assert res.returncode == -9
    assert elapsed < 15
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "a grandchild survived the timeout"


def test_orphan_left_after_normal_exit_is_killed(tmp_path):
    """The child exits at once but leaves a re-parented sleeper behind (daemon-style)."""
    pidfile = tmp_path / "pid"
    code = f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        open({str(pidfile)!r}, 'w').write(str(p.pid))
        time.sleep(0.5)
    """
    res = run_limited(_py(code), timeout_s=20, mem_mb=2000)
    assert res.returncode == 0 and not res.timed_out
    time.sleep(0.2)
    assert not _alive(int(pidfile.read_text()))


def test_memory_hog_is_stopped_and_flagged():
    code = """
        import time
        blocks = []
        while True:
            blocks.append(bytearray(50 * 1024 * 1024))  # touched: bytearray zero-fills
            time.sleep(0.02)
    """
    res = run_limited(_py(code), timeout_s=60, mem_mb=300)
    assert res.mem_exceeded and not res.timed_out
    assert res.returncode == -9
    assert 300 < res.peak_rss_mb < 1500


def test_memory_hog_in_grandchild_counts_toward_the_limit():
    code = """
        import subprocess, sys, time
        hog = "b=[]\\nimport time\\nwhile True:\\n b.append(bytearray(50*2**20)); time.sleep(0.02)"
        subprocess.Popen([sys.executable, '-c', hog], start_new_session=True)
        time.sleep(600)
    """
    res = run_limited(_py(code), timeout_s=60, mem_mb=300)
    assert res.mem_exceeded


def test_output_is_capped_but_keeps_head_and_tail():
    code = """
        import sys
        print('FIRST')
        for i in range(200000):
            sys.stdout.write('x' * 50 + '\\n')
        print('LAST')
    """
    res = run_limited(_py(code), timeout_s=60, mem_mb=500, max_output_bytes=10_000)
    assert res.returncode == 0
    assert len(res.stdout) < 12_000
    assert res.stdout.startswith("FIRST")
    assert res.stdout.rstrip().endswith("LAST")
    assert "bytes of output dropped" in res.stdout


def test_os_exit_and_signals_are_reported():
    res = run_limited(_py("import os; os._exit(7)"), timeout_s=20, mem_mb=500)
    assert res.returncode == 7
    res = run_limited(_py("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"),
                      timeout_s=20, mem_mb=500)
    assert res.returncode == -15 and not res.timed_out


def test_torch_imports_under_a_small_memory_limit():
    """RLIMIT_AS at the memory cap would break ``import torch`` (3 GB mapped); the sandbox must not."""
    res = run_limited(_py("import torch; print(float((torch.ones(3) * 2).sum()))"), timeout_s=60, mem_mb=1500)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "6.0"
    assert 50 < res.peak_rss_mb < 1500


@pytest.mark.parametrize("bad", [dict(cmd="echo hi"), dict(cmd=[]), dict(timeout_s=0), dict(mem_mb=-1)])
def test_bad_arguments_raise(bad):
    kwargs = dict(cmd=["true"], timeout_s=5, mem_mb=100)
    kwargs.update(bad)
    cmd = kwargs.pop("cmd")
    with pytest.raises(ValueError):
        run_limited(cmd, **kwargs)
