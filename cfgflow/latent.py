"""Given code of Notebook 3 (latent generation): the :class:`VAE` that composes YOUR encoder,
decoder, Gaussian posterior and loss, and the interface the latent trainer and sampler rely on.

Shapes: b batch, c latent channels, h x w latent grid (8 x 8 for two halving stages of a
32 x 32 image). Nothing here computes a graded part: every method calls the classes it was
built with.

The interface (what ``LatentCFGTrainer`` and ``LatentCFGSampler`` may call on a ``vae``):

* ``vae.encode(x)``: ``(b, 1, 32, 32)`` -> ``(z_mean, z_logvar)``, ``z_logvar`` broadcastable
  to ``z_mean: (b, c, h, w)``;
* ``vae.sample_latent(x)``: one reparameterised latent sample ``(b, c, h, w)`` of ``x``'s
  posterior (``posterior(z_mean, z_logvar).sample()``);
* ``vae.decode(z)``: ``(b, c, h, w)`` -> ``(x_mean, x_logvar)``, ``x_mean: (b, 1, 32, 32)``,
  ``x_logvar`` broadcastable to it;
* ``vae.compute_loss(x)``: the beta-weighted negative ELBO of a batch (a scalar).

Also given, for the notebook's training cells: :class:`VAETrainer` (the VAE's loss with the
course's :class:`~cfgflow.training.Trainer`) and :class:`LatentConvField`, a small conditional
vector field on any ``(c, h, w)`` grid (latents or pixels): the same field is trained in the
latent space and, as the baseline, on pixels.
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import ConditionalVectorField
from .training import Trainer


class VAE(nn.Module):
    """A variational autoencoder from its parts.

    Args:
        encoder: ``x -> (z_mean, z_logvar)``.
        decoder: ``z -> (x_mean, x_logvar)``.
        loss: ``loss(x, x_mean, x_logvar, z_mean, z_logvar) -> scalar`` (a ``VAELoss``; it
            holds beta).
        posterior: ``posterior(mean, logvar)`` is a diagonal Gaussian with a ``sample()``
            method (a ``DiagonalGaussian`` class).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, loss: Callable, posterior: type):
        super().__init__()
        self.encoder, self.decoder, self.loss, self.posterior = encoder, decoder, loss, posterior

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(b, 1, 32, 32)`` -> ``(z_mean: (b, c, h, w), z_logvar)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(b, c, h, w)`` -> ``(x_mean: (b, 1, 32, 32), x_logvar)``."""
        return self.decoder(z)

    def sample_latent(self, x: torch.Tensor) -> torch.Tensor:
        """One reparameterised sample of ``q(z | x)``: ``(b, c, h, w)``."""
        return self.posterior(*self.encode(x)).sample()

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's mean of the posterior's mean: ``(b, 1, 32, 32)`` (for figures)."""
        z_mean, _ = self.encode(x)
        return self.decode(z_mean)[0]

    def compute_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The loss of a batch ``x: (b, 1, 32, 32)``: encode, one reparameterised sample,
        decode, ``loss(...)``."""
        z_mean, z_logvar = self.encode(x)
        z = self.posterior(z_mean, z_logvar).sample()
        x_mean, x_logvar = self.decode(z)
        return self.loss(x, x_mean, x_logvar, z_mean, z_logvar)


class IdentityAutoencoder(nn.Module):
    """The pixel space as a "latent" space: ``encode`` / ``decode`` / ``sample_latent`` return
    their input (log-variance ``-inf``: no noise). With it the latent trainer and sampler train
    and sample a pixel-space model: the baseline of the pixel-vs-latent comparison."""

    def encode(self, x):
        return x, torch.full((), float("-inf"), device=x.device)

    def decode(self, z):
        return z, torch.full((), float("-inf"), device=z.device)

    def sample_latent(self, x):
        return x


@torch.no_grad()
def latent_scale(vae, images: torch.Tensor, batch_size: int = 256) -> float:
    """``1 / std`` of the latent samples of ``images`` (all entries pooled): the factor that
    brings the latents to about unit variance before the flow model sees them (Stable
    Diffusion's 0.18215 is that factor for its autoencoder)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must have shape (n, 1, 32, 32), got {tuple(getattr(images, 'shape', ()))}")
    zs = torch.cat([vae.sample_latent(images[i:i + batch_size]).float()
                    for i in range(0, images.shape[0], batch_size)])
    std = float(zs.std())
    if not std > 0:
        raise ValueError(f"the latents have standard deviation {std}: is the encoder trained?")
    return 1.0 / std


class VAETrainer(Trainer):
    """Trains a :class:`VAE` with the course's :class:`~cfgflow.training.Trainer` (AdamW, warm-up,
    schedules, time budget): each step draws ``batch_size`` images of ``data`` (labels unused)
    and minimises ``vae.compute_loss(images)``, i.e. YOUR loss of YOUR encoder and decoder.

    ``VAETrainer(data).train(model=vae, num_steps=..., batch_size=64, ...)``.
    """

    def __init__(self, data, **kwargs):
        super().__init__(**kwargs)
        self.data = data

    def get_train_loss(self, batch_size: int) -> torch.Tensor:
        images, _ = self.data.sample(batch_size)  # (b, 1, 32, 32)
        return self.model.compute_loss(images)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class FiLMConvBlock(nn.Module):
    """A residual conv block whose middle is modulated by the conditioning vector ``c`` (FiLM,
    Perez et al. 2018: a feature-wise gain and bias regressed from ``c``):

        h = conv3x3(SiLU(GroupNorm(x)));  h = GroupNorm(h) * gain(c) + bias(c)
        out = x + conv3x3(SiLU(h))      (the last conv starts at zero: the block starts as the identity)

    The gain's bias starts at 1 (plus Linear's usual small random init), so the gain starts
    near 1.

    ``x: (b, k, h, w)``, ``c: (b, d)`` -> ``(b, k, h, w)``.
    """

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm1, self.norm2 = _group_norm(channels), _group_norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * channels)  # -> (gain, bias)
        with torch.no_grad():
            self.film.bias[:channels] += 1.0
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (b, k, h, w)
        gain, bias = self.film(F.silu(c))[:, :, None, None].chunk(2, dim=1)  # 2 x (b, k, 1, 1)
        h = self.norm2(h) * gain + bias
        return x + self.conv2(F.silu(h))


class LatentConvField(ConditionalVectorField):
    """A small conditional vector field ``u_t(x | y)`` on any ``(channels, h, w)`` grid with even
    ``h`` and ``w``: the 4 x 8 x 8 latents of the VAE, or 1 x 32 x 32 pixels for the baseline.

    A two-level convolutional U-Net: ``blocks`` :class:`FiLMConvBlock` at full resolution, a
    stride-2 convolution, ``blocks`` at half resolution (twice the width), nearest upsampling
    added to the full-resolution features (a skip), ``blocks`` more, and a 3x3 convolution back
    to ``channels``. Every block is conditioned on ``c = MLP(t) + Embedding(y)`` (``(b, d)``):
    time through a small MLP of the scalar ``t``, labels through ``nn.Embedding(num_classes + 1,
    d)`` whose last row is the null label of classifier-free guidance.

    Args:
        channels: input (and output) channels (4 for the latents, 1 for pixels).
        width: channels of the full-resolution blocks (``2 * width`` at half resolution).
        blocks: blocks per level.
        cond_dim: width ``d`` of the conditioning vector.
    """

    def __init__(self, channels: int, width: int = 64, blocks: int = 2, cond_dim: int = 128,
                 num_classes: int = 10):
        super().__init__()
        self.channels = channels
        self.time_mlp = nn.Sequential(nn.Linear(1, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim),
                                      nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.label_embedding = nn.Embedding(num_classes + 1, cond_dim)
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.high = nn.ModuleList(FiLMConvBlock(width, cond_dim) for _ in range(blocks))
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.low = nn.ModuleList(FiLMConvBlock(2 * width, cond_dim) for _ in range(blocks))
        self.up = nn.Conv2d(2 * width, width, 3, padding=1)
        self.out_blocks = nn.ModuleList(FiLMConvBlock(width, cond_dim) for _ in range(blocks))
        self.conv_out = nn.Sequential(_group_norm(width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x: (b, channels, h, w)``, ``t: (b,)`` or ``(b, 1, 1, 1)``, ``y: (b,)`` int64 in
        ``{0, ..., num_classes}`` -> ``(b, channels, h, w)``."""
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"x must have shape (b, {self.channels}, h, w) with even h and w, "
                             f"got {tuple(x.shape)}")
        c = self.time_mlp(t.reshape(-1, 1).to(x.dtype)) + self.label_embedding(y)  # (b, d)
        h = self.conv_in(x)  # (b, k, h, w)
        for block in self.high:
            h = block(h, c)
        skip = h
        h = self.down(h)  # (b, 2k, h/2, w/2)
        for block in self.low:
            h = block(h, c)
        h = skip + self.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))  # (b, k, h, w)
        for block in self.out_blocks:
            h = block(h, c)
        return self.conv_out(h)  # (b, channels, h, w)
