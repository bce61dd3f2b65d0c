"""patchifier and depatchifier: mutants and alternatives."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from cfgflow_ref import MLP

from . import alternative, mutant
from .components import ConvPatchifier, Depatchifier

P, D = "patchifier", "depatchifier"

# ----------------------------------------------------------------------------- patchifier


@mutant(P, "column-major")
class ColumnMajor(ConvPatchifier):
    """Tokens in (w h) order."""

    def forward(self, x):
        return rearrange(self.proj(x), "b d h w -> b (w h) d")


@mutant(P, "scrambled")
class ViewNoPermute(ConvPatchifier):
    """(b, d, h, w).view(b, n, d): channels and positions mixed."""

    def forward(self, x):
        y = self.proj(x)
        return y.reshape(y.shape[0], -1, y.shape[1])


@mutant(P, "not an affine function")
class ActivatedPatches(ConvPatchifier):
    """A GELU after the projection."""

    def forward(self, x):
        return F.gelu(super().forward(x))


@mutant(P, "n_tokens")
class WrongNTokens(ConvPatchifier):
    """n_tokens = img_size // patch_size (forgot the square)."""

    def __init__(self, img_size, patch_size, dim):
        super().__init__(img_size, patch_size, dim)
        self.n_tokens = img_size // patch_size


@mutant(P, "different linear maps")
class PerTokenLinear(nn.Module):
    """Unfold + a separate Linear for every patch position."""

    def __init__(self, img_size, patch_size, dim):
        super().__init__()
        self.n_tokens = (img_size // patch_size) ** 2
        self.unfold = nn.Unfold(patch_size, stride=patch_size)
        self.w = nn.Parameter(torch.randn(self.n_tokens, patch_size ** 2, dim) / patch_size)

    def forward(self, x):
        patches = self.unfold(x).transpose(1, 2)  # (b, n, p*p)
        return torch.einsum("bnk,nkd->bnd", patches, self.w)


@alternative(P)
class UnfoldLinear(nn.Module):
    """nn.Unfold + nn.Linear (the lab's seed)."""

    def __init__(self, img_size, patch_size, dim):
        super().__init__()
        self.n_tokens = (img_size // patch_size) ** 2
        self.unfold = nn.Unfold(kernel_size=patch_size, stride=patch_size)
        self.proj = nn.Linear(patch_size * patch_size, dim)

    def forward(self, x):
        return self.proj(self.unfold(x).transpose(1, 2))


@alternative(P)
class EinopsLinear(nn.Module):
    """einops patches with (p2 p1) pixel order inside the patch, then Linear."""

    def __init__(self, img_size, patch_size, dim):
        super().__init__()
        self.p = patch_size
        self.n_tokens = (img_size // patch_size) ** 2
        self.proj = nn.Linear(patch_size * patch_size, dim, bias=False)

    def forward(self, x):
        return self.proj(rearrange(x, "b c (h p1) (w p2) -> b (h w) (p2 p1 c)", p1=self.p, p2=self.p))


@alternative(P)
class ConvFlatten(ConvPatchifier):
    """Conv2d then flatten(2).transpose(1, 2)."""

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)

# ----------------------------------------------------------------------------- depatchifier


@mutant(D, "column-major")
class TransposedTokens(Depatchifier):
    """Token (i, j) placed at patch (j, i)."""

    def to_image(self, x):
        return rearrange(x, "b (w h) (f p1 p2) -> b f (h p1) (w p2)", h=self.g, p1=self.p, p2=self.p)


@mutant(D, "outside one patch")
class ViewToImage(Depatchifier):
    """(b, n, f p p).view(b, f, img, img) without a permute."""

    def to_image(self, x):
        b, n, fpp = x.shape
        f = fpp // self.p ** 2
        return x.reshape(b, f, self.g * self.p, self.g * self.p)


@mutant(D, "(b, 1, img, img)")
class NoFinalConv(Depatchifier):
    """Returns the final_dim channels: the last conv is missing."""

    def forward(self, x):
        return self.to_image(self.mlp(self.norm(x)))


@mutant(D, "(b, 1, img, img)")
class DropsChannel(Depatchifier):
    """Squeezes the channel axis: (b, img, img)."""

    def forward(self, x):
        return super().forward(x)[:, 0]


@mutant(D, "inverse token order")
class ReversedTokens(Depatchifier):
    """Tokens placed in reverse order (flip)."""

    def to_image(self, x):
        return super().to_image(x.flip(1))


@alternative(D)
class ViewPermute1x1(nn.Module):
    """The lab's seed: view/permute and a 1x1 conv."""

    def __init__(self, img_size, patch_size, dim, final_dim=10):
        super().__init__()
        self.p, self.g, self.f = patch_size, img_size // patch_size, final_dim
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = MLP([dim, 4 * dim, final_dim * patch_size * patch_size])
        self.conv = nn.Conv2d(final_dim, 1, kernel_size=1)

    def forward(self, x):
        b = x.shape[0]
        p, g = self.p, self.g
        x = self.mlp(self.norm(x)).view(b, g, g, self.f, p, p)
        x = x.permute(0, 3, 1, 4, 2, 5).contiguous().view(b, self.f, g * p, g * p)
        return self.conv(x)


@alternative(D)
class FoldRMS(nn.Module):
    """RMSNorm, Linear to (p p f) per token, nn.Fold, 3x3 conv."""

    def __init__(self, img_size, patch_size, dim, final_dim=10):
        super().__init__()
        self.norm = nn.RMSNorm(dim)
        self.lin = nn.Linear(dim, final_dim * patch_size ** 2)
        self.fold = nn.Fold(output_size=img_size, kernel_size=patch_size, stride=patch_size)
        self.conv = nn.Conv2d(final_dim, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(self.fold(self.lin(self.norm(x)).transpose(1, 2)))


@alternative(D)
class Plain(Depatchifier):
    """einops layout and a 3x3 conv (zero-initialised)."""

    def __init__(self, img_size, patch_size, dim, final_dim=10):
        super().__init__(img_size, patch_size, dim, final_dim)
        nn.init.zeros_(self.conv.weight)


@alternative(D)
class TwoConvsDropout(Depatchifier):
    """Dropout after the MLP (off in eval), then two 3x3 convs (a 2-pixel halo)."""

    def __init__(self, img_size, patch_size, dim, final_dim=10):
        super().__init__(img_size, patch_size, dim, final_dim)
        self.drop = nn.Dropout(0.1)
        self.conv = nn.Sequential(nn.Conv2d(final_dim, final_dim, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(final_dim, 1, 3, padding=1))

    def forward(self, x):
        return self.conv(self.to_image(self.drop(self.mlp(self.norm(x)))))
