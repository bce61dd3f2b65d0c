"""fourier_encoder: ``FourierEncoder(dim)``, ``t: (b,)`` or ``(b, 1, 1, 1)`` -> ``(b, dim)``.

The notebook pins ``[cos(2 pi w t), sin(2 pi w t)]`` (cos block first, no factor) with ``w`` an
``nn.Parameter`` of ``dim/2`` entries. The student's weights are discovered (any name), the
recorded weights are written into them and the output is compared with the reference's recorded
output on recorded times; the recorded outputs of known-wrong formulas name the mistake.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import _data
from ._core import BATCH1_HINT, Fail, Part, SubCheck, at_batch1, close, expect_shape, shape_of, with_t4

CONFIG = {"seed": 1, "dim": 8, "b": 4}


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


# known-wrong formulas: the recorded output's name (data/fourier_encoder.json) and the message
WRONG = [
    ("sin", "sin block first: the notebook pins cos first, [cos(2 pi w t), sin(2 pi w t)]"),
    ("sqrt2", "extra sqrt(2) factor: the notebook's formula has no factor"),
    ("sin_sqrt2", "sin first and times sqrt(2) (the lab's old solution code): "
     "the notebook pins cos first and no factor"),
    ("no2pi", "missing 2*pi: the frequencies are 2 pi w t"),
    ("sin_no2pi", "missing 2*pi and sin block first"),
]
FINAL = "values differ from [cos(2 pi w t), sin(2 pi w t)] computed with your weights"


def _shape(ctx):
    enc, b, dim = _build(ctx), ctx["b"], ctx["dim"]
    out = enc(torch.rand(b))
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] == 2 * dim:
        raise Fail(f"output has shape {tuple(out.shape)}: wrong half size, use dim/2 = {dim // 2} "
                   f"weights so cos and sin blocks together give dim = {dim}")
    expect_shape(out, (b, dim))


def _values(ctx):
    enc, dim = _build(ctx), ctx["dim"]
    data = _data.load("fourier_encoder", ctx.cfg)
    w, _ = _find_weights(enc, dim)
    with torch.no_grad():  # the recorded frequencies (also catches hard-coded ones)
        w.copy_(_data.tensor(data, "w").reshape(w.shape) if w.numel() == dim // 2 else torch.randn(w.shape))
    out = enc(_data.tensor(data, "t"))
    if w.numel() != dim // 2:
        raise Fail(f"the weights have {w.numel()} entries: wrong half size, use dim/2 = {dim // 2}")
    if close(out, _data.tensor(data, "ok", torch.float64)):
        return
    for name, msg in WRONG:
        if close(out, _data.tensor(data, name, torch.float64)):
            raise Fail(msg)
    raise Fail(FINAL)


def _learnable(ctx):
    """Learnable frequencies that receive gradients; their count is the values sub-check's."""
    enc, dim = _build(ctx), ctx["dim"]
    w, is_param = _find_weights(enc, dim)
    if not is_param or not w.requires_grad:
        raise Fail("weights not learnable: wrap them in nn.Parameter so the optimiser trains them")
    out = enc(torch.rand(3))
    (out * torch.randn(out.shape)).sum().backward()  # not out.pow(2): cos^2 + sin^2 = 1
    if w.grad is None or float(w.grad.abs().sum()) == 0.0:
        raise Fail("no gradient reaches the weights: compute the features from the parameter itself")


def _t_shapes(ctx):
    enc, b = _build(ctx), ctx["b"]
    t = torch.rand(b)
    a = enc(t)
    c = with_t4(enc, t.reshape(b, 1, 1, 1))
    if not close(c, a, 1e-6):
        raise Fail(f"t of shape (b, 1, 1, 1) gives {tuple(c.shape)} or other values than t of shape (b,): "
                   "reshape t to (b,) first (t.reshape(-1))")


def _batch1(ctx):
    """Batch size 1 with t of shape (1,): the same features as row 0 of a batch of 2 (the other t
    shape and the output width are other sub-checks')."""
    enc = _build(ctx)
    t = torch.rand(2)
    want = enc(t)[:1]
    out = at_batch1(enc, t[:1])
    if not isinstance(out, torch.Tensor) or out.shape != want.shape:
        raise Fail(f"at batch size 1 (t of shape (1,)) the output has shape {shape_of(out)}, but "
                   f"{tuple(want.shape)} per sample at batch size 2 -> {BATCH1_HINT}")
    if not close(out, want, 1e-5):
        raise Fail("at batch size 1 the features differ from the same t in a batch of 2")


PART = Part(
    "fourier_encoder",
    [
        SubCheck("shape", "output shape (b, dim) for t of shape (b,)", 1, _shape),
        SubCheck("values", "values [cos(2 pi w t), sin(2 pi w t)] with your weights", 2, _values),
        SubCheck("learnable", "weights an nn.Parameter that receives gradients", 1,
                 _learnable),
        SubCheck("t_shapes", "t of shape (b, 1, 1, 1) gives the same result as (b,)", 0.5, _t_shapes),
        SubCheck("batch1", "works at batch size 1", 0.5, _batch1),
    ],
    CONFIG,
    {"size of tensor": "check the shapes: t[:, None] * w[None, :] gives (b, dim/2)"},
    rationale=(
        "The formula's values are the result (2); the output width (1) is what the DiT needs; frozen "
        "frequencies give the right features but train differently (1). Accepting t of shape (b, 1, 1, 1) "
        "and batch size 1 are pinned conventions (0.5 each)."
    ),
)
