"""Adding a part as docs/authoring.md says ("Adding a part"), end to end in a copy of the project.

In a temporary copy of the packages, the test adds the toy part ``toy_double`` (a class
``Double`` that doubles its input) in a new one-part assignment ``03_toy``: one entry in
cfgflow/course.py, the three check modules (visible, hidden, catalog) and the text source.
A subprocess whose imports come from the copy then syncs the source pair, releases it, runs
the catalog through the visible and hidden checks and grades a complete and an untouched
submission with the engine (``isolation="none"``: one tiny notebook, no sandbox needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autograder import colab

REPO = Path(__file__).resolve().parent.parent
A = "03_toy"

# The one manifest entry (cfgflow/course.py): the new assignment with its one part.
MANIFEST_ENTRY = (f'    Assignment("{A}", (Part("toy_double", "Q1", "`Double`: twice its input", "Double", '
                  f'1, 2, "toy"),)),\n')

VISIBLE = '''\
"""toy_double: ``Double()``, ``x: (n,)`` -> ``2 x``."""

from ._core import CheckTable, Fail, SubCheck, as_obs, close


def _probe(ctx):
    return {"out": as_obs(ctx.new()(ctx.tensor("x")))}


def _verdict(obs, exp):
    if not close(obs["out"], exp.tensor("twice")):
        raise Fail("the output is not twice the input")


PART = CheckTable("toy_double", [SubCheck("values", "returns 2 x", 1, _probe, _verdict)], {"seed": 0, "n": 4},
                  given=("x",))
'''

HIDDEN = '''\
"""toy_double, instructor side: other sizes, and the recorder (inputs and expected outputs)."""

import torch

from cfgflow.checks import toy as visible


def record(cfg, seed):
    x = torch.randn(cfg["n"], generator=torch.Generator().manual_seed(seed))
    return {}, {"x": x, "twice": 2 * x}


PART = visible.PART.replaced({"seed": 1, "n": 7}, record=record)
'''

CATALOG = '''\
"""toy_double: mutants and alternatives."""

from . import alternative, mutant


@mutant("toy_double", "not twice the input")
class Triple:
    """Three times the input."""

    def __call__(self, x):
        return 3 * x


@alternative("toy_double")
class AddSelf:
    """x + x."""

    def __call__(self, x):
        return x + x
'''


def _header(grade_id: str, kind: str = "given", points: int = 0, part: str = "") -> str:
    meta = {"grade": kind == "test", "grade_id": grade_id, "locked": kind != "solution",
            "schema_version": 3, "solution": kind == "solution"}
    if kind == "test":
        meta["points"] = points
    cell = " [markdown]" if kind == "markdown" else ""
    extra = f' cfgflow={json.dumps({"part": part})}' if part else ""
    return f"# %%{cell} nbgrader={json.dumps(meta, sort_keys=True)}{extra}"


def toy_source() -> str:
    setup = colab.setup_cell_source().rstrip("\n")
    return "\n".join([
        _header("colab_badge", "markdown"), f"# {colab.badge_markdown(A)}", "#", "# A toy notebook.", "",
        _header("colab_setup"), setup, "",
        _header("imports"), "from cfgflow.checks import check", "",
        _header("double", "solution", part="toy_double"),
        "class Double:",
        '    """Twice its input: ``x -> 2 x``."""', "",
        "    def __call__(self, x):",
        "        ### BEGIN SOLUTION", "        return 2 * x", "        ### END SOLUTION", "",
        _header("test_toy_double", "test", 1, "toy_double"), 'check("toy_double", Double, points=1)', "",
        _header("test_toy_double_hidden", "test", 2, "toy_double"),
        "### BEGIN HIDDEN TESTS", 'check("toy_double", Double, points=2, hidden=True)',
        "### END HIDDEN TESTS", ""])


SCRIPT = textwrap.dedent(f'''
    import io, json, nbformat
    from pathlib import Path
    from autograder import sources
    from autograder.catalog import entries
    from autograder.checks import run_check
    from autograder.examples.build import fill_solutions
    from autograder.grade import GradeConfig, grade_submissions
    from autograder.release import release
    from cfgflow import course

    from autograder.checks import record

    root = Path.cwd()
    sources.sync(["{A}"])
    record.main([])  # the self-check's recording: cfgflow/checks/data/toy_double.json
    out = {{"pairs": sources.pair_problems("{A}"), "parts": list(course.PARTS)}}
    rel_path = Path(release(["{A}"], out_dir=str(root / "rel"))["{A}"][0])
    rel = nbformat.read(str(rel_path), as_version=4)
    out["released"] = sorted(p.name for p in rel_path.parent.iterdir())
    out["stub"] = "raise NotImplementedError()" in rel.cells[3].source and "2 * x" not in rel.cells[3].source
    out["catalog"] = {{e.name: [run_check(e.part, e.cls, points=1, out=io.StringIO(), **mode).fraction
                               for mode in ({{}}, {{"hidden": True}}, {{"graded": True}})]
                      for e in entries(part="toy_double") if e.kind != "trivial"}}
    src = nbformat.read(str(root / "solutions" / "{A}" / "{A}.ipynb"), as_version=4)
    for student, nb in {{"complete": fill_solutions(rel, src), "untouched": rel}}.items():
        (root / "subs" / student).mkdir(parents=True)
        nbformat.write(nb, str(root / "subs" / student / "{A}.ipynb"))
    cfg = GradeConfig(assignment="{A}", source_dir=root / "solutions", workers=1, isolation="none",
                      progress=False, cell_timeout_s=120, submission_timeout_s=300)
    results, cells = grade_submissions(root / "subs", cfg, root / "grades")
    out["scores"] = {{r.student: r.scores for r in results}}
    out["status"] = {{r.student: r.status for r in results}}
    print("RESULT " + json.dumps(out))
''')


def _copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "examples/0*")
    for package in ("cfgflow", "cfgflow_ref", "autograder"):
        shutil.copytree(REPO / package, dest / package, ignore=ignore)
    (dest / "solutions").mkdir()
    shutil.copy(REPO / "solutions" / "jupytext.toml", dest / "solutions")


@pytest.mark.slow
def test_a_part_added_through_the_manifest_is_released_checked_and_graded(tmp_path):
    _copy_project(tmp_path)
    manifest = tmp_path / "cfgflow" / "course.py"
    text = manifest.read_text()
    anchor = "\n)}\n\nPARTS"
    assert text.count(anchor) == 1, "cfgflow/course.py changed shape: update MANIFEST_ENTRY's anchor"
    manifest.write_text(text.replace(anchor, "\n" + MANIFEST_ENTRY.rstrip("\n") + anchor))
    (tmp_path / "cfgflow" / "checks" / "toy.py").write_text(VISIBLE)
    (tmp_path / "autograder" / "checks" / "toy.py").write_text(HIDDEN)
    (tmp_path / "autograder" / "catalog" / "toy.py").write_text(CATALOG)
    (tmp_path / "solutions" / A).mkdir()
    (tmp_path / "solutions" / A / f"{A}.py").write_text(toy_source())

    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and lines, f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["pairs"] == [] and out["parts"][-1] == "toy_double"
    assert out["released"] == [f"{A}.ipynb"] and out["stub"]
    assert out["catalog"] == {"Triple": [0.0, 0.0, 0.0], "AddSelf": [1.0, 1.0, 1.0]}
    assert out["status"] == {"complete": "ok", "untouched": "ok"}
    assert out["scores"]["complete"] == {f"{A}/test_toy_double": 1.0, f"{A}/test_toy_double_hidden": 2.0}
    assert out["scores"]["untouched"] == {f"{A}/test_toy_double": 0.0, f"{A}/test_toy_double_hidden": 0.0}
