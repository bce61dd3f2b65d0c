"""Shared pytest setup for the cfgflow test suite.

- One intra-op thread per test process: the machines are small and shared, and several
  workers (``pytest -n 2``) oversubscribe the cores otherwise.
- Every test starts from the same random seed (``torch``, ``random``, ``numpy``), so a
  statistical test fails or passes the same way on every run.
- ``mnist_root`` points the MNIST loaders at one cache directory (``$CFGFLOW_DATA`` or
  ``/tmp/mnistcache``) so tests reuse the preprocessed tensors.
- ``examples``: the release and the example submissions (``complete``, ``untouched``,
  ``buggy``) built from the sources once per session (they are not committed): ``examples /
  "release" / A / "A.ipynb"`` and ``examples / "ex" / A / student / "A.ipynb"``.
- matplotlib uses the non-interactive Agg backend.
- Tests run offline: ``CFGFLOW_OFFLINE=1`` (unless already set) makes every MNIST load,
  in this process and in the notebook kernels it starts, use the bundled digits at once.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
os.environ.setdefault("CFGFLOW_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    torch.manual_seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:  # numpy is a dependency, but seeding it is optional
        pass
    yield


@pytest.fixture(scope="session")
def mnist_root() -> str:
    """Directory for MNIST caches, shared across tests and sessions."""
    root = os.environ.get("CFGFLOW_DATA") or "/tmp/mnistcache"
    os.makedirs(root, exist_ok=True)
    return root


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test opened."""
    yield
    plt = sys.modules.get("matplotlib.pyplot")  # never import pyplot just to close nothing
    if plt is not None:
        plt.close("all")


@pytest.fixture(scope="session")
def examples(tmp_path_factory) -> Path:
    """The release of every assignment and the example submissions built from it (as the
    pipeline builds them: autograder/examples/build.py)."""
    from autograder.examples.build import build
    from autograder.release import release

    source = Path(__file__).resolve().parent.parent / "solutions"
    tmp = tmp_path_factory.mktemp("examples")
    release(out_dir=str(tmp / "release"), source_dir=str(source))
    build(tmp / "release", source, tmp / "ex")
    return tmp
