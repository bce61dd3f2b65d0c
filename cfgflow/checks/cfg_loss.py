"""cfg_loss: ``CFGTrainer(path=..., eta=..., null_label=..., eps=...)`` with ``.model`` set;
``get_train_loss(batch_size)`` -> scalar.

The loss is random, so nothing here depends on the order random numbers are drawn: the path's
``p_data``, ``sample_conditional_path``, ``conditional_vector_field`` and the model are test
doubles that record what they receive. For the loss value they are deterministic whatever the
labels and times drawn (recorded data ``z``, a path whose ``x`` and target depend on ``z`` only,
a model that depends on ``x`` only), so the correct loss and the values of the known-wrong
reductions are numbers recorded with the reference (``data/cfg_loss.json``). Statistics of the
recorded labels and times over a large batch catch the masking and time-sampling mistakes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import _data
from ._core import Fail, Part, SubCheck, close, max_err

CONFIG = {"seed": 0, "eta": 0.3, "null_label": 7, "classes": 4, "eps": 0.05, "b": 3000, "dim": 2}
LOSS_B = 64  # batch size of the loss sub-check

# known-wrong losses: the recorded value's name and the message ({d}: the data dimension)
WRONG_LOSSES = [
    ("x_target", "the target uses x where z belongs: u_t(x | z) = conditional_vector_field(x, z, t)"),
    ("z_target", "the target uses x where z belongs"),
    ("sum", "the loss is summed: use the mean over every element (F.mse_loss)"),
    ("sum_dims", "the loss sums over the data dimensions (x{d}): take the mean over every element "
     "(F.mse_loss)"),
    ("norm", "the loss is a norm over the whole batch: use the mean of squared errors"),
    ("norm2_b", "the loss sums over the data dimensions: take the mean over every element (F.mse_loss)"),
    ("abs", "absolute error instead of squared error"),
    ("rmse", "root of the mean squared error: drop the square root"),
]


class _Data(nn.Module):
    """Labelled data: ``z ~ N(label, 1)`` in ``dim`` dims, labels in ``[0, classes)``."""

    def __init__(self, dim, classes, device="cpu", log=None):
        super().__init__()
        self.dim, self.classes, self.device, self.log = dim, classes, device, log

    def sample(self, num_samples):
        y = torch.randint(0, self.classes, (num_samples,), device=self.device)
        z = torch.randn(num_samples, self.dim, device=self.device) + y[:, None].float()
        if self.log is not None:
            self.log["data"].append((z, y.clone()))
        return z, y


class _Path(nn.Module):
    """A linear Gaussian path ``x = t z + (1 - t) eps`` whose calls are recorded."""

    def __init__(self, dim, classes, device="cpu"):
        super().__init__()
        self.log = {"data": [], "sample": [], "field": []}
        self.p_data = _Data(dim, classes, device, self.log)

    @staticmethod
    def _t(t, z):
        if not isinstance(t, torch.Tensor) or t.numel() != z.shape[0]:
            got = tuple(getattr(t, "shape", ()))
            raise Fail(f"t passed to the path has shape {got}, expected (b,) = ({z.shape[0]},)")
        return t.reshape(-1, *([1] * (z.dim() - 1)))

    def sample_conditioning_variable(self, num_samples):
        return self.p_data.sample(num_samples)

    def sample_conditional_path(self, z, t):
        tt = self._t(t, z)
        noise = torch.randn(z.shape, device=z.device, dtype=z.dtype)  # randn_like is slow on meta
        x = tt * z + (1 - tt) * noise
        self.log["sample"].append((z, t, x))
        return x

    def conditional_vector_field(self, x, z, t):
        u = _field(x, z, self._t(t, z))
        self.log["field"].append((x, z, t, u))
        return u


def _field(x, z, tt):
    """u_t(x | z) of the linear path: (z - x) / (1 - t)."""
    return (z - x) / (1 - tt)


class _Model(nn.Module):
    """A small deterministic conditional field that records its inputs and output."""

    def __init__(self, dim):
        super().__init__()
        self.lin = nn.Linear(dim + 1, dim)
        self.emb = nn.Embedding(16, dim)  # room for a wrong (hard-coded) null index
        self.calls = []

    def forward(self, x, t, y):
        out = self.lin(torch.cat([x, t.reshape(-1, 1)], -1)) + self.emb(y)
        self.calls.append((x, t, y, out))
        return out


class _FixedData(_Data):
    """Recorded data ``(z, y)`` of ``LOSS_B`` samples."""

    def __init__(self, z, y, log):
        super().__init__(z.shape[1], 0, "cpu", log)
        self.z, self.y = z, y

    def sample(self, num_samples):
        if num_samples != self.z.shape[0]:
            raise Fail(f"p_data.sample({num_samples}) called, expected the batch size {self.z.shape[0]}")
        z, y = self.z.clone(), self.y.clone()
        self.log["data"].append((z, y.clone()))
        return z, y


class _FixedPath(_Path):
    """``x = (z + noise) / 2`` with recorded noise and target ``z - x``: both depend on ``z`` only
    (t is checked for its shape and otherwise ignored), so the loss is a recorded number."""

    def __init__(self, z, y, noise):
        super().__init__(z.shape[1], 0)
        self.p_data = _FixedData(z, y, self.log)
        self.noise = noise

    def sample_conditional_path(self, z, t):
        self._t(t, z)
        x = 0.5 * (z + self.noise)
        self.log["sample"].append((z, t, x))
        return x

    def conditional_vector_field(self, x, z, t):
        self._t(t, z)
        u = z - x
        self.log["field"].append((x, z, t, u))
        return u


class _FixedModel(nn.Module):
    """``x / 2 + shift`` (recorded shift): depends on x only; records its calls."""

    def __init__(self, shift):
        super().__init__()
        self.shift = nn.Parameter(shift)
        self.calls = []

    def forward(self, x, t, y):
        out = 0.5 * x + self.shift
        self.calls.append((x, t, y, out))
        return out


def _loss_and_calls(trainer, path, b):
    """``trainer.get_train_loss(b)`` with its recorded doubles: ``(loss, log, last model call)``;
    a loss that never sampled the data or called the model fails with what is missing."""
    loss = trainer.get_train_loss(batch_size=b)
    if not path.log["data"]:
        raise Fail("p_data was never sampled: draw (z, y) with self.path.p_data.sample(batch_size)")
    if not trainer.model.calls:
        raise Fail("the model was never called: compute self.model(x, t, y)")
    return loss, path.log, trainer.model.calls[-1]


def fixed_run(cls, cfg, data):
    """``get_train_loss(LOSS_B)`` of ``cls`` with the deterministic doubles: ``(loss, log, last
    model call)``."""
    path = _FixedPath(_data.tensor(data, "z"), _data.tensor(data, "y").long(), _data.tensor(data, "noise"))
    trainer = cls(path=path, eta=cfg["eta"], null_label=cfg["null_label"], eps=cfg["eps"])
    trainer.model = _FixedModel(_data.tensor(data, "shift"))
    return _loss_and_calls(trainer, path, LOSS_B)


def _run(ctx, b=None, device="cpu"):
    b = ctx["b"] if b is None else b
    path = _Path(ctx["dim"], ctx["classes"], device)
    trainer = ctx.cls(path=path, eta=ctx["eta"], null_label=ctx["null_label"], eps=ctx["eps"])
    trainer.model = _Model(ctx["dim"]).to(device)
    return _loss_and_calls(trainer, path, b)


def _t_of(call):
    return call[1].reshape(-1)


def check_inputs(loss, log, call):
    """What the loss was computed from: a scalar with a gradient, the model evaluated at the x
    and t of the path. Returns ``(z, t, x)`` of the path's last sample."""
    xm, tm, _, _ = call
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise Fail(f"get_train_loss must return a scalar tensor, got {type(loss).__name__} "
                   f"{tuple(getattr(loss, 'shape', ()))}")
    if not loss.requires_grad:
        raise Fail("the loss has no gradient: return the tensor (no .item(), no torch.no_grad())")
    z0, _ = log["data"][-1]
    if not log["sample"]:
        raise Fail("x was not sampled from the path: x = self.path.sample_conditional_path(z, t)")
    zs, ts, xs = log["sample"][-1]
    if zs is not z0 and max_err(zs, z0) > 0:
        raise Fail("sample_conditional_path got something else than the z from p_data")
    if xm is z0 or (xm.shape == z0.shape and max_err(xm, z0) == 0):
        raise Fail("the model sees z: pass the noisy sample x ~ p_t(x | z) to the model")
    if max_err(xm, xs) > 0:
        raise Fail("the model input is not the sample x returned by sample_conditional_path")
    if max_err(tm.reshape(-1), ts.reshape(-1)) > 0:
        raise Fail("the model gets another t than the path")
    return z0, ts, xs


def _loss_value(ctx):
    data = _data.load("cfg_loss", ctx.cfg)
    loss, log, call = fixed_run(ctx.cls, ctx.cfg, data)
    check_inputs(loss, log, call)
    got, values = loss.reshape(()), data["values"]
    if close(got, torch.tensor(values["ok"], dtype=torch.float64), 1e-4):
        return
    for name, msg in WRONG_LOSSES:
        if close(got, torch.tensor(values[name], dtype=torch.float64), 1e-4):
            raise Fail(msg.format(d=ctx["dim"]))
    raise Fail(final_message(got, values["ok"]))


def final_message(got, want) -> str:
    return f"loss {float(got):.6g} differs from mean((model(x, t, y) - u_t(x | z))^2) = {float(want):.6g}"


def _labels(ctx):
    _, log, (_, _, ym, _) = _run(ctx)
    _, y0 = log["data"][-1]
    null, eta = ctx["null_label"], ctx["eta"]
    if ym.shape != y0.shape:
        raise Fail(f"labels passed to the model have shape {tuple(ym.shape)}, expected {tuple(y0.shape)}")
    changed = ym != y0
    if changed.any() and not (ym[changed] == null).all():
        bad = sorted(set(ym[changed].tolist()) - {null})
        raise Fail(f"dropped labels were set to {bad}, not null_label = {null}: use self.null_label")
    frac = float(changed.float().mean())
    if abs(frac - eta) < 0.04:
        return
    if abs(frac - (1 - eta)) < 0.04:
        raise Fail(f"mask inverted: {frac:.2f} of the labels were nulled, expected eta = {eta} "
                   "(use torch.rand(b) < eta)")
    if frac == 0.0:
        raise Fail(f"no label was replaced by the null label {null}, expected eta = {eta} of them: with "
                   "probability eta set y to null_label")
    raise Fail(f"{frac:.2f} of the labels were nulled, expected eta = {eta} (one independent draw per "
               "sample)")


def _recorded_times(ctx):
    """The times the path received, from one run on a large batch (shared by times and eps)."""
    if "times" not in ctx.cache:
        _, log, _ = _run(ctx)
        if not log["sample"]:
            raise Fail("x was not sampled from the path")
        ctx.cache["times"] = log["sample"][-1][1]
    return ctx.cache["times"]


def _times(ctx):
    """t of shape (b,), uniform and independent per sample on an interval inside [0, 1]. Where the
    interval ends (below 1 - eps) is the eps sub-check's: U[0, 1) or U[eps, 1) costs only that."""
    t, b = _recorded_times(ctx), ctx["b"]
    if tuple(t.shape) != (b,):
        raise Fail(f"t has shape {tuple(t.shape)}, expected (b,) = ({b},): draw torch.rand(batch_size)")
    t = t.double()
    lo, hi, mean = float(t.min()), float(t.max()), float(t.mean())
    if lo < 0:
        raise Fail("negative times: t was drawn with torch.randn; use torch.rand (uniform on [0, 1))")
    if hi > 1 + 1e-6:
        raise Fail(f"t reaches {hi:.3f} > 1: draw t ~ U[0, 1 - eps) with torch.rand")
    if hi - lo < 0.8 or abs(mean - (lo + hi) / 2) > 0.04 or \
            abs(float(((t - lo) < (hi - lo) / 4).double().mean()) - 0.25) > 0.04:
        raise Fail(f"t is not uniform on [0, 1 - eps): min {lo:.3f}, mean {mean:.3f}, max {hi:.3f}")
    if len(set(t.tolist())) < b // 2:
        raise Fail("t is not drawn independently per sample")


def _eps(ctx):
    """t stays below 1 - eps (a convention of the notebook's: the target divides by beta_t = 0 at
    t = 1). Times outside [0, 1] are the times sub-check's mistake, not charged again here."""
    t, eps = _recorded_times(ctx).double().reshape(-1), ctx["eps"]
    hi = float(t.max()) if t.numel() else 0.0
    if 1 - eps + 1e-6 < hi <= 1 + 1e-6 and float(t.min()) >= 0:
        raise Fail(f"t goes up to {hi:.3f}, above 1 - eps = {1 - eps:g} (eps not applied?): draw "
                   "t ~ U[0, 1 - eps), e.g. (1 - self.eps) * torch.rand(batch_size)")


def _device(ctx):
    try:
        loss, _, _ = _run(ctx, b=16, device="meta")
    except Fail:
        raise
    except RuntimeError as e:
        if "device" in str(e).lower():
            raise Fail("a tensor was created on the CPU while the data lives on another device (GPU): "
                       "create the mask / t on the labels' device (device=y.device)") from e
        raise
    if not isinstance(loss, torch.Tensor) or loss.device.type != "meta":
        raise Fail("the loss did not stay on the data's device: create every tensor with device=y.device")


PART = Part(
    "cfg_loss",
    [
        SubCheck("loss", "loss = mean((model(x, t, y) - u_t(x | z))^2) from the sampled x, z, t", 2,
                 _loss_value),
        SubCheck("labels", "labels replaced by null_label with probability eta, others unchanged", 1,
                 _labels),
        SubCheck("times", "t of shape (b,), uniform and independent per sample", 1, _times),
        SubCheck("eps", "t below 1 - eps", 0.25, _eps),
        SubCheck("device", "mask and t created on the data's device", 0.5, _device),
    ],
    CONFIG,
    {"not on the expected device": "create the mask / t on the labels' device (device=y.device)",
     "unexpected keyword": "keep the signature CFGTrainer(path, eta, null_label, eps=1e-3, **kwargs)"},
    rationale=(
        "The loss value is the part's result: a wrong target, reduction or model input weighs most (2). "
        "Label dropout and the time distribution each change what the model learns (1 each). Drawing the "
        "mask or t on the CPU leaves the math alone but stops training on a GPU (0.5). The eps only keeps "
        "t off 1, where the target divides by beta_t = 0; U[0, 1) changes the loss very little (0.25)."
    ),
)
