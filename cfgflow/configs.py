"""Training configurations of the MNIST DiT, shared by Notebook 2's training cells and the
instructor's training CLI: plain frozen dataclasses (:data:`TINY`, :data:`QUICK`,
:data:`LAB`) and the two helpers that turn one into a run of YOUR model with YOUR trainer:

    trainer = make_trainer(QUICK, path, CFGTrainer)  # your CFGTrainer class
    losses, _ = trainer.train(model=model, **train_kwargs(QUICK))

A config trains either a fixed ``num_steps`` (TINY, LAB) or, with ``num_steps=None``, as many
steps as fit in ``time_budget_s`` seconds of training (QUICK; the rule is
:class:`cfgflow.training.TimeBudget`'s). An explicit ``num_steps`` wins over a budget.

Notebook 3 (latent generation) has its own configurations, :class:`LatentConfig`
(:data:`LATENT_TINY`, :data:`LATENT_QUICK`, :data:`LATENT_GPU`): a VAE run, then the same
vector field trained in the VAE's latent space and on pixels (the baseline):

    VAETrainer(mnist).train(model=vae, **vae_train_kwargs(LATENT_QUICK))
    trainer = make_latent_trainer(LATENT_QUICK, path, LatentCFGTrainer, vae, scale)
    trainer.train(model=field, **train_kwargs(LATENT_QUICK))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .training import TimeBudget, Trainer, with_sample_grids

NULL_LABEL = 10
"""The null label of MNIST (``num_classes``)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs: model, optimisation, sampling and evaluation."""

    name: str
    # model: MNISTDiffusionTransformer(patch_size, depth, dim, heads)
    patch_size: int = 4
    depth: int = 8
    dim: int = 256
    heads: int = 8
    # optimisation: AdamW, linear warm-up then constant lr; CFG label dropout eta
    batch_size: int = 256
    num_steps: Optional[int] = 20_000  # None: as many as fit in time_budget_s
    time_budget_s: Optional[float] = None  # seconds of training (used only when num_steps is None)
    lr: float = 4e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500  # with a time budget: the ramp of the steps that measure the step time
    warmup_fraction: float = 0.04  # with a time budget: the warm-up's share of the planned steps
    lr_schedule: str = "constant"  # or "cosine": decay to 0 at num_steps after the warm-up
    eta: float = 0.35
    time_beta: float = 1.0  # t / (1 - eps) ~ Beta(1, k): 1 = uniform; k > 1 trains more on the noisy end
    ema_decay: Optional[float] = 0.9995  # None: sample from the raw weights
    compile: bool = False
    # mixed precision of training (cfgflow.precision): "auto" = bf16 on GPUs of compute
    # capability >= 8.0, fp16 + gradient scaler on older GPUs (T4), fp32 on a CPU
    precision: str = "auto"
    # sampling for the evaluation (guidance_sweep): the CFG ODE from t = 0 to 1; the sample
    # grids always use Heun (cfgflow.plotting.generate_class_grid)
    solver: str = "heun"
    sample_steps: int = 15
    sample_amp: bool = False  # sample under bf16 autocast (CPUs with AMX/AVX512-BF16, GPUs >= 8.0)
    grid_scales: Tuple[float, ...] = (1.0, 3.0, 5.0)
    grid_per_class: int = 8
    # evaluation: guidance_sweep at these scales, n_per_class digits of each class
    eval_scales: Tuple[float, ...] = (1.0, 3.0, 5.0)
    eval_per_class: int = 50

    def __post_init__(self):
        if self.num_steps is None and self.time_budget_s is None:
            raise ValueError(f"config {self.name!r}: set num_steps or time_budget_s (seconds of "
                             "training); both are None")
        if self.time_budget_s is not None and not (
                isinstance(self.time_budget_s, (int, float)) and not isinstance(self.time_budget_s, bool)
                and math.isfinite(self.time_budget_s) and self.time_budget_s > 0):
            raise ValueError(f"config {self.name!r}: time_budget_s must be a positive number of "
                             f"seconds, got {self.time_budget_s!r}")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The lab's recipe (15 A100 minutes in the lab's write-up); EMA added for sampling.
LAB = TrainConfig(name="lab")

# ~5 minutes on a CPU, training plus sampling the evaluation set (docs/training.md): 4 minutes
# of training (as many steps as fit: ~2,400-3,100 on 2 idle cores), the rest for the data, sample
# grids and evaluation. A small DiT and three departures from the lab that buy quality per CPU
# second there: t ~ Beta(1, 3) (training on the noisy end), a cosine lr decay and less label
# dropout. QUICK.replace(num_steps=2600) is the fixed-step QUICK of before the budget.
QUICK = TrainConfig(
    name="quick", patch_size=8, depth=3, dim=128, heads=4, batch_size=64, num_steps=None,
    time_budget_s=240.0, lr=2e-3, warmup_steps=100, lr_schedule="cosine", eta=0.1, time_beta=3.0,
    ema_decay=0.99, solver="heun", sample_steps=8, sample_amp=True, eval_scales=(1.0, 3.0),
    eval_per_class=50,
)

# Seconds: exercises every code path (tests, notebook autograde); the samples are noise.
TINY = TrainConfig(
    name="tiny", patch_size=8, depth=1, dim=32, heads=2, batch_size=32, num_steps=5,
    lr=1e-3, warmup_steps=2, ema_decay=0.9, solver="euler", sample_steps=2,
    grid_per_class=2, eval_scales=(1.0, 3.0), eval_per_class=3,
)

CONFIGS = {"tiny": TINY, "quick": QUICK, "lab": LAB}


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_trainer(cfg: TrainConfig, path, trainer_class: type) -> Trainer:
    """A ``trainer_class(path, eta=cfg.eta, null_label=10, time_beta=cfg.time_beta)`` whose
    checkpoints also write the config's sample grids (:class:`~cfgflow.training.SampleGridCheckpoints`).

    ``trainer_class`` is a CFG trainer class (a subclass of :class:`~cfgflow.training.Trainer`
    taking ``time_beta``): in Notebook 2 the one you write there.
    """
    trainer = with_sample_grids(trainer_class)(path, eta=cfg.eta, null_label=NULL_LABEL,
                                               time_beta=cfg.time_beta)
    trainer.guidance_scales = list(cfg.grid_scales)
    trainer.samples_per_class = cfg.grid_per_class
    trainer.sample_steps = cfg.sample_steps
    return trainer


def time_budget(cfg: "TrainConfig | LatentConfig") -> Optional[TimeBudget]:
    """The config's :class:`~cfgflow.training.TimeBudget`; None where it trains a fixed
    ``num_steps`` (an explicit ``num_steps`` wins over ``time_budget_s``)."""
    if cfg.num_steps is not None:
        return None
    return TimeBudget(cfg.time_budget_s, warmup_fraction=cfg.warmup_fraction)


def train_kwargs(cfg: "TrainConfig | LatentConfig") -> dict:
    """The keyword arguments of ``Trainer.train`` that a config fixes (the caller adds the
    model, output folder, progress bar, checkpoints and resume): a fixed ``num_steps``, or
    ``num_steps=None`` and a ``time_budget``."""
    return dict(num_steps=cfg.num_steps, time_budget=time_budget(cfg), lr=cfg.lr,
                warmup_steps=cfg.warmup_steps, lr_schedule=cfg.lr_schedule,
                weight_decay=cfg.weight_decay, ema_decay=cfg.ema_decay,
                compile=cfg.compile, precision=cfg.precision, batch_size=cfg.batch_size)


@dataclass(frozen=True)
class LatentConfig:
    """Notebook 3's runs: the VAE (YOUR ``Encoder``, ``Decoder``, ``VAELoss``,
    ``DiagonalGaussian``), then :class:`cfgflow.latent.LatentConvField` trained with YOUR
    ``LatentCFGTrainer`` on the VAE's latents and, with the same settings, on pixels.

    The VAE trains ``vae_steps`` steps, or (``vae_steps=None``) for ``vae_time_s`` seconds; each
    flow model ``num_steps``, or (``num_steps=None``) for ``time_budget_s`` seconds (the same
    budget for the latent and the pixel model: the comparison is at equal training time).
    """

    name: str
    # the VAE: Encoder(latent_channels, hidden_channels, heads), Decoder(latent_channels,
    # reversed hidden_channels, heads), VAELoss(beta); AdamW with a cosine decay
    latent_channels: int = 4
    hidden_channels: Tuple[int, ...] = (32, 64)
    heads: int = 4
    beta: float = 0.1  # measured: docs/training.md, "Notebook 3"
    vae_batch_size: int = 128
    vae_steps: Optional[int] = 4000
    vae_time_s: Optional[float] = None
    vae_lr: float = 1e-3
    vae_warmup_steps: int = 100
    # the flow models: LatentConvField(channels, width, blocks); the Trainer's settings
    width: int = 64
    blocks: int = 2
    batch_size: int = 128
    num_steps: Optional[int] = 10_000
    time_budget_s: Optional[float] = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    warmup_fraction: float = 0.04
    lr_schedule: str = "cosine"
    eta: float = 0.1
    time_beta: float = 1.0
    ema_decay: Optional[float] = 0.999
    compile: bool = False
    precision: str = "auto"
    # sampling and evaluation (cfgflow.metrics.generator_sweep)
    solver: str = "heun"
    sample_steps: int = 15
    sample_amp: bool = False
    grid_scales: Tuple[float, ...] = (1.0, 3.0, 5.0)
    grid_per_class: int = 8
    eval_scales: Tuple[float, ...] = (1.0, 3.0, 5.0)
    eval_per_class: int = 50

    def __post_init__(self):
        for steps, seconds, what in ((self.vae_steps, self.vae_time_s, "vae_steps or vae_time_s"),
                                     (self.num_steps, self.time_budget_s, "num_steps or time_budget_s")):
            if steps is None and seconds is None:
                raise ValueError(f"config {self.name!r}: set {what}; both are None")
            number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
            if seconds is not None and not (number and math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"config {self.name!r}: {what.split(' or ')[1]} must be a positive "
                                 f"number of seconds, got {seconds!r}")

    @property
    def latent_shape(self) -> Tuple[int, int, int]:
        """``(c, h, w)`` of the latents of a 32 x 32 image (each hidden stage halves h and w)."""
        side = 32 // 2 ** len(self.hidden_channels)
        return (self.latent_channels, side, side)

    def replace(self, **changes) -> "LatentConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# A Colab GPU: NOT measured (no GPU while this was written); sized to take minutes on a T4.
LATENT_GPU = LatentConfig(name="latent_gpu")

# ~5 minutes on 2 CPU cores, the notebook top to bottom (docs/training.md, "Notebook 3"): the
# VAE for 75 s (~450 steps of the (16, 32) VAE at batch 64), each flow model for 60 s, the
# rest for the figures and the evaluation at 30 digits per class.
LATENT_QUICK = LatentConfig(
    name="latent_quick", hidden_channels=(16, 32), vae_batch_size=64, vae_steps=None, vae_time_s=75.0,
    vae_lr=2e-3, vae_warmup_steps=20, width=32, blocks=2, batch_size=64, num_steps=None, time_budget_s=60.0,
    lr=2e-3, warmup_steps=20, ema_decay=0.99, sample_steps=8, sample_amp=True, grid_per_class=6,
    eval_scales=(1.0, 3.0), eval_per_class=30,
)

# Seconds: every code path (tests, nbgrader's runs of the notebook); the samples are noise.
LATENT_TINY = LatentConfig(
    name="latent_tiny", hidden_channels=(8, 16), heads=2, vae_batch_size=16, vae_steps=3,
    vae_warmup_steps=1, width=8, blocks=1, batch_size=16, num_steps=3, warmup_steps=1,
    ema_decay=0.9, solver="euler", sample_steps=2, grid_scales=(1.0, 3.0), grid_per_class=2,
    eval_scales=(1.0, 3.0), eval_per_class=3,
)

LATENT_CONFIGS = {"latent_tiny": LATENT_TINY, "latent_quick": LATENT_QUICK, "latent_gpu": LATENT_GPU}


def vae_train_kwargs(cfg: LatentConfig) -> dict:
    """``Trainer.train`` keyword arguments of the VAE run (``VAETrainer``): a fixed
    ``vae_steps`` or a ``vae_time_s`` budget, AdamW with a cosine decay, no EMA."""
    budget = None if cfg.vae_steps is not None else TimeBudget(cfg.vae_time_s,
                                                               warmup_fraction=cfg.warmup_fraction)
    return dict(num_steps=cfg.vae_steps, time_budget=budget, lr=cfg.vae_lr, warmup_steps=cfg.vae_warmup_steps,
                lr_schedule="cosine", weight_decay=cfg.weight_decay, ema_decay=None, compile=cfg.compile,
                precision=cfg.precision, batch_size=cfg.vae_batch_size)


def make_latent_trainer(cfg: LatentConfig, path, trainer_class: type, vae, scale: float) -> Trainer:
    """``trainer_class(path, vae, scale, eta=cfg.eta, null_label=10, time_beta=cfg.time_beta)``:
    in Notebook 3 YOUR ``LatentCFGTrainer`` (for the pixel baseline, ``vae`` is an
    :class:`~cfgflow.latent.IdentityAutoencoder` and ``scale`` 1). Train it with
    ``train_kwargs(cfg)``."""
    return trainer_class(path, vae, scale, eta=cfg.eta, null_label=NULL_LABEL, time_beta=cfg.time_beta)
