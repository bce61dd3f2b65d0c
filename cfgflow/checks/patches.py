"""patchifier and depatchifier, checked by probing rather than by attribute names.

Patchifier ``(b, 1, img, img) -> (b, n, d)``: any parametrisation (Conv2d, Unfold + Linear,
einops + Linear) is an affine map per patch. We recover it from basis images and check that
token ``k`` is the SAME affine map of patch ``(k // G, k % G)`` (row-major ``(h w)`` order).

Depatchifier ``(b, n, d) -> (b, 1, img, img)``: after re-randomising zero-initialised weights,
perturbing token ``k`` may only change patch ``(k // G, k % G)`` (plus the final conv's halo).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._core import Fail, Part, SubCheck, close, expect_shape, rerandomize

# ------------------------------------------------------------------------------ patchifier


PATCHIFIER_CONFIG = {"seed": 3, "img": 8, "p": 4, "dim": 6, "b": 2}


def _pbuild(ctx):
    return ctx.new(ctx["img"], ctx["p"], ctx["dim"])


def _pshape(ctx):
    P, img, p, b = _pbuild(ctx), ctx["img"], ctx["p"], ctx["b"]
    n = (img // p) ** 2
    out = P(torch.randn(b, 1, img, img))
    expect_shape(out, (b, n, ctx["dim"]), hint="tokens (b, n, d) with n = (img/p)^2")
    if hasattr(P, "n_tokens") and P.n_tokens != n:
        raise Fail(f"n_tokens is {P.n_tokens}, expected (img_size // patch_size)**2 = {n}")


@torch.no_grad()
def _probe(ctx):
    """Recover the student's map: ``(token_of_patch (G, G), kernels (n, p*p, d), bias (n, d))``."""
    if "probe" in ctx.cache:
        return ctx.cache["probe"]
    P, img, p = _pbuild(ctx), ctx["img"], ctx["p"]
    G, n, d = img // p, (img // p) ** 2, ctx["dim"]
    base = P(torch.zeros(1, 1, img, img))
    expect_shape(base, (1, n, d))
    basis = torch.eye(img * img).reshape(img * img, 1, img, img)
    resp = (P(basis) - base).reshape(img, img, n, d)  # pixel (i, j) -> change of every token
    tol = 1e-6 * (1 + float(resp.abs().max()))
    hit = resp.abs().amax(-1) > tol                   # (img, img, n)
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
    ctx.cache["probe"] = (token_of_patch, kernels, base[0], P)
    return ctx.cache["probe"]


@torch.no_grad()
def _pmap(ctx):
    """Affine (no activation: the order sub-check does not need it) and one kernel for every patch."""
    _, kernels, bias, P = _probe(ctx)
    img = ctx["img"]
    x1, x2 = torch.randn(2, 1, img, img), torch.randn(2, 1, img, img)
    base = bias[None]  # P(0), from the probe
    # affine: P(x1 + x2 / 2) - P(0) = (P(x1) - P(0)) + (P(x2) - P(0)) / 2
    if not close(P(x1 + 0.5 * x2) - base, (P(x1) - base) + 0.5 * (P(x2) - base), 1e-4):
        raise Fail("the output is not an affine function of the image: a patchifier is one linear map per "
                   "patch (no activation)")
    same = close(kernels, kernels[:1].expand_as(kernels), 1e-4)
    same = same and close(bias, bias[:1].expand_as(bias), 1e-4)
    if not same:
        raise Fail("patches are mapped by different linear maps: every patch shares one kernel "
                   "(Conv2d with stride p, or one Linear applied to every flattened patch)")


def _porder(ctx):
    token_of_patch = _probe(ctx)[0]
    G = token_of_patch.shape[0]
    grid = torch.arange(G * G).reshape(G, G)
    if torch.equal(token_of_patch, grid):
        return
    if torch.equal(token_of_patch, grid.t()):
        raise Fail("tokens in column-major order: use row-major (h w), e.g. rearrange 'b d h w -> b (h w) d'")
    raise Fail("tokens in a scrambled order: token k must be patch (k // G, k % G), row-major (h w)")


def _pbatch(ctx):
    P, img = _pbuild(ctx), ctx["img"]
    x = torch.randn(3, 1, img, img)
    full = P(x)
    one = P(x[1:2])
    if not close(full[1:2], one, 1e-5):
        raise Fail("sample 1 of a batch differs from the same image alone: do not mix the batch dimension")


PATCHIFIER = Part(
    "patchifier",
    [
        SubCheck("shape", "output shape (b, n, d), n = (img/p)^2", 1, _pshape),
        SubCheck("patch_map", "each token is the same linear map of its own patch", 2, _pmap),
        SubCheck("order", "tokens in row-major (h w) order", 1, _porder),
        SubCheck("batch", "works at batch size 1 and treats samples independently", 0.5, _pbatch),
    ],
    PATCHIFIER_CONFIG,
    {"size of tensor": "check the shapes: (b, 1, img, img) -> (b, n, d)"},
    rationale=(
        "One shared affine map per patch is the math (2). The row-major order (1) is a convention the "
        "depatchifier must invert: a different order breaks the pair. The output shape (1); treating "
        "samples independently at any batch size (0.5)."
    ),
)

# ------------------------------------------------------------------------------ depatchifier


DEPATCHIFIER_CONFIG = {"seed": 8, "img": 8, "p": 2, "dim": 8, "b": 2}


def _dbuild(ctx):
    D = ctx.new(ctx["img"], ctx["p"], ctx["dim"])
    rerandomize(D, ctx["seed"])
    return D


def _dshape(ctx):
    D, img, p, b = ctx.new(ctx["img"], ctx["p"], ctx["dim"]), ctx["img"], ctx["p"], ctx["b"]
    n = (img // p) ** 2
    expect_shape(D(torch.randn(b, n, ctx["dim"])), (b, 1, img, img),
                 hint="an image (b, 1, img, img): end with a conv to 1 channel")


def _halo(D):
    """How far convolutions can spread a patch: the sum of their half-widths (times dilation)."""
    return sum(max((k - 1) // 2 * d for k, d in zip(m.kernel_size, m.dilation))
               for m in D.modules() if isinstance(m, nn.Conv2d))


@torch.no_grad()
def _dprobe(ctx):
    if "probe" in ctx.cache:
        return ctx.cache["probe"]
    D, img, p, dim = _dbuild(ctx), ctx["img"], ctx["p"], ctx["dim"]
    G, n = img // p, (img // p) ** 2
    x = torch.randn(1, n, dim)
    X = x.repeat(n + 1, 1, 1)
    for k in range(n):
        X[k + 1, k] = torch.randn(dim)
    out = D(X)
    expect_shape(out, (n + 1, 1, img, img))
    diff = (out[1:] - out[:1]).abs()[:, 0]                       # (n, img, img)
    hit = diff > 1e-6 * (1 + float(diff.max()))
    halo = _halo(D)
    # fits[k, q]: every pixel token k changes lies in patch q grown by the final conv's halo
    fits = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        r, c = divmod(q, G)
        box = torch.zeros(img, img, dtype=torch.bool)
        box[max(0, r * p - halo):(r + 1) * p + halo, max(0, c * p - halo):(c + 1) * p + halo] = True
        fits[:, q] = ~(hit & ~box).flatten(1).any(1)
    ctx.cache["probe"] = (hit, fits, G)
    return ctx.cache["probe"]


def _dlocal(ctx):
    hit, fits, G = _dprobe(ctx)
    for k in range(hit.shape[0]):
        if not fits[k].any():
            raise Fail(f"token {k} changes pixels outside one patch: the tokens are scrambled into the image "
                       "(a view/reshape where an axis permutation belongs: undo the patchifier's "
                       "token order)")
        if not hit[k].any():
            raise Fail(f"token {k} does not affect the image at all")


def _dorder(ctx):
    hit, fits, G = _dprobe(ctx)
    n = hit.shape[0]
    row = torch.arange(n)
    col = torch.arange(n).reshape(G, G).t().reshape(-1)
    if bool(fits[row, row].all()):
        return
    if bool(fits[row, col].all()):
        raise Fail("not the inverse token order: token (i, j) lands at patch (j, i) (column-major); "
                   "token k is patch (k // G, k % G), row-major (h w)")
    raise Fail("not the inverse token order: token k must become patch (k // G, k % G) (row-major)")


def _dbatch(ctx):
    D, img, p = _dbuild(ctx), ctx["img"], ctx["p"]
    n = (img // p) ** 2
    x = torch.randn(3, n, ctx["dim"])
    if not close(D(x)[1:2], D(x[1:2]), 1e-5):
        raise Fail("sample 1 of a batch differs from the same tokens alone: do not mix the batch dimension")


DEPATCHIFIER = Part(
    "depatchifier",
    [
        SubCheck("shape", "output shape (b, 1, img, img)", 1, _dshape),
        SubCheck("local", "token k only changes its own patch (plus the final conv's halo)", 1.5, _dlocal),
        SubCheck("order", "token k becomes patch (k // G, k % G): the inverse of the patchifier", 1, _dorder),
        SubCheck("batch", "works at batch size 1 and treats samples independently", 0.5, _dbatch),
    ],
    DEPATCHIFIER_CONFIG,
    {"shape '[": "view/reshape sizes must multiply to the tensor size: (b, n, f*p*p) -> (b, f, img, img)",
     "size of tensor": "check the shapes: (b, n, d) -> (b, 1, img, img)"},
    rationale=(
        "Token k changing only its own patch is the math (1.5); the inverse of the patchifier's order (1) "
        "and the output shape (1) are what the model needs; batch independence (0.5)."
    ),
)
