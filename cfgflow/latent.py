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
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch
import torch.nn as nn


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
