"""Tests of autograder.repair.repair_submission on small synthetic notebooks."""

from __future__ import annotations

import copy
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.repair import repair_submission, solution_skeleton, strip_hidden_tests


def _meta(gid, *, grade=False, solution=False, locked=False, points=None):
    m = {"grade": grade, "solution": solution, "locked": locked, "grade_id": gid, "schema_version": 3}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


FOURIER = '''class FourierEncoder(nn.Module):
    """Fourier features of t: (b,) -> (b, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.weights = nn.Parameter(torch.randn(dim // 2))
        ### END SOLUTION

    def forward(self, t):
        ### BEGIN SOLUTION
        return torch.cat([torch.cos(t * self.weights), torch.sin(t * self.weights)], dim=-1)
        ### END SOLUTION
'''

MHA = '''class MHA(nn.Module):
    """Multi-head attention: (b, n, d) -> (b, n, d)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.qkv = nn.Linear(dim, 3 * dim)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return x
        ### END SOLUTION
'''


def _test_src(part, cls, pts):
    return (f'from autograder.checks import check\ncheck("{part}", {cls}, points={pts})\n'
            f'### BEGIN HIDDEN TESTS\ncheck("{part}", {cls}, points={pts + 1}, hidden=True)\n'
            "### END HIDDEN TESTS")


def make_source():
    return new_notebook(cells=[
        new_markdown_cell("# Lab\nIntro text."),
        new_code_cell("import torch\nimport torch.nn as nn", metadata=_meta("imports", locked=True)),
        new_code_cell(FOURIER, metadata=_meta("fourier", solution=True)),
        new_code_cell(_test_src("fourier_encoder", "FourierEncoder", 2),
                      metadata=_meta("test_fourier", grade=True, locked=True, points=3)),
        new_markdown_cell("Now a free helper."),
        new_code_cell("### BEGIN SOLUTION\nSCALE = 0.5\n### END SOLUTION",
                      metadata=_meta("scale", solution=True)),
        new_code_cell(MHA, metadata=_meta("mha", solution=True)),
        new_code_cell(_test_src("mha", "MHA", 4),
                      metadata=_meta("test_mha", grade=True, locked=True, points=5)),
        new_markdown_cell("The end."),
    ])


def make_release(source):
    """What nbgrader generate_assignment would produce (solutions stubbed, hidden tests gone)."""
    rel = copy.deepcopy(source)
    for cell in rel.cells:
        src = cell.source
        src = re.sub(r"( *)### BEGIN SOLUTION\n.*?### END SOLUTION",
                     lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()",
                     src, flags=re.S)
        cell.source = strip_hidden_tests(src)
    return rel


def make_student(source):
    """A complete, intact submission: the release with the student's code filled in."""
    sub = make_release(source)
    for cell in sub.cells:
        cell.source = cell.source.replace("# YOUR CODE HERE\n", "").replace(
            "raise NotImplementedError()", "pass  # student code")
    sub.cells[5].source = "SCALE = 0.25"
    return sub


def grade_ids(nb):
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]


def graded_order(nb):
    return [g for g in grade_ids(nb) if g]


SRC_ORDER = ["imports", "fourier", "test_fourier", "scale", "mha", "test_mha"]


@pytest.fixture(params=["source", "release"])
def source_nb(request):
    src = make_source()
    return src if request.param == "source" else make_release(src)


def test_intact_submission_is_unchanged(source_nb):
    sub = make_student(make_source())
    out, notes = repair_submission(sub, source_nb)
    assert notes == []
    assert out.cells == sub.cells


def test_input_notebooks_are_not_modified(source_nb):
    sub = make_student(make_source())
    for c in sub.cells:
        c.metadata.pop("nbgrader", None)
    before_sub, before_src = copy.deepcopy(sub), copy.deepcopy(source_nb)
    out, notes = repair_submission(sub, source_nb)
    assert notes
    assert sub == before_sub and source_nb == before_src
    assert out is not sub


def test_stripped_metadata_is_matched_back(source_nb):
    sub = make_student(make_source())
    for c in sub.cells:
        c.metadata = {}  # Colab / VS Code round trip
    out, notes = repair_submission(sub, source_nb)
    assert graded_order(out) == SRC_ORDER
    assert [c.source for c in out.cells] == [c.source for c in sub.cells]  # student code kept
    nbg = out.cells[3].metadata["nbgrader"]
    assert nbg["grade"] and nbg["locked"] and nbg["points"] == 3
    assert out.cells[2].metadata["nbgrader"]["solution"] is True
    assert len([n for n in notes if "lost its grading metadata" in n]) == 5
    assert any("1 read-only cell(s)" in n and "(cells 2)" in n for n in notes)
    assert any("position" in n and "'scale'" in n for n in notes)  # the all-solution cell
    assert any("by its content" in n and "'fourier'" in n for n in notes)
    nbformat.validate(out)


def test_duplicated_solution_cell_keeps_the_last_copy(source_nb):
    sub = make_student(make_source())
    late = copy.deepcopy(sub.cells[2])
    late.source = late.source.replace("pass  # student code", "return t  # fixed", 1)
    sub.cells.insert(4, late)  # copy after the test cell, same grade_id
    out, notes = repair_submission(sub, source_nb)
    ids = grade_ids(out)
    assert ids.count("fourier") == 1
    kept = out.cells[ids.index("fourier")]
    assert "# fixed" in kept.source
    # the kept copy moved before its test cell; the old copy is an ordinary cell before it
    assert ids.index("fourier") < ids.index("test_fourier")
    old = [c for c in out.cells
           if "nbgrader" not in c.metadata and c.source.startswith("class FourierEncoder")]
    assert len(old) == 1 and "# fixed" not in old[0].source
    assert out.cells.index(old[0]) < ids.index("fourier")
    assert any("another copy" in n and "'fourier'" in n for n in notes)


def test_edited_test_cell_is_noted(source_nb):
    sub = make_student(make_source())
    sub.cells[3].source = 'check("fourier_encoder", FourierEncoder, points=3)  # more points please'
    sub.cells[1].source += "\nimport numpy"  # read-only, not a test: nbgrader restores it silently
    out, notes = repair_submission(sub, source_nb)
    assert [n for n in notes if "had been edited" in n] == [
        "Cell 4 (test cell 'test_fourier') had been edited; the original version is used for grading."]


def test_duplicated_test_cell_keeps_one(source_nb):
    sub = make_student(make_source())
    dup = copy.deepcopy(sub.cells[7])
    dup.source = dup.source + "\nprint('again')"
    sub.cells.append(dup)
    out, notes = repair_submission(sub, source_nb)
    assert grade_ids(out).count("test_mha") == 1
    assert out.cells[grade_ids(out).index("test_mha")].source == sub.cells[7].source
    assert any("extra copy" in n for n in notes)


def test_test_cell_turned_into_markdown_runs_again(source_nb):
    sub = make_student(make_source())
    cell = sub.cells[3]
    sub.cells[3] = new_markdown_cell(cell.source, metadata=cell.metadata)
    out, notes = repair_submission(sub, source_nb)
    assert out.cells[3].cell_type == "code"
    assert out.cells[3].outputs == [] and out.cells[3].metadata["nbgrader"]["grade_id"] == "test_fourier"
    assert any("turned back into a code cell" in n for n in notes)
    nbformat.validate(out)


def test_test_cell_turned_into_markdown_without_metadata(source_nb):
    sub = make_student(make_source())
    sub.cells[7] = new_markdown_cell(sub.cells[7].source)
    out, notes = repair_submission(sub, source_nb)
    assert out.cells[7].cell_type == "code"
    assert out.cells[7].metadata["nbgrader"]["grade_id"] == "test_mha"


def test_reordered_cells_are_put_back(source_nb):
    sub = make_student(make_source())
    scratch = new_code_cell("print(MHA)")
    cells = sub.cells
    # mha block (solution, test, a scratch cell) moved to the top, fourier after it
    sub.cells = [cells[0], cells[6], cells[7], scratch, cells[1], cells[2], cells[3], cells[4], cells[5],
                 cells[8]]
    out, notes = repair_submission(sub, source_nb)
    assert graded_order(out) == SRC_ORDER
    i = out.cells.index(scratch)
    assert grade_ids(out)[i - 1] == "test_mha"  # the scratch cell travelled with its anchor
    assert any("out of order" in n for n in notes)
    assert len(out.cells) == len(sub.cells)


def test_deleted_test_cells_are_re_added(source_nb):
    sub = make_student(make_source())
    del sub.cells[7]  # test_mha
    del sub.cells[3]  # test_fourier
    out, notes = repair_submission(sub, source_nb)
    assert graded_order(out) == SRC_ORDER
    readded = out.cells[grade_ids(out).index("test_mha")]
    assert 'check("mha", MHA, points=4)' in readded.source
    assert readded.metadata["nbgrader"]["points"] == 5 and readded.cell_type == "code"
    assert sum("missing from the notebook" in n for n in notes) == 2
    nbformat.validate(out)


def test_everything_at_once(source_nb):
    sub = make_student(make_source())
    for c in sub.cells:
        c.metadata = {}
    cells = sub.cells
    sub.cells = [cells[0], cells[1], cells[6], new_markdown_cell(cells[7].source), cells[2], cells[4],
                 cells[5], cells[8]]  # test_fourier deleted, mha block first, test_mha as markdown
    out, notes = repair_submission(sub, source_nb)
    assert graded_order(out) == SRC_ORDER
    assert out.cells[grade_ids(out).index("scale")].source == "SCALE = 0.25"
    assert all(c.cell_type == "code" for c, g in zip(out.cells, grade_ids(out)) if g)
    assert notes


def test_unknown_grade_id_is_dropped(source_nb):
    sub = make_student(make_source())
    sub.cells.append(new_code_cell("x = 1", metadata=_meta("not_in_assignment", solution=True)))
    out, notes = repair_submission(sub, source_nb)
    assert "nbgrader" not in out.cells[-1].metadata
    assert any("unknown id 'not_in_assignment'" in n for n in notes)


def test_missing_solution_cell_is_reported_not_re_added(source_nb):
    sub = make_student(make_source())
    del sub.cells[6]  # the MHA answer cell
    out, notes = repair_submission(sub, source_nb)
    assert "mha" not in grade_ids(out)
    assert not any("raise NotImplementedError" in c.source for c in out.cells)
    assert any("No cell of the notebook matches the answer cell 'mha'" in n for n in notes)


def test_other_class_is_not_mistaken_for_a_solution(source_nb):
    """A cell sharing generic lines but defining another class must not steal the metadata."""
    sub = make_student(make_source())
    for c in sub.cells:
        c.metadata = {}
    del sub.cells[6]
    sub.cells.insert(6, new_code_cell(
        "class Other(nn.Module):\n    def __init__(self, dim: int, heads: int):\n"
        "        super().__init__()\n\n    def forward(self, x):\n        return x"))
    out, _ = repair_submission(sub, source_nb)
    assert "mha" not in grade_ids(out)
    other = [c for c in out.cells if c.source.startswith("class Other")]
    assert len(other) == 1 and "nbgrader" not in other[0].metadata
    assert graded_order(out) == ["imports", "fourier", "test_fourier", "scale", "test_mha"]


def test_bad_input_raises():
    with pytest.raises(TypeError, match="submitted_nb"):
        repair_submission("not a notebook", make_source())
    with pytest.raises(TypeError, match="source_nb"):
        repair_submission(make_source(), None)


def test_skeleton_helpers():
    assert solution_skeleton(FOURIER)[0] == "class FourierEncoder(nn.Module):"
    assert not any("nn.Parameter" in ln for ln in solution_skeleton(FOURIER))
    assert "hidden=True" not in strip_hidden_tests(_test_src("mha", "MHA", 1))
