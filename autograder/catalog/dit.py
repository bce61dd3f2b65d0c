"""dit_layer, dit and mnist_dit: mutants and alternatives."""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from cfgflow_ref import MLP, ConditionalVectorField

from . import alternative, mutant
from .attention import LabBmm, SeparateSDPA
from .components import DiT, Fourier, Layer, MNISTDiT
from .patches import FoldRMS, UnfoldLinear

L, T, M = "dit_layer", "dit", "mnist_dit"

# ----------------------------------------------------------------------------- dit_layer


@mutant(L, "zero-initialise")
class NoZeroInit(Layer):
    """Conditioning Linear keeps its default init: not the identity at init."""

    def zero_init(self):
        pass


@mutant(L, "gates unused")
class GatesUnused(Layer):
    """Branches added without their gates."""

    @staticmethod
    def gated(x, gate, h):
        return x + h


@mutant(L, "x * (1 + scale)")
class ScaleOnly(Layer):
    """Modulation x * scale + shift."""

    @staticmethod
    def modulate(h, shift, scale):
        return h * scale[:, None] + shift[:, None]


@mutant(L, "[:, None, :]")
class NoTokenBroadcast(Layer):
    """(b, d) modulation indexed [None]: broadcast over the batch axis, not the tokens."""

    @staticmethod
    def modulate(h, shift, scale):
        return h * (1 + scale[None]) + shift[None]

    @staticmethod
    def gated(x, gate, h):
        return x + gate[None] * h


@mutant(L, "shift/scale block")
class NoModulation(Layer):
    """Normalised input never modulated."""

    @staticmethod
    def modulate(h, shift, scale):
        return h


@mutant(L, "tokens do not interact")
class NoAttention(Layer):
    """Attention branch replaced by a per-token Linear."""

    def __init__(self, dim, heads):
        super().__init__(dim, heads)
        self.attn = nn.Linear(dim, dim)


@alternative(L)
class RMSNormMLPCond(nn.Module):
    """RMSNorm with affine, two-layer MLP conditioning, chunk order gate/shift/scale, separate-qkv SDPA."""

    def __init__(self, dim, heads):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.attn = SeparateSDPA(dim, heads)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.ada = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x, c):
        g1, b1, s1, g2, b2, s2 = rearrange(self.ada(c), "b (six d) -> six b 1 d", six=6)
        x = x + g1 * self.attn(self.n1(x) * (1 + s1) + b1)
        return x + g2 * self.ff(self.n2(x) * (1 + s2) + b2)


@alternative(L)
class LabSeedLayer(nn.Module):
    """The lab's seed: LayerNorm, bare SiLU+Linear, gamma/beta/alpha order, bmm attention."""

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = LabBmm(dim=dim, heads=heads)
        self.mlp = MLP([dim, 4 * dim, dim])
        self.cond = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, bias=True))
        nn.init.zeros_(self.cond[-1].weight)
        nn.init.zeros_(self.cond[-1].bias)

    @staticmethod
    def _modulate(x, gamma, beta):
        return x * (1.0 + gamma[:, None, :]) + beta[:, None, :]

    def forward(self, x, c):
        gamma1, beta1, alpha1, gamma2, beta2, alpha2 = self.cond(c).chunk(6, dim=-1)
        x = x + alpha1[:, None, :] * self.attn(self._modulate(self.norm1(x), gamma1, beta1))
        return x + alpha2[:, None, :] * self.mlp(self._modulate(self.norm2(x), gamma2, beta2))


@alternative(L)
class SeparateHeads(nn.Module):
    """Six zero-initialised Linear(dim, dim) heads, affine LayerNorm, bare Linear conditioning."""

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = LabBmm(dim, heads)
        self.mlp = MLP([dim, 4 * dim, dim], activation=nn.GELU)
        self.heads = nn.ModuleList([nn.Linear(dim, dim) for _ in range(6)])
        for h in self.heads:
            nn.init.zeros_(h.weight)
            nn.init.zeros_(h.bias)

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = (h(c).unsqueeze(1) for h in self.heads)
        x = x + g1 * self.attn(torch.addcmul(sh1, self.norm1(x), 1 + sc1))
        return x + g2 * self.mlp(torch.addcmul(sh2, self.norm2(x), 1 + sc2))

# ----------------------------------------------------------------------------- dit


@mutant(T, "in place")
class PosInPlace(DiT):
    """x += pos on the caller's tensor."""

    def forward(self, x, c):
        x += self.pos
        for layer in self.layers:
            x = layer(x, c)
        return x


@mutant(T, "wrong axis")
class PosWrongAxis(DiT):
    """pos[:, None, :] broadcasts over the wrong axis (only runs when b == n or b == 1)."""

    def forward(self, x, c):
        x = x + self.pos[:, None, :]
        for layer in self.layers:
            x = layer(x, c)
        return x


@mutant(T, "only one layer")
class LastLayerOnly(DiT):
    """Every layer reads the input: only the last one counts."""

    def forward(self, x, c):
        x = x + self.pos[None]
        out = x
        for layer in self.layers:
            out = layer(x, c)
        return out


@mutant(T, "same layer object")
class SharedLayer(DiT):
    """[layer] * depth: one layer repeated."""

    def __init__(self, depth, n_tokens, dim, **layer_kwargs):
        super().__init__(depth, n_tokens, dim, **layer_kwargs)
        self.layers = nn.ModuleList([self.layers[0]] * depth)


@mutant(T, "no positional encoding")
class PosBuffer(DiT):
    """Fixed random positional encoding in a buffer (not learned)."""

    def __init__(self, depth, n_tokens, dim, **layer_kwargs):
        super().__init__(depth, n_tokens, dim, **layer_kwargs)
        del self.pos
        self.register_buffer("pos", torch.randn(n_tokens, dim))


@alternative(T)
class BatchedPosSequential(nn.Module):
    """pos of shape (1, n, d), layers in an nn.Sequential-like ModuleList, RMSNorm layers."""

    def __init__(self, depth, n_tokens, dim, **layer_kwargs):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, dim))
        self.blocks = nn.ModuleList(RMSNormMLPCond(dim, **layer_kwargs) for _ in range(depth))

    def forward(self, x, c):
        h = torch.add(x, self.pos_embed)
        for blk in self.blocks:
            h = blk(h, c)
        return h


@alternative(T)
class SeedDiT(DiT):
    """The lab's seed with its own layer class."""

    layer_cls = LabSeedLayer


class _StubForwardLayer(Layer):
    """A layer with its constructor written and its forward still the template's."""

    def forward(self, x, c):
        raise NotImplementedError()


class _TemplateLayer(nn.Module):
    """The notebook's template DiffusionTransformerLayer, untouched: constructor and forward raise."""

    def __init__(self, dim, heads):
        super().__init__()
        self.dim = dim
        raise NotImplementedError()

    def forward(self, x, c):
        raise NotImplementedError()


@alternative(T)
class OverStubLayer(DiT):
    """Correct DiT over a layer whose forward raises NotImplementedError (issue 20): test doubles
    stand in for the layers, the DiT earns its full share."""

    layer_cls = _StubForwardLayer


@alternative(T)
class OverTemplateLayer(DiT):
    """Correct DiT over the untouched template layer (its constructor raises too): built bare, then
    stood in for by test doubles; the DiT earns its full share."""

    layer_cls = _TemplateLayer

# ----------------------------------------------------------------------------- mnist_dit




@mutant(M, "11 rows")
class TenLabels(MNISTDiT):
    """nn.Embedding(10, dim) from the lab's hint: no null row."""

    n_labels = 10


@mutant(M, "does not depend on the label")
class NoLabel(MNISTDiT):
    """Conditions on time only."""

    def forward(self, x, t, y):
        c = self.time_embedder(self.time(t))
        return self.depatchifier(self.dit(self.patchifier(x), c))


@mutant(M, "does not depend on t")
class NoTime(MNISTDiT):
    """Conditions on the label only."""

    def forward(self, x, t, y):
        return self.depatchifier(self.dit(self.patchifier(x), self.y_embedder(y)))


@mutant(M, "(b, 1, 1, 1)")
class RawTime(MNISTDiT):
    """Passes t unchanged to an encoder that expects (b,)."""

    class _Enc(Fourier):
        def forward(self, t):
            f = 2 * torch.pi * t[:, None] * self.weights[None]
            return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)

    time_cls = _Enc

    def time(self, t):
        return t


@mutant(M, "batch size 1")
class SqueezeTime(RawTime):
    """time_embedder(t.squeeze()) with an encoder doing t[:, None]: fails at batch size 1."""

    def time(self, t):
        return t.squeeze()


@mutant(M, "modified in place")
class NormalisesInPlace(MNISTDiT):
    """Normalises the caller's images in place."""

    def forward(self, x, t, y):
        x.sub_(0.1305).div_(0.2891)
        return super().forward(x, t, y)


@alternative(M)
class MixedParts(ConditionalVectorField):
    """Unfold patchifier, RMSNorm/MLP-conditioned layers, Fold depatchifier, time MLP after Fourier."""

    def __init__(self, patch_size=8, num_layers=12, dim=256, heads=4):
        super().__init__()
        self.t_embed = nn.Sequential(Fourier(dim), nn.Linear(dim, dim))
        self.label = nn.Embedding(11, dim)
        self.patch = UnfoldLinear(32, patch_size, dim)
        self.body = BatchedPosSequential(num_layers, self.patch.n_tokens, dim, heads=heads)
        self.head = FoldRMS(32, patch_size, dim)

    def forward(self, x, t, y):
        c = self.t_embed(t.flatten()) + self.label(y)
        return self.head(self.body(self.patch(x), c))


@alternative(M)
class Plain(MNISTDiT):
    """Conv patchifier, fused-qkv layers, einops depatchifier with 3x3 conv."""


class _TemplateFourier(nn.Module):
    """The notebook's template FourierEncoder, untouched."""

    def __init__(self, dim):
        super().__init__()
        raise NotImplementedError()

    def forward(self, t):
        raise NotImplementedError()


class _TemplatePatchifier(nn.Module):
    """The notebook's template Patchifier, untouched (it sets n_tokens before raising)."""

    def __init__(self, img_size, patch_size, dim):
        super().__init__()
        self.n_tokens = (img_size // patch_size) ** 2
        raise NotImplementedError()

    def forward(self, x):
        raise NotImplementedError()


class _TemplateDiT(nn.Module):
    """The notebook's template DiffusionTransformer, untouched."""

    def __init__(self, depth, n_tokens, dim, **layer_kwargs):
        super().__init__()
        self.n_tokens, self.dim = n_tokens, dim
        raise NotImplementedError()

    def forward(self, x, c):
        raise NotImplementedError()


class _TemplateDepatchifier(nn.Module):
    """The notebook's template Depatchifier, untouched."""

    def __init__(self, img_size, patch_size, dim, final_dim=10):
        super().__init__()
        self.patch_size, self.grid = patch_size, img_size // patch_size
        raise NotImplementedError()

    def forward(self, x):
        raise NotImplementedError()


@alternative(M)
class OverTemplateTrunk(MNISTDiT):
    """Correct model over the untouched template DiffusionTransformer: a test double stands in for
    the trunk, the model earns its full share (the trunk is charged in dit only)."""

    dit_cls = _TemplateDiT


@alternative(M)
class OverTemplateParts(MNISTDiT):
    """Correct model over untouched templates of every component (encoder, patchifier, trunk,
    depatchifier): test doubles stand in for all four, the model earns its full share."""

    time_cls, patch_cls, dit_cls, depatch_cls = _TemplateFourier, _TemplatePatchifier, _TemplateDiT, \
        _TemplateDepatchifier
