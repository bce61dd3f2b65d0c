"""mlp_field: ``MLPConditionalVectorField(dim, hidden_dim, class_dim, num_classes)``;
``x: (b, dim)``, ``t: (b,)`` or ``(b, 1, 1, 1)``, ``y: (b,)`` -> ``(b, dim)``.

The student's forward must equal ``mlp(cat(blocks))`` for some order of the three blocks
``[x, embedding(y), t]``: the recorded canonical weights are written into the student's own
embedding and MLP (the first layer's columns arranged for each block order in turn) and the
student's forward on recorded inputs is compared with the reference's recorded output.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn

from . import _data
from ._core import BATCH1_HINT, Fail, Part, SubCheck, at_batch1, close, expect_shape, shape_of, with_t4

CONFIG = {"seed": 2, "dim": 2, "hidden_dim": 8, "class_dim": 3, "num_classes": 3, "b": 4}
NO_T = "the output does not depend on t: concatenate t (as a (b, 1) column)"
NO_Y = "the output does not depend on the label y: concatenate the embedding of y"
FINAL = "values differ from mlp(cat([x, embedding(y), t])) computed with your modules"


def _build(ctx):
    return ctx.new(ctx["dim"], ctx["hidden_dim"], ctx["class_dim"], ctx["num_classes"])


def _inputs(ctx, b=None):
    b = ctx["b"] if b is None else b
    x = torch.randn(b, ctx["dim"])
    t = torch.rand(b)
    y = torch.randint(0, ctx["num_classes"], (b,))  # the null label has its own sub-check
    return x, t, y


def _parts(model):
    """(embedding, mlp): the student's nn.Embedding and the child module holding the Linears."""
    embs = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if len(embs) != 1:
        raise Fail(f"expected one nn.Embedding for the labels, found {len(embs)}")
    emb = embs[0]
    children = [m for m in model.children() if m is not emb and any(
        isinstance(s, nn.Linear) for s in m.modules())]
    if len(children) != 1:
        raise Fail("expected one MLP module (self.mlp) next to the label embedding")
    return emb, children[0]


def _shape(ctx):
    model = _build(ctx)
    x, t, y = _inputs(ctx)
    expect_shape(model(x, t, y), (ctx["b"], ctx["dim"]), hint="u_t(x|y) has the shape of x: (b, dim)")


def block_widths(ctx):
    """The widths of the blocks ``x``, ``emb(y)``, ``t`` of the MLP's input."""
    return {"x": ctx["dim"], "emb(y)": ctx["class_dim"], "t": 1}


def linears(mlp):
    return [m for m in mlp.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def _values(ctx):
    model = _build(ctx)
    data = _data.load("mlp_field", ctx.cfg)
    x, t = _data.tensor(data, "x"), _data.tensor(data, "t")
    y = _data.tensor(data, "y").long()
    model(x, t, y)
    emb, mlp = _parts(model)
    lins = linears(mlp)
    weights = [_data.tensor(data, f"w{i}") for i in range(int(data["values"]["layers"]))]
    if [tuple(m.weight.shape) for m in lins] != [tuple(w.shape) for w in weights]:
        raise Fail("the MLP's Linear layers are not the notebook's MLP([dim + class_dim + 1, hidden_dim, "
                   "hidden_dim, dim]): keep the given constructor")
    table = _data.tensor(data, "emb")
    rows = min(emb.weight.shape[0], table.shape[0])
    if emb.weight.shape[1] != table.shape[1] or rows < ctx["num_classes"]:
        raise Fail(FINAL)
    emb.weight[:rows] = table[:rows]
    for i, m in enumerate(lins):
        m.weight.copy_(weights[i])
        if m.bias is not None:
            m.bias.copy_(_data.tensor(data, f"b{i}"))
    # the first layer's columns, block by block, in the notebook's order [x, emb(y), t]
    widths, start, cols = block_widths(ctx), 0, {}
    for k, n in widths.items():
        cols[k] = weights[0][:, start:start + n]
        start += n
    ok = _data.tensor(data, "ok", torch.float64)
    for order in itertools.permutations(widths):
        lins[0].weight.copy_(torch.cat([cols[k] for k in order], dim=1))
        if close(model(x, t, y), ok):
            return
    lins[0].weight.copy_(weights[0])
    out = model(x, t, y)
    if close(out, _data.tensor(data, "no_t", torch.float64)):
        raise Fail(NO_T)
    if close(model(x, t, (y + 1) % ctx["num_classes"]), out, 1e-7):
        raise Fail(NO_Y)
    raise Fail(FINAL)


def _t_shapes(ctx):
    model = _build(ctx)
    x, t, y = _inputs(ctx)
    a = model(x, t, y)
    c = with_t4(model, x, t.reshape(-1, 1, 1, 1), y)
    if not close(c, a, 1e-6):
        raise Fail(f"t of shape (b, 1, 1, 1) gives {shape_of(c)} or other values: reshape t to (b, 1) "
                   "with t.reshape(-1, 1) whatever shape it comes in")


def _batch1(ctx):
    """Batch size 1 with t of shape (1,) (the (b, 1, 1, 1) shape is t_shapes')."""
    model = _build(ctx)
    x, t, y = _inputs(ctx, 1)
    out = at_batch1(model, x, t, y)
    expect_shape(out, (1, ctx["dim"]), "output at batch size 1 (t of shape (1,))", BATCH1_HINT)


def _null(ctx):
    model = _build(ctx)
    x, t, _ = _inputs(ctx)
    y = torch.full((ctx["b"],), ctx["num_classes"], dtype=torch.long)
    try:
        out = model(x, t, y)
    except IndexError as e:
        raise Fail(f"null label {ctx['num_classes']} fails ({e}): the embedding needs num_classes + 1 "
                   "rows") from e
    expect_shape(out, (ctx["b"], ctx["dim"]))


PART = Part(
    "mlp_field",
    [
        SubCheck("shape", "output shape (b, dim)", 1, _shape),
        SubCheck("values", "equals mlp(cat of x, embedding(y), t) with your modules (any block order)", 2,
                 _values),
        SubCheck("t_shapes", "t of shape (b, 1, 1, 1) gives the same result as (b,)", 0.5, _t_shapes),
        SubCheck("batch1", "works at batch size 1", 0.5, _batch1),
        SubCheck("null", "null label (num_classes) accepted", 1, _null),
    ],
    CONFIG,
    {"index out of range": "the null label num_classes needs num_classes + 1 embedding rows",
     "tensors must have same number of dimensions": "reshape t to (b, 1) before concatenating",
     "sizes of tensors must match": "each block must be (b, k): reshape t to (b, 1)"},
    rationale=(
        "The values are the result (2). The output shape (1) is what the sampler needs and the null "
        "label's row (1) is what guidance needs. Accepting t of shape (b, 1, 1, 1) and batch size 1 are "
        "conventions the docstring pins that leave the math alone (0.5 each)."
    ),
)
