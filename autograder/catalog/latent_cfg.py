"""latent_cfg_loss and latent_sampler: mutants and alternatives of LatentCFGTrainer.get_train_loss
and LatentCFGSampler.sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cfgflow.data import unnormalize
from cfgflow.simulation import CFGVectorFieldODE, EulerSimulator, HeunSimulator, sample_cfg
from cfgflow.training import Trainer

from . import alternative, mutant

P = "latent_cfg_loss"


class _Trainer(Trainer):
    """The notebook's skeleton: its constructor and the given ``sample_time``."""

    def __init__(self, path, vae, scale: float, eta: float, null_label: int, eps: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.path, self.vae, self.scale = path, vae, float(scale)
        self.eta, self.null_label, self.eps = eta, null_label, eps

    def sample_time(self, batch_size: int, device) -> torch.Tensor:
        return (1 - self.eps) * torch.rand(batch_size, device=device)

    # pieces a mutant overrides
    def latents(self, images):
        with torch.no_grad():
            return self.scale * self.vae.sample_latent(images)

    def mask(self, y):
        return torch.rand(y.shape[0], device=y.device) < self.eta

    def null(self, y, drop):
        return y.masked_fill(drop, self.null_label)

    def times(self, z):
        return self.sample_time(z.shape[0], z.device)

    def objective(self, pred, target):
        return F.mse_loss(pred, target)

    def get_train_loss(self, batch_size: int):
        images, y = self.path.p_data.sample(batch_size)
        z = self.latents(images)
        y = self.null(y, self.mask(y))
        t = self.times(z)
        x = self.path.sample_conditional_path(z, t)
        return self.objective(self.model(x, t, y), self.path.conditional_vector_field(x, z, t))


@mutant(P, "gradients flow into the VAE")
class GradIntoVAE(_Trainer):
    """No torch.no_grad(): the loss's gradient reaches the encoder."""

    def latents(self, images):
        return self.scale * self.vae.sample_latent(images)


@mutant(P, "the loss has no gradient")
class EverythingNoGrad(_Trainer):
    """The whole loss under torch.no_grad()."""

    def get_train_loss(self, batch_size: int):
        with torch.no_grad():
            return super().get_train_loss(batch_size)


@mutant(P, "the scale is missing")
class NoScale(_Trainer):
    """z = vae.sample_latent(images): the scale forgotten."""

    def latents(self, images):
        with torch.no_grad():
            return self.vae.sample_latent(images)


@mutant(P, "divided by the scale")
class InvertedScale(_Trainer):
    """z = sample / scale."""

    def latents(self, images):
        with torch.no_grad():
            return self.vae.sample_latent(images) / self.scale


@mutant(P, "applied twice")
class ScaleTwice(_Trainer):
    """The scale applied in latents() and again on the sample."""

    def latents(self, images):
        with torch.no_grad():
            return self.scale * (self.scale * self.vae.sample_latent(images))


@mutant(P, "posterior's mean")
class MeanNotSample(_Trainer):
    """z = scale * z_mean from vae.encode: the log-variance ignored."""

    def latents(self, images):
        with torch.no_grad():
            z_mean, _ = self.vae.encode(images)
            return self.scale * z_mean


@mutant(P, "the path got the images")
class ImagesToPath(_Trainer):
    """The latents computed, but the images handed to the path."""

    def get_train_loss(self, batch_size: int):
        images, y = self.path.p_data.sample(batch_size)
        self.latents(images)
        y = self.null(y, self.mask(y))
        t = self.times(images)
        x = self.path.sample_conditional_path(images, t)
        return self.objective(self.model(x, t, y), self.path.conditional_vector_field(x, images, t))


@mutant(P, "exp(z_logvar / 2), not exp(z_logvar)")
class VarianceAsStd(_Trainer):
    """Own reparameterised sample with exp(logvar) as the standard deviation."""

    def latents(self, images):
        with torch.no_grad():
            z_mean, z_logvar = self.vae.encode(images)
            return self.scale * (z_mean + torch.exp(z_logvar) * torch.randn_like(z_mean))


@mutant(P, "mask inverted")
class InvertedMask(_Trainer):
    """Labels nulled when rand > eta."""

    def mask(self, y):
        return torch.rand(y.shape[0], device=y.device) > self.eta


@mutant(P, "use self.null_label")
class HardCodedNull(_Trainer):
    """Null label hard-coded to 10 (MNIST's)."""

    def null(self, y, drop):
        return y.masked_fill(drop, 10)


@mutant(P, "summed")
class SummedLoss(_Trainer):
    """Sum of squared errors."""

    def objective(self, pred, target):
        return F.mse_loss(pred, target, reduction="sum")


@mutant(P, "sums over the data dimensions")
class PerSampleSum(_Trainer):
    """Squared error summed over each latent, averaged over the batch."""

    def objective(self, pred, target):
        return (pred - target).pow(2).flatten(1).sum(1).mean()


@mutant(P, "the model sees z")
class ModelSeesZ(_Trainer):
    """The model evaluated at the clean latent z."""

    def get_train_loss(self, batch_size: int):
        images, y = self.path.p_data.sample(batch_size)
        z = self.latents(images)
        y = self.null(y, self.mask(y))
        t = self.times(z)
        x = self.path.sample_conditional_path(z, t)
        return self.objective(self.model(z, t, y), self.path.conditional_vector_field(x, z, t))


@mutant(P, "device=y.device")
class CpuMask(_Trainer):
    """The mask drawn on the CPU."""

    def mask(self, y):
        return torch.rand(y.shape[0]) < self.eta


@mutant(P, "above 1 - eps")
class OwnTimeNoEps(_Trainer):
    """Own t ~ U[0, 1) instead of the given sample_time."""

    def times(self, z):
        return torch.rand(z.shape[0], device=z.device)


@mutant(P, "expected eta")
class BatchWideMask(_Trainer):
    """One coin for the whole batch."""

    def mask(self, y):
        return (torch.rand(1, device=y.device) < self.eta).expand(y.shape[0])


@alternative(P)
class Detached(_Trainer):
    """.detach() instead of torch.no_grad(), torch.where for the mask, a hand-written mean.

    Draws with path.sample_conditioning_variable."""

    def get_train_loss(self, batch_size: int):
        images, y = self.path.sample_conditioning_variable(batch_size)
        z = (self.vae.sample_latent(images) * self.scale).detach()
        drop = torch.rand_like(y, dtype=torch.float) < self.eta
        y = torch.where(drop, torch.full_like(y, self.null_label), y)
        t = self.sample_time(batch_size, z.device)
        x = self.path.sample_conditional_path(z, t)
        return ((self.model(x, t, y) - self.path.conditional_vector_field(x, z, t)) ** 2).mean()


@alternative(P)
class OwnReparameterisation(_Trainer):
    """vae.encode and an own reparameterised sample (exp(logvar / 2) noise), Bernoulli mask."""

    def get_train_loss(self, batch_size: int):
        images, y = self.path.p_data.sample(batch_size)
        with torch.no_grad():
            z_mean, z_logvar = self.vae.encode(images)
            z = self.scale * (z_mean + z_logvar.mul(0.5).exp() * torch.randn_like(z_mean))
        drop = torch.bernoulli(torch.full(y.shape, self.eta, device=y.device)).bool()
        y = y.clone()
        y[drop] = self.null_label
        t = self.sample_time(batch_size, device=y.device)
        x = self.path.sample_conditional_path(z, t)
        return F.mse_loss(self.model(x, t, y), self.path.conditional_vector_field(x, z, t))


@alternative(P)
class FrozenInInit(_Trainer):
    """The VAE frozen once in the constructor (requires_grad_(False)), no no_grad block."""

    def __init__(self, path, vae, scale, eta, null_label, eps=1e-3, **kwargs):
        super().__init__(path, vae, scale, eta, null_label, eps, **kwargs)
        self.vae.requires_grad_(False)

    def latents(self, images):
        return self.vae.sample_latent(images) * self.scale


@alternative(P)
class InferenceMode(_Trainer):
    """The latents under torch.inference_mode(), labels nulled by index assignment."""

    def latents(self, images):
        with torch.inference_mode():
            return self.vae.sample_latent(images) * self.scale

    def null(self, y, drop):
        y = y.clone()
        y[drop] = self.null_label
        return y


@alternative(P)
class Plain(_Trainer):
    """The skeleton's order: no_grad block, masked_fill, F.mse_loss."""


S = "latent_sampler"


class _Sampler:
    """The notebook's constructor; ``sample`` through the given sample_cfg."""

    def __init__(self, model, vae, scale: float, latent_shape, null_label: int = 10):
        self.model, self.vae, self.scale = model, vae, float(scale)
        self.latent_shape, self.null_label = tuple(latent_shape), null_label

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return sample_cfg(self.model, y, guidance_scale, num_steps, shape=self.latent_shape,
                          null_label=self.null_label, solver=solver, x0=x0)

    def images(self, z):
        return self.vae.decode(z / self.scale)[0]

    @torch.no_grad()
    def sample(self, y, guidance_scale, num_steps=30, solver="heun", x0=None):
        return self.images(self.latents(y, guidance_scale, num_steps, solver, x0))


def _field(model, x, t, y, w, null, combine=None):
    """(conditional, unguided) fields in two passes, combined by ``combine`` (CFG by default)."""
    cond, uncond = model(x, t, y), model(x, t, torch.full_like(y, null))
    if combine is not None:
        return combine(cond, uncond, w)
    return uncond + w * (cond - uncond)


def _loop(model, y, w, num_steps, solver, x0, null, combine=None, shape=None):
    """An explicit Euler / Heun loop on t = i / num_steps (Heun's last step: Euler) from ``x0``,
    or from noise of ``(b, *shape)`` on y's device."""
    if x0 is None:
        x0 = torch.randn(y.shape[0], *shape, device=y.device)
    x, h = x0, 1.0 / num_steps
    for i in range(num_steps):
        t = torch.full((x.shape[0],), i * h, device=x.device)
        k1 = _field(model, x, t, y, w, null, combine)
        if solver == "heun" and i < num_steps - 1:
            k2 = _field(model, x + h * k1, t + h, y, w, null, combine)
            x = x + 0.5 * h * (k1 + k2)
        else:
            x = x + h * k1
    return x


@mutant(S, "scale was not undone")
class NoUnscale(_Sampler):
    """vae.decode(z): the scale left on the latents."""

    def images(self, z):
        return self.vae.decode(z)[0]


@mutant(S, "multiplied by the scale")
class ScaleMultiplied(_Sampler):
    """vae.decode(z * scale)."""

    def images(self, z):
        return self.vae.decode(z * self.scale)[0]


@mutant(S, "decoder's Gaussian was sampled")
class SampledDecoder(_Sampler):
    """A sample of the decoder's Gaussian instead of its mean."""

    def images(self, z):
        x_mean, x_logvar = self.vae.decode(z / self.scale)
        return x_mean + torch.exp(0.5 * x_logvar) * torch.randn_like(x_mean)


@mutant(S, "unnormalised to pixel intensities")
class Unnormalised(_Sampler):
    """The images unnormalised for display (cfgflow.data.unnormalize) before returning them."""

    def images(self, z):
        return unnormalize(self.vae.decode(z / self.scale)[0])


@mutant(S, "clamped to [-1, 1]")
class Clamped(_Sampler):
    """The decoder's mean clamped to [-1, 1]."""

    def images(self, z):
        return self.vae.decode(z / self.scale)[0].clamp(-1, 1)


@mutant(S, "weights swapped")
class SwappedWeights(_Sampler):
    """Own Euler loop with (1 - w) u(x | y) + w u(x | null)."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return _loop(self.model, y, guidance_scale, num_steps, solver, x0, self.null_label,
                     shape=self.latent_shape, combine=lambda c, u, w: (1 - w) * c + w * u)


@mutant(S, "guidance scale is ignored")
class GuidanceIgnored(_Sampler):
    """sample_cfg called without the guidance scale (w = 1)."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return sample_cfg(self.model, y, 1.0, num_steps, shape=self.latent_shape, null_label=self.null_label,
                          solver=solver, x0=x0)


@mutant(S, "off by one")
class OffByOne(_Sampler):
    """u(x | y) + w (u(x | y) - u(x | null)): the other convention."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return _loop(self.model, y, guidance_scale, num_steps, solver, x0, self.null_label,
                     shape=self.latent_shape, combine=lambda c, u, w: c + w * (c - u))


@mutant(S, "unguided field is missing")
class ConditionalOnly(_Sampler):
    """w u(x | y): the unguided field dropped."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return _loop(self.model, y, guidance_scale, num_steps, solver, x0, self.null_label,
                     shape=self.latent_shape, combine=lambda c, u, w: w * c)


@mutant(S, "null label 10")
class DefaultNull(_Sampler):
    """null_label not passed on: sample_cfg's default 10."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return sample_cfg(self.model, y, guidance_scale, num_steps, shape=self.latent_shape, solver=solver,
                          x0=x0)


@mutant(S, "gave Heun's result")
class AlwaysHeun(_Sampler):
    """The solver argument not passed on (sample_cfg's default: Heun)."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return sample_cfg(self.model, y, guidance_scale, num_steps, shape=self.latent_shape,
                          null_label=self.null_label, x0=x0)


@mutant(S, "gave Euler's result")
class AlwaysEuler(_Sampler):
    """An own Euler loop whatever the solver."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return _loop(self.model, y, guidance_scale, num_steps, "euler", x0, self.null_label,
                     shape=self.latent_shape)


@mutant(S, "num_steps is ignored")
class StepsIgnored(_Sampler):
    """num_steps not passed on (30 steps)."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return sample_cfg(self.model, y, guidance_scale, shape=self.latent_shape, null_label=self.null_label,
                          solver=solver, x0=x0)


@mutant(S, "decode once")
class DecodeEveryStep(_Sampler):
    """An own Euler / Heun loop that decodes every step (frames for a film), returns the last."""

    @torch.no_grad()
    def sample(self, y, guidance_scale, num_steps=30, solver="heun", x0=None):
        if x0 is None:
            x0 = torch.randn(y.shape[0], *self.latent_shape, device=y.device)
        x, h, frames = x0, 1.0 / num_steps, []
        for i in range(num_steps):
            t = torch.full((x.shape[0],), i * h, device=x.device)
            k1 = _field(self.model, x, t, y, guidance_scale, self.null_label)
            if solver == "heun" and i < num_steps - 1:
                k2 = _field(self.model, x + h * k1, t + h, y, guidance_scale, self.null_label)
                x = x + 0.5 * h * (k1 + k2)
            else:
                x = x + h * k1
            frames.append(self.images(x))
        return frames[-1]


@mutant(S, "device=y.device")
class CpuNoise(_Sampler):
    """x0 drawn on the CPU when None."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        if x0 is None:
            x0 = torch.randn(y.shape[0], *self.latent_shape)
        return super().latents(y, guidance_scale, num_steps, solver, x0)


@mutant(S, "(b, *self.latent_shape)")
class PixelShapedNoise(_Sampler):
    """shape not passed on to sample_cfg: pixel-shaped noise (1, 32, 32) when x0 is None."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return sample_cfg(self.model, y, guidance_scale, num_steps, null_label=self.null_label, solver=solver,
                          x0=x0)


@mutant(S, "start the ODE from the given x0")
class X0Ignored(_Sampler):
    """x0 not passed on: fresh noise at every call."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        return sample_cfg(self.model, y, guidance_scale, num_steps, shape=self.latent_shape,
                          null_label=self.null_label, solver=solver)


@mutant(S, "not images")
class NoDecode(_Sampler):
    """The latents returned, never decoded."""

    def images(self, z):
        return z


@alternative(S)
class TwoPassLoop(_Sampler):
    """An explicit Euler / Heun loop, two forward passes per evaluation, noise drawn on y's device.

    sample_cfg's grid and its last Euler step."""

    @torch.no_grad()
    def sample(self, y, guidance_scale, num_steps=30, solver="heun", x0=None):
        if x0 is None:
            x0 = torch.randn((len(y), *self.latent_shape), device=y.device)
        z = _loop(self.model, y, guidance_scale, num_steps, solver, x0, self.null_label)
        return self.vae.decode(z / self.scale)[0]


@alternative(S)
class TextbookHeun(_Sampler):
    """A batched-pass loop whose Heun takes a full Heun step at the end too (evaluates t = 1)."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        if x0 is None:
            x0 = torch.randn(y.shape[0], *self.latent_shape, device=y.device)
        null = torch.full_like(y, self.null_label)

        def field(x, t):
            both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
            cond, uncond = both.chunk(2)
            return (1 - guidance_scale) * uncond + guidance_scale * cond

        ts = torch.linspace(0, 1, num_steps + 1, device=y.device)
        x = x0
        for i in range(num_steps):
            t, h = ts[i].repeat(x.shape[0]), ts[i + 1] - ts[i]
            k1 = field(x, t)
            if solver == "euler":
                x = x + h * k1
            else:
                x = x + h / 2 * (k1 + field(x + h * k1, ts[i + 1].repeat(x.shape[0])))
        return x


@alternative(S)
class ChunkedDecode(_Sampler):
    """sample_cfg, then the latents decoded in chunks of 2."""

    def images(self, z):
        z = z / self.scale
        return torch.cat([self.vae.decode(chunk)[0] for chunk in z.split(2)])


@alternative(S)
class Simulators(_Sampler):
    """CFGVectorFieldODE with the Euler / Heun simulators on an explicit grid (last step Euler)."""

    def latents(self, y, guidance_scale, num_steps, solver, x0):
        if x0 is None:
            x0 = torch.randn(y.shape[0], *self.latent_shape, device=y.device)
        ode = CFGVectorFieldODE(self.model, self.null_label, guidance_scale)
        ts = torch.linspace(0, 1, num_steps + 1, device=y.device)
        if solver == "euler":
            return EulerSimulator(ode).simulate(x0, ts, y=y)
        x = HeunSimulator(ode).simulate(x0, ts[:-1], y=y)
        return EulerSimulator(ode).simulate(x, ts[-2:], y=y)


@alternative(S)
class Given(_Sampler):
    """sample_cfg, then vae.decode(z / scale)[0]."""
