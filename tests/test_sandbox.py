"""Tests of autograder.sandbox.run_limited: limits hold and nothing outlives a run."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autograder.sandbox import Result, View, bwrap_path, python_paths, run_limited


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


# ----------------------------------------------------------------------------- bubblewrap views

needs_bwrap = pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap (bwrap) not installed")


@pytest.fixture
def listener():
    """A TCP port on this machine's 127.0.0.1 that records every connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    got = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                got.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    stop.set()
    t.join(2)
    srv.close()


@needs_bwrap
def test_view_hides_home_network_and_the_rest_of_the_disk(tmp_path, listener):
    port, got = listener
    home = Path(os.path.expanduser("~"))
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("OUTSIDE-SECRET")
    work = tmp_path / "work"
    work.mkdir()
    code = f"""
        import os, socket
        def attempt(what, fn):
            try:
                fn()
                print(what, 'LEAKED')
            except OSError as e:
                print(what, 'blocked', type(e).__name__)
        attempt('secret', lambda: open({str(secret)!r}).read())
        attempt('local', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=1))
        attempt('outside', lambda: socket.create_connection(('10.255.255.1', 80), timeout=1))
        attempt('write_ro', lambda: open(os.__file__ + '.x', 'w'))
        print('home', os.listdir(os.path.expanduser('~')))
        print('tmp', sorted(os.listdir({str(tmp_path)!r})))
        open({str(work / 'ok.txt')!r}, 'w').write('mine')
    """
    view = View(ro=python_paths(), rw=[str(work)], tmpfs=["/tmp", str(home)], chdir=str(work))
    res = run_limited(view.argv(bwrap_path()) + _py(code), timeout_s=60, mem_mb=1000)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = dict(ln.split(" ", 1) for ln in res.stdout.splitlines())
    for what in ("secret", "local", "outside", "write_ro"):
        assert lines[what].startswith("blocked"), res.stdout
    assert "LEAKED" not in res.stdout and not got
    assert lines["tmp"] == "['work']"  # the bound folder only, not its neighbours
    assert not any(n in lines["home"] for n in (".ssh", ".bashrc")), lines["home"]
    assert (work / "ok.txt").read_text() == "mine"


@needs_bwrap
def test_view_tmpfs_is_size_limited(tmp_path):
    code = """
        n = 0
        try:
            with open('/tmp/fill', 'wb') as f:
                for _ in range(200):
                    f.write(b'0' * 2**20); f.flush(); n += 1
        except OSError as e:
            print('stopped', n, type(e).__name__)
    """
    view = View(ro=python_paths(), rw=[], tmpfs=["/tmp"], tmpfs_mb=16)
    res = run_limited(view.argv(bwrap_path()) + _py(code), timeout_s=60, mem_mb=1000)
    assert res.stdout.split()[0] == "stopped" and int(res.stdout.split()[1]) <= 16, res.stdout + res.stderr


def test_fork_bomb_is_bounded():
    """max_procs: a pids cgroup makes fork fail (root too); without one the watchdog kills the run."""
    code = """
        import os, time
        n = 0
        try:
            for _ in range(400):
                if os.fork() == 0:
                    time.sleep(5)
                    os._exit(0)
                n += 1
            print('all', n)
        except OSError as e:
            print('stopped', n, type(e).__name__)
    """
    res = run_limited(_py(code), timeout_s=60, mem_mb=20000, max_procs=40)
    if res.pids_cgroup:
        assert res.stdout.split()[0] == "stopped" and int(res.stdout.split()[1]) < 40, res.stdout
    else:
        assert res.procs_exceeded, res.stdout
