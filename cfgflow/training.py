"""Training loops: a generic :class:`Trainer` (AdamW, warm-up and cosine schedules, an EMA
of the weights, checkpoints) and :class:`SampleGridCheckpoints`, which makes any CFG trainer
write sample grids at its checkpoints. The CFG loss itself is the student's (Notebook 1).

Speed features switch on where they help and keep the same semantics everywhere:
mixed precision chosen per GPU (:mod:`cfgflow.precision`: bf16 autocast, or fp16 with a
gradient scaler on GPUs without bf16 tensor cores), TF32 and fused AdamW on CUDA; optional
``torch.compile``; an EMA of the weights for sampling; checkpoint and resume.
"""

from __future__ import annotations

import copy
import math
import os
from abc import ABC, abstractmethod
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .precision import Precision, choose_precision
from .progress import progress_bar

MiB = 1024**2


def model_size_b(model: nn.Module) -> int:
    """Bytes taken by a model's parameters and buffers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.nelement() * t.element_size() for t in tensors)


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


class EMA:
    """Exponential moving average of a model's parameters (and a copy of its buffers).

    ``ema.model`` is an eval-mode copy to sample from; ``update`` does
    ``p_ema <- p_ema + (1 - decay) (p - p_ema)`` in one fused op per parameter list.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module):
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state):
        self.model.load_state_dict(state)


LR_SCHEDULES = ("constant", "cosine")


def learning_rate(step: int, lr: float, warmup_steps: int, num_steps: int,
                  schedule: str = "constant") -> float:
    """The learning rate of step ``step`` (0-based) of ``num_steps``.

    A linear warm-up from ``lr / warmup_steps`` to ``lr`` over the first ``warmup_steps``
    steps; then ``"constant"`` keeps ``lr`` and ``"cosine"`` decays it along half a cosine so
    that the last step (``num_steps - 1``) has a learning rate of exactly 0 (short runs end on
    small steps, like a free weight average).
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        progress = (step - warmup_steps + 1) / max(num_steps - warmup_steps, 1)  # (0, 1]
        return lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


class Trainer(ABC):
    """Minimises :meth:`get_train_loss` with AdamW, a linear learning-rate warm-up and an
    optional cosine decay (:func:`learning_rate`)."""

    def __init__(self, model: Optional[nn.Module] = None, **kwargs):
        super().__init__()
        self.model = model
        self.opt = None
        self.ema: Optional[EMA] = None
        self.output_dir: Optional[str] = None
        self.step = 0
        self.losses: List[float] = []
        self.precision: Optional[Precision] = None
        self.scaler: Optional[torch.amp.GradScaler] = None

    @abstractmethod
    def get_train_loss(self, **kwargs) -> torch.Tensor:
        """A scalar loss for one batch."""

    def get_optimizer(self, lr: float, weight_decay: float = 1e-4):
        fused = model_device(self.model).type == "cuda"
        return torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay,
                                 fused=fused or None)

    @property
    def sampling_model(self) -> nn.Module:
        """The EMA weights when an EMA is kept, else the trained model."""
        return self.ema.model if self.ema is not None else self.model

    # -- checkpoints -----------------------------------------------------------------
    def state_dict(self) -> dict:
        fp16_scaler = self.scaler is not None and self.scaler.is_enabled()
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None,
                "scaler": self.scaler.state_dict() if fp16_scaler else None,
                "step": self.step, "losses": list(self.losses)}

    def save(self, path: str):
        torch.save(self.state_dict(), path)

    def checkpoint(self, step: int):
        """Called every ``ckpt_every`` steps (model in eval mode). Saves ``last.pt`` into
        ``output_dir`` when there is one; subclasses add samples, logs, ..."""
        if self.output_dir is not None:
            self.save(os.path.join(self.output_dir, "last.pt"))

    def _resume(self, path: str):
        state = torch.load(path, map_location=model_device(self.model), weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])  # the fp16 loss scale it had reached
        self.step, self.losses = state["step"], list(state["losses"])

    def _flush_losses(self, pending: List[torch.Tensor], last_step: int):
        """Move the losses of the last steps to ``self.losses``; raise on a non-finite one."""
        values = torch.stack(pending).tolist()
        first = last_step - len(values) + 1
        pending.clear()
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise FloatingPointError(f"loss became {v} at step {first + i}")
        self.losses.extend(values)

    def train(
        self,
        model: nn.Module,
        num_steps: int,
        lr: float = 1e-3,
        warmup_steps: int = 500,
        ckpt_every: Optional[int] = None,
        output_dir: Optional[str] = None,
        *,
        weight_decay: float = 1e-4,
        ema_decay: Optional[float] = None,
        precision: Union[str, Precision] = "auto",
        compile: bool = False,
        resume_from: Optional[str] = None,
        progress: bool = True,
        lr_schedule: str = "constant",
        **kwargs,
    ) -> Tuple[List[float], List[int]]:
        """Train ``model`` until it has taken ``num_steps`` steps in total.

        lr rises linearly from lr/warmup_steps to lr over the first ``warmup_steps`` steps,
        then stays constant (``lr_schedule="constant"``) or decays along half a cosine to 0
        at ``num_steps`` (``"cosine"``). ``kwargs`` go to :meth:`get_train_loss`. ``precision``
        (``"auto"``, ``"bf16"``, ``"fp16"``, ``"fp32"``; see
        :func:`~cfgflow.precision.choose_precision`) sets the autocast of the forward pass
        and, for fp16, a gradient scaler (``self.scaler``). With ``resume_from`` the
        model, optimiser, EMA, step and loss history continue from a saved checkpoint.

        Returns ``(losses, steps)``: the loss of every step taken so far and its index.
        """
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        self.model = model
        device = model_device(model)
        self.precision = choose_precision(device, precision)
        self.scaler = self.precision.make_scaler(device.type)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.output_dir = output_dir
        if output_dir is not None:
            os.makedirs(output_dir, exist_ok=True)
        self.opt = self.get_optimizer(lr, weight_decay)
        self.ema = EMA(model, ema_decay) if ema_decay else None
        self.step, self.losses = 0, []
        if resume_from is not None:
            self._resume(resume_from)
        loss_fn = torch.compile(self.get_train_loss) if compile else self.get_train_loss

        model.train()
        bar = progress_bar(range(self.step, num_steps), disable=not progress, initial=self.step,
                           total=num_steps)
        # On CUDA, reading each loss back (.item()) stalls the launch queue every step, so
        # losses are collected on the device and read (and checked) every `sync_every` steps.
        sync_every = 25 if device.type == "cuda" else 1
        pending: List[torch.Tensor] = []
        for step in bar:
            cur_lr = learning_rate(step, lr, warmup_steps, num_steps, lr_schedule)
            for group in self.opt.param_groups:
                group["lr"] = cur_lr
            self.opt.zero_grad(set_to_none=True)
            with self.precision.autocast(device.type):
                loss = loss_fn(**kwargs)
            if sync_every == 1 and not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            self.backward_and_step(loss)
            if self.ema is not None:
                self.ema.update(model)
            self.step = step + 1
            pending.append(loss.detach().float())
            ckpt_due = bool(ckpt_every) and (self.step % ckpt_every == 0 or self.step == num_steps)
            show = progress and (step % 10 == 0 or step == num_steps - 1)
            if len(pending) >= sync_every or self.step == num_steps or ckpt_due or show:
                self._flush_losses(pending, step)
            if show:
                # refresh=False: the bar redraws at its own bounded rate (cfgflow.progress)
                bar.set_postfix(lr=f"{cur_lr:.1e}", loss=f"{self.losses[-1]:.4f}", refresh=False)
            if ckpt_every and (self.step % ckpt_every == 0 or self.step == num_steps):
                model.eval()
                self.checkpoint(self.step)
                model.train()
        bar.close()
        model.eval()
        return list(self.losses), list(range(len(self.losses)))

    def backward_and_step(self, loss: torch.Tensor):
        """Backward pass and optimiser step through ``self.scaler``. For fp16 the scaler
        multiplies the loss by its scale (small gradients do not underflow), unscales the
        gradients inside ``step`` and skips the step if any is inf/NaN, then ``update``
        adapts the scale; for bf16 and fp32 the scaler is disabled and this is
        ``loss.backward(); opt.step()``. (No gradient clipping here: clipping would need
        ``self.scaler.unscale_(self.opt)`` before it.)"""
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()


class SampleGridCheckpoints:
    """Mixin for a CFG trainer (one with ``null_label``): every checkpoint also writes a
    sample grid per guidance scale (``step_XXXXXX_w{w}.png``: one row per digit 0-9).

    ``class MyTrainer(SampleGridCheckpoints, CFGTrainer)``, or :func:`with_sample_grids`.
    """

    guidance_scales: Sequence[float] = (1.0, 3.0, 5.0)
    samples_per_class: int = 8
    sample_steps: int = 30

    def checkpoint(self, step: int):
        super().checkpoint(step)
        if self.output_dir is None:
            return
        from .plotting import save_sample_grids

        save_sample_grids(self.sampling_model, self.output_dir, prefix=f"step_{step:06d}",
                          guidance_scales=list(self.guidance_scales),
                          samples_per_class=self.samples_per_class,
                          num_steps=self.sample_steps, null_label=self.null_label)


def with_sample_grids(trainer_class: type) -> type:
    """``trainer_class`` (a :class:`Trainer` subclass) with :class:`SampleGridCheckpoints`."""
    if not (isinstance(trainer_class, type) and issubclass(trainer_class, Trainer)):
        raise TypeError(f"trainer_class must be a subclass of cfgflow.Trainer, got {trainer_class!r}")
    if issubclass(trainer_class, SampleGridCheckpoints):
        return trainer_class
    return type(f"{trainer_class.__name__}WithSampleGrids", (SampleGridCheckpoints, trainer_class),
                {"__module__": trainer_class.__module__})
