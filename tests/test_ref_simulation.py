"""ODE/SDE simulators against closed-form solutions: convergence orders of Euler and Heun,
Euler-Maruyama moments on an Ornstein-Uhlenbeck process, time-grid layouts, trajectories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cfgflow_ref.simulation import (
    ODE,
    SDE,
    EulerMaruyamaSimulator,
    EulerSimulator,
    HeunSimulator,
    record_every,
)


class LinearODE(ODE):
    """dx/dt = a x: x(T) = x(0) exp(a T)."""

    def __init__(self, a: float):
        self.a = a

    def drift_coefficient(self, xt, t, **kwargs):
        return self.a * xt


class TimeDependentODE(ODE):
    """dx/dt = (t + y) x with optional per-sample offset ``y: (b,)``; records the t shapes."""

    def __init__(self):
        self.t_shapes = []

    def drift_coefficient(self, xt, t, y=None, **kwargs):
        self.t_shapes.append(tuple(t.shape))
        per = t.reshape(-1, *([1] * (xt.dim() - 1)))  # (b, 1, ..., 1)
        if y is not None:
            per = per + y.reshape(per.shape)
        return per * xt


class OrnsteinUhlenbeck(SDE):
    """dX = -theta X dt + sigma dW."""

    def __init__(self, theta: float, sigma: float):
        self.theta, self.sigma = theta, sigma

    def drift_coefficient(self, xt, t, **kwargs):
        return -self.theta * xt

    def diffusion_coefficient(self, xt, t, **kwargs):
        return self.sigma


def _loglog_slope(simulator_cls, steps=(8, 16, 32, 64, 128), a=-1.3):
    errors, hs = [], []
    x0 = torch.ones(3, 1, dtype=torch.float64)
    exact = math.exp(a)
    for n in steps:
        ts = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        x1 = simulator_cls(LinearODE(a)).simulate(x0, ts)
        errors.append(abs(x1[0, 0].item() - exact))
        hs.append(1 / n)
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


def test_euler_is_first_order():
    slope = _loglog_slope(EulerSimulator)
    assert abs(slope - 1.0) < 0.1, slope


def test_heun_is_second_order():
    slope = _loglog_slope(HeunSimulator)
    assert abs(slope - 2.0) < 0.15, slope


def test_heun_solves_linear_ode_to_its_taylor_polynomial():
    # One Heun step on dx/dt = a x multiplies by 1 + a h + (a h)^2 / 2 exactly.
    a, h = 0.7, 0.25
    x0 = torch.tensor([[2.0]], dtype=torch.float64)
    ts = torch.tensor([0.0, h], dtype=torch.float64)
    x1 = HeunSimulator(LinearODE(a)).simulate(x0, ts)
    assert x1.item() == pytest.approx(2.0 * (1 + a * h + (a * h) ** 2 / 2), rel=1e-12)
    x1 = EulerSimulator(LinearODE(a)).simulate(x0, ts)
    assert x1.item() == pytest.approx(2.0 * (1 + a * h), rel=1e-12)


def test_euler_maruyama_matches_ornstein_uhlenbeck_moments():
    theta, sigma, x0, n_steps, T = 1.0, 0.8, 2.0, 100, 1.0
    n = 20_000
    h = T / n_steps
    x = torch.full((n, 2), x0, dtype=torch.float64)
    ts = torch.linspace(0, T, n_steps + 1, dtype=torch.float64)
    xT = EulerMaruyamaSimulator(OrnsteinUhlenbeck(theta, sigma)).simulate(x, ts).flatten()
    # Exact moments of the Euler-Maruyama recursion X' = (1 - theta h) X + sigma sqrt(h) N:
    r = 1 - theta * h
    mean = x0 * r**n_steps
    var = sigma**2 * h * sum(r ** (2 * k) for k in range(n_steps))
    # ... which are within O(h) of the continuous process's moments.
    assert mean == pytest.approx(x0 * math.exp(-theta * T), abs=2 * h)
    assert var == pytest.approx(sigma**2 / (2 * theta) * (1 - math.exp(-2 * theta * T)), abs=2 * h)
    m = xT.numel()
    se_mean = math.sqrt(var / m)
    se_var = var * math.sqrt(2 / (m - 1))
    assert abs(xT.mean().item() - mean) < 4 * se_mean
    assert abs(xT.var().item() - var) < 4 * se_var


def test_trajectory_shape_and_consistency_with_simulate():
    b, nt = 4, 9
    x0 = torch.randn(b, 1, 5, 5)
    ts = torch.linspace(0, 1, nt)
    ode = TimeDependentODE()
    traj = HeunSimulator(ode).simulate_with_trajectory(x0, ts)
    assert traj.shape == (b, nt, 1, 5, 5)
    torch.testing.assert_close(traj[:, 0], x0)
    torch.testing.assert_close(traj[:, -1], HeunSimulator(ode).simulate(x0, ts))
    # dx/dt = t x  =>  x(1) = x(0) exp(1/2)
    torch.testing.assert_close(traj[:, -1], x0 * math.exp(0.5), rtol=5e-3, atol=1e-4)


@pytest.mark.parametrize("sim_cls", [EulerSimulator, HeunSimulator])
def test_time_grid_layouts_agree(sim_cls):
    b, nt = 3, 7
    x0 = torch.randn(b, 1, 4, 4)
    y = torch.tensor([0.0, 0.5, -1.0])
    grid = torch.linspace(0, 1, nt) ** 2  # non-uniform steps
    ode = TimeDependentODE()
    out_1d = sim_cls(ode).simulate(x0, grid, y=y)
    assert set(ode.t_shapes) == {(b,)}
    ode.t_shapes.clear()
    out_2d = sim_cls(ode).simulate(x0, grid[None].expand(b, nt), y=y)
    assert set(ode.t_shapes) == {(b,)}
    ode.t_shapes.clear()
    out_5d = sim_cls(ode).simulate(x0, grid[None, :, None, None, None].expand(b, nt, 1, 1, 1), y=y)
    assert set(ode.t_shapes) == {(b, 1, 1, 1)}  # the caller's per-sample shape is kept
    torch.testing.assert_close(out_2d, out_1d)
    torch.testing.assert_close(out_5d, out_1d)
    # kwargs (y) reach the drift: the offsets change the answer per sample.
    out_no_y = sim_cls(ode).simulate(x0, grid)
    torch.testing.assert_close(out_no_y[0], out_1d[0])  # y[0] = 0
    assert not torch.allclose(out_no_y[1:], out_1d[1:])


@pytest.mark.parametrize("sim_cls", [EulerSimulator, HeunSimulator])
def test_per_sample_time_grids(sim_cls):
    """ts of shape (b, nt): row i is integrated on its own grid."""
    x0 = torch.randn(2, 3, dtype=torch.float64)
    ts = torch.stack([torch.linspace(0, 1, 6), torch.linspace(0.5, 2, 6)]).double()
    ode = TimeDependentODE()
    out = sim_cls(ode).simulate(x0, ts)
    for i in range(2):
        torch.testing.assert_close(out[i:i + 1], sim_cls(ode).simulate(x0[i:i + 1], ts[i]))
    assert not torch.allclose(out[0], sim_cls(ode).simulate(x0[:1], ts[1])[0])


def test_bad_time_grids_raise():
    sim = EulerSimulator(LinearODE(1.0))
    with pytest.raises(ValueError, match="ts"):
        sim.simulate(torch.randn(3, 2), torch.rand(4, 5))  # batch 4 != 3
    with pytest.raises(ValueError, match="at least 2"):
        sim.simulate(torch.randn(3, 2), torch.zeros(1))


@pytest.mark.parametrize("n, k", [(10, 1), (10, 3), (11, 3), (100, 10), (7, 7), (2, 5)])
def test_record_every(n, k):
    expected = sorted(set(range(0, n, k)) | {n - 1})
    got = record_every(n, k)
    assert got.dtype == torch.int64
    assert got.tolist() == expected
