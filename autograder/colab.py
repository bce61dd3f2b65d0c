"""Where students get the course: the public student repository, pinned to one ref.

The course settings, in one place (see docs/grading.md, "Deployment"):

* :data:`STUDENT_REPO_URL`: the public GitHub repository that ``python -m autograder.release
  --publish DIR`` writes (DIR is pushed there). It holds the release notebooks and the
  student package ``cfgflow`` only; this (private) repository never goes to students.
* :data:`STUDENT_REF`: the tag (or commit) of that repository that this term's notebooks use.
  Never a branch: a moving branch would change the given code and the visible checks under
  students in mid-term.

Every release notebook starts with an "Open in Colab" badge (a markdown cell) opening the
notebook from ``STUDENT_REPO_URL`` at ``STUDENT_REF``, and a set-up code cell that, ONLY on
Colab (``"google.colab" in sys.modules``), pip-installs ``git+STUDENT_REPO_URL@STUDENT_REF``.
Anywhere else it does nothing, so the notebooks run unchanged in a local JupyterLab (after
``pip install`` of the student repository) or under nbgrader. After changing a setting,
regenerate with ``python -m autograder.release`` (and ``--publish DIR``).
"""

from __future__ import annotations

import re
from typing import Optional

STUDENT_REPO_URL = "https://github.com/cfgflow/cfgflow-student"
"""The public student repository (GitHub; no trailing slash, no ``.git``)."""

STUDENT_REF = "v0.1.0"
"""The tag or commit of :data:`STUDENT_REPO_URL` that the notebooks install and open."""

RELEASE_DIR = "notebooks"
"""The release notebooks' folder, in this repository and in the student repository."""

# Names that are branches in practice; a pinned ref is a tag or a commit.
_MOVING_REFS = frozenset({"main", "master", "head", "develop", "dev", "trunk", "latest", "gh-pages"})
_REF_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")


class CourseSettingError(ValueError):
    """A course setting of :mod:`autograder.colab` is missing or unusable."""


def check_repo_url(repo_url: Optional[str] = None) -> str:
    """``owner/name`` of a ``https://github.com/owner/name`` URL (default: the setting)."""
    repo_url = STUDENT_REPO_URL if repo_url is None else repo_url
    if not isinstance(repo_url, str) or not repo_url.strip():
        raise CourseSettingError(
            "STUDENT_REPO_URL (autograder/colab.py) is empty: set it to the public student "
            "repository, e.g. https://github.com/OWNER/NAME")
    prefix = "https://github.com/"
    url = repo_url.strip().rstrip("/")
    if url.endswith(".git"):
        url = url[: -len(".git")]
    if not url.startswith(prefix) or url[len(prefix):].count("/") != 1:
        raise CourseSettingError(f"STUDENT_REPO_URL (autograder/colab.py) must look like "
                                 f"https://github.com/OWNER/NAME, got {repo_url!r}")
    return url[len(prefix):]


def check_ref(ref: Optional[str] = None) -> str:
    """``ref`` (default: the setting) if it can be a tag or a commit (not empty, not a
    well-known branch name)."""
    ref = STUDENT_REF if ref is None else ref
    if not isinstance(ref, str) or not ref.strip():
        raise CourseSettingError(
            "STUDENT_REF (autograder/colab.py) is empty: set it to the tag (or commit) of the "
            "student repository that this term uses, e.g. v2026.1")
    if ref.lower() in _MOVING_REFS or not _REF_CHARS.match(ref):
        raise CourseSettingError(
            f"STUDENT_REF (autograder/colab.py) must be a tag or a commit, got {ref!r}: a branch "
            f"moves, and the checks would change under students mid-term")
    return ref


def install_spec(repo_url: Optional[str] = None, ref: Optional[str] = None) -> str:
    """The pip requirement of the pinned student package: ``cfgflow @ git+URL@REF``."""
    check_repo_url(repo_url)
    repo_url = STUDENT_REPO_URL if repo_url is None else repo_url
    return f"cfgflow @ git+{repo_url.strip().rstrip('/')}@{check_ref(ref)}"


def colab_url(assignment: str, repo_url: Optional[str] = None, ref: Optional[str] = None) -> str:
    """The Colab address that opens ``notebooks/<assignment>/<assignment>.ipynb`` at ``ref``."""
    slug = check_repo_url(repo_url)
    return (f"https://colab.research.google.com/github/{slug}/blob/{check_ref(ref)}/"
            f"{RELEASE_DIR}/{assignment}/{assignment}.ipynb")


def badge_markdown(assignment: str, repo_url: Optional[str] = None, ref: Optional[str] = None) -> str:
    """The markdown "Open in Colab" badge linking to :func:`colab_url`."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(assignment, repo_url, ref)})")


def setup_cell_source(repo_url: Optional[str] = None, ref: Optional[str] = None) -> str:
    """Source of the first code cell: installs the pinned student package on Colab only."""
    spec = install_spec(repo_url, ref)
    return (
        "# Set-up. On Google Colab this installs the course package `cfgflow` (the given code\n"
        "# and the visible checks), pinned to this term's release; anywhere else it does nothing.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{spec}"], check=True)\n'
    )


NOTEBOOK_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4"}}
"""Notebook-level metadata that makes Colab open a notebook on a GPU runtime (the free tier's
T4). nbgrader's ``generate_assignment`` keeps notebook metadata, so the release carries it."""
