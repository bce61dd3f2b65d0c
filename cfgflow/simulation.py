"""ODEs / SDEs, their numerical simulators, and the classifier-free-guided ODE.

Conditioning (e.g. labels ``y``) flows through ``**kwargs`` from ``simulate`` to ``step`` to
``drift_coefficient``. Time grids ``ts`` are ``(nt,)`` (shared by the batch), ``(b, nt)`` or
``(b, nt, 1, 1, 1)``; the current time handed to the vector field keeps the caller's
per-sample shape, ``(b,)`` or ``(b, 1, 1, 1)``.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from typing import Sequence

import torch

from .progress import progress_bar


class ODE(ABC):
    @abstractmethod
    def drift_coefficient(self, xt: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        """u_t(x): ``xt: (b, ...)``, ``t: (b,)`` -> ``(b, ...)``."""


class SDE(ABC):
    @abstractmethod
    def drift_coefficient(self, xt: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        """Drift: ``(b, ...)``."""

    @abstractmethod
    def diffusion_coefficient(self, xt: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        """Diffusion sigma_t, broadcastable to ``(b, ...)``."""


def _as_batch_grid(ts: torch.Tensor, b: int) -> torch.Tensor:
    if ts.dim() == 1:
        return ts[None].expand(b, -1)  # (b, nt)
    if ts.shape[0] != b:
        raise ValueError(f"ts must have shape (nt,), (b, nt) or (b, nt, 1, 1, 1) with b = {b}, "
                         f"got {tuple(ts.shape)}")
    return ts


class Simulator(ABC):
    @abstractmethod
    def step(self, xt: torch.Tensor, t: torch.Tensor, h: torch.Tensor, **kwargs) -> torch.Tensor:
        """One step from time ``t`` to ``t + h``: ``xt: (b, ...)`` -> ``(b, ...)``."""

    def _steps(self, x: torch.Tensor, ts: torch.Tensor, use_tqdm: bool):
        ts = _as_batch_grid(ts.to(x.device), x.shape[0])
        nt = ts.shape[1]
        if nt < 2:
            raise ValueError(f"ts needs at least 2 time points, got {nt}")
        for i in progress_bar(range(nt - 1), disable=not use_tqdm, leave=False):
            t = ts[:, i]
            h = (ts[:, i + 1] - t).reshape(-1, *([1] * (x.dim() - 1)))  # (b, 1, ..., 1)
            yield t, h

    @torch.no_grad()
    def simulate(self, x: torch.Tensor, ts: torch.Tensor, use_tqdm: bool = False, **kwargs):
        """Integrate from ``ts[:, 0]`` to ``ts[:, -1]``; returns the final ``(b, ...)``."""
        for t, h in self._steps(x, ts, use_tqdm):
            x = self.step(x, t, h, **kwargs)
        return x

    @torch.no_grad()
    def simulate_with_trajectory(self, x: torch.Tensor, ts: torch.Tensor, use_tqdm: bool = False,
                                 **kwargs):
        """Like :meth:`simulate` but returns every state: ``(b, nt, ...)``."""
        traj = [x.clone()]
        for t, h in self._steps(x, ts, use_tqdm):
            x = self.step(x, t, h, **kwargs)
            traj.append(x.clone())
        return torch.stack(traj, dim=1)


class EulerSimulator(Simulator):
    """x_{t+h} = x_t + h u_t(x_t): first order."""

    def __init__(self, ode: ODE):
        self.ode = ode

    def step(self, xt, t, h, **kwargs):
        return xt + h * self.ode.drift_coefficient(xt, t, **kwargs)


class HeunSimulator(Simulator):
    """Heun's method (explicit trapezoid): an Euler predictor, then the average of the
    slopes at both ends. Second order; two field evaluations per step."""

    def __init__(self, ode: ODE):
        self.ode = ode

    def step(self, xt, t, h, **kwargs):
        k1 = self.ode.drift_coefficient(xt, t, **kwargs)
        x_pred = xt + h * k1
        t_next = t + h.reshape(t.shape)
        k2 = self.ode.drift_coefficient(x_pred, t_next, **kwargs)
        return xt + 0.5 * h * (k1 + k2)


class EulerMaruyamaSimulator(Simulator):
    """x_{t+h} = x_t + h drift + sigma sqrt(h) N(0, I)."""

    def __init__(self, sde: SDE):
        self.sde = sde

    def step(self, xt, t, h, **kwargs):
        drift = self.sde.drift_coefficient(xt, t, **kwargs)
        sigma = self.sde.diffusion_coefficient(xt, t, **kwargs)
        return xt + h * drift + sigma * torch.sqrt(h) * torch.randn_like(xt)


def record_every(num_timesteps: int, record_every: int) -> torch.Tensor:
    """Indices of a trajectory to keep: every ``record_every``-th step and the last one."""
    if record_every == 1:
        return torch.arange(num_timesteps)
    return torch.cat([torch.arange(0, num_timesteps - 1, record_every),
                      torch.tensor([num_timesteps - 1])])


class CFGVectorFieldODE(ODE):
    """Classifier-free guidance: ``u~ = (1 - w) u(x | null) + w u(x | y)``.

    The guided and unguided fields come from ONE forward pass over a batch of ``2b``
    (the same numbers as two passes, half the kernel launches). At ``w = 1`` only the
    conditional field is needed and only it is computed.
    """

    def __init__(self, net, null_label: int, guidance_scale: float = 1.0):
        self.net = net
        self.null_label = null_label
        self.guidance_scale = guidance_scale

    def drift_coefficient(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x: (b, ...)``, ``t: (b,)`` or ``(b, 1, 1, 1)``, ``y: (b,)`` -> ``(b, ...)``."""
        w = self.guidance_scale
        if w == 1:
            return self.net(x, t, y)
        null = torch.full_like(y, self.null_label)
        both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # (2b, ...)
        guided, unguided = both.chunk(2)
        return (1 - w) * unguided + w * guided


@torch.no_grad()
def sample_cfg(net, y: torch.Tensor, guidance_scale: float, num_steps: int = 30,
               shape: Sequence[int] = (1, 32, 32), null_label: int = 10, solver: str = "heun",
               x0: torch.Tensor = None, use_tqdm: bool = False) -> torch.Tensor:
    """Generate one sample per label in ``y: (b,)`` by integrating the CFG ODE from noise
    at t = 0 to t = 1 in ``num_steps`` steps. Returns ``(b, *shape)``.

    ``solver`` is ``"euler"`` or ``"heun"`` (Heun's last step is an Euler step: the field
    is never evaluated at t = 1: its last evaluation is at ``1 - 1 / num_steps``, inside a
    trained range ``[0, 1 - eps)`` whenever ``num_steps <= 1 / eps``).
    """
    try:
        steps = operator.index(num_steps)  # ints, numpy ints, 0-d int tensors
    except TypeError:
        steps = 0
    if steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    num_steps = steps
    if solver not in ("euler", "heun"):
        raise ValueError(f"solver must be 'euler' or 'heun', got {solver!r}")
    ode = CFGVectorFieldODE(net, null_label=null_label, guidance_scale=guidance_scale)
    if x0 is None:
        x0 = torch.randn(y.shape[0], *shape, device=y.device)
    ts = torch.linspace(0, 1, num_steps + 1, device=y.device)
    if solver == "euler" or num_steps == 1:  # one step: Heun's rule reduces to its last Euler step
        return EulerSimulator(ode).simulate(x0, ts, use_tqdm=use_tqdm, y=y)
    heun, euler = HeunSimulator(ode), EulerSimulator(ode)
    x = heun.simulate(x0, ts[:-1], use_tqdm=use_tqdm, y=y)
    return euler.simulate(x, ts[-2:], y=y)
