"""Training loops: a generic :class:`Trainer` (AdamW, warm-up and cosine schedules, an EMA
of the weights, checkpoints, a fixed number of steps or a :class:`TimeBudget`) and
:class:`SampleGridCheckpoints`, which makes any CFG trainer write sample grids at its
checkpoints. The CFG loss itself is the student's (Notebook 1).

Speed features switch on where they help and keep the same semantics everywhere:
mixed precision chosen per GPU (:mod:`cfgflow.precision`: bf16 autocast, or fp16 with a
gradient scaler on GPUs without bf16 tensor cores), TF32 and fused AdamW on CUDA; optional
``torch.compile``; an EMA of the weights for sampling; checkpoint and resume.
"""

from __future__ import annotations

import copy
import math
import os
import time
from abc import ABC, abstractmethod
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .precision import Precision, choose_precision
from .progress import progress_bar, set_total

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


def format_duration(seconds: float) -> str:
    """``"4 min"``, ``"1.5 min"``, ``"45 s"``."""
    if seconds >= 60:
        return f"{seconds / 60:.1f}".removesuffix(".0") + " min"
    return f"{seconds:.0f} s"


class TimeBudget:
    """Plans the number of steps of a run so that its training ends within ``seconds``.

    ``Trainer.train(model, num_steps=None, time_budget=TimeBudget(240))`` trains for about
    four minutes, whatever the machine. The rule, in steps counted from the start of the run:

    1. **Probe.** The first ``probe_steps`` steps are timed, or fewer where they take more
       than ``probe_fraction`` of the budget (a slow machine; at least ``skip_steps + 1``).
       Their learning rate follows the warm-up ramp of ``Trainer.train``'s ``warmup_steps``.
       The first ``skip_steps`` (one-off costs: memory allocation, lazy initialisation,
       ``torch.compile``) count towards the elapsed time but not towards the step time.
    2. **Plan.** ``num_steps = done + floor(((1 - margin) * seconds - elapsed) / step_time)``
       (at least ``done``). The warm-up becomes ``round(warmup_fraction * num_steps)`` steps
       and a cosine schedule ends at ``num_steps``.
    3. **Re-plan once**, halfway from the probe to the planned end: the step time is measured
       again over the steps since the probe and ``num_steps`` is recomputed by the same
       formula (a machine that got busier gets fewer steps, an idle one more). The warm-up
       stays as planned (it is over by then); the cosine is stretched or shrunk to the new
       end, so the learning rate jumps once, by the ratio of the two plans at most.
    4. **Never beyond the budget.** After every step, if one more step (at the mean step
       time since the last plan, or since the start during the probe) would end after
       ``seconds``, training stops there, short of the plan (``stopped_early``; the
       learning rate has not quite reached the end of its schedule). This is what catches
       a machine that slows down after the re-plan, or a budget shorter than the probe.

    ``plans`` records each plan as ``{"at_step", "num_steps", "steps_per_s"}``; ``clock``
    (default ``time.perf_counter``) is what tests replace by a fake one.
    """

    def __init__(self, seconds: float, *, probe_steps: int = 20, skip_steps: int = 2,
                 probe_fraction: float = 0.1, warmup_fraction: float = 0.04, margin: float = 0.02,
                 clock: Callable[[], float] = time.perf_counter):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"time_budget seconds must be a positive number, got {seconds!r}")
        if not (isinstance(skip_steps, int) and skip_steps >= 0):
            raise ValueError(f"skip_steps must be an int >= 0, got {skip_steps!r}")
        if not (isinstance(probe_steps, int) and probe_steps > skip_steps):
            raise ValueError(f"probe_steps must be an int > skip_steps ({skip_steps}), got {probe_steps!r}")
        if not 0.0 < probe_fraction < 1.0:
            raise ValueError(f"probe_fraction must be in (0, 1), got {probe_fraction!r}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction!r}")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        self.seconds = float(seconds)
        self.probe_steps, self.skip_steps, self.probe_fraction = probe_steps, skip_steps, probe_fraction
        self.warmup_fraction, self.margin = warmup_fraction, margin
        self.clock = clock
        self.start()

    def __repr__(self):
        return (f"TimeBudget({self.seconds:g}, probe_steps={self.probe_steps}, "
                f"warmup_fraction={self.warmup_fraction:g})")

    def start(self, sync: Optional[Callable[[], None]] = None):
        """(Re)start the clock; ``sync`` (e.g. ``torch.cuda.synchronize``) is called before
        each timing that a plan uses."""
        self.sync = sync
        self.t0 = self.clock()
        self.num_steps: Optional[int] = None  # planned total; None until the probe is done
        self.warmup_steps: Optional[int] = None
        self.step_time: Optional[float] = None
        self.plans: List[dict] = []
        self.stopped_early = False
        self._mark: Tuple[int, float] = (0, self.t0)  # (steps, time) the next measure starts at
        self._replan_at: Optional[int] = None

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def _plan(self, done: int, now: float):
        steps, since = self._mark
        self.step_time = (now - since) / max(done - steps, 1)
        room = (1.0 - self.margin) * self.seconds - (now - self.t0)
        self.num_steps = done + max(math.floor(room / max(self.step_time, 1e-12)), 0)
        self.plans.append(dict(at_step=done, num_steps=self.num_steps,
                               steps_per_s=round(1.0 / max(self.step_time, 1e-12), 3)))
        self._mark = (done, now)

    def _recent_step_time(self, done: int) -> float:
        """The mean step time since the last mark (the probe's skipped steps, or a plan)."""
        steps, since = self._mark
        if done > steps:
            return (self.clock() - since) / (done - steps)
        return self.step_time if self.step_time is not None else self.elapsed() / max(done, 1)

    def after_step(self, done: int) -> bool:
        """Call after each step with the number of steps done; True: stop training now.
        (A plan or re-plan happened when ``len(plans)`` grew.)"""
        if done == self.skip_steps:
            self._mark = (done, self.clock())
        probe_done = not self.plans and done > self.skip_steps and (
            done >= self.probe_steps or self.elapsed() >= self.probe_fraction * self.seconds)
        if probe_done or done == self._replan_at:
            if self.sync is not None:
                self.sync()
            self._plan(done, self.clock())
            if len(self.plans) == 1:
                self.warmup_steps = round(self.warmup_fraction * self.num_steps)
                self._replan_at = done + (self.num_steps - done) // 2
                if self._replan_at <= done:
                    self._replan_at = None
        if self.elapsed() + self._recent_step_time(done) > self.seconds:
            self.stopped_early = self.num_steps is None or done < self.num_steps
            return True
        return self.num_steps is not None and done >= self.num_steps

    def describe(self, device: Union[str, torch.device] = "cpu") -> str:
        """The latest plan: ``"~3,900 steps in 4 min at 16 steps/s on cpu"``."""
        plan = self.plans[-1]
        rate = plan["steps_per_s"]
        rate_s = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
        return (f"~{plan['num_steps']:,} steps in {format_duration(self.seconds)} at "
                f"{rate_s} steps/s on {torch.device(device).type}")


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
        self.budget: Optional[TimeBudget] = None  # the last run's, when it had one

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
        num_steps: Optional[int],
        lr: float = 1e-3,
        warmup_steps: int = 500,
        ckpt_every: Optional[int] = None,
        output_dir: Optional[str] = None,
        *,
        time_budget: Union[None, float, TimeBudget] = None,
        weight_decay: float = 1e-4,
        ema_decay: Optional[float] = None,
        precision: Union[str, Precision] = "auto",
        compile: bool = False,
        resume_from: Optional[str] = None,
        progress: bool = True,
        lr_schedule: str = "constant",
        **kwargs,
    ) -> Tuple[List[float], List[int]]:
        """Train ``model`` until it has taken ``num_steps`` steps in total, or, with
        ``num_steps=None``, as many as fit in ``time_budget`` seconds (a number or a
        :class:`TimeBudget`, whose docstring states the rule; the plan is printed and kept
        in ``self.budget``). An explicit ``num_steps`` wins over a budget.

        lr rises linearly from lr/warmup_steps to lr over the first ``warmup_steps`` steps,
        then stays constant (``lr_schedule="constant"``) or decays along half a cosine to 0
        at ``num_steps`` (``"cosine"``). ``kwargs`` go to :meth:`get_train_loss`. ``precision``
        (``"auto"``, ``"bf16"``, ``"fp16"``, ``"fp32"``; see
        :func:`~cfgflow.precision.choose_precision`) sets the autocast of the forward pass
        and, for fp16, a gradient scaler (``self.scaler``). With ``resume_from`` the
        model, optimiser, EMA, step and loss history continue from a saved checkpoint.

        Returns ``(losses, steps)``: the loss of every step taken so far and its index.
        """
        budget = None
        if num_steps is None:
            if time_budget is None:
                raise ValueError("give num_steps (a number of steps) or time_budget (seconds); both are None")
            budget = time_budget if isinstance(time_budget, TimeBudget) else TimeBudget(time_budget)
            if resume_from is not None:
                raise ValueError("resume_from needs num_steps: a run planned by time_budget resumes with "
                                 "num_steps=<the steps it planned> (its metrics' num_steps)")
        elif isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError(f"num_steps must be an int >= 0 or None, got {num_steps!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        self.budget = budget
        self.model = model
        device = model_device(model)
        if budget is not None:  # the budget's clock starts here: it covers the set-up too
            budget.start(sync=torch.cuda.synchronize if device.type == "cuda" else None)
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
        # With a budget the bar starts once the probe has planned the run (step 1 of TimeBudget).
        bar = None if budget else progress_bar(disable=not progress, initial=self.step, total=num_steps)
        # On CUDA, reading each loss back (.item()) stalls the launch queue every step, so
        # losses are collected on the device and read (and checked) every `sync_every` steps.
        sync_every = 25 if device.type == "cuda" else 1
        pending: List[torch.Tensor] = []
        step, end, warm = self.step, num_steps, warmup_steps
        while end is None or step < end:
            cur_lr = learning_rate(step, lr, warm, math.inf if end is None else end, lr_schedule)
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
            self.step = step = step + 1
            pending.append(loss.detach().float())
            stop = False
            if budget is not None:
                n_plans = len(budget.plans)
                stop = budget.after_step(step)
                if len(budget.plans) > n_plans:  # a (re-)plan: the new end of the run
                    end, warm = budget.num_steps, budget.warmup_steps
                    message = budget.describe(device) if n_plans == 0 else (
                        f"re-planned at step {step:,}: " + budget.describe(device))
                    if bar is None:
                        print(message, flush=True)
                        bar = progress_bar(disable=not progress, initial=step, total=end)
                    else:
                        bar.write(message)
                        set_total(bar, end)
            last = stop or step == end
            ckpt_due = bool(ckpt_every) and (step % ckpt_every == 0 or last)
            show = progress and bar is not None and ((step - 1) % 10 == 0 or last)
            if len(pending) >= sync_every or last or ckpt_due or show:
                self._flush_losses(pending, step - 1)
            if bar is not None:
                bar.update(1)
            if show:
                # refresh=False: the bar redraws at its own bounded rate (cfgflow.progress)
                bar.set_postfix(lr=f"{cur_lr:.1e}", loss=f"{self.losses[-1]:.4f}", refresh=False)
            if ckpt_due:
                model.eval()
                self.checkpoint(step)
                model.train()
            if stop:
                break
        if bar is not None:
            bar.close()
        if budget is not None and budget.stopped_early:
            planned = f" of {end:,} planned" if end is not None else ""
            print(f"time budget reached after {self.step:,}{planned} steps", flush=True)
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
