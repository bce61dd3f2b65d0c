"""mlp_field: ``MLPConditionalVectorField(dim, hidden_dim, class_dim, num_classes)``;
``x: (b, dim)``, ``t: (b,)`` or ``(b, 1, 1, 1)``, ``y: (b,)`` -> ``(b, dim)``.

The student's forward must equal ``mlp(cat(blocks))`` for some order of the three blocks
``[x, embedding(y), t]``, computed with the student's own MLP and embedding modules.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn

from ._core import Fail, Part, SubCheck, at_batch1, close, expect_shape


def _config(hidden: bool):
    if hidden:
        return {"seed": 12, "dim": 3, "hidden_dim": 16, "class_dim": 5, "num_classes": 4, "b": 6}
    return {"seed": 2, "dim": 2, "hidden_dim": 8, "class_dim": 3, "num_classes": 3, "b": 4}


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


def _values(ctx):
    model = _build(ctx)
    x, t, y = _inputs(ctx)
    out = model(x, t, y)
    emb, mlp = _parts(model)
    with torch.no_grad():
        blocks = {"x": x, "emb(y)": emb(y), "t": t.reshape(-1, 1)}
        for order in itertools.permutations(blocks):
            h = torch.cat([blocks[k] for k in order], dim=-1)
            if h.shape[-1] == _in_features(mlp) and close(out, mlp(h)):
                return
        if close(out, mlp(torch.cat([x, emb(y), torch.zeros_like(t).reshape(-1, 1)], -1))):
            raise Fail("the output does not depend on t: concatenate t (as a (b, 1) column)")
    raise Fail("values differ from mlp(cat([x, embedding(y), t])) computed with your modules")


def _in_features(mlp):
    for m in mlp.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
    return -1


def _t_shapes(ctx):
    model = _build(ctx)
    x, t, y = _inputs(ctx)
    a = model(x, t, y)
    c = model(x, t.reshape(-1, 1, 1, 1), y)
    if not close(c, a, 1e-6):
        raise Fail(f"t of shape (b, 1, 1, 1) gives {tuple(c.shape)} or other values: reshape t to (b, 1) "
                   "with t.reshape(-1, 1) whatever shape it comes in")


def _batch1(ctx):
    model = _build(ctx)
    x, t, y = _inputs(ctx, 1)
    for tt in (t, t.reshape(1, 1, 1, 1)):
        out = at_batch1(model, x, tt, y)
        expect_shape(out, (1, ctx["dim"]), f"output at batch size 1 (t {tuple(tt.shape)})",
                     "avoid .squeeze(): it also removes the batch dimension")


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
    y2 = torch.zeros_like(y)
    if close(model(x, t, y2), out, 1e-7):
        raise Fail("the output does not depend on the label y: use the embedding of y")


PART = Part(
    "mlp_field",
    [
        SubCheck("shape", "output shape (b, dim)", 1, _shape),
        SubCheck("values", "equals mlp(cat([x, embedding(y), t])) with your modules", 2, _values),
        SubCheck("t_shapes", "t of shape (b, 1, 1, 1) gives the same result as (b,)", 0.5, _t_shapes),
        SubCheck("batch1", "works at batch size 1", 0.5, _batch1),
        SubCheck("null", "null label (num_classes) accepted and labels used", 1, _null),
    ],
    _config,
    {"index out of range": "the null label num_classes needs num_classes + 1 embedding rows",
     "tensors must have same number of dimensions": "reshape t to (b, 1) before concatenating",
     "sizes of tensors must match": "each block must be (b, k): reshape t to (b, 1)"},
)
