"""The grading kernel's exit guard (cfgflow/_kernel_guard.py): exit(), quit() and os._exit()
in a cell stop that cell instead of the kernel; forked children and code outside cells keep the
real os._exit. Runs in a subprocess with a real IPython shell (the guard patches ``os``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent('''
    import os
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    import cfgflow._kernel_guard as g   # installs itself into the running shell

    assert g.install(sh) and os._exit is not g._real_exit
    for src in ("import os\\nx = 1\\nos._exit(3)\\ny = 2", "exit()", "quit(1)", "import os as o; o._exit(0)"):
        r = sh.run_cell(src)
        assert isinstance(r.error_in_exec, g.KernelExitBlocked), (src, r.error_in_exec)
        assert g.MARKER in str(r.error_in_exec)
    assert sh.user_ns["x"] == 1 and "y" not in sh.user_ns   # stopped at the call
    assert "exit()" in str(sh.run_cell("exit()").error_in_exec)
    assert sh.run_cell("z = 3").success and sh.user_ns["z"] == 3   # the shell lives on

    # a forked child (multiprocessing, DataLoader workers) still ends with the real os._exit
    r = sh.run_cell(
        "pid = os.fork()\\n"
        "if pid == 0:\\n"
        "    os._exit(7)\\n"
        "child = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])")
    assert r.success and sh.user_ns["child"] == 7, r.error_in_exec
    r = sh.run_cell(
        "import multiprocessing as mp\\n"
        "p = mp.get_context('fork').Process(target=print, args=('child ran',))\\n"
        "p.start(); p.join(); code = p.exitcode")
    assert r.success and sh.user_ns["code"] == 0, r.error_in_exec

    print("guard ok", flush=True)
    os._exit(5)   # outside a cell: the real thing
''')


def test_exit_guard_in_a_real_shell():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert "guard ok" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.returncode == 5


def test_outside_ipython_nothing_is_installed():
    code = ("import os, cfgflow._kernel_guard as g\n"
            "assert g.install() is False and os._exit is g._real_exit\n"
            "os._exit(4)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 4, proc.stderr[-2000:]
