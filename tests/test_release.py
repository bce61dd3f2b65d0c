"""The nbgrader sources, their metadata, and the generated release ``notebooks/``.

Fast tests read the committed notebooks; the slow ones regenerate the release with
``autograder.release`` (nbgrader's generate_assignment, ~10 s per assignment).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import types

import nbformat
import pytest

from autograder import colab
from autograder.sources import main as sources_main
from autograder.sources import pair_problems
from cfgflow import course
from cfgflow.course import cell_part

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSIGNMENTS = tuple(course.ASSIGNMENTS)
GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")



def part_cells(nb, part: str) -> dict:
    """``{"solution" | "visible" | "hidden": cell}`` of a part, found by its cfgflow metadata."""
    cells = [c for c in nb.cells if cell_part(c) == part]
    return {("solution" if nbg(c).get("solution") else "hidden" if "HIDDEN TESTS" in c.source
             else "visible"): c for c in cells}


def source_path(a: str) -> str:
    return os.path.join(REPO, "solutions", a, f"{a}.ipynb")


def release_path(a: str, root: str = os.path.join(REPO, "notebooks")) -> str:
    return os.path.join(root, a, f"{a}.ipynb")


def read(path: str) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def nbg(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


# --------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_source_pairs_in_sync(a):
    """solutions/<id>/<id>.py and .ipynb hold the same cells (jupytext pairing)."""
    assert pair_problems(a) == [], "edit either file, then run jupytext --sync solutions/*/*.py"


def test_pairing_covers_the_sources_and_never_the_release():
    """jupytext pairs solutions/ only: a contents manager that synced notebooks/ would write the
    paired text (the solutions) into the release."""
    from jupytext.config import find_jupytext_configuration_file

    for a in ASSIGNMENTS:
        assert find_jupytext_configuration_file(os.path.join(REPO, "solutions", a)) == os.path.join(
            REPO, "solutions", "jupytext.toml")
        assert find_jupytext_configuration_file(os.path.dirname(release_path(a))) is None
        assert "jupytext" not in read(release_path(a)).metadata


def test_sources_check_command_names_a_pair_out_of_sync(tmp_path, capsys):
    """``python -m autograder.sources --check`` (the command CI runs through this test)."""
    assert sources_main(["--check"]) == 0
    shutil.copytree(os.path.join(REPO, "solutions", "01_cfg"), tmp_path / "01_cfg")
    text = tmp_path / "01_cfg" / "01_cfg.py"
    text.write_text(text.read_text().replace("# # Notebook 1:", "# # Notebook One:"))
    assert pair_problems("01_cfg", str(tmp_path)) == [
        "01_cfg: 01_cfg.py and 01_cfg.ipynb differ in the source of intro"]


def test_sources_match_the_colab_settings(monkeypatch):
    """A settings change must be written into the sources: release refuses until it is."""
    from autograder.release import ReleaseError, release, settings_problems

    assert settings_problems(os.path.join(REPO, "solutions"), ASSIGNMENTS) == []
    monkeypatch.setattr(colab, "STUDENT_REF", "v2099.1")
    stale = settings_problems(os.path.join(REPO, "solutions"), ASSIGNMENTS)
    assert len(stale) == 2 * len(ASSIGNMENTS) and all("v2099.1" in p for p in stale)
    with pytest.raises(ReleaseError, match="colab_badge cell does not match"):
        release(["01_cfg"], out_dir="/nonexistent/never-written")


def test_sources_settings_command_writes_the_settings_into_both_files(tmp_path, monkeypatch):
    from autograder.release import settings_problems
    from autograder.sources import write_settings

    shutil.copytree(os.path.join(REPO, "solutions", "01_cfg"), tmp_path / "01_cfg")
    shutil.copy(os.path.join(REPO, "solutions", "jupytext.toml"), tmp_path)  # the pairing
    monkeypatch.setattr(colab, "STUDENT_REF", "v2099.1")
    write_settings(["01_cfg"], str(tmp_path))
    assert settings_problems(str(tmp_path), ["01_cfg"]) == [] and pair_problems("01_cfg", str(tmp_path)) == []
    badge = read(str(tmp_path / "01_cfg" / "01_cfg.ipynb")).cells[0].source
    assert "/blob/v2099.1/" in badge and "Runtime > Change runtime type" in badge


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_metadata_schema_and_unique_grade_ids(a):
    nb = read(source_path(a))
    ids = []
    for cell in nb.cells:
        meta = nbg(cell)
        if not meta:
            continue
        assert meta["schema_version"] == 3
        assert GRADE_ID.match(meta["grade_id"]), meta["grade_id"]
        ids.append(meta["grade_id"])
        if meta["grade"]:  # test cell
            assert cell.cell_type == "code"
            assert (meta["solution"], meta["locked"]) == (False, True), meta
            assert isinstance(meta["points"], (int, float)) and meta["points"] > 0, meta
        elif meta["solution"]:
            assert (meta["grade"], meta["locked"]) == (False, False), meta
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        else:
            assert meta["locked"] is True, meta
    assert len(ids) == len(set(ids)), f"duplicate grade_ids in {a}: {ids}"


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_each_part_has_visible_and_hidden_grade_cells(a):
    """Each part of cfgflow/course.py: a solution cell and two test cells tagged with its name,
    checking its class with the manifest's points; no other cell claims a part."""
    nb = read(source_path(a))
    parts = [p.name for p in course.ASSIGNMENTS[a].parts]
    assert list(dict.fromkeys(cell_part(c) for c in nb.cells if cell_part(c))) == parts
    calls = [nbg(c)["grade_id"] for c in nb.cells if nbg(c).get("grade") and "check(" in c.source]
    assert calls == [nbg(c)["grade_id"] for c in nb.cells if nbg(c).get("grade") and cell_part(c)], (
        "every test cell that calls check() names its part in its cfgflow metadata (the grader reads it)")
    for spec in course.ASSIGNMENTS[a].parts:
        cells = part_cells(nb, spec.name)
        assert sorted(cells) == ["hidden", "solution", "visible"], (spec.name, sorted(cells))
        vis, hid = cells["visible"], cells["hidden"]
        assert (nbg(vis)["points"], nbg(hid)["points"]) == (spec.visible, spec.hidden), spec.name
        assert [nbg(c)["grade_id"] for c in (vis, hid)] == [f"test_{spec.name}", f"test_{spec.name}_hidden"]
        # the visible check is the cell's last expression, so its value is the partial credit
        last = ast.parse(vis.source).body[-1]
        assert isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
        assert f'check("{spec.name}", {spec.student_class}, points={spec.visible})' in vis.source
        assert "hidden=True" not in vis.source
        hidden_block = hid.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
        assert (f'check("{spec.name}", {spec.student_class}, points={spec.hidden}, hidden=True)'
                in hidden_block)


def points_table(assignment: course.Assignment) -> str:
    rows = ["| part | what you implement | visible | hidden | total |", "|---|---|---|---|---|"]
    rows += [f"| {p.question} | {p.what} | {p.visible} | {p.hidden} | {p.points} |" for p in assignment.parts]
    vis, hid = sum(p.visible for p in assignment.parts), sum(p.hidden for p in assignment.parts)
    return "\n".join(rows + [f"| **total** | | {vis} | {hid} | **{assignment.points}** |"])


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_intro_states_the_points_of_the_manifest(a):
    """The intro's total and points table, and each question's heading, are cfgflow/course.py's."""
    nb = read(source_path(a))
    spec = course.ASSIGNMENTS[a]
    assert sum(nbg(c)["points"] for c in nb.cells if nbg(c).get("grade")) == spec.points
    intro = next(c for c in nb.cells if nbg(c).get("grade_id") == "intro").source
    assert f"Points ({spec.points} in total)" in intro
    assert points_table(spec) in intro, f"the intro's points table should read:\n{points_table(spec)}"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for i, p in enumerate(spec.parts, 1):
        assert f"### Question {i} ({p.points} points)" in text, p.name


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_student_classes_keep_the_lab_signatures(a):
    """The stub's constructor takes the reference class's arguments; its method states its shapes."""
    import inspect

    import cfgflow_ref

    nb = read(source_path(a))
    for spec in course.ASSIGNMENTS[a].parts:
        tree = ast.parse(part_cells(nb, spec.name)["solution"].source)
        (klass,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
        assert klass.name == spec.student_class
        init = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
        ref = inspect.signature(getattr(cfgflow_ref, spec.student_class).__init__)
        ref_args = [n for n, prm in ref.parameters.items() if prm.kind is prm.POSITIONAL_OR_KEYWORD]
        required = [n for n in ref_args if ref.parameters[n].default is inspect.Parameter.empty]
        got = [x.arg for x in init.args.args]  # the reference's leading arguments, at least the required
        assert got == ref_args[:len(got)] and len(got) >= len(required), (spec.student_class, got, ref_args)
        fwd = next(n for n in klass.body if isinstance(n, ast.FunctionDef)
                   and n.name in ("forward", "get_train_loss", "sample"))
        assert ast.get_docstring(fwd), f"{spec.student_class}.{fwd.name} needs a docstring stating its shapes"


def test_docstrings_state_the_enforced_conventions():
    """The conventions the checks pin are written in the stubs' own words."""
    text = {a: " ".join(" ".join(c.source for c in read(source_path(a)).cells).split())
            for a in ASSIGNMENTS}  # whitespace-normalised
    for phrase in ("probability ``self.eta`` (NOT 1 - eta)", "uniform on [0, 1 - self.eps)",
                   "t of shape ``(b,)``", "mean over EVERY element", "``num_classes + 1`` rows"):
        assert phrase in text["01_cfg"], phrase
    for phrase in ("the cos block first", "no extra scale factor", "``nn.Parameter`` of shape ``(dim / 2,)``",
                   "row-major ``(h w)``", "head_dim ** -0.5", "h * (1 + scale) + shift",
                   "the identity map", "Conv2d or Unfold + Linear", "(1x1 or 3x3: both fine)",
                   "Embedding(num_classes + 1, dim)", "must work for b = 1"):
        assert phrase in text["02_dit"], phrase
    for phrase in ("``mean + exp(logvar / 2) * noise``", "drawn fresh at each call, on mean's device",
                   "then the MEAN over the batch", "a 0-d scalar counts once per pixel",
                   "beta weighs the KL term only", "``n = len(hidden_channels)``", "must work for b = 1",
                   "under ``torch.no_grad()``", "with probability ``self.eta``", "decode ONCE",
                   "the decoder's mean"):
        assert phrase in text["03_latent"], phrase


# --------------------------------------------------------------------------------------
# committed release
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_release_has_stubs_and_no_solutions_or_hidden_tests(a):
    rel = read(release_path(a))
    src = read(source_path(a))
    assert len(rel.cells) == len(src.cells)
    for r, s in zip(rel.cells, src.cells):
        assert not r.get("outputs"), "release notebooks carry no outputs"
        assert "BEGIN SOLUTION" not in r.source and "HIDDEN TESTS" not in r.source
        assert "hidden=True" not in r.source
        if nbg(s).get("solution"):
            n_regions = s.source.count("### BEGIN SOLUTION")
            assert r.source.count("raise NotImplementedError()") == n_regions
            assert r.source.count("# YOUR CODE HERE") == n_regions
        else:
            assert "NotImplementedError" not in r.source or "NotImplementedError" in s.source


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_release_starts_with_colab_badge_and_setup_cell(a):
    rel = read(release_path(a))
    badge, setup = rel.cells[0], rel.cells[1]
    assert badge.cell_type == "markdown"
    assert colab.colab_url(a) in badge.source
    assert colab.STUDENT_REPO_URL.split("github.com/")[1] in badge.source
    assert setup.cell_type == "code" and setup.source.strip() == colab.setup_cell_source().strip()


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_notebooks_ask_colab_for_a_gpu(a):
    """Colab opens a notebook on a GPU runtime when its metadata asks for one; the source
    carries it and nbgrader's generate_assignment keeps it in the release."""
    for path in (source_path(a), release_path(a)):
        meta = read(path).metadata
        assert meta["accelerator"] == "GPU" and meta["colab"]["gpuType"] == "T4", path
    first = read(release_path(a)).cells[0].source
    assert "Runtime > Change runtime type" in first and "T4 GPU" in first
    assert "torch.cuda.is_available()" in first


def test_colab_setup_cell_installs_only_on_colab(monkeypatch):
    calls = []
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append((a, k)))
    code = compile(colab.setup_cell_source(), "<setup>", "exec")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(code, {})
    assert calls == [], "the set-up cell must do nothing outside Colab"
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(code, {})
    assert len(calls) == 1
    cmd = calls[0][0][0]
    assert cmd[1:4] == ["-m", "pip", "install"]
    assert f"cfgflow @ git+{colab.STUDENT_REPO_URL}@{colab.STUDENT_REF}" in cmd


def test_colab_url_rejects_non_github_urls():
    with pytest.raises(ValueError, match="STUDENT_REPO_URL"):
        colab.colab_url("01_cfg", repo_url="https://gitlab.com/a/b")
    assert colab.colab_url("02_dit", repo_url="https://github.com/me/fork.git", ref="v2026.1") == (
        "https://colab.research.google.com/github/me/fork/blob/v2026.1/notebooks/02_dit/02_dit.ipynb")


@pytest.mark.parametrize("setting, kwargs", [
    ("STUDENT_REPO_URL", {"repo_url": ""}), ("STUDENT_REF", {"ref": ""}),
    ("STUDENT_REF", {"ref": "main"}), ("STUDENT_REF", {"ref": "master"}),
])
def test_colab_settings_must_name_a_repository_and_a_pinned_ref(setting, kwargs):
    """An empty URL or ref, or a branch for the ref, is an error that names the setting."""
    for build in (colab.setup_cell_source, lambda **k: colab.badge_markdown("01_cfg", **k)):
        with pytest.raises(colab.CourseSettingError, match=setting):
            build(**kwargs)


def test_colab_set_up_cell_and_badge_use_the_same_pinned_ref():
    setup = colab.setup_cell_source(repo_url="https://github.com/me/course", ref="0123abcd")
    assert '"cfgflow @ git+https://github.com/me/course@0123abcd"' in setup
    assert "/blob/0123abcd/" in colab.badge_markdown("01_cfg", "https://github.com/me/course", "0123abcd")


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_notebooks_do_not_depend_on_the_repo_as_working_directory(a):
    for cell in read(source_path(a)).cells:
        if cell.cell_type != "code":
            continue
        for bad in ("../", "solutions/", "notebooks/", "cfgflow_ref/", "autograder/", "sys.path",
                    "os.chdir"):
            assert bad not in cell.source, f"{a}: {bad!r} in cell {cell.id}"


# --------------------------------------------------------------------------------------
# regeneration
# --------------------------------------------------------------------------------------


def _comparable(nb):
    return [(c.cell_type, c.source, nbg(c)) for c in nb.cells]


@pytest.mark.slow
def test_release_in_sync_with_sources(tmp_path):
    """``python -m autograder.release`` reproduces the committed notebooks/ exactly."""
    from autograder.release import release

    out = release(out_dir=str(tmp_path))
    assert sorted(out) == sorted(ASSIGNMENTS)
    for a in ASSIGNMENTS:
        fresh, committed = read(release_path(a, str(tmp_path))), read(release_path(a))
        assert {k: fresh.metadata[k] for k in colab.NOTEBOOK_METADATA} == colab.NOTEBOOK_METADATA
        assert _comparable(fresh) == _comparable(committed), (
            f"notebooks/{a} is out of date: run python -m autograder.release")
        with open(release_path(a, str(tmp_path))) as f, open(release_path(a)) as g:
            assert f.read() == g.read(), "the release is not byte-for-byte deterministic"
        assert os.listdir(os.path.dirname(release_path(a, str(tmp_path)))) == [f"{a}.ipynb"], (
            "only the notebook is released (never the text source with the solutions)")
    assert not os.path.exists(os.path.join(REPO, "gradebook.db")), "release wrote a gradebook in the repo"


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_sources_have_no_control_characters(a):
    """A lost backslash in the builder ("\\tilde", "\\alpha") turns into a tab or a bell."""
    for cell in read(source_path(a)).cells:
        bad = sorted({ch for ch in cell.source if ord(ch) < 32 and ch != "\n"})
        assert not bad, f"{a}, cell {cell.id}: control characters {bad!r}"
