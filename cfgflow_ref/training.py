"""The reference CFG trainers (graded parts; instructor side). The given :class:`Trainer`
base, :class:`EMA` and the schedules live in :mod:`cfgflow.training` and are re-exported.

:class:`CFGTrainer` is the classifier-free-guidance flow-matching objective;
:class:`MNISTCFGTrainer` also writes sample grids at its checkpoints.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from cfgflow.training import (  # noqa: F401  (re-exported: the given code)
    EMA,
    LR_SCHEDULES,
    MiB,
    SampleGridCheckpoints,
    Trainer,
    learning_rate,
    model_device,
    model_size_b,
    with_sample_grids,
)


class CFGTrainer(Trainer):
    """Conditional flow matching with label dropout for classifier-free guidance.

    One batch: (z, y) ~ p_data; each label independently replaced by ``null_label`` with
    probability ``eta`` (mask drawn on the labels' device); t ~ U[0, 1 - eps) (the target
    divides by beta_t = 0 at t = 1); x ~ p_t(x | z); loss = mean over every element of
    ``(u_theta(x, t, y) - u_t(x | z))^2``.

    ``time_beta`` k > 1 (not part of the lab; the course's convention is k = 1) draws
    ``t = (1 - eps) (1 - (1 - u)^(1/k))`` with u ~ U[0, 1) instead, i.e. t/(1 - eps) ~
    Beta(1, k), density ``k (1 - t)^(k - 1)``: k > 1 spends more of the training on the
    noisy end (small t), where the digit's shape and class are decided, and little near
    t = 1, where x_t is almost the data. On MNIST that trains a usable model in fewer steps
    (docs/training.md).
    """

    def __init__(self, path, eta: float, null_label: int, eps: float = 1e-3, *,
                 time_beta: float = 1.0, **kwargs):
        if not 0.0 < eta < 1.0:
            raise ValueError(f"eta must be in (0, 1), got {eta}")
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must be in [0, 1), got {eps}")
        # k < 1 would favour t near 1 and can round to t = 1 - eps in float32
        if not (isinstance(time_beta, (int, float)) and math.isfinite(time_beta) and time_beta >= 1):
            raise ValueError(f"time_beta must be a number >= 1 (1: uniform t), got {time_beta!r}")
        super().__init__(**kwargs)
        self.path = path
        self.eta = eta
        self.null_label = null_label
        self.eps = eps
        self.time_beta = float(time_beta)

    def sample_time(self, batch_size: int, device) -> torch.Tensor:
        """``(b,)`` training times in ``[0, 1 - eps)`` (uniform unless ``time_beta != 1``)."""
        u = torch.rand(batch_size, device=device)  # (b,)
        if self.time_beta != 1.0:
            u = 1 - (1 - u) ** (1 / self.time_beta)  # Beta(1, k) by inverting its CDF
        return (1 - self.eps) * u

    def get_train_loss(self, batch_size: int) -> torch.Tensor:
        z, y = self.path.p_data.sample(batch_size)  # (b, ...), (b,)
        drop = torch.rand(batch_size, device=y.device) < self.eta  # (b,)
        y = y.masked_fill(drop, self.null_label)
        t = self.sample_time(batch_size, z.device)  # (b,) in [0, 1 - eps)
        x = self.path.sample_conditional_path(z, t)  # (b, ...)
        target = self.path.conditional_vector_field(x, z, t)
        return F.mse_loss(self.model(x, t, y), target)


class MNISTCFGTrainer(SampleGridCheckpoints, CFGTrainer):
    """CFG trainer whose checkpoints also write a sample grid for every guidance scale
    (``step_XXXXXX_w{w}.png``: one row per digit 0-9)."""

    def __init__(self, path, eta: float = 0.35, null_label: int = 10, eps: float = 1e-3,
                 guidance_scales: Sequence[float] = (1.0, 3.0, 5.0), samples_per_class: int = 8,
                 sample_steps: int = 30, **kwargs):
        super().__init__(path, eta, null_label, eps, **kwargs)
        self.guidance_scales = list(guidance_scales)
        self.samples_per_class = samples_per_class
        self.sample_steps = sample_steps
