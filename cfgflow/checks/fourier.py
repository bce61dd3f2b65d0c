"""fourier_encoder: ``FourierEncoder(dim)``, ``t: (b,)`` or ``(b, 1, 1, 1)`` -> ``(b, dim)``.

The notebook pins ``[cos(2 pi w t), sin(2 pi w t)]`` (cos block first, no factor) with ``w`` an
``nn.Parameter`` of ``dim/2`` entries. The probes discover the student's weights (any name), write
the given weights into them and run the encoder on the given times; the verdicts compare the output
with the reference's on the same inputs, and with the outputs of known-wrong formulas that name the
mistake (recorded: ``data/fourier_encoder.json``; graded: computed by the judge).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._core import (
    BATCH1_HINT,
    CheckTable,
    Fail,
    SubCheck,
    as_obs,
    at_batch1,
    close,
    dependence,
    expect_dependence,
    expect_shape,
    shape_of,
    with_t4,
)

CONFIG = {"seed": 1, "dim": 8, "b": 4}
GIVEN = ("w", "t")  # the frequencies written into the student's weights, the times


def _build(ctx):
    return ctx.new(ctx["dim"])


def _find_weights(enc, dim):
    """The frequency vector: a learnable parameter if there is one, else any float tensor
    attribute/buffer. Returns (tensor, is_parameter)."""
    params = [p for p in enc.parameters() if p.dtype.is_floating_point]
    for p in params:
        if p.numel() == dim // 2:
            return p, True
    if len(params) == 1:
        return params[0], True
    tensors = list(enc.buffers()) + [v for v in vars(enc).values() if isinstance(v, torch.Tensor)]
    for v in tensors:
        if v.dtype.is_floating_point and v.numel() == dim // 2:
            return v, False
    for v in params + tensors:
        if v.dtype.is_floating_point:
            return v, isinstance(v, nn.Parameter)
    raise Fail("no frequency weights found: store them as self.weights = nn.Parameter(torch.randn(dim // 2))")


# known-wrong formulas: the expected output's name and the message
WRONG = [
    ("sin", "sin block first: the notebook pins cos first, [cos(2 pi w t), sin(2 pi w t)]"),
    ("sqrt2", "extra sqrt(2) factor: the notebook's formula has no factor"),
    ("sin_sqrt2", "sin first and times sqrt(2) (the lab's old solution code): "
     "the notebook pins cos first and no factor"),
    ("no2pi", "missing 2*pi: the frequencies are 2 pi w t"),
    ("sin_no2pi", "missing 2*pi and sin block first"),
]
FINAL = "values differ from [cos(2 pi w t), sin(2 pi w t)] computed with your weights"


def _probe_shape(ctx):
    return {"out": as_obs(_build(ctx)(torch.rand(ctx["b"])))}


def _verdict_shape(obs, exp):
    out, b, dim = obs["out"], exp["b"], exp["dim"]
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] == 2 * dim:
        raise Fail(f"output has shape {tuple(out.shape)}: wrong half size, use dim/2 = {dim // 2} "
                   f"weights so cos and sin blocks together give dim = {dim}")
    expect_shape(out, (b, dim))


def _probe_values(ctx):
    """The given frequencies written into the student's weights (a wrong-sized weight gets random
    values), the output on the given times."""
    enc, dim = _build(ctx), ctx["dim"]
    w, _ = _find_weights(enc, dim)
    with torch.no_grad():  # the given frequencies (also catches hard-coded ones)
        w.copy_(ctx.tensor("w").reshape(w.shape) if w.numel() == dim // 2 else torch.randn(w.shape))
    return {"out": as_obs(enc(ctx.tensor("t"))), "numel": w.numel()}


def _verdict_values(obs, exp):
    dim = exp["dim"]
    if obs["numel"] != dim // 2:
        raise Fail(f"the weights have {obs['numel']} entries: wrong half size, use dim/2 = {dim // 2}")
    if close(obs["out"], exp.tensor("ok")):
        return
    for name, msg in WRONG:
        if close(obs["out"], exp.tensor(name)):
            raise Fail(msg)
    raise Fail(FINAL)


def _probe_learnable(ctx):
    """Learnable frequencies that receive gradients; their count is the values sub-check's."""
    enc, dim = _build(ctx), ctx["dim"]
    w, is_param = _find_weights(enc, dim)
    obs = {"parameter": bool(is_param and w.requires_grad), "grad": None}
    if obs["parameter"]:
        out = enc(torch.rand(3))
        (out * torch.randn(out.shape)).sum().backward()  # not out.pow(2): cos^2 + sin^2 = 1
        obs["grad"] = None if w.grad is None else float(w.grad.abs().sum())
    return obs


def _verdict_learnable(obs, exp):
    if not obs["parameter"]:
        raise Fail("weights not learnable: wrap them in nn.Parameter so the optimiser trains them")
    if obs["grad"] is None or obs["grad"] == 0.0:
        raise Fail("no gradient reaches the weights: compute the features from the parameter itself")


def _dependence(ctx, enc, t):
    """What :func:`expect_dependence` reads: the encoder on ``t``, on other times, and with its
    frequencies (:func:`_find_weights`: a buffer counts, learnability is another sub-check's) nudged."""
    try:
        weights = [_find_weights(enc, ctx["dim"])[0]]
    except Fail:
        weights = []  # no frequencies: the verdict says the output does not change with weights
    other = torch.rand(t.shape, generator=torch.Generator().manual_seed(int(ctx["seed"])))
    return dependence(enc, (t,), {"t": (other,)}, weights, seed=int(ctx["seed"]))


def _probe_t_shapes(ctx):
    enc, b = _build(ctx), ctx["b"]
    t = torch.rand(b)
    a = enc(t)
    return {"b_": as_obs(a), "b111": as_obs(with_t4(enc, t.reshape(b, 1, 1, 1))),
            "dep": _dependence(ctx, enc, t)}


def _verdict_t_shapes(obs, exp):
    expect_dependence(obs["dep"], ("t",))
    c = obs["b111"]
    if not close(c, obs["b_"], 1e-6):
        raise Fail(f"t of shape (b, 1, 1, 1) gives {shape_of(c)} or other values than t of shape (b,): "
                   "reshape t to (b,) first (t.reshape(-1))")


def _probe_batch1(ctx):
    """Batch size 1 with t of shape (1,), and row 0 of the same t in a batch of 2 (the other t
    shape and the output width are other sub-checks')."""
    enc = _build(ctx)
    t = torch.rand(2)
    want = enc(t)[:1]
    return {"pair": want, "single": as_obs(at_batch1(enc, t[:1])), "dep": _dependence(ctx, enc, t)}


def _verdict_batch1(obs, exp):
    expect_dependence(obs["dep"], ("t",))
    out, want = obs["single"], obs["pair"]
    if not isinstance(out, torch.Tensor) or out.shape != want.shape:
        raise Fail(f"at batch size 1 (t of shape (1,)) the output has shape {shape_of(out)}, but "
                   f"{tuple(want.shape)} per sample at batch size 2 -> {BATCH1_HINT}")
    if not close(out, want, 1e-5):
        raise Fail("at batch size 1 the features differ from the same t in a batch of 2")


PART = CheckTable(
    "fourier_encoder",
    [
        SubCheck("shape", "output shape (b, dim) for t of shape (b,)", 1, _probe_shape, _verdict_shape),
        SubCheck("values", "values [cos(2 pi w t), sin(2 pi w t)] with your weights", 2, _probe_values,
                 _verdict_values),
        SubCheck("learnable", "weights an nn.Parameter that receives gradients", 1, _probe_learnable,
                 _verdict_learnable),
        SubCheck("t_shapes", "t of shape (b, 1, 1, 1) gives the same result as (b,)", 0.5, _probe_t_shapes,
                 _verdict_t_shapes),
        SubCheck("batch1", "works at batch size 1", 0.5, _probe_batch1, _verdict_batch1),
    ],
    CONFIG,
    {"size of tensor": "check the shapes: t[:, None] * w[None, :] gives (b, dim/2)"},
    rationale=(
        "The formula's values are the result (2); the output width (1) is what the DiT needs; frozen "
        "frequencies give the right features but train differently (1). Accepting t of shape (b, 1, 1, 1) "
        "and batch size 1 are pinned conventions (0.5 each). A convention is credited only where the output "
        "carries it: the output compared must be a function of t (the same t twice gives the same output), "
        "change when t changes and when the frequency weights do; an output that does not (zeros, a "
        "constant, noise) earns the shape's share at most. The values and learnable sub-checks establish "
        "this themselves (the reference's output with the given weights; a gradient reaching the weights)."
    ),
    given=GIVEN,
)
