"""Classifier-free guidance: the guided field against two explicit passes and a field
with a known answer; pass counting; sample_cfg shapes and solvers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from cfgflow_ref.models import MLPConditionalVectorField
from cfgflow_ref.simulation import CFGVectorFieldODE, sample_cfg

NULL = 3


class CountingNet(nn.Module):
    """Wraps a net and records the batch size of every call."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.batch_sizes = []

    def forward(self, x, t, y):
        self.batch_sizes.append(x.shape[0])
        return self.net(x, t, y)


class LabelField(nn.Module):
    """u(x, t | y) = y (as a float, broadcast over x): the guided field is known exactly."""

    def __init__(self):
        super().__init__()
        self.ts = []

    def forward(self, x, t, y):
        self.ts.append(t.detach().clone())
        return y.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1))).expand_as(x).clone()


@pytest.fixture
def mlp():
    torch.manual_seed(1)
    return MLPConditionalVectorField(dim=2, hidden_dim=32, class_dim=4, num_classes=NULL).eval()


@pytest.mark.parametrize("w", [0.0, 0.5, 2.5, 5.0])
def test_cfg_equals_two_explicit_passes(mlp, w):
    b = 16
    x, t = torch.randn(b, 2), torch.rand(b)
    y = torch.randint(0, NULL, (b,))
    with torch.no_grad():
        u_cond = mlp(x, t, y)
        u_null = mlp(x, t, torch.full((b,), NULL))
        want = (1 - w) * u_null + w * u_cond
        got = CFGVectorFieldODE(mlp, null_label=NULL, guidance_scale=w).drift_coefficient(x, t, y=y)
    assert got.shape == (b, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    if w != 1:
        # The test is sharp enough to catch a swapped sign or swapped weights.
        for wrong in ((1 + w) * u_null - w * u_cond, w * u_null + (1 - w) * u_cond,
                      (1 - w) * u_cond + w * u_null):
            if not torch.allclose(wrong, want, atol=1e-4):
                assert not torch.allclose(got, wrong, atol=1e-4)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_cfg_on_a_field_with_known_answer(w):
    b = 5
    y = torch.tensor([0, 1, 2, 1, 0])
    got = CFGVectorFieldODE(LabelField(), NULL, w).drift_coefficient(torch.zeros(b, 2), torch.rand(b), y)
    want = ((1 - w) * NULL + w * y.float())[:, None].expand(b, 2)
    torch.testing.assert_close(got, want)


def test_w1_uses_one_pass_of_size_b(mlp):
    net = CountingNet(mlp)
    b = 7
    x, t, y = torch.randn(b, 2), torch.rand(b), torch.randint(0, NULL, (b,))
    with torch.no_grad():
        got = CFGVectorFieldODE(net, NULL, 1.0).drift_coefficient(x, t, y=y)
        torch.testing.assert_close(got, mlp(x, t, y))
    assert net.batch_sizes == [b]


def test_guided_uses_one_batched_pass(mlp):
    net = CountingNet(mlp)
    b = 7
    with torch.no_grad():
        CFGVectorFieldODE(net, NULL, 3.0).drift_coefficient(torch.randn(b, 2), torch.rand(b),
                                                            y=torch.randint(0, NULL, (b,)))
    assert net.batch_sizes == [2 * b]


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_sample_cfg_shapes(shape, solver):
    net = LabelField()
    y = torch.tensor([0, 1, 2, 2])
    out = sample_cfg(net, y, guidance_scale=2.0, num_steps=5, shape=shape, null_label=NULL,
                     solver=solver)
    assert out.shape == (4, *shape)
    # u is constant in time => x1 = x0 + u; check with a fixed x0.
    x0 = torch.randn(4, *shape)
    out = sample_cfg(net, y, 2.0, num_steps=5, shape=shape, null_label=NULL, solver=solver, x0=x0)
    u = (1 - 2.0) * NULL + 2.0 * y.float()
    torch.testing.assert_close(out, x0 + u.reshape(-1, *([1] * len(shape))))


def test_sample_cfg_integrates_from_0_to_1_and_never_evaluates_t1():
    net = LabelField()
    sample_cfg(net, torch.tensor([1, 2]), 1.0, num_steps=4, shape=(2,), null_label=NULL,
               solver="heun")
    ts = torch.cat([t.flatten() for t in net.ts])
    assert ts.min().item() == 0.0
    assert ts.max().item() < 1.0


class ExpField(nn.Module):
    """u(x, t | y) = x: x(1) = e x(0); Heun is far more accurate than Euler."""

    def forward(self, x, t, y):
        return x


def test_sample_cfg_solvers_accuracy():
    x0 = torch.ones(3, 2, dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.int64)
    err = {}
    for solver in ("euler", "heun"):
        out = sample_cfg(ExpField(), y, 1.0, num_steps=20, shape=(2,), null_label=NULL,
                         solver=solver, x0=x0)
        err[solver] = (out - math.e).abs().max().item()
    assert err["euler"] == pytest.approx(math.e - 1.05**20, rel=1e-6)  # Euler: (1 + h)^n
    assert err["heun"] < err["euler"] / 10


def test_sample_cfg_bad_solver_raises():
    with pytest.raises(ValueError, match="solver"):
        sample_cfg(LabelField(), torch.tensor([0]), 1.0, num_steps=2, shape=(2,), solver="rk4")


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_sample_cfg_single_step(solver):
    """One step is one Euler step (Heun never evaluates the field at t = 1)."""
    net = LabelField()
    x0 = torch.randn(2, 2)
    out = sample_cfg(net, torch.tensor([1, 2]), 1.0, num_steps=1, shape=(2,), null_label=NULL,
                     solver=solver, x0=x0)
    torch.testing.assert_close(out, x0 + torch.tensor([[1.0], [2.0]]))
    assert torch.cat([t.flatten() for t in net.ts]).max().item() == 0.0


@pytest.mark.parametrize("num_steps", [0, -3, 2.5])
def test_sample_cfg_bad_num_steps_raises(num_steps):
    with pytest.raises(ValueError, match="num_steps"):
        sample_cfg(LabelField(), torch.tensor([0]), 1.0, num_steps=num_steps, shape=(2,))
