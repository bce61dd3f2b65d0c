"""Regenerate the student release ``notebooks/`` from the nbgrader sources ``solutions/``.

    python -m autograder.release                  # every assignment, into notebooks/
    python -m autograder.release 02_dit           # one assignment
    python -m autograder.release --out /tmp/rel   # somewhere else (the sync test does this)

Runs nbgrader's ``generate_assignment`` with ``autograder/nbgrader_config.py``: solution
regions become ``raise NotImplementedError()`` stubs, hidden tests and outputs are removed,
read-only cells are locked and checksummed. The gradebook it needs lives in a temporary
directory and is thrown away, so the command touches nothing but the output folder. The
output is deterministic: the same sources give byte-identical notebooks.
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

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
ASSIGNMENTS = ("01_cfg", "02_dit")


def load_config(**coursedir: str) -> Config:
    """The course's nbgrader config, with ``CourseDirectory`` traits overridden by keyword."""
    cfg = PyFileConfigLoader("nbgrader_config.py", path=HERE).load_config()
    for key, value in coursedir.items():
        setattr(cfg.CourseDirectory, key, value)
    return cfg


def release(assignments: Optional[Sequence[str]] = None, out_dir: Optional[str] = None,
            source_dir: Optional[str] = None) -> Dict[str, List[str]]:
    """Generate the release of ``assignments`` (default: all) into ``out_dir`` (default:
    ``notebooks/`` of the repository). Returns ``{assignment: [notebook paths]}``."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    assignments = list(assignments or ASSIGNMENTS)
    out_dir = os.path.abspath(out_dir or os.path.join(REPO_ROOT, "notebooks"))
    source_dir = os.path.abspath(source_dir or os.path.join(REPO_ROOT, "solutions"))
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.release",
                                     description="Regenerate the student notebooks from solutions/.")
    parser.add_argument("assignments", nargs="*", help=f"default: all of {', '.join(ASSIGNMENTS)}")
    parser.add_argument("--out", default=None, help="output folder (default: notebooks/ in the repo)")
    args = parser.parse_args(argv)
    for assignment, paths in release(args.assignments or None, args.out).items():
        for path in paths:
            print(f"{assignment}: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
