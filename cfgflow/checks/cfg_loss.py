"""cfg_loss: ``CFGTrainer(path=..., eta=..., null_label=..., eps=...)`` with ``.model`` set;
``get_train_loss(batch_size)`` -> scalar.

The loss is random, so nothing here depends on the order random numbers are drawn: the path's
``p_data``, ``sample_conditional_path``, ``conditional_vector_field`` and the model are test
doubles that record what they receive, and the probes report what was recorded. For the loss
value the doubles are deterministic whatever the labels and times drawn (given data ``z``, a path
whose ``x`` and target depend on ``z`` and the given noise only, a model that depends on ``x``
only), so the correct loss and the values of the known-wrong reductions are numbers the reference
gave with the same doubles (recorded: ``data/cfg_loss.json``; graded: computed by the judge). The
verdicts judge statistics of the labels and times the doubles received over a large batch (the
masking and time-sampling mistakes) and whether the loss stayed on the data's device.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._core import CheckTable, Fail, SubCheck, as_obs, close, max_err, on_meta, shape_of

CONFIG = {"seed": 0, "eta": 0.3, "null_label": 7, "classes": 4, "eps": 0.05, "b": 3000, "dim": 2}
LOSS_B = 64  # batch size of the loss sub-check
GIVEN = ("z", "y", "noise", "shift")  # the loss sub-check's data (LOSS_B, dim), labels (LOSS_B,), path
# noise (LOSS_B, dim) and model shift (dim,)

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


def fixed_run(cls, cfg, z, y, noise, shift):
    """``get_train_loss(LOSS_B)`` of ``cls`` (built with ``cfg``'s eta, null_label, eps) with the
    deterministic doubles of data ``z: (LOSS_B, dim)``, labels ``y: (LOSS_B,)``, path noise
    ``noise: (LOSS_B, dim)`` and model shift ``shift: (dim,)``: ``(loss, log, last model call)``."""
    path = _FixedPath(z, y, noise)
    trainer = cls(path=path, eta=cfg["eta"], null_label=cfg["null_label"], eps=cfg["eps"])
    trainer.model = _FixedModel(shift)
    return _loss_and_calls(trainer, path, LOSS_B)


def _run(ctx, b=None, device="cpu"):
    b = ctx["b"] if b is None else b
    path = _Path(ctx["dim"], ctx["classes"], device)
    trainer = ctx.cls(path=path, eta=ctx["eta"], null_label=ctx["null_label"], eps=ctx["eps"])
    trainer.model = _Model(ctx["dim"]).to(device)
    return _loss_and_calls(trainer, path, b)


def inputs_obs(loss, log, call):
    """What the loss was computed from, as an observation: the loss (a tensor, or its type name)
    and whether it has a gradient, the data's z, the path's last sample (z, t, x; None when the
    path was never sampled) and the x and t the model was last called with."""
    xm, tm, _, _ = call
    try:
        shape = [int(s) for s in getattr(loss, "shape", ())]
    except (TypeError, ValueError):
        shape = []
    sample = None
    if log["sample"]:
        zs, ts, xs = log["sample"][-1]
        sample = {"z": as_obs(zs), "t": as_obs(ts), "x": as_obs(xs)}
    return {"loss": as_obs(loss), "loss_shape": shape,
            "requires_grad": bool(isinstance(loss, torch.Tensor) and loss.requires_grad),
            "z": log["data"][-1][0], "sample": sample, "model_x": as_obs(xm), "model_t": as_obs(tm)}


def check_inputs(obs, need_grad: bool = True):
    """Fail unless the loss is a scalar (with a gradient, unless ``need_grad`` is False: a table
    that judges the gradient in a sub-check of its own) and the model was evaluated at the x and t
    of the path (``obs``: :func:`inputs_obs`)."""
    loss = obs["loss"]
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        kind = "Tensor" if isinstance(loss, torch.Tensor) else loss
        raise Fail(f"get_train_loss must return a scalar tensor, got {kind} {tuple(obs['loss_shape'])}")
    if need_grad and not obs["requires_grad"]:
        raise Fail("the loss has no gradient: return the tensor (no .item(), no torch.no_grad())")
    z0, sample, xm, tm = obs["z"], obs["sample"], obs["model_x"], obs["model_t"]
    if sample is None:
        raise Fail("x was not sampled from the path: x = self.path.sample_conditional_path(z, t)")
    zs, ts, xs = sample["z"], sample["t"], sample["x"]
    if max_err(zs, z0) > 0:
        raise Fail("sample_conditional_path got something else than the z from p_data")
    if isinstance(xm, torch.Tensor) and xm.shape == z0.shape and max_err(xm, z0) == 0:
        raise Fail("the model sees z: pass the noisy sample x ~ p_t(x | z) to the model")
    if max_err(xm, xs) > 0:
        raise Fail("the model input is not the sample x returned by sample_conditional_path")
    if not isinstance(tm, torch.Tensor) or max_err(tm.reshape(-1), ts.reshape(-1)) > 0:
        raise Fail("the model gets another t than the path")


def _probe_loss(ctx):
    """The trainer's loss with the deterministic doubles built from the given z, y, noise, shift,
    and what it was computed from."""
    loss, log, call = fixed_run(ctx.cls, ctx, ctx.tensor("z"), ctx.tensor("y").long(), ctx.tensor("noise"),
                                ctx.tensor("shift"))
    return inputs_obs(loss, log, call)


def judge_loss(obs, exp, dim: int, need_grad: bool = True):
    """The loss sub-check's verdict: the inputs (:func:`check_inputs`), then the loss against the
    recorded correct value (``exp.value("ok")``) and the known-wrong ones named in
    :data:`WRONG_LOSSES` (``dim``: the data's dimension, in a message)."""
    check_inputs(obs, need_grad)
    got = obs["loss"].reshape(())
    if close(got, torch.tensor(exp.value("ok"), dtype=torch.float64), 1e-4):
        return
    for name, msg in WRONG_LOSSES:
        if close(got, torch.tensor(exp.value(name), dtype=torch.float64), 1e-4):
            raise Fail(msg.format(d=dim))
    raise Fail(final_message(got))


def _verdict_loss(obs, exp):
    judge_loss(obs, exp, exp["dim"])


def final_message(got) -> str:
    """The loss matched neither the correct value nor a known-wrong one. The expected value is not
    shown: in a graded cell it is the judge's, for inputs the student's feedback must not carry."""
    return f"loss {float(got):.6g} differs from mean((model(x, t, y) - u_t(x | z))^2) on the same inputs"


def _probe_labels(ctx):
    """The labels the data gave and the labels the model received, on a large batch."""
    _, log, (_, _, ym, _) = _run(ctx)
    return {"model_y": as_obs(ym), "data_y": log["data"][-1][1]}


def _verdict_labels(obs, exp):
    ym, y0 = obs["model_y"], obs["data_y"]
    null, eta = exp["null_label"], exp["eta"]
    if not isinstance(ym, torch.Tensor) or ym.shape != y0.shape:
        raise Fail(f"labels passed to the model have shape {shape_of(ym)}, expected {tuple(y0.shape)}")
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


def _probe_times(ctx):
    """The times the path received, from one run on a large batch (shared by times and eps)."""
    if "times" not in ctx.cache:
        _, log, _ = _run(ctx)
        if not log["sample"]:
            raise Fail("x was not sampled from the path")
        ctx.cache["times"] = log["sample"][-1][1]
    return {"t": ctx.cache["times"]}


def _verdict_times(obs, exp):
    """t of shape (b,), uniform and independent per sample on an interval inside [0, 1]. Where the
    interval ends (below 1 - eps) is the eps sub-check's: U[0, 1) or U[eps, 1) costs only that."""
    t, b = obs["t"], exp["b"]
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


def _verdict_eps(obs, exp):
    """t stays below 1 - eps (a convention of the notebook's: the target divides by beta_t = 0 at
    t = 1). Times outside [0, 1] are the times sub-check's mistake, not charged again here."""
    t, eps = obs["t"].double().reshape(-1), exp["eps"]
    hi = float(t.max()) if t.numel() else 0.0
    if 1 - eps + 1e-6 < hi <= 1 + 1e-6 and float(t.min()) >= 0:
        raise Fail(f"t goes up to {hi:.3f}, above 1 - eps = {1 - eps:g} (eps not applied?): draw "
                   "t ~ U[0, 1 - eps), e.g. (1 - self.eps) * torch.rand(batch_size)")


def _probe_device(ctx):
    """A run on the meta device: whether it raised a RuntimeError that names a device (any other
    error is the student's exception, reported as such), else the device type of the loss."""
    raised, device = on_meta(lambda: _run(ctx, b=16, device="meta")[0])
    return {"raised": raised, "mentions_device": raised is not None, "loss_device": device}


def _verdict_device(obs, exp):
    if obs["raised"] is not None and obs["mentions_device"]:
        raise Fail("a tensor was created on the CPU while the data lives on another device (GPU): "
                   "create the mask / t on the labels' device (device=y.device)")
    if obs["loss_device"] != "meta":
        raise Fail("the loss did not stay on the data's device: create every tensor with device=y.device")


PART = CheckTable(
    "cfg_loss",
    [
        SubCheck("loss", "loss = mean((model(x, t, y) - u_t(x | z))^2) from the sampled x, z, t", 2,
                 _probe_loss, _verdict_loss),
        SubCheck("labels", "labels replaced by null_label with probability eta, others unchanged", 1,
                 _probe_labels, _verdict_labels),
        SubCheck("times", "t of shape (b,), uniform and independent per sample", 1, _probe_times,
                 _verdict_times),
        SubCheck("eps", "t below 1 - eps", 0.25, _probe_times, _verdict_eps),
        SubCheck("device", "mask and t created on the data's device", 0.5, _probe_device, _verdict_device),
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
    given=GIVEN,
)
