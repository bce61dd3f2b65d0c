"""mlp_field: ``MLPConditionalVectorField(dim, hidden_dim, class_dim, num_classes)``;
``x: (b, dim)``, ``t: (b,)`` or ``(b, 1, 1, 1)``, ``y: (b,)`` -> ``(b, dim)``.

The student's forward must equal ``mlp(cat(blocks))`` for some order of the three blocks
``[x, embedding(y), t]``: the given canonical weights are written into the student's own
embedding and MLP (the first layer's columns arranged for each block order in turn), the probe
reports the student's forward on the given inputs for every order, and the verdict compares them
with the reference's output (recorded: ``data/mlp_field.json``; graded: computed by the judge).
"""

from __future__ import annotations

import itertools

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

CONFIG = {"seed": 2, "dim": 2, "hidden_dim": 8, "class_dim": 3, "num_classes": 3, "b": 4}
LAYERS = 3  # Linear layers of the notebook's MLP([dim + class_dim + 1, hidden_dim, hidden_dim, dim])
GIVEN = ("x", "t", "y", "emb", "layers") + tuple(f"{k}{i}" for i in range(LAYERS) for k in ("w", "b"))
# the inputs x (b, dim), t (b,), y (b,); the canonical embedding table (num_classes + 1, class_dim),
# the number of Linear layers and their weights w{i} (out, in) and biases b{i} (out,)
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


def _probe_shape(ctx):
    model = _build(ctx)
    x, t, y = _inputs(ctx)
    return {"out": as_obs(model(x, t, y))}


def _verdict_shape(obs, exp):
    expect_shape(obs["out"], (exp["b"], exp["dim"]), hint="u_t(x|y) has the shape of x: (b, dim)")


def block_widths(cfg):
    """The widths of the blocks ``x``, ``emb(y)``, ``t`` of the MLP's input (``cfg``: a config or a
    context)."""
    return {"x": cfg["dim"], "emb(y)": cfg["class_dim"], "t": 1}


ORDERS = list(itertools.permutations(block_widths(CONFIG)))
"""The block orders of the first layer's input, the notebook's ``(x, emb(y), t)`` first."""


def linears(mlp):
    return [m for m in mlp.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def _probe_values(ctx):
    """The student's layer shapes; when the given weights fit them, the forward on the given
    inputs with the given weights, the first layer's columns arranged for each block order of
    :data:`ORDERS` in turn (``outs``), and with the notebook's order on labels ``y + 1``
    (``shifted``)."""
    model = _build(ctx)
    x, t, y = ctx.tensor("x"), ctx.tensor("t"), ctx.tensor("y").long()
    model(x, t, y)
    emb, mlp = _parts(model)
    lins = linears(mlp)
    obs = {"linears": [list(m.weight.shape) for m in lins], "emb": list(emb.weight.shape), "outs": None,
           "shifted": None}
    weights = [ctx.tensor(f"w{i}") for i in range(int(ctx.value("layers")))]
    table = ctx.tensor("emb")
    rows = min(emb.weight.shape[0], table.shape[0])
    if [tuple(m.weight.shape) for m in lins] != [tuple(w.shape) for w in weights] or \
            emb.weight.shape[1] != table.shape[1] or rows < ctx["num_classes"]:
        return obs  # the verdict names what does not fit
    emb.weight[:rows] = table[:rows]
    for i, m in enumerate(lins):
        m.weight.copy_(weights[i])
        if m.bias is not None:
            m.bias.copy_(ctx.tensor(f"b{i}"))
    # the first layer's columns, block by block, in the notebook's order [x, emb(y), t]
    widths, start, cols = block_widths(ctx), 0, {}
    for k, n in widths.items():
        cols[k] = weights[0][:, start:start + n]
        start += n
    outs = []
    for order in ORDERS:
        lins[0].weight.copy_(torch.cat([cols[k] for k in order], dim=1))
        outs.append(as_obs(model(x, t, y)))
    lins[0].weight.copy_(weights[0])
    obs["outs"] = outs
    obs["shifted"] = as_obs(model(x, t, (y + 1) % ctx["num_classes"]))
    return obs


def _verdict_values(obs, exp):
    shapes = [list(exp.tensor(f"w{i}").shape) for i in range(int(exp.value("layers")))]
    if obs["linears"] != shapes:
        raise Fail("the MLP's Linear layers are not the notebook's MLP([dim + class_dim + 1, hidden_dim, "
                   "hidden_dim, dim]): keep the given constructor")
    if obs["outs"] is None:  # an embedding table that does not fit the canonical one
        raise Fail(FINAL)
    ok = exp.tensor("ok")
    if any(close(out, ok) for out in obs["outs"]):
        return
    out = obs["outs"][0]  # the weights as given: the notebook's order
    if close(out, exp.tensor("no_t")):
        raise Fail(NO_T)
    if close(obs["shifted"], out, 1e-7):
        raise Fail(NO_Y)
    raise Fail(FINAL)


def _dependence(ctx, model, x, t, y):
    """What :func:`expect_dependence` reads: the model on ``(x, t, y)``, on another ``x`` drawn from
    the part's own generator, and with its parameters nudged."""
    other = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(ctx["seed"])))
    return dependence(model, (x, t, y), {"x": (other, t, y)}, list(model.parameters()), seed=int(ctx["seed"]))


def _probe_t_shapes(ctx):
    model = _build(ctx)
    x, t, y = _inputs(ctx)
    a = model(x, t, y)
    return {"b_": as_obs(a), "b111": as_obs(with_t4(model, x, t.reshape(-1, 1, 1, 1), y)),
            "dep": _dependence(ctx, model, x, t, y)}


def _verdict_t_shapes(obs, exp):
    expect_dependence(obs["dep"], ("x",))
    c = obs["b111"]
    if not close(c, obs["b_"], 1e-6):
        raise Fail(f"t of shape (b, 1, 1, 1) gives {shape_of(c)} or other values: reshape t to (b, 1) "
                   "with t.reshape(-1, 1) whatever shape it comes in")


def _probe_batch1(ctx):
    """Batch size 1 with t of shape (1,) (the (b, 1, 1, 1) shape is t_shapes')."""
    model = _build(ctx)
    x, t, y = _inputs(ctx, 1)
    return {"out": as_obs(at_batch1(model, x, t, y)), "dep": _dependence(ctx, model, x, t, y)}


def _verdict_batch1(obs, exp):
    expect_dependence(obs["dep"], ("x",))
    expect_shape(obs["out"], (1, exp["dim"]), "output at batch size 1 (t of shape (1,))", BATCH1_HINT)


def _probe_null(ctx):
    """The output on labels that are all the null label ``num_classes``, or the text of the
    IndexError it raised."""
    model = _build(ctx)
    x, t, _ = _inputs(ctx)
    y = torch.full((ctx["b"],), ctx["num_classes"], dtype=torch.long)
    try:
        out = as_obs(model(x, t, y))
    except IndexError as e:
        return {"out": None, "index_error": str(e), "dep": None}
    return {"out": out, "index_error": None, "dep": _dependence(ctx, model, x, t, y)}


def _verdict_null(obs, exp):
    if obs["index_error"] is not None:
        raise Fail(f"null label {exp['num_classes']} fails ({obs['index_error']}): the embedding needs "
                   "num_classes + 1 rows")
    expect_dependence(obs["dep"], ("x",))
    expect_shape(obs["out"], (exp["b"], exp["dim"]))


PART = CheckTable(
    "mlp_field",
    [
        SubCheck("shape", "output shape (b, dim)", 1, _probe_shape, _verdict_shape),
        SubCheck("values", "equals mlp(cat of x, embedding(y), t) with your modules (any block order)", 2,
                 _probe_values, _verdict_values),
        SubCheck("t_shapes", "t of shape (b, 1, 1, 1) gives the same result as (b,)", 0.5, _probe_t_shapes,
                 _verdict_t_shapes),
        SubCheck("batch1", "works at batch size 1", 0.5, _probe_batch1, _verdict_batch1),
        SubCheck("null", "null label (num_classes) accepted", 1, _probe_null, _verdict_null),
    ],
    CONFIG,
    {"index out of range": "the null label num_classes needs num_classes + 1 embedding rows",
     "tensors must have same number of dimensions": "reshape t to (b, 1) before concatenating",
     "sizes of tensors must match": "each block must be (b, k): reshape t to (b, 1)"},
    rationale=(
        "The values are the result (2). The output shape (1) is what the sampler needs and the null "
        "label's row (1) is what guidance needs. Accepting t of shape (b, 1, 1, 1) and batch size 1 are "
        "conventions the docstring pins that leave the math alone (0.5 each). A property is credited only "
        "where the output carries it: in t_shapes, batch1 and null the output must be a function of the "
        "inputs (the same inputs twice give the same output) computed by the module (it changes with the "
        "sample x and with the module's parameters), so zeros, a constant, noise or x echoed earn the "
        "shape's share at most. Whether the output depends on t and on the label is the values "
        "sub-check's finding (the reference's output with the given weights; its messages name a missing "
        "t or label): a field that ignores t or the label is charged there once, not again in t_shapes "
        "or null."
    ),
    given=GIVEN,
)
