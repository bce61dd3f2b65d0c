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
compared with the reference's (an expectation: recorded in ``data/mnist_dit.json``, the judge's
own recording when graded).

A property is credited only where the output carries it: every sub-check but ``shape`` first
requires the re-randomised module's output to be a deterministic function of x that changes when
the weights do (:func:`_require_responds`). Each part is graded on its own code: a component it
composes that raises (a DiT layer; the model's time encoder, patchifier, trunk, depatchifier),
in its forward or its constructor, is replaced by a test double of the same interface and a
:class:`TestDouble` note under each sub-check says which and why.

Every sub-check is a probe (runs the student's code, reports outputs, recorded layer calls,
counts) and a pure verdict on that report; dit_layer and dit need no recording (their verdicts
compare the student's outputs with each other), mnist_dit's probes get no given inputs.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._core import (
    BATCH1_HINT,
    CheckTable,
    Expect,
    Fail,
    SubCheck,
    as_obs,
    at_batch1,
    close,
    expect_dependence,
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


def _failed(verdict, obs, ctx) -> bool:
    """Whether ``verdict`` already fails on what the probe observed so far: a probe stops there and
    runs no more of the student's code (the mistake found first is the one reported, and a later
    call cannot raise over it). A verdict reads its observation's keys in the order the probe
    fills them in, so a key or list entry not observed yet (``LookupError``) means every test so far
    passed."""
    try:
        verdict(obs, Expect(ctx.cfg))
    except Fail:
        return True
    except LookupError:
        return False
    except Exception:  # noqa: BLE001 - a report the verdict cannot read: stop, the judge says it is malformed
        return True
    return False


# ------------------------------------------------------------------ the output carries the property

@torch.no_grad()
def _responses(model, seed, call, x, x2) -> dict:
    """What the dependence rule needs (:func:`_require_responds`), in the report form of
    :func:`cfgflow.checks._core.dependence`: ``call(model, x)`` with the parameters re-randomised
    (``base``; zero-initialised layers would hide the computation), the same again, on another
    input ``x2`` and with the parameters re-randomised once more (``weights``). ``call`` copies
    its inputs (a model that modifies them in place sees the same inputs every time); the
    caller's random numbers are left as they were."""
    with torch.random.fork_rng(devices=[]):
        rerandomize(model, seed)
        out, again, other_x = call(model, x), call(model, x), call(model, x2)
        rerandomize(model, seed + 1)
        other_w = call(model, x)
    n_weights = sum(1 for p in model.parameters() if p.dtype.is_floating_point)
    return {"base": as_obs(out), "again": as_obs(again), "changes": {"x": as_obs(other_x)},
            "weights": as_obs(other_w), "n_weights": n_weights}


def _safe_responses(*args):
    """:func:`_responses`, or None when the student's code raises there (then no rule applies: the
    sub-check's own probe runs that code and is charged with the error, as before)."""
    try:
        return _responses(*args)
    except Exception:  # noqa: BLE001 - charged by the sub-check's own probe
        return None


def _require_responds(r) -> None:
    """The rule of every sub-check but ``shape`` (a property is credited only where the output
    carries it): the output is a deterministic function of x that changes when the weights do
    (:func:`cfgflow.checks._core.expect_dependence`). ``r`` is :func:`_responses`'s report (None:
    the forward raised there; a non-tensor output: the shape sub-checks' business)."""
    if r is not None:
        expect_dependence(r, on=("x",))


def _gated(r) -> bool:
    """Whether the dependence rule already fails on ``r``: the probe then runs nothing more."""
    try:
        _require_responds(r)
    except Fail:
        return True
    return False


def _lresponds(ctx):
    """The dependence report of a fresh layer on ``x: (n, n, d)``, ``c: (n, d)`` (drawn from a
    generator of its own), shared by the layer's probes."""
    if "responds" not in ctx.cache:
        d, n = ctx["dim"], ctx["n"]
        g = torch.Generator().manual_seed(int(ctx["seed"]) + 101)
        x, x2 = torch.randn(n, n, d, generator=g), torch.randn(n, n, d, generator=g)
        c = torch.randn(n, d, generator=g)
        ctx.cache["responds"] = _safe_responses(_lbuild(ctx), ctx["seed"] + 1,
                                                lambda m, xi: m(xi.clone(), c.clone()), x, x2)
    return ctx.cache["responds"]


def _probe_lshape(ctx):
    layer, b, n, d = _lbuild(ctx), ctx["b"], ctx["n"], ctx["dim"]
    return {"out": as_obs(layer(torch.randn(b, n, d), torch.randn(b, d)))}


def _verdict_lshape(obs, exp):
    expect_shape(obs["out"], (exp["b"], exp["n"], exp["dim"]))


@torch.no_grad()
def _probe_identity(ctx):
    """The freshly built layer's output on x: (b, n, d) and whether its conditioning output layer
    is zero-initialised."""
    r = _lresponds(ctx)
    if _gated(r):
        return {"responds": r}
    layer, b, n, d = _lbuild(ctx), ctx["b"], ctx["n"], ctx["dim"]
    x = torch.randn(b, n, d)
    out = layer(x, torch.randn(b, d))
    return {"responds": r, "x": x, "out": as_obs(out), "cond_zero": _cond_units_zero(layer, d)}


def _verdict_identity(obs, exp):
    _require_responds(obs["responds"])
    expect_shape(obs["out"], (exp["b"], exp["n"], exp["dim"]))
    if close(obs["out"], obs["x"], 1e-6) or obs["cond_zero"]:
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
def _gate_data(ctx):
    """The re-randomised layer's output with every modulation block zero (``base``) and each
    block's effect on it with that block one and the others zero (``effects``, in the order of
    :meth:`_Override.blocks`), on ``x: (n, n, d)``; shared by the gates and modulation probes.

    Tokens and samples are equally many (b == n) and the hooks write the same block values for
    every sample, so a wrong broadcast of the conditioning (the broadcast sub-check's) changes
    nothing here."""
    if "gates" in ctx.cache:
        return ctx.cache["gates"]
    r = _lresponds(ctx)
    if _gated(r):
        ctx.cache["gates"] = {"responds": r}
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
        effects = []
        for blk in hooks.blocks():
            hooks.values = {blk: 1.0}
            effects.append(layer(x, c) - base)
    finally:
        hooks.remove()
    ctx.cache["gates"] = {"responds": r, "x": x, "base": as_obs(base), "effects": effects}
    return ctx.cache["gates"]


def _gate_problem(data):
    """``(gates, problem)`` from :func:`_gate_data`'s observation: the indices of the blocks that
    act as gates and the gates' mistake (or None)."""
    x, base, effects = data["x"], data["base"], data["effects"]
    if not close(base, x, 1e-6):
        return [], GATES_UNUSED
    gates = [i for i, e in enumerate(effects) if float(e.abs().max()) > 1e-6]
    if len(gates) != 2:
        return gates, (f"{len(gates)} of the {len(effects)} modulation blocks act as gates, expected 2 "
                       "(alpha1, alpha2): with gate = 0 a branch must contribute nothing")
    if any(float((effects[g] - effects[g][:, :1]).abs().max()) < 1e-5 * (1 + float(effects[g].abs().max()))
           for g in gates):
        return gates, SCALE_ONLY
    return gates, None


def _probe_gates(ctx):
    return _gate_data(ctx)


def _verdict_gates(obs, exp):
    _require_responds(obs["responds"])
    problem = _gate_problem(obs)[1]
    if problem:
        raise Fail(problem)


UNUSED_BLOCK = ("a shift/scale block of the conditioning output is unused: modulate the normalised input "
                "of both branches, x * (1 + scale) + shift")


def _unused(moved, opened) -> bool:
    """A block whose value does not move the output with the gates open."""
    return max_err(moved, opened) < 1e-6


@torch.no_grad()
def _probe_modulation(ctx):
    """The gates probe's observation, and with the gates open (one) on a fresh ``x: (n, n, d)``:
    the output (``opened``) and the output with each other block at 0.7 as well (``moved``, up to
    the first block that changes nothing). Gates unused: nothing more (the branches are always
    open; the verdict counts the blocks that act)."""
    data = _gate_data(ctx)
    obs = dict(data)
    if _gated(data["responds"]):
        return obs
    gates, problem = _gate_problem(data)
    if problem == GATES_UNUSED:
        return obs
    d, n = ctx["dim"], ctx["n"]
    layer = _lbuild(ctx)
    units = _cond_units(layer, d)
    rerandomize(layer, ctx["seed"])
    hooks = _Override(units, d)
    try:
        x, c = torch.randn(n, n, d), torch.randn(n, d)
        blocks = hooks.blocks()
        opened = {blocks[g]: 1.0 for g in gates}
        hooks.values = dict(opened)
        obs["opened"] = base = as_obs(layer(x, c))
        obs["moved"] = []
        for i, blk in enumerate(blocks):
            if i in gates:
                continue
            hooks.values = {**opened, blk: 0.7}
            obs["moved"].append(as_obs(layer(x, c)))
            if _unused(obs["moved"][-1], base):
                break
    finally:
        hooks.remove()
    return obs


def _verdict_modulation(obs, exp):
    """Every shift/scale block changes the output once the gates are open (gates unused: the four
    blocks that change it are taken for shift and scale; the gates are the gates sub-check's)."""
    _require_responds(obs["responds"])
    gates, problem = _gate_problem(obs)
    effects = obs["effects"]
    if problem == GATES_UNUSED:  # branches always open: 4 of the 6 blocks must act
        if sum(float(e.abs().max()) > 1e-6 for e in effects) < len(effects) - 2:
            raise Fail(UNUSED_BLOCK)
        return
    if len(obs["moved"]) != len(effects) - len(gates) or \
            any(_unused(moved, obs["opened"]) for moved in obs["moved"]):
        raise Fail(UNUSED_BLOCK)


@torch.no_grad()
def _probe_broadcast(ctx):
    """The re-randomised layer on ``x: (n, n, d)`` (b == n: a (b, d) tensor broadcast against
    (b, n, d) without [:, None] does not raise): the output, the output with sample 0's
    conditioning changed, the output on the tokens permuted."""
    d, n = ctx["dim"], ctx["n"]
    layer = _lbuild(ctx)
    rerandomize(layer, ctx["seed"])
    b = n
    x, c = torch.randn(b, n, d), torch.randn(b, d)
    obs = {"responds": _lresponds(ctx)}
    if _gated(obs["responds"]):
        return obs
    obs["out"] = as_obs(layer(x, c))
    if _failed(_verdict_broadcast, obs, ctx):
        return obs
    c2 = c.clone()
    c2[0] = torch.randn(d)
    obs["other_c"] = as_obs(layer(x, c2))
    if _failed(_verdict_broadcast, obs, ctx):
        return obs
    obs["permuted"] = as_obs(layer(x[:, _roll(n)], c))
    return obs


def _roll(n):
    return torch.roll(torch.arange(n), 1)


def _verdict_broadcast(obs, exp):
    _require_responds(obs["responds"])
    n, out = exp["n"], obs["out"]
    expect_shape(out, (n, n, exp["dim"]))
    out2 = obs["other_c"]
    if max_err(out2[1:], out[1:]) > 1e-5:
        raise Fail("changing the conditioning of sample 0 changes other samples: " + _BROADCAST_HINT)
    if max_err(out2[:1], out[:1]) < 1e-6:
        raise Fail("the output ignores the conditioning c")
    if not close(obs["permuted"], out[:, _roll(n)], 1e-4):
        raise Fail("permuting the tokens does not permute the output: the conditioning must be the same for "
                   "every token - " + _BROADCAST_HINT)


@torch.no_grad()
def _probe_mixes(ctx):
    """Tokens 1.. of the re-randomised layer's output on ``x: (1, n, d)``, and on x with token 0
    changed."""
    d, n = ctx["dim"], ctx["n"]
    layer = _lbuild(ctx)
    rerandomize(layer, ctx["seed"])
    x, c = torch.randn(1, n, d), torch.randn(1, d)
    x2 = x.clone()
    x2[0, 0] = torch.randn(d)
    r = _lresponds(ctx)
    if _gated(r):
        return {"responds": r}
    changed = as_obs(layer(x2, c)[:, 1:])
    return {"responds": r, "changed": changed, "rest": as_obs(layer(x, c)[:, 1:])}


def _verdict_mixes(obs, exp):
    _require_responds(obs["responds"])
    if max_err(obs["changed"], obs["rest"]) < 1e-6:
        raise Fail("tokens do not interact: apply the attention branch to the (modulated) tokens")


DIT_LAYER = CheckTable(
    "dit_layer",
    [
        SubCheck("shape", "output shape (b, n, d)", 1, _probe_lshape, _verdict_lshape),
        SubCheck("identity", "identity at initialisation (adaLN-Zero)", 1, _probe_identity,
                 _verdict_identity),
        SubCheck("gates", "two gates scale the branches; modulation x * (1 + scale) + shift", 1, _probe_gates,
                 _verdict_gates),
        SubCheck("modulation", "shift and scale modulate both branches", 0.5, _probe_modulation,
                 _verdict_modulation),
        SubCheck("broadcast", "conditioning per sample, broadcast over tokens", 1, _probe_broadcast,
                 _verdict_broadcast),
        SubCheck("mixes", "attention mixes tokens", 0.5, _probe_mixes, _verdict_mixes),
    ],
    LAYER_CONFIG,
    {"size of tensor": _BROADCAST_HINT},
    rationale=(
        "Output shape (1), identity at initialisation (1: adaLN-Zero is what makes deep stacks train), "
        "gates (1) and a per-sample conditioning broadcast over the tokens (1) each change what the block "
        "computes. That every shift/scale block is used (0.5) and that attention mixes tokens (0.5) are "
        "probed on a re-randomised layer and catch rarer mistakes. Every sub-check but the shape is "
        "credited only where the output carries the property: the re-randomised layer's output must be "
        "a deterministic function of x that changes when the weights do (the dependence on c is the "
        "broadcast sub-check's own)."
    ),
)

# ------------------------------------------------------------------ test doubles for failing components


class TestDouble(UserWarning):
    """The note a probe gives (shown under its sub-check) when one of the student's components that
    another graded part composes raised and a test double stood in for it: the missing component
    is charged once, in its own part."""


def _lenient(init):
    """``init`` made to return where it raises: what it set before (``super().__init__()``, the
    template's ``self.n_tokens = ...``) stays, nothing after."""
    def lenient_init(self, *args, **kwargs):
        nn.Module.__init__(self)
        try:
            init(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - the component's failure: a test double stands in for it
            pass
    return lenient_init


def _defining_class(obj, code):
    for k in type(obj).__mro__:
        f = k.__dict__.get("__init__")
        if getattr(f, "__code__", None) is code:
            return k
    return None


def _failing_component(error, top):
    """The student's module class (not ``top`` nor one of its bases, not torch's) whose
    ``__init__`` raised ``error`` (innermost first), or None."""
    tb, frames = error.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        obj = frame.f_locals.get("self")
        if frame.f_code.co_name != "__init__" or not isinstance(obj, nn.Module):
            continue
        k = _defining_class(obj, frame.f_code)
        if k is None or str(k.__module__).startswith("torch"):
            continue
        return None if issubclass(top, k) else k
    return None


def _construct(ctx, make):
    """``make()`` (the student's constructor); where the ``__init__`` of a component class of the
    student's raises (the template's ``NotImplementedError``), that class is built leniently for
    this construction (what its ``__init__`` set before raising, no more: its forward then fails
    and a test double stands in for the instance). Returns ``(model, {class name: why})``."""
    patched, why = {}, {}
    try:
        for _ in range(8):
            try:
                return make(), why
            except Exception as e:  # noqa: BLE001 - re-raised unless a component's constructor raised
                k = _failing_component(e, ctx.cls)
                if k is None or k in patched:
                    raise
                patched[k] = k.__dict__["__init__"]
                why[k.__name__] = f"constructor raised {type(e).__name__}"
                k.__init__ = _lenient(patched[k])
        return make(), why
    finally:
        for k, init in patched.items():
            k.__init__ = init


def _raises(fn, *args):
    """Why ``fn(*args)`` raises (the exception type and text), or None; run without gradients, the
    caller's random numbers left as they were."""
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            fn(*args)
    except Exception as e:  # noqa: BLE001 - the component's failure, reported in the note
        text = str(e).strip().splitlines()[0][:60] if str(e).strip() else ""
        return f"{type(e).__name__}{': ' + text if text else ''}"
    return None


def _announce(stood_in, note):
    """The note for the stand-ins (``[(what, why)]``, the same reasons merged), as a
    :class:`TestDouble` warning when ``note``; returns its text (None: no stand-in)."""
    if not stood_in:
        return None
    groups = {}
    for what, why in stood_in:
        groups.setdefault(why, []).append(what)
    text = (f"test double{'s' if len(stood_in) > 1 else ''} stood in for " +
            "; ".join(f"{', '.join(whats)} ({why})" for why, whats in groups.items()) +
            (": graded in their own parts, not here" if len(stood_in) > 1 else
             ": graded in its own part, not here"))
    if note:
        warnings.warn(text, TestDouble, stacklevel=2)
    return text


class _DoubleLayer(nn.Module):
    """Stands in for a DiT layer that raises: ``(x: (b, n, d), c: (b, d)) -> (b, n, d)``, x scaled by
    an amount of its own plus a small c-dependent term."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x, c, *args, **kwargs):
        return x * (1.0 + 0.1 * (self.k + 1)) + 0.1 * torch.tanh(c)[:, None, :]


# ------------------------------------------------------------------------------ dit


DIT_CONFIG = {"seed": 6, "depth": 2, "n": 4, "dim": 8, "heads": 2, "b": 4}


def _tbuild(ctx, note=True):
    """The student's DiT; each of its layers that raises on well-formed inputs ``(x: (2, n, d),
    c: (2, d))`` (or whose class's constructor raised) is replaced by a :class:`_DoubleLayer`
    (a :class:`TestDouble` note when ``note``): the DiT is graded on its own code."""
    depth, n, d = ctx["depth"], ctx["n"], ctx["dim"]
    model, bare = _construct(ctx, lambda: ctx.new(depth, n, d, heads=ctx["heads"]))
    try:
        layers = _layers(model, depth)
    except Fail:
        return model  # the sub-checks that need the layers say so
    g = torch.Generator().manual_seed(7)
    x, c = torch.randn(2, n, d, generator=g), torch.randn(2, d, generator=g)
    stood_in, container = [], None
    for k, layer in enumerate(layers):
        why = _raises(layer, x, c)
        if why is None:
            continue
        name = type(layer).__name__
        why = f"{name}: {bare.get(name) or 'forward raised ' + why}"
        container = container or _container(model, layers)
        container[k] = _DoubleLayer(k)
        stood_in.append((f"layer {k}", why))
    _announce(stood_in, note)
    return model


NO_POS_FOUND = ("no positional encoding found: add a learned nn.Parameter of shape (n_tokens, dim) = "
                "({n}, {d})")


def _pos(model, n, d, learned=True):
    """The positional encoding: a parameter of shape (n, d) or (1, n, d); with ``learned=False``
    also a buffer or plain tensor attribute (whether it is learned is the pos sub-check's). None
    when there is none."""
    pool = list(model.parameters(recurse=False)) + list(model.parameters())
    if not learned:
        pool += list(model.buffers()) + [v for m in model.modules() for v in vars(m).values()
                                         if isinstance(v, torch.Tensor)]
    for p in pool:
        if p.dtype.is_floating_point and p.numel() == n * d and p.dim() in (2, 3) and \
                tuple(p.shape[-2:]) == (n, d):
            return p
    return None


def _layers(model, depth):
    """The student's ``depth`` layers: a ModuleList (or Sequential) child, searched among the
    direct children first (a layer's own Sequential may also have ``depth`` entries)."""
    for pool in (list(model.children()), list(model.modules())):
        for kind in (nn.ModuleList, nn.Sequential):
            for m in pool:
                if isinstance(m, kind) and len(m) == depth:
                    return list(m)
    raise Fail(f"no list of depth = {depth} layers found: build nn.ModuleList([... for _ in range(depth)])")


def _tresponds(ctx):
    """The dependence report of a fresh DiT (layers that raise stood in for) on ``x: (n, n, d)``,
    ``c: (n, d)`` drawn from a generator of its own, shared by the DiT's probes."""
    if "responds" not in ctx.cache:
        d, n = ctx["dim"], ctx["n"]
        g = torch.Generator().manual_seed(int(ctx["seed"]) + 101)
        x, x2 = torch.randn(n, n, d, generator=g), torch.randn(n, n, d, generator=g)
        c = torch.randn(n, d, generator=g)
        try:
            model = _tbuild(ctx, note=False)
        except Exception:  # noqa: BLE001 - charged by the sub-checks' own probes
            model = None
        ctx.cache["responds"] = None if model is None else _safe_responses(
            model, ctx["seed"] + 1, lambda m, xi: m(xi.clone(), c.clone()), x, x2)
    return ctx.cache["responds"]


def _probe_tshape(ctx):
    """b == n: a positional encoding broadcast over the wrong axis keeps the shape (it is the
    sequence sub-check's mistake)."""
    model, n, d = _tbuild(ctx), ctx["n"], ctx["dim"]
    return {"out": as_obs(model(torch.randn(n, n, d), torch.randn(n, d)))}


def _verdict_tshape(obs, exp):
    n = exp["n"]
    expect_shape(obs["out"], (n, n, exp["dim"]))


def _probe_tpos(ctx):
    """The shape of the learned positional encoding (None: none found), after a forward (a stub's
    forward must not earn this)."""
    model, b, n, d = _tbuild(ctx), ctx["b"], ctx["n"], ctx["dim"]
    model(torch.randn(b, n, d), torch.randn(b, d))
    r = _tresponds(ctx)
    if _gated(r):
        return {"responds": r}
    pos = _pos(model, n, d)
    return {"responds": r, "pos": None if pos is None else list(pos.shape)}


def _verdict_tpos(obs, exp):
    _require_responds(obs["responds"])
    if obs["pos"] is None:
        raise Fail(NO_POS_FOUND.format(n=exp["n"], d=exp["dim"]))


def _probe_inplace(ctx):
    """The input after the forward and a copy made before; then whether a backward from an input
    that requires grad reaches it (``grad``), or the in-place error it raised (``error``)."""
    model, b, n, d = _tbuild(ctx), ctx["b"], ctx["n"], ctx["dim"]
    x = torch.randn(b, n, d)
    keep = x.clone()
    model(x, torch.randn(b, d))
    obs = {"responds": _tresponds(ctx)}
    if _gated(obs["responds"]):
        return obs
    obs.update(x=x, before=keep)
    if _failed(_verdict_inplace, obs, ctx):
        return obs
    leaf = torch.randn(b, n, d, requires_grad=True)
    obs["error"] = None
    try:
        model(leaf, torch.randn(b, d)).sum().backward()
    except RuntimeError as e:
        if "in-place" not in str(e) and "leaf" not in str(e):
            raise
        obs["error"] = str(e)[:300]
    obs["grad"] = leaf.grad is not None
    return obs


def _verdict_inplace(obs, exp):
    _require_responds(obs["responds"])
    if max_err(obs["x"], obs["before"]) > 0:
        raise Fail("the input tensor was modified in place (x += pos?): add the positional encoding out of "
                   "place, x = x + pos")
    if obs["error"] is not None:
        raise Fail("positional encoding added in place (x += pos) fails on an input that requires grad: "
                   "use x = x + pos")
    if not obs["grad"]:
        raise Fail("no gradient reaches the input tokens")


ONE_LAYER = "only one layer is applied: feed each layer's output into the next, x = layer(x, c)"
NO_POS = "the positional encoding is not added to the tokens"
POS_AXIS = ("positional encoding broadcast over the wrong axis: add pos[None] (shape (1, n, d)) so "
            "every sample gets the same encoding per token")
NOT_SEQUENCE = "the output is not layers applied in sequence to x + pos (recomputed with your layers)"
SAME_LAYER = "the same layer object is repeated: build depth independent layers"


class _RecordingLayer(nn.Module):
    """Stands in for layer ``k``: records ``(x, c)`` and returns ``x`` scaled and shifted by
    amounts of its own (so the chain of calls can be followed)."""

    def __init__(self, k, calls):
        super().__init__()
        self.k, self.calls = k, calls

    def forward(self, x, c, *args, **kwargs):
        out = x * (1.0 + 0.25 * (self.k + 1)) + 0.5 * (self.k + 1)
        self.calls.append([self.k, x, c, out])
        return out


def _container(model, layers):
    for m in model.modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) == len(layers) and \
                all(a is b for a, b in zip(m, layers)):
            return m
    raise Fail("no list of layers found")


@torch.no_grad()
def _probe_sequence(ctx):
    """The student's layers replaced by recording doubles (no layer is computed): the inputs
    ``x: (n, n, d)`` (b == n, so a wrong broadcast of pos cannot raise), ``c: (n, d)``, the
    re-randomised positional encoding ``pos: (1, n, d)``, the output, and every layer call
    ``[k, x in, c in, out]`` in call order. ``distinct``: how many distinct layer objects."""
    depth, n, d = ctx["depth"], ctx["n"], ctx["dim"]
    model = _tbuild(ctx)
    layers = _layers(model, depth)
    obs = {"responds": _tresponds(ctx)}
    if _gated(obs["responds"]):
        return obs
    obs["distinct"] = len({id(m) for m in layers})
    if _failed(_verdict_sequence, obs, ctx):
        return obs
    rerandomize(model, ctx["seed"])
    pos = _pos(model, n, d, learned=False)
    if pos is None:
        raise Fail(NO_POS_FOUND.format(n=n, d=d))
    pos = pos.reshape(1, n, d)
    x, c = torch.randn(n, n, d), torch.randn(n, d)
    container, calls = _container(model, layers), []
    for k in range(len(layers)):
        container[k] = _RecordingLayer(k, calls)
    out = model(x.clone(), c)
    obs.update(x=x, c=c, pos=pos, out=as_obs(out),
               calls=[[k, as_obs(xi), as_obs(ci), as_obs(o)] for k, xi, ci, o in calls])
    return obs


def _verdict_sequence(obs, exp):
    _require_responds(obs["responds"])
    depth, n, d = exp["depth"], exp["n"], exp["dim"]
    if obs["distinct"] != depth:
        raise Fail(SAME_LAYER)
    x, c, pos, calls = obs["x"], obs["c"], obs["pos"], obs["calls"]
    expect_shape(obs["out"], (n, n, d))

    def chained(first_input):
        """The layers called in order from ``first_input``, each on the previous one's output,
        all with c (what follows the last layer is the output sub-check's)."""
        if [k for k, *_ in calls] != list(range(depth)) or not close(calls[0][1], first_input, 1e-4):
            return False
        links = all(close(calls[i][1], calls[i - 1][3], 1e-4) for i in range(1, len(calls)))
        return links and all(isinstance(ci, torch.Tensor) and ci.shape == c.shape and max_err(ci, c) == 0
                             for _, _, ci, _ in calls)

    if chained(x + pos):
        return
    ends = [call for call in calls if call[0] in (0, depth - 1)]
    if calls and any(close(xi, x + pos, 1e-4) and close(calls[-1][3], o, 1e-4) for _, xi, _, o in ends):
        raise Fail(ONE_LAYER)
    if chained(x):
        raise Fail(NO_POS)
    if chained(x + pos.reshape(n, 1, d)):
        raise Fail(POS_AXIS)
    raise Fail(NOT_SEQUENCE)


EXTRA_AFTER = ("an extra module runs after the last layer: {names}: the DiffusionTransformer returns the "
               "last layer's output (the Depatchifier comes next)")
NOT_LAST = "the output is not the last layer's output: return x after the loop over the layers"


@torch.no_grad()
def _probe_output(ctx):
    """The re-randomised model's output on ``x: (n, n, d)``, its last layer's output (``last``;
    ``ran``: whether it ran) and the modules outside the layers that ran after it (``after``)."""
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
    r = _tresponds(ctx)
    if _gated(r) or "last" not in seen:
        return {"responds": r, "ran": "last" in seen}
    at, last_out = seen["last"]
    return {"responds": r, "ran": True, "out": as_obs(out), "last": as_obs(last_out),
            "after": [f"{name} ({type(model.get_submodule(name)).__name__})" for name in order[at:]]}


def _verdict_output(obs, exp):
    """The model returns its last layer's output; modules that ran after it are named."""
    _require_responds(obs["responds"])
    if not obs["ran"]:
        raise Fail("the last layer never ran: apply every layer, x = layer(x, c)")
    if isinstance(obs["last"], torch.Tensor) and close(obs["out"], obs["last"], 1e-5):
        return
    after = obs["after"]
    raise Fail(EXTRA_AFTER.format(names=", ".join(after)) if after else NOT_LAST)


DIT = CheckTable(
    "dit",
    [
        SubCheck("shape", "output shape (b, n, d)", 1, _probe_tshape, _verdict_tshape),
        SubCheck("pos", "learned positional encoding of shape (n, d)", 0.5, _probe_tpos, _verdict_tpos),
        SubCheck("inplace", "input left unchanged (works on a tensor that requires grad)", 1, _probe_inplace,
                 _verdict_inplace),
        SubCheck("sequence", "depth layers applied in sequence to x + pos (broadcast over the batch)", 1.5,
                 _probe_sequence, _verdict_sequence),
        SubCheck("output", "returns the last layer's output", 0.25, _probe_output, _verdict_output),
    ],
    DIT_CONFIG,
    {"size of tensor": "add pos[None] (1, n, d) to x (b, n, d)",
     "leaf variable": "add the positional encoding out of place: x = x + self.pos"},
    rationale=(
        "Applying the layers in sequence to x + pos is the computation (1.5). Leaving the input unchanged "
        "(1): x += pos breaks training on a tensor that requires grad. Output shape (1). A learned "
        "positional encoding (0.5). Returning the last layer's output (0.25): an extra module after it "
        "does not break the model, it only adds what the Depatchifier already does. Every sub-check but "
        "the shape is credited only where the output carries the property: the re-randomised model's "
        "output must be a deterministic function of x that changes when the weights do. Graded on its "
        "own code: a layer that raises on well-formed (x, c) (the template's NotImplementedError, in "
        "its forward or its constructor) is replaced by a test double (x scaled plus a small "
        "c-dependent term), and each sub-check's line notes the stand-in; the layer is charged in "
        "dit_layer only."
    ),
)

# ------------------------------------------------------------------------------ mnist_dit


MNIST_CONFIG = {"seed": 9, "variants": [(8, 1, 16, 2)], "b": 2}


def _mbuild(ctx, v=None, note=True):
    return _mbuild_noting(ctx, v, note)[0]


class _TimeDouble(nn.Module):
    """Stands in for the time encoder: t (any shape, b values) -> (b, dim) fixed features
    tanh(w t + v) (not the Fourier features: the student runtime computes no graded part)."""

    def __init__(self, p, dim):
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.register_buffer("w", 3 * torch.randn(dim, generator=g))
        self.register_buffer("v", torch.randn(dim, generator=g))

    def forward(self, t):
        return torch.tanh(t.reshape(-1, 1) * self.w + self.v)


class _PatchDouble(nn.Module):
    """Stands in for the patchifier: (b, 1, 32, 32) -> (b, n, dim), row-major tokens, each the mean
    of its p x p patch times fixed scales (no graded map: pooling, not a patch embedding)."""

    def __init__(self, p, dim):
        super().__init__()
        self.p, self.n_tokens = p, (32 // p) ** 2
        self.register_buffer("s", torch.randn(dim, generator=torch.Generator().manual_seed(12)))

    def forward(self, x):
        pooled = F.avg_pool2d(x, self.p).reshape(x.shape[0], -1, 1)  # (b, n, 1)
        return pooled * self.s + 0.1 * self.s


class _TrunkDouble(nn.Module):
    """Stands in for the DiffusionTransformer: (x: (b, n, d), c: (b, d)) -> x scaled plus a small
    c-dependent term."""

    def __init__(self, p, dim):
        super().__init__()

    def forward(self, x, c, *args, **kwargs):
        return 1.1 * x + 0.1 * torch.tanh(c)[:, None, :]


class _DepatchDouble(nn.Module):
    """Stands in for the depatchifier: (b, n, dim) -> (b, 1, 32, 32), each token's weighted mean
    spread over its p x p patch, row-major (nearest upsampling, not a graded map)."""

    def __init__(self, p, dim):
        super().__init__()
        self.p = p
        self.register_buffer("s", torch.randn(dim, generator=torch.Generator().manual_seed(13)))

    def forward(self, x):
        side = 32 // self.p
        per_token = (x * self.s).mean(-1).reshape(x.shape[0], 1, side, side)  # (b, 1, 32/p, 32/p)
        return F.interpolate(per_token, scale_factor=self.p, mode="nearest")


DOUBLES = {"encoder": _TimeDouble, "patchifier": _PatchDouble, "trunk": _TrunkDouble,
           "depatchifier": _DepatchDouble}


def _role(args, b, n, dim):
    """A component's role from what the model passed it: (tokens, c) -> trunk; images ->
    patchifier; tokens -> depatchifier; b float times -> encoder; None otherwise (labels, ...)."""
    ts = [a for a in args if isinstance(a, torch.Tensor)]
    if not ts or not ts[0].is_floating_point():
        return None
    a = ts[0]
    if len(ts) >= 2 and a.dim() == 3:
        return "trunk"
    if len(ts) == 1 and a.dim() == 4 and tuple(a.shape[1:]) == (1, 32, 32):
        return "patchifier"
    if len(ts) == 1 and a.dim() == 3:
        return "depatchifier"
    if len(ts) == 1 and a.numel() == b:
        return "encoder"
    return None


def _well_formed(role, b, n, dim):
    g = torch.Generator().manual_seed(14)
    return {"encoder": lambda: (torch.rand(b, generator=g),),
            "patchifier": lambda: (torch.randn(b, 1, 32, 32, generator=g),),
            "trunk": lambda: (torch.randn(b, n, dim, generator=g), torch.randn(b, dim, generator=g)),
            "depatchifier": lambda: (torch.randn(b, n, dim, generator=g),)}[role]()


def _failing_child(model, x, t, y):
    """``(name, child, tensors it was given)`` of the direct child of ``model`` that raised when
    the model ran on ``(x, t, y)``, or None (the model ran, or its own code raised)."""
    stack, handles = [], []

    def pre(name):
        def hook(module, args, kwargs):
            stack.append((name, module, list(args) + list(kwargs.values())))
        return hook

    def post(module, args, output):
        stack.pop()

    for name, child in model.named_children():
        handles.append(child.register_forward_pre_hook(pre(name), with_kwargs=True))
        handles.append(child.register_forward_hook(post))
    try:
        if _raises(model, x, t, y) is None:
            return None
    finally:
        for h in handles:
            h.remove()
    return stack[-1] if stack else None


def _mbuild_noting(ctx, v=None, note=True):
    """The student's model and the roles stood in for. Each direct child that raises where the
    model calls it, and raises as well on well-formed inputs of the role the call shows (time
    encoder, patchifier, DiT trunk, depatchifier; a component whose class's constructor raised is
    built leniently, see :func:`_construct`), is replaced by a fixed test double of that role (a
    :class:`TestDouble` note when ``note``): the model is graded on its own code. A child that
    works on well-formed inputs is left alone (what the model passed it is the model's mistake)."""
    p, layers, dim, heads = v or ctx["variants"][0]
    model, bare = _construct(ctx, lambda: ctx.new(patch_size=p, num_layers=layers, dim=dim, heads=heads))
    if not isinstance(model, nn.Module):
        return model, []
    b, n = 2, (32 // p) ** 2
    g = torch.Generator().manual_seed(15)
    x, t, y = torch.randn(b, 1, 32, 32, generator=g), torch.rand(b, generator=g), torch.arange(b) % 10
    roles, stood_in = [], []
    for _ in range(len(DOUBLES)):
        found = _failing_child(model, x, t, y)
        if found is None:
            break
        name, child, args = found
        role = _role(args, b, n, dim)
        if role is None or role in roles:
            break
        why = _raises(child, *_well_formed(role, b, n, dim))
        if why is None:
            break
        cname = type(child).__name__
        setattr(model, name, DOUBLES[role](p, dim))
        roles.append(role)
        stood_in.append((cname, bare.get(cname) or f"forward raised {why}"))
    _announce(stood_in, note)
    return model, roles


def _minputs(b):
    x = torch.randn(b, 1, 32, 32)
    t = torch.rand(b)
    y = torch.randint(0, 10, (b,))  # the null label 10 has its own sub-check
    return x, t, y


def _shape_obs(out):
    """What a shape-only verdict needs of an output image batch: its shape as a list, or the type
    name of a non-tensor (:func:`as_obs`); the images stay in the kernel."""
    return list(out.shape) if isinstance(out, torch.Tensor) else as_obs(out)


def _shaped(obs):
    """A :func:`_shape_obs` report as :func:`expect_shape` takes it: a data-less (meta) tensor of
    that shape, or the type name as it is."""
    return torch.empty([int(k) for k in obs], device="meta") if isinstance(obs, list) else obs


@torch.no_grad()
def _probe_mshape(ctx):
    """The output shape of each variant (up to the first that is wrong)."""
    b, obs = ctx["b"], {"outs": []}
    for v in ctx["variants"]:
        model = _mbuild(ctx, v)
        obs["outs"].append(_shape_obs(model(*_minputs(b))))
        if _failed(_verdict_mshape, obs, ctx):
            break
    return obs


def _verdict_mshape(obs, exp):
    outs = obs["outs"]
    for i, v in enumerate(exp["variants"]):
        expect_shape(_shaped(outs[i]), (exp["b"], 1, 32, 32), f"output for patch size {v[0]}")


def _mresponds(ctx):
    """The dependence report of a fresh model (failing components stood in for) on ``x: (b, 1, 32,
    32)``, t, y drawn from a generator of its own, shared by the model's probes."""
    if "responds" not in ctx.cache:
        b = ctx["b"]
        g = torch.Generator().manual_seed(int(ctx["seed"]) + 101)
        x, x2 = torch.randn(b, 1, 32, 32, generator=g), torch.randn(b, 1, 32, 32, generator=g)
        t, y = torch.rand(b, generator=g), torch.randint(0, 10, (b,), generator=g)
        try:
            model = _mbuild(ctx, note=False)
        except Exception:  # noqa: BLE001 - charged by the sub-checks' own probes
            model = None
        ctx.cache["responds"] = None if model is None else _safe_responses(
            model, ctx["seed"] + 1, lambda m, xi: _fresh(m, xi, t, y), x, x2)
    return ctx.cache["responds"]


def _fresh(model, x, t, y):
    """``model`` on copies of the inputs: a model that modifies them in place (the inplace
    sub-check's mistake) still sees the same inputs at every call."""
    return model(x.clone(), t.clone(), y.clone())


@torch.no_grad()
def _probe_mtimes(ctx):
    """The re-randomised model's output with t of shape (b,) and (b, 1, 1, 1)."""
    model, b = _mbuild(ctx), ctx["b"]
    rerandomize(model, ctx["seed"])
    x, t, y = _minputs(b)
    r = _mresponds(ctx)
    if _gated(r):
        return {"responds": r}
    a = _fresh(model, x, t, y)
    return {"responds": r, "b_": as_obs(a),
            "b111": as_obs(with_t4(_fresh, model, x, t.reshape(b, 1, 1, 1), y))}


def _verdict_mtimes(obs, exp):
    _require_responds(obs["responds"])
    if not close(obs["b111"], obs["b_"], 1e-5):
        raise Fail("t of shape (b, 1, 1, 1) gives another result than t of shape (b,): reshape t to (b,)")


@torch.no_grad()
def _probe_mbatch1(ctx):
    """Batch size 1 with t of shape (1,) (the (b, 1, 1, 1) shape is t_shapes')."""
    model = _mbuild(ctx)
    x, t, y = _minputs(1)
    r = _mresponds(ctx)
    if _gated(r):
        return {"responds": r}
    return {"responds": r, "out": _shape_obs(at_batch1(model, x, t, y))}


def _verdict_mbatch1(obs, exp):
    _require_responds(obs["responds"])
    expect_shape(_shaped(obs["out"]), (1, 1, 32, 32), "output at batch size 1 (t of shape (1,))", BATCH1_HINT)


@torch.no_grad()
def _probe_mnull(ctx):
    """The output shape for the null label 10, or the IndexError it raised (``index_error``)."""
    model, b = _mbuild(ctx), ctx["b"]
    x, t, _ = _minputs(b)
    r = _mresponds(ctx)
    if _gated(r):
        return {"responds": r}
    try:
        return {"responds": r, "index_error": None,
                "out": _shape_obs(model(x, t, torch.full((b,), 10, dtype=torch.long)))}
    except IndexError as e:
        return {"responds": r, "index_error": str(e)[:300]}


def _verdict_mnull(obs, exp):
    _require_responds(obs["responds"])
    if obs["index_error"] is not None:
        raise Fail(f"null label 10 fails ({obs['index_error']}): the label embedding needs 11 rows, "
                   "nn.Embedding(11, dim)")
    expect_shape(_shaped(obs["out"]), (exp["b"], 1, 32, 32))


@torch.no_grad()
def _probe_mcond(ctx):
    """The re-randomised model's output, then with y, t, x changed in turn, then with sample 0 of x
    changed (up to the first that shows a mistake)."""
    model, b = _mbuild(ctx), ctx["b"]
    rerandomize(model, ctx["seed"])
    x, t, y = _minputs(b)
    obs = {"responds": _mresponds(ctx)}
    if _gated(obs["responds"]):
        return obs
    obs["out"] = as_obs(_fresh(model, x, t, y))
    for key, args in (("other_y", lambda: (x, t, (y + 1) % 10)), ("other_t", lambda: (x, (t + 0.3) % 1, y)),
                      ("other_x", lambda: (torch.randn_like(x), t, y))):
        obs[key] = as_obs(_fresh(model, *args()))
        if _failed(_verdict_mcond, obs, ctx):
            return obs
    x2 = x.clone()
    x2[0] = torch.randn(1, 32, 32)
    obs["other_x0"] = as_obs(_fresh(model, x2, t, y))
    return obs


def _verdict_mcond(obs, exp):
    _require_responds(obs["responds"])
    out = obs["out"]
    if max_err(obs["other_y"], out) < 1e-6:
        raise Fail("the output does not depend on the label y: add the label embedding to the conditioning")
    if max_err(obs["other_t"], out) < 1e-6:
        raise Fail("the output does not depend on t: add the time embedding to the conditioning")
    if max_err(obs["other_x"], out) < 1e-6:
        raise Fail("the output does not depend on x")
    if max_err(obs["other_x0"][1:], out[1:]) > 1e-5:
        raise Fail("changing sample 0 changes other samples: keep samples independent")


def _probe_minplace(ctx):
    """How much each input x, t, y changed in the forward (``max |after - before|``, inf when its
    shape changed; up to the first that changed); then a backward from an x that requires grad."""
    model, b = _mbuild(ctx), ctx["b"]
    x, t, y = _minputs(b)
    keep = (x.clone(), t.clone(), y.clone())
    model(x, t, y)
    obs = {"responds": _mresponds(ctx)}
    if _gated(obs["responds"]):
        return obs
    obs["changed"] = []
    for a, k in zip((x, t, y), keep):
        obs["changed"].append(max_err(a.double(), k.double()))
        if _failed(_verdict_minplace, obs, ctx):
            return obs
    leaf = torch.randn(b, 1, 32, 32, requires_grad=True)
    model(leaf, t, y).sum().backward()
    return obs


def _verdict_minplace(obs, exp):
    _require_responds(obs["responds"])
    for i, name in enumerate("xty"):
        if obs["changed"][i] > 0:
            raise Fail(f"the input {name} was modified in place: work on new tensors")


def _probe_mparams(ctx):
    """The parameter count of the constructed model. The forward must be written (a stub's
    ``NotImplementedError`` earns nothing here), but whether it runs is the other sub-checks'
    business: a forward that fails (at batch size 1, say) is not charged again here."""
    model, roles = _mbuild_noting(ctx)
    try:
        with torch.no_grad():
            model(*_minputs(2))
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001 - charged by shape / batch1 / ..., not by the parameter count
        pass
    r = _mresponds(ctx)
    if _gated(r):
        return {"responds": r}
    return {"responds": r, "params": sum(q.numel() for q in model.parameters()), "stood_in": roles}


def _verdict_mparams(obs, exp):
    """Within 0.3x to 3x of the reference's count for the first variant's sizes (an expectation:
    recorded in ``data/mnist_dit.json``, computed by the judge when graded); components stood in
    for (no parameters) are left out of both counts (``params_<role>``: the reference's share)."""
    _require_responds(obs["responds"])
    got = obs["params"]
    want = int(exp.value("params")) - sum(int(exp.value(f"params_{role}")) for role in obs["stood_in"])
    if not 0.3 * want <= got <= 3 * want:
        raise Fail(f"{got} parameters, expected about {want} for these sizes (0.3x to 3x): check the layer "
                   "widths (MLP [dim, 4 dim, dim], 6 dim modulation values, depth layers)")


MNIST_DIT = CheckTable(
    "mnist_dit",
    [
        SubCheck("shape", "output shape (b, 1, 32, 32)", 1, _probe_mshape, _verdict_mshape),
        SubCheck("t_shapes", "t of shape (b, 1, 1, 1) gives the same result as (b,)", 0.5, _probe_mtimes,
                 _verdict_mtimes),
        SubCheck("batch1", "works at batch size 1", 0.5, _probe_mbatch1, _verdict_mbatch1),
        SubCheck("null", "null label 10 accepted (11 embedding rows)", 1, _probe_mnull, _verdict_mnull),
        SubCheck("conditioning", "output depends on x, y and t, per sample", 1, _probe_mcond, _verdict_mcond),
        SubCheck("inplace", "inputs left unchanged", 0.5, _probe_minplace, _verdict_minplace),
        SubCheck("params", "parameter count sane for the sizes", 0.5, _probe_mparams, _verdict_mparams),
    ],
    MNIST_CONFIG,
    {"index out of range": "the label embedding needs 11 rows (null label 10)",
     "size of tensor": "check shapes: t must become (b,) and the conditioning (b, dim)"},
    rationale=(
        "The parts are graded on their own; here what the assembly adds: the output shape (1), the null "
        "label's row (1) and conditioning on x, y and t per sample (1). Accepting t of shape (b, 1, 1, "
        "1), batch size 1, inputs left unchanged and a parameter count in range (0.5 each) are "
        "conventions and sanity checks. Every sub-check but the shape is credited only where the output "
        "carries the property: the re-randomised model's output must be a deterministic function of x "
        "that changes when the weights do (its dependence on t and y is the conditioning sub-check's). "
        "Graded on its own code: a direct child that raises where the model calls it and on well-formed "
        "inputs of its role (time encoder, patchifier, DiT trunk, depatchifier: the template's "
        "NotImplementedError, in its forward or its constructor) is replaced by a fixed test double of "
        "that role, noted under each sub-check; its parameters leave both counts of the params "
        "sub-check (the reference's share is recorded per component)."
    ),
)
