"""The course sources: ``solutions/<id>/<id>.py`` (jupytext ``py:percent``) paired with
``solutions/<id>/<id>.ipynb`` (the nbgrader source notebook), see docs/authoring.md.

    python -m autograder.sources            # sync every pair: the older file follows the newer
    python -m autograder.sources --check    # exit 1 and name every pair that is out of sync
    python -m autograder.sources --settings # write autograder/colab.py into the badge and set-up
                                            # cells of every text source, then sync

The text file holds the prose, the code and every cell's nbgrader metadata (in its ``# %%``
header). The notebook adds what text cannot hold: the cell ids and the notebook metadata
(:data:`autograder.colab.NOTEBOOK_METADATA`: Colab opens the notebook on a GPU), which
``jupytext --sync`` keeps when it updates the notebook from the text. The pairing itself is
``solutions/jupytext.toml``: it covers ``solutions/`` only, never the release ``notebooks/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.join(os.path.dirname(HERE), "solutions")


def pair_paths(assignment: str, source_dir: Optional[str] = None):
    """``(text, notebook)`` paths of one assignment's source pair."""
    folder = os.path.join(source_dir or SOURCE_DIR, assignment)
    return os.path.join(folder, f"{assignment}.py"), os.path.join(folder, f"{assignment}.ipynb")


def pair_problems(assignment: str, source_dir: Optional[str] = None) -> List[str]:
    """What differs between the text and the notebook of ``assignment`` (empty: in sync)."""
    import jupytext
    import nbformat

    from .colab import NOTEBOOK_METADATA

    text_path, nb_path = pair_paths(assignment, source_dir)
    missing = [p for p in (text_path, nb_path) if not os.path.exists(p)]
    if missing:
        return [f"{assignment}: missing {', '.join(missing)}"]
    text, nb = jupytext.read(text_path), nbformat.read(nb_path, as_version=4)
    where = f"{assignment}: {os.path.basename(text_path)} and {os.path.basename(nb_path)}"
    problems = []
    if len(text.cells) != len(nb.cells):
        problems.append(f"{where} have {len(text.cells)} and {len(nb.cells)} cells")
    for i, (t, n) in enumerate(zip(text.cells, nb.cells)):
        name = n.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {i}"
        for what in ("cell_type", "source", "metadata"):
            if t.get(what) != n.get(what):
                problems.append(f"{where} differ in the {what} of {name}")
        if n.get("outputs") or n.get("execution_count"):
            problems.append(f"{assignment}: {name} of the notebook has outputs (clear them)")
    for key, value in NOTEBOOK_METADATA.items():
        if nb.metadata.get(key) != value:
            problems.append(f"{assignment}: the notebook's metadata lacks {key}={value!r} "
                            f"(autograder.colab.NOTEBOOK_METADATA)")
    return problems


def sync(assignments: Sequence[str], source_dir: Optional[str] = None) -> None:
    """``jupytext --sync`` of each pair: the older of the two files is rewritten from the newer.
    A text source without its notebook (a new assignment) gets one: :func:`new_notebook`."""
    from jupytext.cli import jupytext as jupytext_cli

    for a in assignments:
        text_path, nb_path = pair_paths(a, source_dir)
        if os.path.exists(text_path) and not os.path.exists(nb_path):
            new_notebook(text_path, nb_path)
        else:
            jupytext_cli(["--sync", text_path])


def new_notebook(text_path: str, nb_path: str) -> None:
    """Write the first notebook of a text source: its cells, the Colab notebook metadata and
    readable cell ids (the grade_id, else ``cell-NN``; later syncs keep them)."""
    import jupytext
    import nbformat

    from .colab import NOTEBOOK_METADATA

    nb = jupytext.read(text_path)
    nb.metadata.pop("jupytext", None)
    nb.metadata.update({"language_info": {"name": "python"}, **NOTEBOOK_METADATA})
    for i, cell in enumerate(nb.cells):
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        cell.id = gid.replace("_", "-") if gid else f"cell-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, nb_path)


def write_settings(assignments: Sequence[str], source_dir: Optional[str] = None) -> None:
    """Rewrite the Colab badge and set-up cells of the text sources from :mod:`autograder.colab`
    (the release refuses sources that do not match the settings), then :func:`sync`."""
    import jupytext

    from . import colab

    for a in assignments:
        text_path = pair_paths(a, source_dir)[0]
        nb = jupytext.read(text_path)
        for cell in nb.cells:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid == "colab_badge":  # the badge line, then the cell's own runtime paragraph
                cell.source = "\n".join([colab.badge_markdown(a)] + cell.source.split("\n", 1)[1:])
            elif gid == "colab_setup":
                cell.source = colab.setup_cell_source().rstrip("\n")
        jupytext.write(nb, text_path, fmt="py:percent")
    sync(assignments, source_dir)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from cfgflow.course import ASSIGNMENTS

    parser = argparse.ArgumentParser(prog="python -m autograder.sources",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("assignments", nargs="*", help=f"default: all of {', '.join(ASSIGNMENTS)}")
    parser.add_argument("--check", action="store_true", help="only report pairs out of sync (exit 1)")
    parser.add_argument("--settings", action="store_true",
                        help="write the Colab settings (autograder/colab.py) into the sources first")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.assignments) - set(ASSIGNMENTS))
    if unknown:
        parser.error(f"assignments: unknown {', '.join(unknown)} (known: {', '.join(ASSIGNMENTS)})")
    chosen = args.assignments or list(ASSIGNMENTS)
    if args.check and args.settings:
        parser.error("--check only reads: it cannot be combined with --settings")
    if args.settings:
        write_settings(chosen)
    elif not args.check:
        sync(chosen)
    problems = [p for a in chosen for p in pair_problems(a)]
    for p in problems:
        print(f"out of sync: {p}", file=sys.stderr)
    if problems and args.check:
        print("edit either file, then run `jupytext --sync solutions/*/*.py` "
              "(or python -m autograder.sources)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
