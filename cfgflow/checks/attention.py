"""mha: ``MHA(dim, heads)``, ``(b, n, d) -> (b, n, d)``.

The student's projections are discovered by their sizes, not their names or containers (one fused
``Linear(dim, 3 dim)``, separate q/k/v/out ``Linear(dim, dim)``, q plus a fused ``Linear(dim, 2 dim)``,
an ``nn.MultiheadAttention``, or one small module per head: per-head ``Linear(dim, dim // heads)``
projections stacked into one fused layout, with one output ``Linear(dim, dim)`` or per-head
``Linear(dim // heads, dim)`` ones summed).
For every layout that is a relabelling of the same function class (any order of q/k/v blocks in
the fused output, heads split ``(h hd)`` or ``(hd h)`` consistently, merged either way) the probe
writes the given canonical weights into the student's projections in that layout, with ``heads``
heads and with one, and reports the student's own forward's output on the given input. The
verdict compares those outputs with the reference's (recorded: ``data/mha.json``; graded: computed
by the judge) and with the outputs of known-wrong variants (scale, softmax axis, one head, no
output projection), which name the mistake. The token-order and batch sub-checks are credited only
where the output is computed: it changes with the input, with the module's weights and, at a
token, with the other tokens (:func:`_dependence`), which a constant, an echo of the input or any
output that computes nothing does not.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn
from einops import rearrange

from ._core import CheckTable, Fail, SubCheck, as_obs, close, expect_dependence, expect_shape, shape_of

CONFIG = {"seed": 4, "dim": 8, "heads": 2, "n": 5, "b": 2}
GIVEN = ("x", "wq", "wk", "wv", "wo")  # the input; canonical q, k, v, output weights (rows, columns (h hd))


def _build(ctx):
    return ctx.new(ctx["dim"], ctx["heads"])


SPLITS = ["(three h hd)", "(h three hd)", "(h hd three)", "(three hd h)"]
HEADS = ["(h hd)", "(hd h)"]


NO_OUT = "missing output projection: apply the output Linear(dim, dim) to the merged heads"


class _Cat:
    """Several parameters as one, concatenated along ``axis``: ``copy_`` writes consecutive blocks
    of a value into them (in the order given), ``zero_`` zeroes them all."""

    def __init__(self, params, axis):
        self.params, self.axis = list(params), axis

    def copy_(self, value):
        start = 0
        for p in self.params:
            size = p.shape[self.axis]
            p.copy_(value.narrow(self.axis, start, size))
            start += size
        if start != value.shape[self.axis]:
            raise ValueError(f"{start} rows/columns for a value of {value.shape[self.axis]}")
        return self

    def zero_(self):
        for p in self.params:
            p.zero_()
        return self


class _Stack:
    """Several ``nn.Linear`` taken as one (a ``weight`` and a ``bias`` like a Linear's, writable):
    stacked along the output rows (``axis=0``: per-head projections ``Linear(dim, hd)``, outputs
    concatenated) or along the input columns (``axis=1``: per-head output projections
    ``Linear(hd, dim)``, outputs summed)."""

    def __init__(self, lins, axis):
        self.weight = _Cat([m.weight for m in lins], axis)
        biases = [m.bias for m in lins if m.bias is not None]
        self.bias = _Cat(biases, 0) if biases else None


def projections(model, dim):
    """The student's candidate projections: every ``nn.Linear``, the square ``Linear(dim, dim)``
    ones (q, k, v or output), the fused ``(weight, bias)`` of ``Linear(dim, 3 dim)`` or an
    ``nn.MultiheadAttention`` (whose output projection joins the square ones), and the narrower
    projections a per-head layout is made of, found by their sizes, not their names or containers
    (attributes, ``nn.ModuleList``, one module per head): the ``Linear(dim, k < dim)`` whose widths
    add up to ``3 dim``, stacked in module order into one fused ``(weight, bias)`` (q, k, v of each
    head, or q of every head then k then v: the fused layouts' relabellings cover both), and the
    ``Linear(k < dim, dim)`` whose inputs add up to ``dim``, taken as one output projection
    (``outs``, only an output projection)."""
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    sq = [m for m in lins if m.in_features == dim and m.out_features == dim]
    fused = [(m.weight, m.bias) for m in lins if m.in_features == dim and m.out_features == 3 * dim]
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            fused.append((m.in_proj_weight, m.in_proj_bias))
            sq.append(m.out_proj)
    narrow = [m for m in lins if m.in_features == dim and m.out_features < dim]
    if len(narrow) > 1 and sum(m.out_features for m in narrow) == 3 * dim:
        stack = _Stack(narrow, 0)
        fused.append((stack.weight, stack.bias))
    outs = [m for m in lins if m.out_features == dim and m.in_features < dim]
    outs = [_Stack(outs, 1)] if len(outs) > 1 and sum(m.in_features for m in outs) == dim else []
    return lins, sq, fused, outs


def candidates(model, dim):
    """Yield ``(write, outs)``: ``write(h, wq, wk, wv)`` puts canonical q/k/v weights (each
    ``(dim, dim)``, rows ``(h hd)``) into the student's projections in one layout (``ValueError``
    when ``h`` does not divide them); ``outs`` the possible output projections (None: none)."""
    lins, sq, fused, outs = projections(model, dim)

    def put(weight, bias, value):
        weight.copy_(value)
        if bias is not None:
            bias.zero_()

    def heads_of(w, h):  # (dim, dim) rows (h hd) -> (h, hd, dim)
        return rearrange(w, "(h hd) i -> h hd i", h=h)

    for w, b in fused:
        for order in itertools.permutations(range(3)):
            for split in SPLITS:
                def write(h, *qkv, split=split, order=order, w=w, b=b):
                    blocks = [None] * 3
                    for j, i in enumerate(order):
                        blocks[i] = heads_of(qkv[j], h)
                    put(w, b, rearrange(torch.stack(blocks), f"three h hd i -> {split} i"))
                yield write, list(sq) + outs + [None]
    for kv in (m for m in lins if m.in_features == dim and m.out_features == 2 * dim):
        for q_lin in sq:
            for order in ((0, 1), (1, 0)):
                for split in ("(two h hd)", "(h two hd)", "(h hd two)"):
                    def write(h, wq, wk, wv, kv=kv, q_lin=q_lin, order=order, split=split):
                        put(q_lin.weight, q_lin.bias, wq)
                        blocks = [None] * 2
                        blocks[order[0]], blocks[order[1]] = heads_of(wk, h), heads_of(wv, h)
                        put(kv.weight, kv.bias, rearrange(torch.stack(blocks), f"two h hd i -> {split} i"))
                    yield write, [m for m in sq if m is not q_lin] + outs + [None]
    if len(sq) >= 3:
        for perm in itertools.permutations(sq, 3):
            rest = [m for m in sq if all(m is not p for p in perm)]
            for split in HEADS:
                def write(h, *qkv, perm=perm, split=split):
                    for m, w in zip(perm, qkv):
                        put(m.weight, m.bias, rearrange(heads_of(w, h), f"h hd i -> {split} i"))
                yield write, rest + outs + [None]


# (name of the recorded output, message): the correct formula first, then the known mistakes
VARIANTS = [
    ("ok", None),
    ("dimscale", "attention scale uses dim**-0.5: scale scores by head_dim**-0.5 = 1/sqrt(dim // heads)"),
    ("noscale", "scores not scaled: multiply q k^T by head_dim**-0.5"),
    ("sqrtscale", "scores multiplied by sqrt(head_dim): divide by it instead"),
    ("axis", "softmax over the wrong axis: normalise over the keys (dim=-1), so each query's weights sum "
     "to 1"),
]
ONE_HEAD = "heads ignored: split q, k, v into `heads` heads of size dim // heads"
NO_PROJECTIONS = ("no projections found: use a fused nn.Linear(dim, 3 * dim), separate "
                  "nn.Linear(dim, dim) for q, k, v or nn.Linear(dim, dim // heads) for q, k, v of each head, "
                  "plus an output nn.Linear(dim, dim)")
FINAL = ("values differ from multi-head attention computed with your projections "
         "(softmax(q k^T / sqrt(head_dim)) v per head, heads merged, output projection)")


def recorded_name(h: int, variant: str, merge: str, projected: bool) -> str:
    """Key of a recorded output: ``h`` heads, the formula variant, merged ``merge`` (only matters
    without an output projection)."""
    return f"out_h{h}_{variant}" if projected else f"noout_h{h}_{variant}_{HEADS.index(merge)}"


MAX_RUNS = 3000
"""At most this many forward runs (layout, heads, output projection, merge) are reported: a
module with many ``Linear(dim, dim)`` layers has more layouts than are worth trying."""


@torch.no_grad()
def _probe_values(ctx):
    """The student's output on the given input with its own weights (``out``), and for every
    layout (``layouts``, in :func:`candidates`' order) the outputs with the given weights written
    in that layout: ``outs`` says, per possible output projection, whether it is one (False: none);
    ``runs[str(h)]`` (None when ``h`` heads do not fit the layout) holds per possible output
    projection the outputs with the output weights' columns merged ``(h hd)`` and ``(hd h)`` (one
    output where there is no output projection). No layouts when ``out`` has the wrong shape;
    after :data:`MAX_RUNS` runs the rest are left out (``truncated``)."""
    model, dim, heads = _build(ctx), ctx["dim"], ctx["heads"]
    x = ctx.tensor("x")
    obs = {"out": as_obs(model(x)), "layouts": [], "truncated": False}
    if shape_of(obs["out"]) != str(tuple(x.shape)):
        return obs  # the verdict fails on the shape first
    wq, wk, wv, wo = (ctx.tensor(k) for k in ("wq", "wk", "wv", "wo"))
    budget = MAX_RUNS
    for write, outs in candidates(model, dim):
        layout = {"outs": [p is not None for p in outs], "runs": {}}
        for h in dict.fromkeys((heads, 1)):
            try:
                write(h, wq, wk, wv)
            except (RuntimeError, ValueError):
                layout["runs"][str(h)] = None
                continue
            per_out = []
            for p in outs:
                if p is None:
                    per_out.append([as_obs(model(x))])
                    continue
                ys = []
                for merge in HEADS:  # canonical output weights, columns merged `merge`
                    p.weight.copy_(rearrange(wo, f"o (h hd) -> o {merge}", h=h))
                    if p.bias is not None:
                        p.bias.zero_()
                    ys.append(as_obs(model(x)))
                per_out.append(ys)
            layout["runs"][str(h)] = per_out
            budget -= sum(len(ys) for ys in per_out)
        obs["layouts"].append(layout)
        if budget <= 0:
            obs["truncated"] = True
            break
    return obs


def _verdict_values(obs, exp):
    """The correct formula under any layout passes; else the first known mistake that matches
    names it (one head before the others)."""
    b, n, dim, heads = exp["b"], exp["n"], exp["dim"], exp["heads"]
    expect_shape(obs["out"], (b, n, dim))
    layouts = obs["layouts"]
    if not layouts:
        raise Fail(NO_PROJECTIONS)
    wanted_cache = {}

    def want(name):
        if name not in wanted_cache:
            wanted_cache[name] = exp.tensor(name)
        return wanted_cache[name]

    def run(layout, h, pi, merge):
        ys = layout["runs"][str(h)][pi]
        return ys[HEADS.index(merge)] if len(ys) > 1 else ys[0]

    diagnosis = None
    # first pass: the correct formula under every layout; second: the known mistakes
    for wanted in ("ok", "wrong"):
        for h_used, hmsg in ((heads, None), (1, ONE_HEAD)):
            if wanted == "ok" and hmsg:
                continue
            for layout in layouts:
                if layout["runs"].get(str(h_used)) is None:
                    continue
                for key, msg in VARIANTS:
                    if wanted == "ok" and key != "ok":
                        continue  # first pass: the correct formula only
                    if wanted == "wrong" and key == "ok" and not hmsg:
                        continue  # second pass: the mistakes (any formula with one head)
                    for merge in HEADS:
                        for pi, projected in enumerate(layout["outs"]):
                            if close(run(layout, h_used, pi, merge),
                                     want(recorded_name(h_used, key, merge, projected)), 1e-4):
                                if wanted == "ok" and projected:
                                    return
                                diagnosis = diagnosis or hmsg or msg or NO_OUT
        if diagnosis:
            raise Fail(diagnosis)
    raise Fail(FINAL)


def _probe_shape(ctx):
    b, n, dim = ctx["b"], ctx["n"], ctx["dim"]
    return {"out": as_obs(_build(ctx)(torch.randn(b, n, dim)))}


def _verdict_shape(obs, exp):
    expect_shape(obs["out"], (exp["b"], exp["n"], exp["dim"]))


@torch.no_grad()
def _dependence(model, x):
    """What a computed output depends on (the model's weights are changed last): the output on
    ``x: (b, n, dim)``; on another input; on ``x`` with every token but the first redrawn; on ``x``
    with every parameter moved (each ``(b, n, dim)`` where the student's module gets it right)."""
    mixed = x.clone()
    mixed[:, 1:] = torch.randn_like(mixed[:, 1:])
    out = as_obs(model(x))
    obs = {"base": out, "again": as_obs(model(x)), "changes": {"x": as_obs(model(torch.randn_like(x)))},
           "other_tokens": as_obs(model(mixed))}
    params = [p for p in model.parameters() if p.dtype.is_floating_point]
    for p in params:
        p.add_(torch.randn_like(p) * 0.5)
    obs["weights"], obs["n_weights"] = as_obs(model(x)), len(params)
    return obs  # the report form of cfgflow.checks._core.dependence, plus other_tokens


def _same(a, b) -> bool:
    """Both tensors of one shape, equal up to rounding (an output that did not change)."""
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and close(a, b, 1e-6)


def _first(y):
    """The first token ``(b, 1, dim)`` of an output ``(b, n, dim)``; anything else as it is."""
    return y[:, :1] if isinstance(y, torch.Tensor) and y.dim() == 3 else y


def _verdict_dependence(dep, tokens: bool):
    """The rule (:func:`cfgflow.checks._core.expect_dependence`): the output is a function of x
    that changes with x and with the weights and, with ``tokens``, whose first token changes with
    the other tokens (attention mixes them: a per-token map is trivially equivariant)."""
    shown = None
    if tokens:
        shown = {"the other tokens": not _same(_first(dep["base"]), _first(dep["other_tokens"]))}
    expect_dependence(dep, on=("x",), shown=shown)


@torch.no_grad()
def _probe_equivariant(ctx):
    """The output on tokens rolled by one, and the output on the tokens, rolled by one; what the
    output depends on (:func:`_dependence`)."""
    model = _build(ctx)
    dim, n = ctx["dim"], ctx["n"]
    x = torch.randn(2, n, dim)
    perm = torch.roll(torch.arange(n), 1)
    obs = {"of_permuted": as_obs(model(x[:, perm])), "permuted": as_obs(model(x)[:, perm])}
    obs["depends"] = _dependence(model, x)
    return obs


def _verdict_equivariant(obs, exp):
    _verdict_dependence(obs["depends"], tokens=True)
    if not close(obs["of_permuted"], obs["permuted"], 1e-4):
        raise Fail("permuting the tokens does not permute the output: heads split/merged in a scrambled "
                   "order "
                   "(view(b, h, n, hd) without transpose mixes tokens; use view(b, n, h, hd).transpose(1, 2) "
                   "or rearrange)")


@torch.no_grad()
def _probe_batch(ctx):
    """Sample 1 of a batch of 3 and the same sample alone; what the output depends on
    (:func:`_dependence`)."""
    model = _build(ctx)
    dim, n = ctx["dim"], ctx["n"]
    x = torch.randn(3, n, dim)
    obs = {"in_batch": as_obs(model(x)[1:2]), "alone": as_obs(model(x[1:2]))}
    obs["depends"] = _dependence(model, x)
    return obs


def _verdict_batch(obs, exp):
    _verdict_dependence(obs["depends"], tokens=False)
    if not close(obs["in_batch"], obs["alone"], 1e-5):
        raise Fail("sample 1 of a batch differs from the same sample alone: attention mixes the batch "
                   "(check the head split/merge reshapes)")


PART = CheckTable(
    "mha",
    [
        SubCheck("shape", "output shape (b, n, d)", 1, _probe_shape, _verdict_shape),
        SubCheck("values", "multi-head attention recomputed with your projections", 2, _probe_values,
                 _verdict_values),
        SubCheck("equivariant", "permuting tokens permutes the output (heads split per token)", 0.5,
                 _probe_equivariant, _verdict_equivariant),
        SubCheck("batch", "works at batch size 1 and treats samples independently", 0.5, _probe_batch,
                 _verdict_batch),
    ],
    CONFIG,
    {"shape '[": "view/reshape sizes must multiply to the tensor size",
     "size of tensor": "check the shapes of q, k, v: (b, h, n, head_dim)"},
    rationale=(
        "The attention values computed with the student's own projections are the result (2); the output "
        "shape (1). Permutation equivariance (0.5) names a head split that mixes tokens; batch "
        "independence (0.5). Both are credited only where the output is computed: it must change with "
        "the input x, with the module's weights (all moved at once) and, for equivariance, at a token "
        "with the other tokens (attention mixes them); a constant, an echo of x or a per-token map is "
        "trivially equivariant and batch-independent. The values need no such rule: they must equal "
        "attention computed from the given input and weights. Projections are found by their sizes "
        "(fused, separate, per head, in any container), so any layout of multi-head attention earns "
        "full marks."
    ),
    given=GIVEN,
)
