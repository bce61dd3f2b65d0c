"""encoder and decoder (Notebook 3, Q3 and Q4): the contract of the VAE's two halves, whatever
the architecture (convolutions or an MLP, attention or none, one learned scalar log-variance or
one per entry). Nothing here compares values with the reference: the verdicts compare the
student's outputs with each other.

- ``Encoder(latent_channels=c, hidden_channels=hidden, heads=h)``: ``x: (b, 1, 32, 32)`` ->
  ``(z_mean: (b, c, 32 / 2^n, 32 / 2^n), z_logvar)`` with ``n = len(hidden)``;
- ``Decoder(latent_channels=c, hidden_channels=hidden, heads=h)``: ``z: (b, c, 32 / 2^n,
  32 / 2^n)`` -> ``(x_mean: (b, 1, 32, 32), x_logvar)``;

the log-variance broadcastable to the mean (the mean's shape, or a learned 0-d scalar, or any
shape between). Sub-checks: the shapes for two configs (``shape``: what a right-shaped stub may
earn), batch size 1, per-sample independence (the outputs of sample i unchanged when sample j
changes), gradients (every parameter that moves the mean gets a gradient from it; the decoder's
mean passes one back to z), a learned log-variance (it carries a gradient to some parameter),
finite outputs on the edge of the input range (a blank and a full image; a zero and a large
latent), the input left unchanged, and for the decoder a mean that reaches the normalised data's
negative background. A parameter that the forward never uses is not a mistake, nor is a frozen
one (``requires_grad=False``, e.g. a fixed positional embedding).

A property is credited only where the output carries it: every sub-check but ``shape`` first
requires the mean, with the parameters re-randomised (a zero-initialised layer would hide the
computation), to be a deterministic function of the input that changes when the weights do
(:func:`cfgflow.checks._core.expect_dependence`). The probes draw their inputs from the config's
seed (no recording: the judge's seed gives a graded cell other inputs); the encoder's inputs are
image-like (a blank background of normalised value about -0.45 with bright strokes, about 3.0),
the decoder's standard normal latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import MNIST_MEAN, MNIST_STD
from ._core import (
    CheckTable,
    Fail,
    SubCheck,
    as_obs,
    close,
    expect_dependence,
    expect_shape,
    max_err,
    raising_as,
    rerandomize,
    shape_of,
)

IMG = 32
BLANK = (0.0 - MNIST_MEAN) / MNIST_STD  # a black pixel after normalisation, about -0.45
FULL = (1.0 - MNIST_MEAN) / MNIST_STD  # a white pixel, about 3.0

# variants: [latent_channels, hidden_channels, heads] (heads divides the attention's channels: the
# encoder's last hidden entry, the decoder's first)
ENCODER_CONFIG = {"seed": 3, "b": 3, "variants": [[4, [8, 16], 2], [2, [8], 4]]}
DECODER_CONFIG = {"seed": 4, "b": 3, "variants": [[4, [16, 8], 2], [2, [8], 4]]}

SAME_TOL = 1e-5  # outputs closer than this (relative, :func:`close`) count as unchanged
NUDGE = 1e-2  # the gradient probe's nudge of a parameter, relative to a re-randomisation's size
RANGE_DRAWS = 3  # re-randomised decoders whose means the range sub-check pools


@dataclass(frozen=True)
class _Side:
    """What differs between the encoder and the decoder: names and shapes."""

    part: str
    input: str   # "x" / "z"
    mean: str    # "z_mean" / "x_mean"
    logvar: str

    def in_shape(self, v, b) -> Tuple[int, ...]:
        c, n = int(v[0]), len(v[1])
        return (b, 1, IMG, IMG) if self.part == "encoder" else (b, c, IMG >> n, IMG >> n)

    def out_shape(self, v, b) -> Tuple[int, ...]:
        c, n = int(v[0]), len(v[1])
        return (b, c, IMG >> n, IMG >> n) if self.part == "encoder" else (b, 1, IMG, IMG)

    def inputs(self, g: torch.Generator, v, b) -> torch.Tensor:
        """Encoder: image-like inputs in the data's range (smooth random strokes on a blank
        background); decoder: standard normal latents."""
        if self.part == "decoder":
            return torch.randn(self.in_shape(v, b), generator=g)
        field = F.interpolate(torch.rand(b, 1, 8, 8, generator=g), size=(IMG, IMG), mode="bilinear",
                              align_corners=False)
        ink = ((field - 0.6) * 5).clamp(0.0, 1.0)  # (b, 1, 32, 32): ink on about 30 % of the pixels
        return BLANK + (FULL - BLANK) * ink

    def edges(self, g: torch.Generator, v, b):
        """The finite sub-check's inputs at the edge of the range: ``(name, input)``."""
        shape = self.in_shape(v, b)
        if self.part == "encoder":
            return [("a blank image (every pixel about -0.45)", torch.full(shape, BLANK)),
                    ("a full image (every pixel about 3.0)", torch.full(shape, FULL))]
        return [("z = 0 (the prior's mean)", torch.zeros(shape)),
                ("a large latent (10 N(0, 1))", 10 * torch.randn(shape, generator=g))]


ENC = _Side("encoder", "x", "z_mean", "z_logvar")
DEC = _Side("decoder", "z", "x_mean", "x_logvar")


# ------------------------------------------------------------------------------ running the module

def _build(ctx, v=None) -> nn.Module:
    c, hidden, heads = v or ctx["variants"][0]
    model = ctx.new(latent_channels=int(c), hidden_channels=tuple(int(k) for k in hidden), heads=int(heads))
    if not isinstance(model, nn.Module):
        getattr(model, "forward", None)  # a stub whose every attribute raises NotImplementedError says so
        raise Fail(f"{type(model).__name__} is not an nn.Module: subclass nn.Module and call "
                   "super().__init__()")
    return model


def _pair(out, side: _Side):
    """The student's ``(mean, logvar)``, or a failure naming what came back instead."""
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
        return out[0], out[1]
    got = (f"({', '.join(type(t).__name__ for t in out[:4])})" if isinstance(out, (tuple, list))
           else shape_of(out))
    raise Fail(f"forward should return the pair ({side.mean}, {side.logvar}) of tensors, got {got}")


def _run(model, side, inp):
    """``model`` on a copy of ``inp`` (a module that writes into its input still sees the same
    input at every call): ``(mean, logvar)``."""
    return _pair(model(inp.clone()), side)


def _gen(ctx, offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(ctx["seed"]) * 1000 + offset)


def _shapes(mean, logvar) -> dict:
    return {"mean": list(mean.shape), "logvar": list(logvar.shape)}


def _meta(shape):
    return torch.empty([int(k) for k in shape], device="meta")


def _broadcastable(shape, to) -> bool:
    if len(shape) > len(to):
        return False
    try:
        return tuple(torch.broadcast_shapes(tuple(shape), tuple(to))) == tuple(to)
    except RuntimeError:
        return False


def _expect_pair_shapes(obs, want, side, what: str, hint: str = "", n: int = 0):
    """Fail unless the mean has shape ``want`` and the log-variance broadcasts to it; a mean whose
    channels (or side lengths) alone are wrong is named so (``n``: the config's stage count)."""
    got, want = obs["mean"], tuple(want)
    if isinstance(got, list) and len(got) == 4 and tuple(got) != want and got[0] == want[0]:
        if got[2:] == list(want[2:]):
            raise Fail(f"{side.mean} {what} has {got[1]} channels, expected {want[1]} ("
                       + ("latent_channels)" if side.part == "encoder" else "one image channel)"))
        if got[1] == want[1]:
            stage = "one stride-2 stage" if side.part == "encoder" else "one 2x upsampling"
            raise Fail(f"{side.mean} {what} is {got[2]} x {got[3]}, expected {want[2]} x {want[3]} ({stage} "
                       f"per entry of hidden_channels: {n} here)")
    expect_shape(_meta(got) if isinstance(got, list) else got, want, f"{side.mean} {what}".strip(), hint)
    lv = obs["logvar"]
    if not isinstance(lv, list) or not _broadcastable(lv, want):
        got_lv = tuple(lv) if isinstance(lv, list) else shape_of(lv)
        raise Fail(f"{side.logvar} {what} has shape {got_lv}, not broadcastable to {side.mean}'s {want}: "
                   "return one log-variance per entry (the mean's shape) or one learned scalar (0-d)")


# ------------------------------------------------------------------------------ the dependence rule

def _responds(side, ctx):
    """The dependence report of the mean (:func:`cfgflow.checks._core.dependence`'s form), shared by
    the probes: a fresh module of the first variant, re-randomised, on ``b`` inputs of its own
    (``base``), the same again, on other inputs and with the parameters re-randomised once more.
    None when the student's code raises there (the sub-check's own probe is charged with it)."""
    if "responds" in ctx.cache:
        return ctx.cache["responds"]
    v, b = ctx["variants"][0], ctx["b"]
    g = _gen(ctx, 101)
    x, x2 = side.inputs(g, v, b), side.inputs(g, v, b)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model = _build(ctx)
            rerandomize(model, int(ctx["seed"]) + 1)
            base, again, other = (_run(model, side, inp)[0] for inp in (x, x, x2))
            rerandomize(model, int(ctx["seed"]) + 2)
            other_w = _run(model, side, x)[0]
        n_weights = sum(1 for p in model.parameters() if p.dtype.is_floating_point)
        ctx.cache["responds"] = {"base": as_obs(base), "again": as_obs(again),
                                 "changes": {side.input: as_obs(other)}, "weights": as_obs(other_w),
                                 "n_weights": n_weights}
    except Exception:  # noqa: BLE001 - charged by the sub-check's own probe
        ctx.cache["responds"] = None
    return ctx.cache["responds"]


def _require_responds(side, obs, exp):
    """The rule of every sub-check but ``shape``: the mean is a deterministic function of the input
    that changes when the weights do, and finite (else no property is credited)."""
    r = obs["responds"]
    if r is None:
        return
    base = r["base"]
    if isinstance(base, torch.Tensor) and not bool(torch.isfinite(base).all()):
        raise Fail(f"{side.mean} is not finite (NaN or inf) on ordinary inputs: no property can be credited")
    expect_dependence(r, on=(side.input,))


def _gated(side, ctx) -> bool:
    """Whether the dependence rule already fails: the probe then runs nothing more."""
    try:
        _require_responds(side, {"responds": _responds(side, ctx)}, None)
    except Fail:
        return True
    return False


def _fresh_rerandomized(ctx, offset: int = 1) -> nn.Module:
    model = _build(ctx)
    rerandomize(model, int(ctx["seed"]) + offset)
    return model


# ------------------------------------------------------------------------------ shape

@torch.no_grad()
def _probe_shape(side, ctx):
    """The output shapes of a fresh module of each variant at batch size ``b``."""
    b, outs = ctx["b"], []
    g = _gen(ctx, 1)
    for v in ctx["variants"]:
        outs.append(_shapes(*_run(_build(ctx, v), side, side.inputs(g, v, b))))
    return {"outs": outs}


def _verdict_shape(side, obs, exp):
    b = exp["b"]
    if len(obs["outs"]) != len(exp["variants"]):
        raise Fail("malformed observation: one output shape per config expected")
    for v, out in zip(exp["variants"], obs["outs"]):
        what = f"for latent_channels={v[0]}, hidden_channels={v[1]}"
        _expect_pair_shapes(out, side.out_shape(v, b), side, what, n=len(v[1]))


# ------------------------------------------------------------------------------ batch size 1

BATCH1_HINT = ("something drops the batch axis when b = 1 (.squeeze() does): use reshape, flatten(1) "
               "or squeeze(dim) with the axis named")


@torch.no_grad()
def _probe_batch1(side, ctx):
    """The output shapes at batch size ``b`` and at batch size 1 (the first config)."""
    v, b = ctx["variants"][0], ctx["b"]
    obs = {"responds": _responds(side, ctx)}
    if _gated(side, ctx):
        return obs
    model, g = _build(ctx), _gen(ctx, 2)
    obs["batch"] = _shapes(*_run(model, side, side.inputs(g, v, b)))
    obs["out"] = _shapes(*raising_as("at batch size 1", BATCH1_HINT, _run, model, side, side.inputs(g, v, 1)))
    return obs


def _verdict_batch1(side, obs, exp):
    """At batch size 1 the outputs have the shapes they have at batch size b with the batch axis 1
    (whether those are right is the shape sub-check's)."""
    _require_responds(side, obs, exp)
    b, at_b, at_1 = exp["b"], obs["batch"], obs["out"]
    mean_b = list(at_b["mean"])
    want = [1] + mean_b[1:] if mean_b and mean_b[0] == b else side.out_shape(exp["variants"][0], 1)
    expect_shape(_meta(at_1["mean"]), want, f"{side.mean} at batch size 1", BATCH1_HINT)
    lv_b = list(at_b["logvar"])
    lv_want = [1] + lv_b[1:] if lv_b[:1] == [b] else lv_b
    if list(at_1["logvar"]) != lv_want:
        raise Fail(f"{side.logvar} at batch size 1 has shape {tuple(at_1['logvar'])}, expected "
                   f"{tuple(lv_want)} ({BATCH1_HINT})")


# ------------------------------------------------------------------------------ independence

@torch.no_grad()
def _probe_independent(side, ctx):
    """The re-randomised module on ``b`` inputs and on the same with sample 0 replaced."""
    v, b = ctx["variants"][0], ctx["b"]
    obs = {"responds": _responds(side, ctx)}
    if _gated(side, ctx):
        return obs
    model = _fresh_rerandomized(ctx)
    g = _gen(ctx, 3)
    x = side.inputs(g, v, b)
    x2 = x.clone()
    x2[:1] = side.inputs(g, v, 1)
    (m1, l1), (m2, l2) = _run(model, side, x), _run(model, side, x2)
    obs.update({"mean": m1, "mean2": m2, "logvar": l1, "logvar2": l2})
    return obs


MIXED = ("changing sample 0 of the batch changed the {what} of the other samples: something mixes the batch "
         "(BatchNorm with batch statistics, a mean over dim 0, attention over the batch axis: "
         "nn.MultiheadAttention needs batch_first=True); each sample must be {done} on its own")


def _done(side) -> str:
    return "encoded" if side.part == "encoder" else "decoded"


def _verdict_independent(side, obs, exp):
    _require_responds(side, obs, exp)
    b = exp["b"]
    m1, m2 = obs["mean"], obs["mean2"]
    if not close(m2[1:], m1[1:], SAME_TOL):
        raise Fail(MIXED.format(what=side.mean, done=_done(side)))
    l1, l2 = obs["logvar"], obs["logvar2"]
    per_sample = l1.dim() >= 1 and l1.shape[0] == b and (l1.dim() == m1.dim() or not _broadcastable(
        list(l1.shape), list(m1.shape)))  # a batch axis (not broadcastable: the shape sub-check's mistake)
    if not (close(l2[1:], l1[1:], SAME_TOL) if per_sample else close(l2, l1, SAME_TOL)):
        raise Fail(MIXED.format(what=side.logvar, done=_done(side)))


# ------------------------------------------------------------------------------ gradients

def _grad_report(side, ctx, which: int, offset: int) -> dict:
    """Gradients of output ``which`` (0: the mean, 1: the log-variance) of the re-randomised module
    along a random direction: whether it carries any (``requires_grad``), how many parameters got a
    nonzero one (``with_grad``) and how many a non-finite one, the decoder's input's gradient
    (``input_grad``: its largest magnitude), and how far the output moves when every trainable
    parameter that got none is nudged together (``moved``, against its largest magnitude ``scale``:
    a parameter that moves the output without a gradient from it is cut off the graph; an unused
    one moves nothing, a frozen one, ``requires_grad=False``, is meant to get none)."""
    v, b = ctx["variants"][0], ctx["b"]
    model = _fresh_rerandomized(ctx)
    g = _gen(ctx, offset)
    inp = side.inputs(g, v, b)
    leaf = inp.clone().requires_grad_(side.part == "decoder")
    out = _pair(model(leaf * 1), side)[which]  # a non-leaf: writing into it in place stays legal
    rep = {"requires_grad": bool(out.requires_grad), "with_grad": 0, "nonfinite": 0, "input_grad": None,
           "moved": 0.0, "scale": 0.0}
    if not out.requires_grad:
        return rep
    params = [p for p in model.parameters() if p.dtype.is_floating_point]
    trained = [p for p in params if p.requires_grad]
    wrt = trained + ([leaf] if side.part == "decoder" else [])
    r = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * r).sum(), wrt, allow_unused=True) if wrt else []
    got = {}
    for p, gr in zip(wrt, grads):
        if gr is not None and not bool(torch.isfinite(gr).all()):
            rep["nonfinite"] += 1
        got[id(p)] = gr is not None and gr.numel() > 0 and float(gr.abs().max()) > 0
    if side.part == "decoder":
        gz = grads[-1]
        rep["input_grad"] = 0.0 if gz is None else float(gz.abs().max())
    rep["with_grad"] = sum(1 for p in trained if got.get(id(p)))
    silent = [p for p in trained if not got.get(id(p))]  # frozen ones (requires_grad=False) are meant so
    if silent:
        base = out.detach().clone()
        with torch.no_grad():
            saved = [p.detach().clone() for p in silent]
            for p in silent:
                size = 1 / max(1, p[0].numel()) ** 0.5 if p.dim() >= 2 else 0.3
                p.add_(NUDGE * size * torch.randn(p.shape, generator=g).to(p.dtype))
            try:
                nudged = _run(model, side, inp)[which]
            finally:
                for p, old in zip(silent, saved):
                    p.copy_(old)
        rep["moved"] = max_err(nudged, base)
        rep["scale"] = float(base.abs().max()) if base.numel() else 0.0
    return rep


def _probe_gradients(side, ctx):
    obs = {"responds": _responds(side, ctx)}
    if _gated(side, ctx):
        return obs
    obs["mean"] = _grad_report(side, ctx, 0, 4)
    lv = _grad_report(side, ctx, 1, 5)
    learned = lv["requires_grad"] and lv["with_grad"]
    obs["logvar"] = lv if learned else None  # not learned: the logvar sub-check's mistake
    return obs


def _cut(rep) -> bool:
    moved = float(rep["moved"])
    return moved != moved or moved > SAME_TOL * (1 + float(rep["scale"]))


CUT = ("some parameters change {what} but get no gradient from it: something cuts the graph between them "
       "and the output (.detach(), .data, .item(), torch.no_grad())")


def _verdict_gradients(side, obs, exp):
    _require_responds(side, obs, exp)
    m = obs["mean"]
    if not m["requires_grad"]:
        raise Fail(f"{side.mean} carries no gradient (computed under torch.no_grad(), or detached): the VAE "
                   "could not learn it")
    for rep in (m, obs["logvar"]):
        if rep is not None and int(rep["nonfinite"]):
            raise Fail("some gradients are not finite (NaN or inf): a sqrt or log at 0, or a division by 0?")
    if _cut(m):
        raise Fail(CUT.format(what=side.mean))
    if obs["logvar"] is not None and _cut(obs["logvar"]):
        raise Fail(CUT.format(what=side.logvar))
    if side.part == "decoder" and not float(m["input_grad"]) > 0:
        raise Fail("x_mean passes no gradient back to z (z detached?): the encoder would learn nothing from "
                   "the reconstruction")


# ------------------------------------------------------------------------------ a learned log-variance

def _probe_logvar(side, ctx):
    obs = {"responds": _responds(side, ctx)}
    if _gated(side, ctx):
        return obs
    rep = _grad_report(side, ctx, 1, 5)
    obs.update({"requires_grad": rep["requires_grad"], "with_grad": rep["with_grad"]})
    return obs


def _verdict_logvar(side, obs, exp):
    _require_responds(side, obs, exp)
    if not obs["requires_grad"] or not int(obs["with_grad"]):
        raise Fail(f"{side.logvar} is not learned: it carries no gradient to any parameter (a fixed tensor "
                   "such as torch.zeros(()), or detached): predict it with a layer, or make it an "
                   "nn.Parameter")


# ------------------------------------------------------------------------------ finite outputs

@torch.no_grad()
def _probe_finite(side, ctx):
    """How many entries of the mean and the log-variance are not finite, for each input at the
    edge of the range, with the module as constructed and re-randomised."""
    v, b = ctx["variants"][0], ctx["b"]
    obs = {"responds": _responds(side, ctx)}
    if _gated(side, ctx):
        return obs
    obs["cases"] = []
    g = _gen(ctx, 6)
    for model in (_build(ctx), _fresh_rerandomized(ctx)):
        for name, inp in side.edges(g, v, b):
            mean, logvar = _run(model, side, inp)
            obs["cases"].append({"input": name, "mean": int((~torch.isfinite(mean)).sum()),
                                 "logvar": int((~torch.isfinite(logvar)).sum())})
    return obs


def _verdict_finite(side, obs, exp):
    _require_responds(side, obs, exp)
    for case in obs["cases"]:
        for key, name in (("mean", side.mean), ("logvar", side.logvar)):
            if int(case[key]):
                why = ("a division by a per-image std, or a log of a negative?" if side.part == "encoder" else
                       "a division by the latent's own std or norm, or an overflowing exp?")
                raise Fail(f"{name} has NaN or inf entries for {_short(case['input'])}: {why}")


def _short(text) -> str:
    return str(text)[:80]


# ------------------------------------------------------------------------------ the input left unchanged

def _probe_inplace(side, ctx):
    """How much the input changed in the forward (``max |after - before|``)."""
    v, b = ctx["variants"][0], ctx["b"]
    obs = {"responds": _responds(side, ctx)}
    if _gated(side, ctx):
        return obs
    x = side.inputs(_gen(ctx, 7), v, b)
    keep = x.clone()
    _pair(_build(ctx)(x), side)
    obs["changed"] = max_err(x, keep)
    return obs


def _verdict_inplace(side, obs, exp):
    _require_responds(side, obs, exp)
    if float(obs["changed"]) != 0.0:
        use = "the VAE's loss reads x after encoding it" if side.part == "encoder" else \
            "it may reuse the latent"
        i = side.input
        raise Fail(f"the input {i} was modified in place ({i} -= ..., {i}.sub_(...), {i}[...] = ...): the "
                   f"caller needs it unchanged ({use}); work on new tensors")


# ------------------------------------------------------------------------------ the decoder's range

@torch.no_grad()
def _probe_range(side, ctx):
    """The smallest entry of the mean of :data:`RANGE_DRAWS` re-randomised decoders on ``b``
    latents."""
    v, b = ctx["variants"][0], ctx["b"]
    obs = {"responds": _responds(side, ctx)}
    if _gated(side, ctx):
        return obs
    g, lows = _gen(ctx, 8), []
    model = _build(ctx)
    for k in range(RANGE_DRAWS):
        rerandomize(model, int(ctx["seed"]) + 10 + k)
        lows.append(float(_run(model, side, side.inputs(g, v, b))[0].min()))
    obs["min"] = min(lows)
    return obs


def _verdict_range(side, obs, exp):
    _require_responds(side, obs, exp)
    low = float(obs["min"])
    if not low < 0:
        raise Fail("x_mean is never negative: a sigmoid or ReLU at the end cannot reach the normalised "
                   f"data (the background is {BLANK:.2f}, the strokes up to {FULL:.1f}); leave the last "
                   "layer linear")


# ------------------------------------------------------------------------------ the tables

def _table(side: _Side, config) -> CheckTable:
    def sub(name, description, weight, probe, verdict):
        return SubCheck(name, description, weight, partial(probe, side), partial(verdict, side))

    subs = [
        sub("shape", f"{side.mean} of the right shape, {side.logvar} broadcastable to it (two configs)", 1,
            _probe_shape, _verdict_shape),
        sub("batch1", "works at batch size 1", 0.5, _probe_batch1, _verdict_batch1),
        sub("independent", "samples independent (no mixing across the batch)", 1, _probe_independent,
            _verdict_independent),
        sub("gradients", f"gradients reach the parameters that move {side.mean}"
            + (" and flow back to z" if side.part == "decoder" else ""), 1, _probe_gradients,
            _verdict_gradients),
        sub("logvar", f"{side.logvar} learned (carries a gradient to the parameters)", 1, _probe_logvar,
            _verdict_logvar),
        sub("finite", "finite outputs at the edge of the input range", 0.5, _probe_finite, _verdict_finite),
        sub("inplace", f"the input {side.input} left unchanged", 1 if side.part == "encoder" else 0.5,
            _probe_inplace, _verdict_inplace),
    ]
    if side.part == "decoder":
        subs.append(sub("range", "x_mean can be negative (the data's background is about -0.45)", 0.5,
                        _probe_range, _verdict_range))
    return CheckTable(
        side.part, subs, dict(config),
        {"unexpected keyword argument": "keep the constructor's signature (latent_channels, hidden_channels, "
                                        "heads)",
         "size of tensor": f"check the shapes stage by stage: {side.input} is "
                           + ("(b, 1, 32, 32)" if side.part == "encoder" else "(b, latent_channels, h, w)"),
         "divisible by num_groups": "the checks use small widths such as hidden_channels=(8, 16): choose "
                                    "GroupNorm group counts that divide them, e.g. GroupNorm(min(8, k), k)",
         "divisible": "heads must divide the attention's channel count"},
        rationale=(
            "Any architecture that meets the contract earns full marks; nothing is compared with the "
            "reference, so no sub-check weighs more than 1. The shapes for two configs (1) are what a "
            "right-shaped stub may earn. Per-sample independence (1), gradients reaching every parameter "
            "that moves the mean (1) and a learned log-variance (1) are what the VAE's training needs"
            + ("; so is the image left unchanged (1): VAE.compute_loss reads x after encoding it. Batch "
               "size 1 and finite outputs for a blank and a full image are conventions and sanity checks "
               "(0.5 each). " if side.part == "encoder" else
               ". Batch size 1, finite outputs for z = 0 and a large latent, the latent left unchanged (no "
               "later cell reuses it) and a mean that can be negative (the normalised background is about "
               "-0.45: a sigmoid or ReLU output cannot reach it) are conventions and sanity checks (0.5 "
               "each). ")
            + "An unused parameter is not a mistake, nor is a frozen one (requires_grad=False). Every "
            "sub-check but the shape is credited only where the output carries the property: the "
            "re-randomised mean must be a finite, deterministic function of the input that changes when "
            "the weights do."
        ),
    )


ENCODER = _table(ENC, ENCODER_CONFIG)
DECODER = _table(DEC, DECODER_CONFIG)
