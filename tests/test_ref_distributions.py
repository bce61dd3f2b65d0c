"""Distributions: devices of samples, mixture label frequencies and moments, Gaussian std."""

from __future__ import annotations

import math

import pytest
import torch

from cfgflow_ref.distributions import GMM, IsotropicGaussian


def test_gmm_samples_live_on_the_module_device():
    gmm = GMM.symmetric_2d().to("meta")  # any non-CPU device; meta needs no GPU
    x, y = gmm.sample(5)
    assert x.device.type == "meta" and y.device.type == "meta"
    assert x.shape == (5, 2) and y.shape == (5,) and y.dtype == torch.int64


def test_gaussian_samples_live_on_the_module_device():
    x = IsotropicGaussian([1, 4, 4]).to("meta").sample(3)
    assert x.device.type == "meta" and x.shape == (3, 1, 4, 4)


def test_gmm_label_frequencies_match_weights():
    weights = torch.tensor([1.0, 2.0, 5.0, 2.0])
    means = torch.randn(4, 3) * 10
    gmm = GMM(means, torch.full((4,), 0.5), weights)
    n = 40_000
    _, y = gmm.sample(n)
    p = weights / weights.sum()
    freq = torch.bincount(y, minlength=4).double() / n
    se = torch.sqrt(p * (1 - p) / n).double()
    assert ((freq - p.double()).abs() < 4 * se).all(), (freq, p)


def test_gmm_component_moments():
    means = torch.tensor([[0.0, 0.0], [10.0, -5.0]])
    stds = torch.tensor([0.5, 2.0])
    gmm = GMM(means, stds, torch.ones(2))
    x, y = gmm.sample(20_000)
    for k in range(2):
        xk = x[y == k]
        n = xk.shape[0]
        assert ((xk.mean(0) - means[k]).abs() < 4 * stds[k] / math.sqrt(n)).all()
        assert ((xk.std(0) - stds[k]).abs() < 4 * stds[k] * math.sqrt(1 / (2 * n))).all()


def test_symmetric_2d_modes_on_a_circle():
    gmm = GMM.symmetric_2d(nmodes=5, radius=3.0, std=0.1)
    assert gmm.num_components == 5
    torch.testing.assert_close(gmm.means.norm(dim=1), torch.full((5,), 3.0))
    torch.testing.assert_close(gmm.weights, torch.full((5,), 0.2))


@pytest.mark.parametrize("std", [1.0, 0.3, 2.5])
def test_isotropic_gaussian_std(std):
    x = IsotropicGaussian([2, 3], std=std).sample(20_000)
    assert x.shape == (20_000, 2, 3)
    m = x.numel()
    assert abs(x.mean().item()) < 4 * std / math.sqrt(m)
    assert abs(x.std().item() - std) < 4 * std * math.sqrt(1 / (2 * m))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_samples"):
        IsotropicGaussian([2]).sample(0)
    with pytest.raises(ValueError, match="num_samples"):
        GMM.symmetric_2d().sample(2.5)
    with pytest.raises(ValueError, match="means"):
        GMM(torch.zeros(3), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="stds and weights"):
        GMM(torch.zeros(3, 2), torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="weights"):
        GMM(torch.zeros(2, 2), torch.ones(2), torch.tensor([1.0, -1.0]))
