"""Progress bars (cfgflow.progress): a widget where ipywidgets exist, a bounded text bar
elsewhere, and no tqdm warning when the package is imported in a kernel without widgets."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types

import tqdm.notebook
import tqdm.std

from cfgflow import progress
from cfgflow.progress import TEXT_UPDATES, progress_bar

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def redraws(stream: io.StringIO) -> int:
    return stream.getvalue().count("\r")


def test_text_bar_off_a_terminal_redraws_a_bounded_number_of_times():
    out = io.StringIO()  # not a terminal, like stderr in a notebook without widgets
    for _ in progress_bar(range(5000), file=out, mininterval=0):
        pass
    assert 2 <= redraws(out) <= TEXT_UPDATES + 2  # the first draw, <= 20 updates, the last
    assert "5000/5000" in out.getvalue()


def test_text_bar_bound_counts_from_initial_on_resume():
    out = io.StringIO()
    for _ in progress_bar(range(900, 1000), total=1000, initial=900, file=out, mininterval=0):
        pass
    assert 2 <= redraws(out) <= TEXT_UPDATES + 2 and "1000/1000" in out.getvalue()


def test_text_bar_waits_mininterval_between_redraws():
    out = io.StringIO()
    for _ in progress_bar(range(5000), file=out):  # default: >= 10 s between redraws
        pass
    assert redraws(out) <= 3  # a fast loop: the first and the last draw only


def test_explicit_arguments_win():
    bar = progress_bar(range(10), file=io.StringIO(), miniters=1, mininterval=0.5)
    assert (bar.miniters, bar.mininterval) == (1, 0.5)
    bar.close()


def test_widget_bar_in_a_kernel_with_ipywidgets(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    assert progress.widgets_available()
    bar = progress_bar(range(3), disable=True)
    assert isinstance(bar, tqdm.notebook.tqdm)


def test_text_bar_in_a_kernel_without_ipywidgets(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    assert not progress.widgets_available()
    bar = progress_bar(range(3), file=io.StringIO())
    assert type(bar) is tqdm.std.tqdm and bar.miniters == 1
    bar.close()


def test_no_widget_outside_a_kernel(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel.zmqshell", raising=False)
    assert not progress.widgets_available()


def test_importing_the_package_in_a_kernel_without_widgets_is_silent():
    """What a notebook's imports cell does on a pip install without ipywidgets: before this
    module, ``from tqdm.auto import tqdm`` at import wrote ``TqdmWarning: IProgress not
    found`` to stderr there."""
    code = ("import sys; sys.modules['ipywidgets'] = None; import ipykernel.zmqshell; "
            "import cfgflow_ref, cfgflow_ref.training, cfgflow_ref.simulation, cfgflow_ref.plotting, "
            "cfgflow_ref.train, autograder.checks")
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONWARNINGS="default")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "", proc.stderr[-2000:]
