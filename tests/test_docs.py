"""Generated docs are current, and no doc cites a file outside this repository."""

from __future__ import annotations

import os
import re
import subprocess

from autograder import docs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_contracts_is_generated_from_the_code():
    """docs/CONTRACTS.md is what ``python -m autograder.docs`` writes (``--check`` is the command)."""
    assert docs.main(["--check"]) == 0, "docs/CONTRACTS.md is stale: run python -m autograder.docs"


def test_nothing_cites_files_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    outside = re.compile(r"GUIDE\.md|GUIDE section|\.\./shared|lab_three")
    hits = []
    for rel in tracked.stdout.split():
        if rel.endswith((".py", ".md", ".toml", ".yml", ".txt", ".cfg")) and rel != "tests/test_docs.py":
            with open(os.path.join(REPO, rel), encoding="utf-8") as f:
                hits += [f"{rel}:{i}" for i, line in enumerate(f, 1) if outside.search(line)]
    assert hits == [], f"citations of files that are not in this repository: {hits}"
