"""Progress bars that neither flood stderr nor bloat a saved notebook.

In a Jupyter kernel with ipywidgets (Colab, a full JupyterLab install) :func:`progress_bar` is
``tqdm.notebook``'s widget: one output that updates in place. Anywhere else it is tqdm's text
bar; when stderr is not a terminal (a notebook without ipywidgets, a log file, CI) every
redraw is a separate output there, so the text bar redraws at most ``TEXT_UPDATES`` times per
run and at most once per ``TEXT_MIN_INTERVAL_S``. The choice is made when a bar is created,
never at import: importing ``tqdm.auto`` without ipywidgets warns on stderr (``TqdmWarning:
IProgress not found``), and that warning would land in a notebook's imports cell.
"""

from __future__ import annotations

import math
import sys

TEXT_UPDATES = 20
"""At most this many redraws of a text bar that does not write to a terminal."""

TEXT_MIN_INTERVAL_S = 10.0
"""And at least this many seconds between two of them."""


def widgets_available() -> bool:
    """True inside a Jupyter kernel (``ipykernel``) where ipywidgets can be imported."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(iterable=None, total=None, **kwargs):
    """A tqdm bar over ``iterable`` (keyword arguments as for ``tqdm``; an explicit
    ``miniters``/``mininterval``/``maxinterval`` wins over the bounded defaults)."""
    if widgets_available():
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(iterable, total=total, **kwargs)
    from tqdm.std import tqdm as text_tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not _is_terminal(kwargs.get("file") or sys.stderr):
        initial = kwargs.get("initial", 0)
        remaining = (total - initial) if total else None
        kwargs.setdefault("miniters", max(1, math.ceil(remaining / TEXT_UPDATES)) if remaining else 1)
        kwargs.setdefault("mininterval", TEXT_MIN_INTERVAL_S)
        # tqdm's monitor thread resets miniters to 1 after `maxinterval` s without a redraw;
        # an infinite maxinterval keeps the bound.
        kwargs.setdefault("maxinterval", float("inf"))
    return text_tqdm(iterable, total=total, **kwargs)


def set_total(bar, total: int):
    """Change the total of a bar made by :func:`progress_bar` (a re-planned run)."""
    bar.total = total
    container = getattr(bar, "container", None)  # tqdm.notebook: the widget keeps its own max
    if container is not None:
        container.children[1].max = total
    bar.refresh()
