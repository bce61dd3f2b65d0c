"""Real-style variants: the habits of real submissions of this lab, written the way students wrote
them, each with the share of the points a careful human grader gives it and the message it must
get. These pin the grading of conventions that differ little from the notebook's (one mistake, one
deduction, in proportion; see "Weighting rubric" in docs/grading-checks.md)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import alternative, mutant
from .cfg_loss import _Base as _Trainer
from .components import DiT as _DiT
from .components import Fourier, Layer, MNISTDiT
from .mlp_field import _Given

# ---------------------------------------------------------------------------------- cfg_loss


@mutant("cfg_loss", "above 1 - eps", fraction=0.95)
class RealNoEps(_Trainer):
    """t = torch.rand(batch_size, device=...) without the eps: reaches 1 (everything else right)."""

    def get_train_loss(self, batch_size):
        z, y = self.path.p_data.sample(batch_size)
        drop = torch.rand(batch_size, device=y.device) < self.eta
        y = torch.where(drop, torch.full_like(y, self.null_label), y)
        t = torch.rand(batch_size, device=z.device)
        x = self.path.sample_conditional_path(z, t)
        return F.mse_loss(self.model(x, t, y), self.path.conditional_vector_field(x, z, t))


@alternative("cfg_loss")
class RealCpuMaskIndex(_Trainer):
    """Mask drawn on the CPU but used only as a boolean index, y[mask] = null (works on a GPU)."""

    def get_train_loss(self, batch_size):
        z, y = self.path.p_data.sample(batch_size)
        mask = torch.rand(batch_size) < self.eta  # CPU: indexing a CUDA tensor with it is allowed
        y = y.clone()
        y[mask] = self.null_label
        t = torch.rand(batch_size, device=z.device) * (1 - self.eps)
        x = self.path.sample_conditional_path(z, t)
        return ((self.model(x, t, y) - self.path.conditional_vector_field(x, z, t)) ** 2).mean()


@mutant("cfg_loss", "device=y.device", fraction=0.89)
class RealCpuMaskWhere(_Trainer):
    """Mask drawn on the CPU inside torch.where with the labels (fails on a GPU)."""

    def get_train_loss(self, batch_size):
        z, y = self.path.p_data.sample(batch_size)
        mask = torch.rand(batch_size) < self.eta
        y = torch.where(mask, self.null_label, y)
        t = torch.rand(batch_size, device=z.device) * (1 - self.eps)
        x = self.path.sample_conditional_path(z, t)
        return F.mse_loss(self.model(x, t, y), self.path.conditional_vector_field(x, z, t))


# --------------------------------------------------------------------------------- mlp_field


@mutant("mlp_field", "(b, 1, 1, 1)", fraction=0.9)
class RealUnsqueezeT(_Given):
    """t.unsqueeze(-1): right for t of shape (b,) (batch size 1 included), not for (b, 1, 1, 1)."""

    def forward(self, x, t, y):
        return self.mlp(torch.cat([x, self.class_embedding(y), t.unsqueeze(-1)], dim=-1))


# --------------------------------------------------------------------------------------- mha


@alternative("mha")
class RealSeparateQKV(nn.Module):
    """Separate to_q, to_k, to_v, to_out Linear(dim, dim) with biases, view/transpose, manual softmax."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (f(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
                   for f in (self.to_q, self.to_k, self.to_v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        return self.to_out((att @ v).transpose(1, 2).reshape(b, n, d))


# --------------------------------------------------------------------------------- dit_layer


@alternative("dit_layer")
class RealRMSNormAffine(Layer):
    """nn.RMSNorm with a learned gain (affine) in both branches."""

    def __init__(self, dim, heads):
        super().__init__(dim, heads)
        self.norm1 = nn.RMSNorm(dim, elementwise_affine=True)
        self.norm2 = nn.RMSNorm(dim, elementwise_affine=True)


@alternative("dit_layer")
class RealChunkOrder(Layer):
    """The six adaLN chunks in another order: both gates first, then the scales, then the shifts."""

    def forward(self, x, c):
        g1, g2, sc1, sc2, s1, s2 = self.cond(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(self.norm1(x) * (1 + sc1.unsqueeze(1)) + s1.unsqueeze(1))
        return x + g2.unsqueeze(1) * self.mlp(self.norm2(x) * (1 + sc2.unsqueeze(1)) + s2.unsqueeze(1))


# --------------------------------------------------------------------------------------- dit


@mutant("dit", "an extra module runs after the last layer", fraction=0.94)
class RealFinalNormLinear(_DiT):
    """A final LayerNorm + Linear after the last layer (DiT's final layer, here the Depatchifier's job)."""

    def __init__(self, depth, n_tokens, dim, **layer_kwargs):
        super().__init__(depth, n_tokens, dim, **layer_kwargs)
        self.final_norm = nn.LayerNorm(dim)
        self.final_linear = nn.Linear(dim, dim)

    def forward(self, x, c):
        return self.final_linear(self.final_norm(super().forward(x, c)))


# --------------------------------------------------------------------------------- mnist_dit


class _SqueezeFourier(Fourier):
    """Right for t of shape (b,) and b > 1: a 0-d t (t.squeeze() at b = 1) breaks the concatenation."""

    def forward(self, t):
        f = 2 * math.pi * t.unsqueeze(-1) * self.weights  # (b, d/2); (d/2,) for a 0-d t
        return torch.cat([f.cos(), f.sin()], dim=1)


@mutant("mnist_dit", "batch size 1", fraction=0.9)
class RealSqueezeInModel(MNISTDiT):
    """t = t.squeeze() in the model (for t of shape (b, 1, 1, 1)): fails at batch size 1 only."""

    time_cls = _SqueezeFourier

    def time(self, t):
        return t.squeeze()

