"""dit_layer, dit and mnist_dit: properties of the DiT equations, independent of names,
norm type (LayerNorm / RMSNorm, affine or not), conditioning net (SiLU + Linear, Linear, MLP)
and the order of the six modulation chunks.

dit_layer, with ``x: (b, n, d)``, ``c: (b, d)``:
- identity at initialisation (adaLN-Zero);
- with the zero-initialised conditioning output replaced (forward hook) by one-hot blocks of
  ``d`` values: exactly two blocks (the gates) change the output, each gate's branch depends on
  x (``x * scale`` makes it constant when scale = 0), every other block changes the output
  once the gates are open (shift/scale used);
- with all parameters re-randomised: token-permutation equivariance (conditioning broadcast
  over tokens), per-sample conditioning (b == n so a wrong broadcast cannot hide), attention
  mixes tokens.

dit: the student's layers are replaced by recording test doubles, so ``sequence`` sees what
each layer received and returned (no layer is computed here). mnist_dit: the parameter count is
compared with the reference's, recorded in ``data/mnist_dit.json``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import _data
from ._core import (
    BATCH1_HINT,
    Fail,
    Part,
    SubCheck,
    at_batch1,
    close,
    expect_shape,
    max_err,
    rerandomize,
    with_t4,
    zero_parameters,
)

_BROADCAST_HINT = "broadcast the (b, d) conditioning over tokens with [:, None, :] (or unsqueeze(1))"


# ------------------------------------------------------------------------------ dit_layer


LAYER_CONFIG = {"seed": 5, "dim": 8, "heads": 2, "n": 4, "b": 4}


def _lbuild(ctx):
    return ctx.new(ctx["dim"], ctx["heads"])


def _cond_units(layer, dim):
    """The conditioning output layers: zero-initialised Linears whose output is k * dim wide
    (else a Linear producing 6 * dim). Returns a list of (module, number of d-blocks)."""
    zero = set(zero_parameters(layer))
    units = []
    for name, m in layer.named_modules():
        if isinstance(m, nn.Linear) and f"{name}.weight" in zero and m.out_features % dim == 0:
            units.append((m, m.out_features // dim))
    six = [u for u in units if u[1] == 6]
    if six:  # a zero-initialised inner layer of an MLP conditioning net is not an output
        return six[-1:]
    if not units:
        units = [(m, 6) for m in layer.modules() if isinstance(m, nn.Linear) and m.out_features == 6 * dim]
    return units


def _lshape(ctx):
    layer, b, n, d = _lbuild(ctx), ctx["b"], ctx["n"], ctx["dim"]
    expect_shape(layer(torch.randn(b, n, d), torch.randn(b, d)), (b, n, d))


@torch.no_grad()
def _identity(ctx):
    layer, b, n, d = _lbuild(ctx), ctx["b"], ctx["n"], ctx["dim"]
    x = torch.randn(b, n, d)
    out = layer(x, torch.randn(b, d))
    expect_shape(out, (b, n, d))
    if close(out, x, 1e-6) or _cond_units_zero(layer, d):
        return  # zero conditioning output but not the identity: the gates' mistake, charged there
    raise Fail("not the identity at initialisation: zero-initialise the last Linear of the conditioning "
               "network (adaLN-Zero: nn.init.zeros_ on its weight and bias)")


def _cond_units_zero(layer, d):
    zero = set(zero_parameters(layer))
    return any(isinstance(m, nn.Linear) and f"{n}.weight" in zero and m.out_features % d == 0
               for n, m in layer.named_modules())


class _Override:
    """Forward hooks that replace the conditioning outputs by a fixed pattern of d-blocks."""

    def __init__(self, units, dim):
        self.units, self.dim, self.values = units, dim, {}
        self.handles = [m.register_forward_hook(self._hook(i)) for i, (m, _) in enumerate(units)]

    def _hook(self, i):
        def hook(module, inputs, output):
            blocks = torch.zeros_like(output)
            for (u, j), v in self.values.items():
                if u == i:
                    blocks[..., j * self.dim:(j + 1) * self.dim] = v
            return blocks
        return hook

    def blocks(self):
        return [(i, j) for i, (_, k) in enumerate(self.units) for j in range(k)]

    def remove(self):
        for h in self.handles:
            h.remove()


GATES_UNUSED = ("with all modulation values zero the layer is not the identity: gates unused - multiply "
                "each branch by its gate, x = x + gate[:, None] * branch(...)")
SCALE_ONLY = ("with shift = scale = 0 the branch ignores x: modulation is x * scale + shift; use "
              "x * (1 + scale) + shift")


@torch.no_grad()
def _gate_probe(ctx):
    """``(gates, blocks, effect, problem)``: the modulation blocks that act as gates, all blocks,
    each block's effect on the output with the others zero, and the gates' mistake (or None).

    Tokens and samples are equally many (b == n) and the hooks write the same block values for
    every sample, so a wrong broadcast of the conditioning (the broadcast sub-check's) changes
    nothing here."""
    if "gates" in ctx.cache:
        return ctx.cache["gates"]
    d, n = ctx["dim"], ctx["n"]
    layer = _lbuild(ctx)
    units = _cond_units(layer, d)
    if not units:
        raise Fail("no conditioning output layer found (a Linear producing 6 * dim modulation values)")
    rerandomize(layer, ctx["seed"])
    hooks = _Override(units, d)
    try:
        x, c = torch.randn(n, n, d), torch.randn(n, d)
        hooks.values = {}
        base = layer(x, c)
        effect = {}
        for blk in hooks.blocks():
            hooks.values = {blk: 1.0}
            effect[blk] = layer(x, c) - base
    finally:
        hooks.remove()
    problem, gates = None, []
    if not close(base, x, 1e-6):
        problem = GATES_UNUSED
    else:
        gates = [blk for blk, e in effect.items() if float(e.abs().max()) > 1e-6]
        if len(gates) != 2:
            problem = (f"{len(gates)} of the {len(effect)} modulation blocks act as gates, expected 2 "
                       "(alpha1, alpha2): with gate = 0 a branch must contribute nothing")
        elif any(float((effect[g] - effect[g][:, :1]).abs().max()) < 1e-5 * (1 + float(effect[g].abs().max()))
                 for g in gates):
            problem = SCALE_ONLY
    ctx.cache["gates"] = (gates, list(effect), effect, problem)
    return ctx.cache["gates"]


def _gates(ctx):
    problem = _gate_probe(ctx)[3]
    if problem:
        raise Fail(problem)


UNUSED_BLOCK = ("a shift/scale block of the conditioning output is unused: modulate the normalised input "
                "of both branches, x * (1 + scale) + shift")


@torch.no_grad()
def _modulation(ctx):
    """Every shift/scale block changes the output once the gates are open (gates unused: the four
    blocks that change it are taken for shift and scale; the gates are the gates sub-check's)."""
    gates, blocks, effect, problem = _gate_probe(ctx)
    if problem == GATES_UNUSED:  # branches always open: 4 of the 6 blocks must act
        if sum(float(e.abs().max()) > 1e-6 for e in effect.values()) < len(blocks) - 2:
            raise Fail(UNUSED_BLOCK)
        return
    d, n = ctx["dim"], ctx["n"]
    layer = _lbuild(ctx)
    units = _cond_units(layer, d)
    rerandomize(layer, ctx["seed"])
    hooks = _Override(units, d)
    try:
        x, c = torch.randn(n, n, d), torch.randn(n, d)
        opened = {g: 1.0 for g in gates}
        hooks.values = dict(opened)
        base = layer(x, c)
        for blk in blocks:
            if blk in gates:
                continue
            hooks.values = {**opened, blk: 0.7}
            if max_err(layer(x, c), base) < 1e-6:
                raise Fail(UNUSED_BLOCK)
    finally:
        hooks.remove()


@torch.no_grad()
def _broadcast(ctx):
    d, n = ctx["dim"], ctx["n"]
    layer = _lbuild(ctx)
    rerandomize(layer, ctx["seed"])
    b = n  # b == n: a (b, d) tensor broadcast against (b, n, d) without [:, None] does not raise
    x, c = torch.randn(b, n, d), torch.randn(b, d)
    out = layer(x, c)
    expect_shape(out, (b, n, d))
    c2 = c.clone()
    c2[0] = torch.randn(d)
    out2 = layer(x, c2)
    if max_err(out2[1:], out[1:]) > 1e-5:
        raise Fail("changing the conditioning of sample 0 changes other samples: " + _BROADCAST_HINT)
    if max_err(out2[:1], out[:1]) < 1e-6:
        raise Fail("the output ignores the conditioning c")
    perm = torch.roll(torch.arange(n), 1)
    if not close(layer(x[:, perm], c), out[:, perm], 1e-4):
        raise Fail("permuting the tokens does not permute the output: the conditioning must be the same for "
                   "every token - " + _BROADCAST_HINT)


@torch.no_grad()
def _mixes(ctx):
    d, n = ctx["dim"], ctx["n"]
    layer = _lbuild(ctx)
    rerandomize(layer, ctx["seed"])
    x, c = torch.randn(1, n, d), torch.randn(1, d)
    x2 = x.clone()
    x2[0, 0] = torch.randn(d)
    if max_err(layer(x2, c)[:, 1:], layer(x, c)[:, 1:]) < 1e-6:
        raise Fail("tokens do not interact: apply the attention branch to the (modulated) tokens")


DIT_LAYER = Part(
    "dit_layer",
    [
        SubCheck("shape", "output shape (b, n, d)", 1, _lshape),
        SubCheck("identity", "identity at initialisation (adaLN-Zero)", 1, _identity),
        SubCheck("gates", "two gates scale the branches; modulation x * (1 + scale) + shift", 1, _gates),
        SubCheck("modulation", "shift and scale modulate both branches", 0.5, _modulation),
        SubCheck("broadcast", "conditioning per sample, broadcast over tokens", 1, _broadcast),
        SubCheck("mixes", "attention mixes tokens", 0.5, _mixes),
    ],
    LAYER_CONFIG,
    {"size of tensor": _BROADCAST_HINT},
    rationale=(
        "Output shape (1), identity at initialisation (1: adaLN-Zero is what makes deep stacks train), "
        "gates (1) and a per-sample conditioning broadcast over the tokens (1) each change what the block "
        "computes. That every shift/scale block is used (0.5) and that attention mixes tokens (0.5) are "
        "probed on a re-randomised layer and catch rarer mistakes."
    ),
)

# ------------------------------------------------------------------------------ dit


DIT_CONFIG = {"seed": 6, "depth": 2, "n": 4, "dim": 8, "heads": 2, "b": 4}


def _tbuild(ctx):
    return ctx.new(ctx["depth"], ctx["n"], ctx["dim"], heads=ctx["heads"])


def _pos(model, n, d, learned=True):
    """The positional encoding: a parameter of shape (n, d) or (1, n, d); with ``learned=False``
    also a buffer or plain tensor attribute (whether it is learned is the pos sub-check's)."""
    pool = list(model.parameters(recurse=False)) + list(model.parameters())
    if not learned:
        pool += list(model.buffers()) + [v for m in model.modules() for v in vars(m).values()
                                         if isinstance(v, torch.Tensor)]
    for p in pool:
        if p.dtype.is_floating_point and p.numel() == n * d and p.dim() in (2, 3) and \
                tuple(p.shape[-2:]) == (n, d):
            return p
    raise Fail(f"no positional encoding found: add a learned nn.Parameter of shape (n_tokens, dim) = "
               f"({n}, {d})")


def _layers(model, depth):
    """The student's ``depth`` layers: a ModuleList (or Sequential) child, searched among the
    direct children first (a layer's own Sequential may also have ``depth`` entries)."""
    for pool in (list(model.children()), list(model.modules())):
        for kind in (nn.ModuleList, nn.Sequential):
            for m in pool:
                if isinstance(m, kind) and len(m) == depth:
                    return list(m)
    raise Fail(f"no list of depth = {depth} layers found: build nn.ModuleList([... for _ in range(depth)])")


def _tshape(ctx):
    """b == n: a positional encoding broadcast over the wrong axis keeps the shape (it is the
    sequence sub-check's mistake)."""
    model, n, d = _tbuild(ctx), ctx["n"], ctx["dim"]
    expect_shape(model(torch.randn(n, n, d), torch.randn(n, d)), (n, n, d))


def _tpos(ctx):
    model, b, n, d = _tbuild(ctx), ctx["b"], ctx["n"], ctx["dim"]
    model(torch.randn(b, n, d), torch.randn(b, d))  # a stub's forward must not earn this
    _pos(model, n, d)


def _inplace(ctx):
    model, b, n, d = _tbuild(ctx), ctx["b"], ctx["n"], ctx["dim"]
    x = torch.randn(b, n, d)
    keep = x.clone()
    model(x, torch.randn(b, d))
    if max_err(x, keep) > 0:
        raise Fail("the input tensor was modified in place (x += pos?): add the positional encoding out of "
                   "place, x = x + pos")
    leaf = torch.randn(b, n, d, requires_grad=True)
    try:
        model(leaf, torch.randn(b, d)).sum().backward()
    except RuntimeError as e:
        if "in-place" in str(e) or "leaf" in str(e):
            raise Fail("positional encoding added in place (x += pos) fails on an input that requires grad: "
                       "use x = x + pos") from e
        raise
    if leaf.grad is None:
        raise Fail("no gradient reaches the input tokens")


ONE_LAYER = "only one layer is applied: feed each layer's output into the next, x = layer(x, c)"
NO_POS = "the positional encoding is not added to the tokens"
POS_AXIS = ("positional encoding broadcast over the wrong axis: add pos[None] (shape (1, n, d)) so "
            "every sample gets the same encoding per token")
NOT_SEQUENCE = "the output is not layers applied in sequence to x + pos (recomputed with your layers)"


def sequence_setup(ctx):
    """The student's model re-randomised, its layers, pos as (1, n, d), and inputs with b == n
    (so a wrong broadcast of pos cannot raise)."""
    depth, n, d = ctx["depth"], ctx["n"], ctx["dim"]
    model = _tbuild(ctx)
    layers = _layers(model, depth)
    if len({id(m) for m in layers}) != depth:
        raise Fail("the same layer object is repeated: build depth independent layers")
    rerandomize(model, ctx["seed"])
    pos = _pos(model, n, d, learned=False).reshape(1, n, d)
    return model, layers, pos, torch.randn(n, n, d), torch.randn(n, d)


class _RecordingLayer(nn.Module):
    """Stands in for layer ``k``: records ``(x, c)`` and returns ``x`` scaled and shifted by
    amounts of its own (so the chain of calls can be followed)."""

    def __init__(self, k, calls):
        super().__init__()
        self.k, self.calls = k, calls

    def forward(self, x, c, *args, **kwargs):
        out = x * (1.0 + 0.25 * (self.k + 1)) + 0.5 * (self.k + 1)
        self.calls.append((self.k, x, c, out))
        return out


def _container(model, layers):
    for m in model.modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) == len(layers) and \
                all(a is b for a, b in zip(m, layers)):
            return m
    raise Fail("no list of layers found")


@torch.no_grad()
def _sequence(ctx):
    model, layers, pos, x, c = sequence_setup(ctx)
    container, calls = _container(model, layers), []
    for k in range(len(layers)):
        container[k] = _RecordingLayer(k, calls)
    out = model(x.clone(), c)
    expect_shape(out, x.shape)

    def chained(first_input):
        """The layers called in order from ``first_input``, each on the previous one's output,
        all with c (what follows the last layer is the output sub-check's)."""
        if [k for k, *_ in calls] != list(range(len(layers))) or not close(calls[0][1], first_input, 1e-4):
            return False
        links = all(close(calls[i][1], calls[i - 1][3], 1e-4) for i in range(1, len(calls)))
        return links and all(ci.shape == c.shape and max_err(ci, c) == 0 for _, _, ci, _ in calls)

    if chained(x + pos):
        return
    ends = [call for call in calls if call[0] in (0, len(layers) - 1)]
    if calls and any(close(xi, x + pos, 1e-4) and close(calls[-1][3], o, 1e-4) for _, xi, _, o in ends):
        raise Fail(ONE_LAYER)
    if chained(x):
        raise Fail(NO_POS)
    if chained(x + pos.reshape(pos.shape[1], 1, pos.shape[2])):
        raise Fail(POS_AXIS)
    raise Fail(NOT_SEQUENCE)


EXTRA_AFTER = ("an extra module runs after the last layer: {names}: the DiffusionTransformer returns the "
               "last layer's output (the Depatchifier comes next)")
NOT_LAST = "the output is not the last layer's output: return x after the loop over the layers"


@torch.no_grad()
def _output(ctx):
    """The model returns its last layer's output; modules that ran after it are named."""
    depth, n, d = ctx["depth"], ctx["n"], ctx["dim"]
    model = _tbuild(ctx)
    layers = _layers(model, depth)
    last = layers[-1]
    rerandomize(model, ctx["seed"])
    inside = {id(m) for layer in layers for m in layer.modules()}
    order, seen = [], {}

    def hook(name):
        def record(module, inputs, output):
            order.append(name)
            if module is last:
                seen["last"] = (len(order), output)
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
               if name and (m is last or id(m) not in inside)]
    try:
        out = model(torch.randn(n, n, d), torch.randn(n, d))
    finally:
        for h in handles:
            h.remove()
    if "last" not in seen:
        raise Fail("the last layer never ran: apply every layer, x = layer(x, c)")
    at, last_out = seen["last"]
    if isinstance(last_out, torch.Tensor) and close(out, last_out, 1e-5):
        return
    after = [f"{name} ({type(model.get_submodule(name)).__name__})" for name in order[at:]]
    raise Fail(EXTRA_AFTER.format(names=", ".join(after)) if after else NOT_LAST)


DIT = Part(
    "dit",
    [
        SubCheck("shape", "output shape (b, n, d)", 1, _tshape),
        SubCheck("pos", "learned positional encoding of shape (n, d)", 0.5, _tpos),
        SubCheck("inplace", "input left unchanged (works on a tensor that requires grad)", 1, _inplace),
        SubCheck("sequence", "depth layers applied in sequence to x + pos (broadcast over the batch)", 1.5,
                 _sequence),
        SubCheck("output", "returns the last layer's output", 0.25, _output),
    ],
    DIT_CONFIG,
    {"size of tensor": "add pos[None] (1, n, d) to x (b, n, d)",
     "leaf variable": "add the positional encoding out of place: x = x + self.pos"},
    rationale=(
        "Applying the layers in sequence to x + pos is the computation (1.5). Leaving the input unchanged "
        "(1): x += pos breaks training on a tensor that requires grad. Output shape (1). A learned "
        "positional encoding (0.5). Returning the last layer's output (0.25): an extra module after it "
        "does not break the model, it only adds what the Depatchifier already does."
    ),
)

# ------------------------------------------------------------------------------ mnist_dit


MNIST_CONFIG = {"seed": 9, "variants": [(8, 1, 16, 2)], "b": 2}


def _mbuild(ctx, v=None):
    p, layers, dim, heads = v or ctx["variants"][0]
    return ctx.new(patch_size=p, num_layers=layers, dim=dim, heads=heads)


def _minputs(b):
    x = torch.randn(b, 1, 32, 32)
    t = torch.rand(b)
    y = torch.randint(0, 10, (b,))  # the null label 10 has its own sub-check
    return x, t, y


@torch.no_grad()
def _mshape(ctx):
    b = ctx["b"]
    for v in ctx["variants"]:
        model = _mbuild(ctx, v)
        expect_shape(model(*_minputs(b)), (b, 1, 32, 32), f"output for patch size {v[0]}")


def _fresh(model, x, t, y):
    """``model`` on copies of the inputs: a model that modifies them in place (the inplace
    sub-check's mistake) still sees the same inputs at every call."""
    return model(x.clone(), t.clone(), y.clone())


@torch.no_grad()
def _mtimes(ctx):
    model, b = _mbuild(ctx), ctx["b"]
    rerandomize(model, ctx["seed"])
    x, t, y = _minputs(b)
    a = _fresh(model, x, t, y)
    c = with_t4(_fresh, model, x, t.reshape(b, 1, 1, 1), y)
    if not close(c, a, 1e-5):
        raise Fail("t of shape (b, 1, 1, 1) gives another result than t of shape (b,): reshape t to (b,)")


@torch.no_grad()
def _mbatch1(ctx):
    """Batch size 1 with t of shape (1,) (the (b, 1, 1, 1) shape is t_shapes')."""
    model = _mbuild(ctx)
    x, t, y = _minputs(1)
    out = at_batch1(model, x, t, y)
    expect_shape(out, (1, 1, 32, 32), "output at batch size 1 (t of shape (1,))", BATCH1_HINT)


@torch.no_grad()
def _mnull(ctx):
    model, b = _mbuild(ctx), ctx["b"]
    x, t, _ = _minputs(b)
    try:
        out = model(x, t, torch.full((b,), 10, dtype=torch.long))
    except IndexError as e:
        raise Fail(f"null label 10 fails ({e}): the label embedding needs 11 rows, "
                   "nn.Embedding(11, dim)") from e
    expect_shape(out, (b, 1, 32, 32))


@torch.no_grad()
def _mcond(ctx):
    model, b = _mbuild(ctx), ctx["b"]
    rerandomize(model, ctx["seed"])
    x, t, y = _minputs(b)
    out = _fresh(model, x, t, y)
    if max_err(_fresh(model, x, t, (y + 1) % 10), out) < 1e-6:
        raise Fail("the output does not depend on the label y: add the label embedding to the conditioning")
    if max_err(_fresh(model, x, (t + 0.3) % 1, y), out) < 1e-6:
        raise Fail("the output does not depend on t: add the time embedding to the conditioning")
    if max_err(_fresh(model, torch.randn_like(x), t, y), out) < 1e-6:
        raise Fail("the output does not depend on x")
    x2 = x.clone()
    x2[0] = torch.randn(1, 32, 32)
    if max_err(_fresh(model, x2, t, y)[1:], out[1:]) > 1e-5:
        raise Fail("changing sample 0 changes other samples: keep samples independent")


def _minplace(ctx):
    model, b = _mbuild(ctx), ctx["b"]
    x, t, y = _minputs(b)
    keep = (x.clone(), t.clone(), y.clone())
    model(x, t, y)
    for name, a, k in zip("xty", (x, t, y), keep):
        if a.shape != k.shape or max_err(a.double(), k.double()) > 0:
            raise Fail(f"the input {name} was modified in place: work on new tensors")
    leaf = torch.randn(b, 1, 32, 32, requires_grad=True)
    model(leaf, t, y).sum().backward()


def count_params(ctx, want):
    """The parameter count of the constructed model. The forward must be written (a stub's
    ``NotImplementedError`` earns nothing here), but whether it runs is the other sub-checks'
    business: a forward that fails (at batch size 1, say) is not charged again here."""
    model = _mbuild(ctx)
    try:
        with torch.no_grad():
            model(*_minputs(2))
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001 - charged by shape / batch1 / ..., not by the parameter count
        pass
    got = sum(q.numel() for q in model.parameters())
    if not 0.3 * want <= got <= 3 * want:
        raise Fail(f"{got} parameters, expected about {want} for these sizes (0.3x to 3x): check the layer "
                   "widths (MLP [dim, 4 dim, dim], 6 dim modulation values, depth layers)")


def _mparams(ctx):
    count_params(ctx, int(_data.load("mnist_dit", ctx.cfg)["values"]["params"]))


MNIST_DIT = Part(
    "mnist_dit",
    [
        SubCheck("shape", "output shape (b, 1, 32, 32)", 1, _mshape),
        SubCheck("t_shapes", "t of shape (b, 1, 1, 1) gives the same result as (b,)", 0.5, _mtimes),
        SubCheck("batch1", "works at batch size 1", 0.5, _mbatch1),
        SubCheck("null", "null label 10 accepted (11 embedding rows)", 1, _mnull),
        SubCheck("conditioning", "output depends on x, y and t, per sample", 1, _mcond),
        SubCheck("inplace", "inputs left unchanged", 0.5, _minplace),
        SubCheck("params", "parameter count sane for the sizes", 0.5, _mparams),
    ],
    MNIST_CONFIG,
    {"index out of range": "the label embedding needs 11 rows (null label 10)",
     "size of tensor": "check shapes: t must become (b,) and the conditioning (b, dim)"},
    rationale=(
        "The parts are graded on their own; here what the assembly adds: the output shape (1), the null "
        "label's row (1) and conditioning on x, y and t per sample (1). Accepting t of shape (b, 1, 1, "
        "1), batch size 1, inputs left unchanged and a parameter count in range (0.5 each) are "
        "conventions and sanity checks."
    ),
)
