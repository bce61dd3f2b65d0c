"""Model parts against independent definitions: PyTorch's MultiheadAttention and SDPA,
adaLN-Zero identity at init, row-major patch order, the depatchifier's locality, the
Fourier formula, shape conventions of t and batch size 1, and input-shape errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cfgflow_ref.models import (
    MHA,
    Depatchifier,
    DiffusionTransformer,
    DiffusionTransformerLayer,
    FourierEncoder,
    MLPConditionalVectorField,
    MNISTDiffusionTransformer,
    Patchifier,
    attention,
)


def small_dit():
    return MNISTDiffusionTransformer(patch_size=8, num_layers=2, dim=32, heads=4).eval()


def perturb_adaln(module: nn.Module, std: float = 0.5):
    """Give every adaLN-Zero projection non-zero weights (as after training)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, DiffusionTransformerLayer):
                m.adaLN[-1].weight.normal_(0, std)
                m.adaLN[-1].bias.normal_(0, std)


# -- attention ---------------------------------------------------------------------------

@pytest.mark.parametrize("dim, heads", [(32, 4), (24, 3), (16, 1)])
def test_mha_equals_torch_multihead_attention(dim, heads):
    mha = MHA(dim, heads)
    ref = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(mha.to_qkv.weight)
        ref.in_proj_bias.copy_(mha.to_qkv.bias)
        ref.out_proj.weight.copy_(mha.to_out.weight)
        ref.out_proj.bias.copy_(mha.to_out.bias)
    x = torch.randn(3, 7, dim)
    want, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(mha(x), want, rtol=1e-5, atol=1e-5)


def test_attention_from_scratch_equals_sdpa():
    q = torch.randn(2, 3, 5, 8)
    k, v = torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 6)
    torch.testing.assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v),
                               rtol=1e-5, atol=1e-5)


def test_attention_explicit_single_query():
    """One query, two keys: the softmax weights are computable by hand."""
    q = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])  # (1, 1, 1, 4), head_dim 4 => scale 1/2
    k = torch.tensor([[[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    v = torch.tensor([[[[1.0], [0.0]]]])
    w0 = math.exp(1.0) / (math.exp(1.0) + 1.0)
    assert attention(q, k, v).item() == pytest.approx(w0, rel=1e-6)


def test_mha_bad_arguments_raise():
    with pytest.raises(ValueError, match="divisible"):
        MHA(10, 3)
    with pytest.raises(ValueError, match="x must have shape"):
        MHA(8, 2)(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="x must have shape"):
        MHA(8, 2)(torch.randn(5, 8))


# -- DiT layer ---------------------------------------------------------------------------

def test_dit_layer_is_identity_at_init_and_not_after_training():
    layer = DiffusionTransformerLayer(dim=32, heads=4)
    x, c = 3 * torch.randn(2, 5, 32), 3 * torch.randn(2, 32)
    assert torch.equal(layer(x, c), x)
    perturb_adaln(layer)
    out = layer(x, c)
    assert out.shape == x.shape
    assert (out - x).abs().max() > 1e-2
    # The conditioning is per sample: changing c of sample 1 leaves sample 0 untouched.
    c2 = c.clone()
    c2[1] += 1.0
    out2 = layer(x, c2)
    torch.testing.assert_close(out2[0], out[0])
    assert not torch.allclose(out2[1], out[1])


@pytest.mark.parametrize("shift, scale", [(0.0, 0.0), (0.3, 0.5)])
def test_dit_layer_modulation_math(shift, scale):
    """With the adaLN output fixed through its bias (weight 0), the block computes
    x1 = x + g1 * attn(LN(x) (1 + scale) + shift), out = x1 + g2 * mlp(LN(x1) (1 + scale) + shift)."""
    d = 16
    layer = DiffusionTransformerLayer(dim=d, heads=2)
    g1, g2 = 0.7, 1.3
    with torch.no_grad():  # chunk order of the reference: shift1, scale1, gate1, shift2, scale2, gate2
        layer.adaLN[-1].bias.copy_(torch.tensor([shift, scale, g1, shift, scale, g2]).repeat_interleave(d))
    x, c = torch.randn(2, 5, d), torch.randn(2, d)

    def mod(h):
        return F.layer_norm(h, (d,), eps=1e-6) * (1 + scale) + shift

    x1 = x + g1 * layer.attn(mod(x))
    want = x1 + g2 * layer.mlp(mod(x1))
    torch.testing.assert_close(layer(x, c), want, rtol=1e-5, atol=1e-5)


def test_dit_layer_bad_shapes_raise():
    layer = DiffusionTransformerLayer(dim=16, heads=2)
    with pytest.raises(ValueError, match="c must have shape"):
        layer(torch.randn(2, 4, 16), torch.randn(2, 1, 16))
    with pytest.raises(ValueError, match="x must have shape"):
        layer(torch.randn(2, 4, 8), torch.randn(2, 16))


def test_diffusion_transformer_adds_positions_out_of_place():
    dit = DiffusionTransformer(depth=2, n_tokens=4, dim=16, heads=2)
    x = torch.randn(2, 4, 16, requires_grad=True)  # a leaf: in-place add would raise
    x_before = x.detach().clone()
    out = dit(x, torch.randn(2, 16))
    assert torch.equal(x.detach(), x_before)
    # Identity layers at init: the output is exactly x + pos (broadcast over the batch).
    torch.testing.assert_close(out, x + dit.pos[None])
    with pytest.raises(ValueError, match="x must have shape"):
        dit(torch.randn(2, 5, 16), torch.randn(2, 16))


# -- patchify / depatchify ---------------------------------------------------------------

@pytest.mark.parametrize("img, p", [(32, 4), (32, 8), (12, 3)])
def test_patchifier_tokens_are_row_major(img, p):
    g = img // p
    patch_id = torch.arange(g * g, dtype=torch.float32).reshape(g, g)
    image = patch_id.repeat_interleave(p, 0).repeat_interleave(p, 1)[None, None]  # (1, 1, img, img)
    assert image[0, 0, p, 2 * p].item() == g + 2  # patch (1, 2) holds 1 * G + 2
    pat = Patchifier(img, p, dim=3)
    with torch.no_grad():
        pat.proj.weight.fill_(1.0 / p**2)  # every output channel averages the patch
        pat.proj.bias.zero_()
    tokens = pat(image.repeat(2, 1, 1, 1))
    assert tokens.shape == (2, g * g, 3)
    want = torch.arange(g * g, dtype=torch.float32)[None, :, None].expand(2, -1, 3)
    torch.testing.assert_close(tokens, want)


def test_patchifier_bad_shapes_raise():
    with pytest.raises(ValueError, match="divisible"):
        Patchifier(32, 5, 8)
    with pytest.raises(ValueError, match="x must have shape"):
        Patchifier(32, 4, 8)(torch.randn(2, 32, 32))


@pytest.mark.parametrize("img, p", [(32, 4), (32, 8)])
def test_depatchifier_maps_token_k_to_patch_k_row_major(img, p):
    g = img // p
    dep = Depatchifier(img, p, dim=16).eval()
    tokens = torch.randn(1, g * g, 16)
    base = dep(tokens)
    assert base.shape == (1, 1, img, img)
    for k in (0, 1, g + 2, g * g - 1):
        i, j = k // g, k % g
        moved = tokens.clone()
        moved[0, k] += 3 * torch.randn(16)
        diff = (dep(moved) - base)[0, 0].abs()
        changed = diff > 1e-6
        # Inside the patch: changed; outside the patch and its 1-pixel halo (3x3 conv): not.
        assert changed[i * p:(i + 1) * p, j * p:(j + 1) * p].any()
        allowed = torch.zeros_like(changed)
        allowed[max(i * p - 1, 0):(i + 1) * p + 1, max(j * p - 1, 0):(j + 1) * p + 1] = True
        assert not (changed & ~allowed).any(), f"token {k} leaked outside patch ({i}, {j})"


def test_depatchifier_bad_shape_raises():
    with pytest.raises(ValueError, match="x must have shape"):
        Depatchifier(32, 8, 16)(torch.randn(1, 15, 16))


# -- Fourier features --------------------------------------------------------------------

def test_fourier_encoder_formula():
    enc = FourierEncoder(8)
    assert isinstance(enc.weights, nn.Parameter) and enc.weights.shape == (4,)
    t = torch.rand(5)
    w = enc.weights.detach()
    want = torch.cat([torch.cos(2 * math.pi * t[:, None] * w), torch.sin(2 * math.pi * t[:, None] * w)],
                     dim=1)  # cos block first, no extra factor
    torch.testing.assert_close(enc(t), want)
    torch.testing.assert_close(enc(t.reshape(5, 1, 1, 1)), want)
    # The squared norm of each embedding is dim / 2 (cos^2 + sin^2 per frequency).
    torch.testing.assert_close((enc(t) ** 2).sum(1), torch.full((5,), 4.0))


def test_fourier_encoder_bad_dim_raises():
    for dim in (0, 3, 7):
        with pytest.raises(ValueError, match="dim"):
            FourierEncoder(dim)


# -- whole models: t shapes and batch size 1 ---------------------------------------------

def _models():
    torch.manual_seed(0)
    mlp = MLPConditionalVectorField(dim=2, hidden_dim=32, class_dim=4, num_classes=3).eval()
    dit = small_dit()
    perturb_adaln(dit, 0.1)
    return [("mlp", mlp, (2,), 3), ("dit", dit, (1, 32, 32), 10)]


@pytest.mark.parametrize("name, model, shape, null", _models(), ids=["mlp", "dit"])
def test_models_accept_both_t_shapes_and_batch_size_1(name, model, shape, null):
    b = 3
    x = torch.randn(b, *shape)
    t = torch.rand(b)
    y = torch.tensor([0, 1, null])  # includes the null label (num_classes + 1 embedding rows)
    with torch.no_grad():
        out = model(x, t, y)
        assert out.shape == (b, *shape)
        torch.testing.assert_close(model(x, t.reshape(b, 1, 1, 1), y), out)
        for i in range(b):
            one = model(x[i:i + 1], t[i:i + 1], y[i:i + 1])
            assert one.shape == (1, *shape)
            torch.testing.assert_close(one, out[i:i + 1], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(model(x[i:i + 1], t[i:i + 1].reshape(1, 1, 1, 1), y[i:i + 1]),
                                       one)
        # The output depends on t and y (not a constant map).
        assert not torch.allclose(model(x, 1 - t, y), out)
        assert not torch.allclose(model(x, t, torch.tensor([1, 0, 0])), out)


def test_mlp_field_bad_shapes_raise():
    m = MLPConditionalVectorField(dim=2, hidden_dim=8, class_dim=2, num_classes=3)
    with pytest.raises(ValueError, match="t must have shape"):
        m(torch.randn(4, 2), torch.rand(3), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.randn(4, 3), torch.rand(4), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="y must have shape"):
        m(torch.randn(4, 2), torch.rand(4), torch.zeros(4, 1, dtype=torch.int64))


def test_mnist_dit_bad_shapes_raise():
    m = small_dit()
    x, t, y = torch.randn(2, 1, 32, 32), torch.rand(2), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.randn(2, 32, 32), t, y)
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.randn(2, 1, 28, 28), t, y)
    with pytest.raises(ValueError, match="t must have shape"):
        m(x, torch.rand(3), y)
    with pytest.raises(ValueError, match="y must have shape"):
        m(x, t, torch.tensor([1]))
