"""Google Colab support for the release notebooks.

Every release notebook starts with an "Open in Colab" badge (a markdown cell) and a set-up
code cell. The set-up cell does something ONLY on Colab (``"google.colab" in sys.modules``):
it pip-installs this repository, which provides ``cfgflow_ref`` (the given code) and
``autograder`` (the checks that the test cells call). Anywhere else it does nothing, so the
notebooks run unchanged in a local JupyterLab or under nbgrader.

To publish from a fork, change ``REPO_URL`` (and ``BRANCH``) here and regenerate the release
with ``python -m autograder.release``: the badges and set-up cells are rebuilt from these
constants.
"""

from __future__ import annotations

REPO_URL = "https://github.com/cfgflow/cfgflow"
"""The public git repository holding this project (no trailing slash, no ``.git``)."""

BRANCH = "main"
"""The branch whose ``notebooks/`` the badges open and whose code Colab installs."""

RELEASE_DIR = "notebooks"


def _github_slug(repo_url: str) -> str:
    """``https://github.com/owner/name`` -> ``owner/name``."""
    prefix = "https://github.com/"
    url = repo_url.rstrip("/")
    if url.endswith(".git"):
        url = url[: -len(".git")]
    if not url.startswith(prefix) or url[len(prefix):].count("/") != 1:
        raise ValueError(f"repo_url must look like https://github.com/OWNER/NAME, got {repo_url!r}")
    return url[len(prefix):]


def colab_url(assignment: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The Colab address that opens ``notebooks/<assignment>/<assignment>.ipynb`` from GitHub."""
    slug = _github_slug(repo_url)
    return (f"https://colab.research.google.com/github/{slug}/blob/{branch}/"
            f"{RELEASE_DIR}/{assignment}/{assignment}.ipynb")


def badge_markdown(assignment: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The markdown "Open in Colab" badge linking to :func:`colab_url`."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(assignment, repo_url, branch)})")


def setup_cell_source(repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """Source of the first code cell: installs this package on Colab, does nothing elsewhere."""
    spec = f"git+{repo_url}@{branch}"
    return (
        "# Set-up. On Google Colab this installs the course package (the given code\n"
        "# `cfgflow_ref` and the checks `autograder`); anywhere else it does nothing.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{spec}"], check=True)\n'
    )


NOTEBOOK_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4"}}
"""Notebook-level metadata that makes Colab open a notebook on a GPU runtime (the free tier's
T4). nbgrader's ``generate_assignment`` keeps notebook metadata, so the release carries it."""


def runtime_markdown(training_note: str) -> str:
    """The paragraph under the badge: how to check and switch Colab's runtime to a GPU."""
    return (
        "**Run this notebook on a GPU.** Colab opens it on a GPU runtime; to check or switch, use "
        "*Runtime > Change runtime type* and pick **T4 GPU** (the free tier's GPU), then *Save*. "
        "The imports cell below prints `device: cuda` when `torch.cuda.is_available()` is "
        f"`True`, and `device: cpu` otherwise. {training_note}"
    )
