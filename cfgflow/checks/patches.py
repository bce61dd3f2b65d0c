"""patchifier and depatchifier, checked by probing rather than by attribute names.

Patchifier ``(b, 1, img, img) -> (b, n, d)``: any parametrisation (Conv2d, Unfold + Linear,
einops + Linear) is an affine map per patch. The probes run it on basis images (and on random
images for affinity); the verdicts recover the map from those outputs and check that token ``k``
is the SAME affine map of patch ``(k // G, k % G)`` (row-major ``(h w)`` order).

Depatchifier ``(b, n, d) -> (b, 1, img, img)``: the probe re-randomises zero-initialised weights
and perturbs one token at a time; the verdicts check that perturbing token ``k`` only changes
patch ``(k // G, k % G)`` (plus the final conv's halo, which the probe reads off the module's
convolutions). Nothing is recorded: the probes draw their own inputs, the verdicts judge
properties of the outputs.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._core import (
    CheckTable,
    Fail,
    SubCheck,
    as_obs,
    close,
    dependence,
    expect_dependence,
    expect_shape,
    rerandomize,
    shape_of,
)

# ------------------------------------------------------------------------------ patchifier


PATCHIFIER_CONFIG = {"seed": 3, "img": 8, "p": 4, "dim": 6, "b": 2}


def _pbuild(ctx):
    return ctx.new(ctx["img"], ctx["p"], ctx["dim"])


def _number(v):
    """``v`` as a float when it is a number (a Python or NumPy number, a one-entry tensor), else None."""
    if isinstance(v, (str, bytes)):
        return None
    try:
        return float(v)
    except (TypeError, ValueError, RuntimeError):
        return None


def _probe_pshape(ctx):
    P, img, b = _pbuild(ctx), ctx["img"], ctx["b"]
    obs = {"out": as_obs(P(torch.randn(b, 1, img, img))), "n_tokens": None}
    if hasattr(P, "n_tokens"):
        obs["n_tokens"] = {"text": str(P.n_tokens)[:200], "value": _number(P.n_tokens)}
    return obs


def _verdict_pshape(obs, exp):
    img, p, b = exp["img"], exp["p"], exp["b"]
    n = (img // p) ** 2
    expect_shape(obs["out"], (b, n, exp["dim"]), hint="tokens (b, n, d) with n = (img/p)^2")
    nt = obs["n_tokens"]
    if nt is not None and nt["value"] != n:
        raise Fail(f"n_tokens is {nt['text']}, expected (img_size // patch_size)**2 = {n}")


@torch.no_grad()
def _probe_basis(ctx):
    """``(observation, patchifier)``, shared by the patch_map and order probes: the student's
    patchifier on the zero image, ``zero: (1, n, d)``, and on every basis image (one pixel 1, the
    rest 0), ``basis: (img*img, n, d)`` with pixel ``(i, j)`` at row ``i * img + j``, and ``dep``
    (:func:`_image_dependence`, no other image: the basis responses show which pixels reach which
    token) (both None when ``zero`` has another shape); the module itself for patch_map's affinity
    test."""
    if "basis" not in ctx.cache:
        P, img, p = _pbuild(ctx), ctx["img"], ctx["p"]
        zero = as_obs(P(torch.zeros(1, 1, img, img)))
        found = {"zero": zero, "basis": None}
        if shape_of(zero) == str((1, (img // p) ** 2, ctx["dim"])):  # else the verdict fails on it first
            basis = torch.eye(img * img).reshape(img * img, 1, img, img)
            found["basis"] = as_obs(P(basis))
            found["dep"] = _image_dependence(ctx, P, image=False)
        ctx.cache["basis"] = (found, P)
    return ctx.cache["basis"]


def _image_dependence(ctx, P, image=True, x=None):
    """What :func:`expect_dependence` reads: the patchifier on ``x`` (one image drawn from the part's
    own generator when None), on another image (``image``), with its parameters nudged."""
    g = torch.Generator().manual_seed(int(ctx["seed"]))
    img = ctx["img"]
    x = torch.randn(1, 1, img, img, generator=g) if x is None else x
    changes = {"the image": (torch.randn(x.shape, generator=g),)} if image else {}
    return dependence(P, (x,), changes, list(P.parameters()), seed=int(ctx["seed"]))


def _patch_map(obs, exp):
    """Recover the student's map from the basis responses: ``(token_of_patch (G, G), kernels
    (n, p*p, d), bias (n, d))``; fails when a token is not a map of exactly one patch."""
    img, p, d = exp["img"], exp["p"], exp["dim"]
    G, n = img // p, (img // p) ** 2
    base = obs["zero"]
    expect_shape(base, (1, n, d))
    expect_shape(obs["basis"], (img * img, n, d), "output on a batch of basis images")
    resp = (obs["basis"] - base).reshape(img, img, n, d)  # pixel (i, j) -> change of every token
    tol = 1e-6 * (1 + float(resp.abs().max()))
    hit = resp.abs().amax(-1) > tol                   # (img, img, n)
    # a function of the image (some pixel reaches some token), computed by the weights
    expect_dependence(obs["dep"], shown={"the image": bool(hit.any())})
    token_of_patch = torch.full((G, G), -1, dtype=torch.long)
    kernels = torch.zeros(n, p * p, d)
    for r in range(G):
        for c in range(G):
            block = hit[r * p:(r + 1) * p, c * p:(c + 1) * p]          # (p, p, n)
            touched = block.reshape(p * p, n).any(0).nonzero().flatten().tolist()
            if len(touched) != 1:
                raise Fail(f"patch ({r}, {c}) feeds {len(touched)} tokens, expected exactly one: tokens are "
                           "scrambled (view/reshape instead of permute/rearrange?)")
            k = touched[0]
            if token_of_patch.eq(k).any():
                raise Fail(f"token {k} mixes several patches: tokens are scrambled (view/reshape instead of "
                           "permute/rearrange?)")
            token_of_patch[r, c] = k
            kernels[k] = resp[r * p:(r + 1) * p, c * p:(c + 1) * p, k].reshape(p * p, d)
    outside = hit.clone()
    for r in range(G):
        for c in range(G):
            outside[r * p:(r + 1) * p, c * p:(c + 1) * p, token_of_patch[r, c]] = False
    if outside.any():
        raise Fail("a token depends on pixels outside its own patch: tokens are scrambled")
    return token_of_patch, kernels, base[0]


@torch.no_grad()
def _probe_pmap(ctx):
    """The basis responses, and the outputs on ``x1``, ``x2`` and ``x1 + x2 / 2`` (two random
    images each) for the affinity test."""
    found, P = _probe_basis(ctx)
    img = ctx["img"]
    x1, x2 = torch.randn(2, 1, img, img), torch.randn(2, 1, img, img)
    return {**found, "mix": as_obs(P(x1 + 0.5 * x2)), "x1": as_obs(P(x1)), "x2": as_obs(P(x2))}


def _verdict_pmap(obs, exp):
    """Affine (no activation: the order sub-check does not need it) and one kernel for every patch."""
    _, kernels, bias = _patch_map(obs, exp)
    n = (exp["img"] // exp["p"]) ** 2
    for key in ("mix", "x1", "x2"):
        expect_shape(obs[key], (2, n, exp["dim"]))
    base = bias[None]  # P(0)
    # affine: P(x1 + x2 / 2) - P(0) = (P(x1) - P(0)) + (P(x2) - P(0)) / 2
    if not close(obs["mix"] - base, (obs["x1"] - base) + 0.5 * (obs["x2"] - base), 1e-4):
        raise Fail("the output is not an affine function of the image: a patchifier is one linear map per "
                   "patch (no activation)")
    same = close(kernels, kernels[:1].expand_as(kernels), 1e-4)
    same = same and close(bias, bias[:1].expand_as(bias), 1e-4)
    if not same:
        raise Fail("patches are mapped by different linear maps: every patch shares one kernel "
                   "(Conv2d with stride p, or one Linear applied to every flattened patch)")


def _probe_porder(ctx):
    return _probe_basis(ctx)[0]


def _verdict_porder(obs, exp):
    token_of_patch = _patch_map(obs, exp)[0]
    G = token_of_patch.shape[0]
    grid = torch.arange(G * G).reshape(G, G)
    if torch.equal(token_of_patch, grid):
        return
    if torch.equal(token_of_patch, grid.t()):
        raise Fail("tokens in column-major order: use row-major (h w), e.g. rearrange 'b d h w -> b (h w) d'")
    raise Fail("tokens in a scrambled order: token k must be patch (k // G, k % G), row-major (h w)")


def _probe_pbatch(ctx):
    """Sample 1 of a batch of 3 and the same image alone."""
    P, img = _pbuild(ctx), ctx["img"]
    x = torch.randn(3, 1, img, img)
    full = P(x)
    one = P(x[1:2])
    return {"in_batch": as_obs(full[1:2]), "alone": as_obs(one), "dep": _image_dependence(ctx, P, x=x[1:2])}


def _verdict_pbatch(obs, exp):
    expect_dependence(obs["dep"], ("the image",))
    if not close(obs["in_batch"], obs["alone"], 1e-5):
        raise Fail("sample 1 of a batch differs from the same image alone: do not mix the batch dimension")


PATCHIFIER = CheckTable(
    "patchifier",
    [
        SubCheck("shape", "output shape (b, n, d), n = (img/p)^2", 1, _probe_pshape, _verdict_pshape),
        SubCheck("patch_map", "each token is the same linear map of its own patch", 2, _probe_pmap,
                 _verdict_pmap),
        SubCheck("order", "tokens in row-major (h w) order", 1, _probe_porder, _verdict_porder),
        SubCheck("batch", "works at batch size 1 and treats samples independently", 0.5, _probe_pbatch,
                 _verdict_pbatch),
    ],
    PATCHIFIER_CONFIG,
    {"size of tensor": "check the shapes: (b, 1, img, img) -> (b, n, d)"},
    rationale=(
        "One shared affine map per patch is the math (2). The row-major order (1) is a convention the "
        "depatchifier must invert: a different order breaks the pair. The output shape (1); treating "
        "samples independently at any batch size (0.5). A property is credited only where the output "
        "carries it: the output compared must be a function of the image (the same image twice gives the "
        "same tokens), change when the image does (for patch_map and order: some pixel reaches some token) "
        "and when the module's parameters do; tokens of zeros, a constant or noise earn the shape's share "
        "at most."
    ),
)

# ------------------------------------------------------------------------------ depatchifier


DEPATCHIFIER_CONFIG = {"seed": 8, "img": 8, "p": 2, "dim": 8, "b": 2}


def _dbuild(ctx):
    D = ctx.new(ctx["img"], ctx["p"], ctx["dim"])
    rerandomize(D, ctx["seed"])
    return D


def _probe_dshape(ctx):
    D, img, p, b = ctx.new(ctx["img"], ctx["p"], ctx["dim"]), ctx["img"], ctx["p"], ctx["b"]
    n = (img // p) ** 2
    return {"out": as_obs(D(torch.randn(b, n, ctx["dim"])))}


def _verdict_dshape(obs, exp):
    expect_shape(obs["out"], (exp["b"], 1, exp["img"], exp["img"]),
                 hint="an image (b, 1, img, img): end with a conv to 1 channel")


def _halo(D):
    """How far convolutions can spread a patch: the sum of their half-widths (times dilation)."""
    return sum(max((k - 1) // 2 * d for k, d in zip(m.kernel_size, m.dilation))
               for m in D.modules() if isinstance(m, nn.Conv2d))


@torch.no_grad()
def _probe_tokens(ctx):
    """Shared by the local and order probes: the re-randomised depatchifier on one random token
    sequence (row 0) and on ``n`` copies with token ``k`` replaced (row ``k + 1``): ``out: (n + 1,
    1, img, img)``; ``halo``: how far its convolutions spread a patch; ``dep``:
    :func:`_token_dependence` on row 0 (the rows themselves show which token reaches which pixel)."""
    if "tokens" not in ctx.cache:
        D, img, p, dim = _dbuild(ctx), ctx["img"], ctx["p"], ctx["dim"]
        n = (img // p) ** 2
        x = torch.randn(1, n, dim)
        X = x.repeat(n + 1, 1, 1)
        for k in range(n):
            X[k + 1, k] = torch.randn(dim)
        ctx.cache["tokens"] = {"out": as_obs(D(X)), "halo": _halo(D),
                               "dep": _token_dependence(ctx, D, x, tokens=False)}
    return ctx.cache["tokens"]


def _token_dependence(ctx, D, x, tokens=True):
    """What :func:`expect_dependence` reads: the depatchifier on ``x``, on other tokens drawn from
    the part's own generator (``tokens``), with its parameters nudged."""
    g = torch.Generator().manual_seed(int(ctx["seed"]))
    changes = {"the tokens": (torch.randn(x.shape, generator=g),)} if tokens else {}
    return dependence(D, (x,), changes, list(D.parameters()), seed=int(ctx["seed"]) + 1)


def _token_reach(obs, exp):
    """``(hit (n, img, img), fits (n, n))``: the pixels token ``k``'s change reaches, and whether
    they all lie in patch ``q`` grown by the convolutions' halo."""
    img, p = exp["img"], exp["p"]
    G, n = img // p, (img // p) ** 2
    out = obs["out"]
    expect_shape(out, (n + 1, 1, img, img))
    diff = (out[1:] - out[:1]).abs()[:, 0]                       # (n, img, img)
    hit = diff > 1e-6 * (1 + float(diff.max()))
    # a function of the tokens (some token reaches some pixel), computed by the weights
    expect_dependence(obs["dep"], shown={"the tokens": bool(hit.any())})
    halo = int(obs["halo"])
    # fits[k, q]: every pixel token k changes lies in patch q grown by the final conv's halo
    fits = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        r, c = divmod(q, G)
        box = torch.zeros(img, img, dtype=torch.bool)
        box[max(0, r * p - halo):(r + 1) * p + halo, max(0, c * p - halo):(c + 1) * p + halo] = True
        fits[:, q] = ~(hit & ~box).flatten(1).any(1)
    return hit, fits


def _verdict_dlocal(obs, exp):
    hit, fits = _token_reach(obs, exp)
    for k in range(hit.shape[0]):
        if not fits[k].any():
            raise Fail(f"token {k} changes pixels outside one patch: the tokens are scrambled into the image "
                       "(a view/reshape where an axis permutation belongs: undo the patchifier's "
                       "token order)")
        if not hit[k].any():
            raise Fail(f"token {k} does not affect the image at all")


def _verdict_dorder(obs, exp):
    hit, fits = _token_reach(obs, exp)
    G = exp["img"] // exp["p"]
    n = hit.shape[0]
    row = torch.arange(n)
    col = torch.arange(n).reshape(G, G).t().reshape(-1)
    if bool(fits[row, row].all()):
        return
    if bool(fits[row, col].all()):
        raise Fail("not the inverse token order: token (i, j) lands at patch (j, i) (column-major); "
                   "token k is patch (k // G, k % G), row-major (h w)")
    raise Fail("not the inverse token order: token k must become patch (k // G, k % G) (row-major)")


def _probe_dbatch(ctx):
    """Sample 1 of a batch of 3 and the same tokens alone (re-randomised weights)."""
    D, img, p = _dbuild(ctx), ctx["img"], ctx["p"]
    n = (img // p) ** 2
    x = torch.randn(3, n, ctx["dim"])
    return {"in_batch": as_obs(D(x)[1:2]), "alone": as_obs(D(x[1:2])),
            "dep": _token_dependence(ctx, D, x[1:2])}


def _verdict_dbatch(obs, exp):
    expect_dependence(obs["dep"], ("the tokens",))
    if not close(obs["in_batch"], obs["alone"], 1e-5):
        raise Fail("sample 1 of a batch differs from the same tokens alone: do not mix the batch dimension")


DEPATCHIFIER = CheckTable(
    "depatchifier",
    [
        SubCheck("shape", "output shape (b, 1, img, img)", 1, _probe_dshape, _verdict_dshape),
        SubCheck("local", "token k only changes its own patch (plus the final conv's halo)", 1.5,
                 _probe_tokens, _verdict_dlocal),
        SubCheck("order", "token k becomes patch (k // G, k % G): the inverse of the patchifier", 1,
                 _probe_tokens, _verdict_dorder),
        SubCheck("batch", "works at batch size 1 and treats samples independently", 0.5, _probe_dbatch,
                 _verdict_dbatch),
    ],
    DEPATCHIFIER_CONFIG,
    {"shape '[": "view/reshape sizes must multiply to the tensor size: (b, n, f*p*p) -> (b, f, img, img)",
     "size of tensor": "check the shapes: (b, n, d) -> (b, 1, img, img)"},
    rationale=(
        "Token k changing only its own patch is the math (1.5); the inverse of the patchifier's order (1) "
        "and the output shape (1) are what the model needs; batch independence (0.5). A property is "
        "credited only where the output carries it: the image compared must be a function of the tokens "
        "(the same tokens twice give the same image), change when the tokens do (for local and order: "
        "some token reaches some pixel; order is judged on the tokens that do, a token that reaches none "
        "is local's failure) and when the module's parameters do; an image of zeros, a constant or noise "
        "earns the shape's share at most."
    ),
)
