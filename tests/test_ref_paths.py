"""Gaussian conditional probability paths, checked against independent math:
endpoints, the time derivative of x_t = alpha_t z + beta_t eps, the gradient of the
Gaussian log-density, and autograd vs closed-form schedule derivatives."""

from __future__ import annotations

import math

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from cfgflow_ref.distributions import GMM, IsotropicGaussian, LabeledSampleable
from cfgflow_ref.paths import (
    Alpha,
    Beta,
    GaussianConditionalProbabilityPath,
    LinearAlpha,
    LinearBeta,
)


class SquareAlpha(Alpha):
    """alpha_t = t^2 (derivative left to the autograd default)."""

    def __call__(self, t):
        return t**2


class CosBeta(Beta):
    """beta_t = cos(pi t / 2) (derivative left to the autograd default)."""

    def __call__(self, t):
        return torch.cos(math.pi * t / 2)


# Independent closed forms (value, derivative) for each schedule used below.
SCHEDULES = {
    "linear": (LinearAlpha, LinearBeta, lambda t: t, lambda t: 1 - t),
    "nonlinear": (SquareAlpha, CosBeta, lambda t: t**2, lambda t: torch.cos(math.pi * t / 2)),
}


class ImageData(LabeledSampleable):
    """Fake labelled image data ``(b, 1, 32, 32)``: a fixed image plus small noise."""

    def __init__(self, value: float = 2.0):
        self.value = value

    def sample(self, num_samples):
        z = self.value + 0.01 * torch.randn(num_samples, 1, 32, 32)
        return z, torch.zeros(num_samples, dtype=torch.int64)


def make_path(kind: str, shape):
    alpha_cls, beta_cls, _, _ = SCHEDULES[kind]
    p_data = GMM.symmetric_2d() if list(shape) == [2] else ImageData()
    return GaussianConditionalProbabilityPath(p_data, list(shape), alpha_cls(), beta_cls())


SHAPES = [pytest.param([2], id="flat"), pytest.param([1, 32, 32], id="image")]


# -- schedules ---------------------------------------------------------------------------

def test_default_dt_is_autograd_of_the_schedule_and_matches_closed_form():
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    torch.testing.assert_close(SquareAlpha().dt(t), 2 * t)
    torch.testing.assert_close(CosBeta().dt(t), -math.pi / 2 * torch.sin(math.pi * t / 2))


def test_linear_schedules_closed_form_and_autograd_agree():
    t = torch.rand(17, dtype=torch.float64)
    a, b = LinearAlpha(), LinearBeta()
    torch.testing.assert_close(a(t), t)
    torch.testing.assert_close(b(t), 1 - t)
    torch.testing.assert_close(a.dt(t), torch.ones_like(t))
    torch.testing.assert_close(b.dt(t), -torch.ones_like(t))
    # The base classes' autograd default gives the same derivatives as the overrides.
    torch.testing.assert_close(Alpha.dt(a, t), torch.ones_like(t))
    torch.testing.assert_close(Beta.dt(b, t), -torch.ones_like(t))


def test_schedules_keep_shape():
    t = torch.rand(5)
    for sched in (LinearAlpha(), LinearBeta(), SquareAlpha(), CosBeta()):
        assert sched(t).shape == (5,)
        assert sched.dt(t).shape == (5,)


@pytest.mark.parametrize(
    "base, fn",
    [
        (Alpha, lambda t: t + 0.1),  # alpha_0 != 0
        (Alpha, lambda t: 0.5 * t),  # alpha_1 != 1
        (Beta, lambda t: 1 - 0.5 * t),  # beta_1 != 0
        (Beta, lambda t: 0.9 - 0.9 * t),  # beta_0 != 1
    ],
)
def test_schedule_violating_endpoints_raises(base, fn):
    cls = type("Bad", (base,), {"__call__": lambda self, t: fn(t)})
    with pytest.raises(ValueError, match="must satisfy"):
        cls()


# -- the path ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_t0_gives_pure_noise(shape):
    path = make_path("linear", shape)
    n = 4000 if shape == [2] else 64
    z = torch.full((n, *shape), 5.0)  # far from 0: any leak of z would show in the mean
    x = path.sample_conditional_path(z, torch.zeros(n))
    assert x.shape == z.shape
    m = x.numel()
    se_mean = 1 / math.sqrt(m)
    assert abs(x.mean().item()) < 5 * se_mean
    se_var = math.sqrt(2 / m)
    assert abs(x.var().item() - 1.0) < 5 * se_var
    # The marginal at t = 0 is the same N(0, I), whatever p_data is.
    xm = path.sample_marginal_path(torch.zeros(n))
    assert xm.shape == (n, *shape)
    assert abs(xm.mean().item()) < 5 * se_mean
    assert abs(xm.var().item() - 1.0) < 5 * se_var


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("shape", SHAPES)
def test_t_to_1_gives_the_data(kind, shape):
    path = make_path(kind, shape)
    z = torch.randn(8, *shape)
    torch.testing.assert_close(path.sample_conditional_path(z, torch.ones(8)), z)
    x = path.sample_conditional_path(z, torch.full((8,), 1 - 1e-5))
    assert (x - z).abs().max() < 1e-2


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")  # forward-mode AD, torch 2.14
@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("shape", SHAPES)
def test_conditional_vector_field_is_time_derivative_of_the_path(kind, shape):
    torch.set_default_dtype(torch.float64)
    try:
        path = make_path(kind, shape)
        _, _, alpha, beta = SCHEDULES[kind]
        b = 6
        z, eps = torch.randn(b, *shape), torch.randn(b, *shape)
        t = torch.rand(b) * 0.98 + 0.01
        per = (b,) + (1,) * len(shape)

        def x_of_t(s):  # x_s = alpha_s z + beta_s eps at FIXED eps, (b,) -> (b, ...)
            return alpha(s).reshape(per) * z + beta(s).reshape(per) * eps

        with fwAD.dual_level():  # forward-mode AD: row i depends on t_i only
            out = fwAD.unpack_dual(x_of_t(fwAD.make_dual(t, torch.ones_like(t))))
        x, dx_dt = out.primal, out.tangent
        u = path.conditional_vector_field(x, z, t)
        assert u.shape == (b, *shape)
        torch.testing.assert_close(u, dx_dt, rtol=1e-8, atol=1e-8)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("shape", SHAPES)
def test_conditional_score_is_gradient_of_gaussian_log_density(kind, shape):
    path = make_path(kind, shape)
    _, _, alpha, beta = SCHEDULES[kind]
    b = 5
    z = torch.randn(b, *shape, dtype=torch.float64)
    t = torch.rand(b, dtype=torch.float64) * 0.98 + 0.01
    x = torch.randn(b, *shape, dtype=torch.float64, requires_grad=True)
    per = (b,) + (1,) * len(shape)
    mean, std = alpha(t).reshape(per) * z, beta(t).reshape(per)
    d = x[0].numel()
    logp = (-0.5 * ((x - mean) / std) ** 2).flatten(1).sum(1) - d * torch.log(std.flatten()) \
        - 0.5 * d * math.log(2 * math.pi)  # (b,) log N(x; alpha z, beta^2 I)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    score = path.conditional_score(x.detach(), z, t)
    assert score.shape == (b, *shape)
    torch.testing.assert_close(score, grad)


@pytest.mark.parametrize("shape", SHAPES)
def test_path_marginal_shape_and_wrong_t_shape_raises(shape):
    path = make_path("linear", shape)
    x = path.sample_marginal_path(torch.rand(3))
    assert x.shape == (3, *shape)
    z = torch.randn(3, *shape)
    with pytest.raises(ValueError, match="t must have shape"):
        path.sample_conditional_path(z, torch.rand(4))
    with pytest.raises(ValueError, match="t must have shape"):
        path.conditional_vector_field(z, z, torch.rand(3, 2))


def test_isotropic_gaussian_is_p_simple_of_the_path():
    path = make_path("linear", [1, 32, 32])
    assert isinstance(path.p_simple, IsotropicGaussian)
    assert path.p_simple.sample(2).shape == (2, 1, 32, 32)
