"""latent_cfg_loss and latent_sampler: classifier-free guidance in a frozen VAE's latent space.

latent_cfg_loss: ``LatentCFGTrainer(path=..., vae=..., scale=..., eta=..., null_label=..., eps=...)``
with ``.model`` set; ``get_train_loss(batch_size)`` -> scalar. The flow-matching CFG loss of
Notebook 1 (its verdicts are imported from :mod:`.cfg_loss`, not copied) on
``z = scale * vae.sample_latent(images)``, computed without gradients into the VAE. The probes run
it with test doubles: a VAE whose encoder pools the image and has parameters (the gradient
sub-check looks at them after ``loss.backward()``) and whose ``sample_latent`` uses given noise, so
the latent the path receives is a recorded tensor; for the loss value, an identity "VAE" and scale
1 (the latent mistakes cannot show there: each mistake costs one sub-check) with Notebook 1's
deterministic path and model, so the loss is a recorded number whatever labels and times are drawn.

latent_sampler: ``LatentCFGSampler(model=..., vae=..., scale=..., latent_shape=..., null_label=...)``;
``sample(y, guidance_scale, num_steps, solver, x0)`` -> images ``(b, 1, 32, 32)``. The probes pass
the initial noise ``x0`` (the result is then a function of the inputs), a deterministic field
double and a decoder double whose mean image is a nearest-neighbour upsampling of a small map:
the recordings hold that map (``(b, 1, h, w)``) of the reference's result and of named wrong
variants (scale not undone, guidance weights swapped, ...), and the verdicts upsample it. A run
with ``x0=None`` on the meta device catches noise drawn on the CPU and the wrong latent shape.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..data import unnormalize
from . import cfg_loss
from ._core import (
    CheckTable,
    Context,
    Fail,
    SubCheck,
    as_obs,
    close,
    expect_shape,
    max_err,
    on_meta,
    shape_of,
)
from .cfg_loss import _FixedData, _FixedModel, _FixedPath, _loss_and_calls, _Path, inputs_obs

# --------------------------------------------------------------------------------------------
# latent_cfg_loss

LOSS_CONFIG = {"seed": 0, "eta": 0.3, "null_label": 7, "classes": 4, "eps": 0.05, "b": 3000, "scale": 0.6,
               "channels": 2, "size": 4}
"""``size``: the doubles' image side (the VAE double halves it: latents ``(channels, size / 2,
size / 2)``); ``b``: the batch of the label and time statistics."""
LOSS_B = 24  # batch of the loss value's run (identity VAE: the data are latent-shaped)
LATENT_B = 32  # batch of the latent's run
LOSS_GIVEN = ("z", "y", "noise", "shift",  # the loss run
              "images", "labels", "vae_noise", "vae_weight", "vae_bias", "vae_logvar")  # the latent run


def latent_shape(cfg):
    """``(c, h, w)`` of the VAE double's latents for ``cfg``'s image size."""
    return (cfg["channels"], cfg["size"] // 2, cfg["size"] // 2)


class _VAE(nn.Module):
    """A frozen VAE's double: ``encode`` averages 2 x 2 pixels and maps the pooled image to
    ``c`` channels (``weight * p + bias``) with a per-entry log-variance (``logvar + p / 2``);
    ``sample_latent`` adds ``exp(logvar / 2)`` times the given noise (fresh noise when none is
    given). Records each call and whether gradients were recorded."""

    def __init__(self, weight, bias, logvar, noise=None):
        super().__init__()
        self.weight, self.bias, self.logvar = nn.Parameter(weight), nn.Parameter(bias), nn.Parameter(logvar)
        self.noise = noise
        self.calls = []  # (method, grad enabled)

    def _moments(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1:
            raise Fail(f"the VAE got {shape_of(x)}, expected the images (b, 1, h, w) from p_data")
        b, _, h, w = x.shape
        p = x.reshape(b, 1, h // 2, 2, w // 2, 2).mean((3, 5))  # (b, 1, h/2, w/2)
        mean = p * self.weight[:, None, None] + self.bias[:, None, None]  # (b, c, h/2, w/2)
        return mean, self.logvar[:, None, None] + 0.5 * p

    def encode(self, x):
        self.calls.append(("encode", torch.is_grad_enabled()))
        return self._moments(x)

    def sample_latent(self, x):
        self.calls.append(("sample_latent", torch.is_grad_enabled()))
        mean, logvar = self._moments(x)
        noise = self.noise if self.noise is not None else torch.randn(mean.shape, device=mean.device)
        return mean + torch.exp(0.5 * logvar) * noise

    def decode(self, z):
        raise Fail("the trainer called vae.decode: the loss lives in the latent space (no decoding)")


class _IdentityVAE(nn.Module):
    """The loss run's "VAE": the latent is the data itself (times a parameter that is 1, plus
    ``exp(-inf / 2) = 0`` times noise), so the scale (1 in that run) and the encoding do not
    change the loss and only the loss's own mistakes show."""

    def __init__(self):
        super().__init__()
        self.one = nn.Parameter(torch.ones(()))
        self.calls = []

    def encode(self, x):
        self.calls.append(("encode", torch.is_grad_enabled()))
        return x * self.one, torch.full(x.shape, float("-inf"), device=x.device)

    def sample_latent(self, x):
        self.calls.append(("sample_latent", torch.is_grad_enabled()))
        mean, logvar = x * self.one, torch.full(x.shape, float("-inf"), device=x.device)
        return mean + torch.exp(0.5 * logvar) * torch.randn(x.shape, device=x.device)

    def decode(self, z):
        raise Fail("the trainer called vae.decode: the loss lives in the latent space (no decoding)")


def _bcast(v, x):
    """A per-sample ``v`` (any shape of b entries) as ``(b, 1, ..., 1)`` against ``x``."""
    return v.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


class _Model(nn.Module):
    """A conditional field for data of any shape, ``x / 2 + a t + e[y]`` (a scalar per label),
    that records its calls like Notebook 1's model double."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7))
        self.emb = nn.Embedding(16, 1)  # room for a wrong (hard-coded) null index
        self.calls = []

    def forward(self, x, t, y):
        out = 0.5 * x + self.a * _bcast(t, x) + _bcast(self.emb(y), x)
        self.calls.append((x, t, y, out))
        return out


class _Images(nn.Module):
    """Labelled random images ``(b, 1, size, size)`` whose samples are recorded."""

    def __init__(self, size, classes, device, log):
        super().__init__()
        self.size, self.classes, self.device, self.log = size, classes, device, log

    def sample(self, num_samples):
        y = torch.randint(0, self.classes, (num_samples,), device=self.device)
        x = 0.5 * torch.randn(num_samples, 1, self.size, self.size, device=self.device) \
            + 0.2 * y.reshape(-1, 1, 1, 1).float()
        self.log["data"].append((x, y.clone()))
        return x, y


def _new_trainer(ctx_or_cls, path, vae, cfg, scale):
    make = ctx_or_cls.new if isinstance(ctx_or_cls, Context) else ctx_or_cls
    return make(path=path, vae=vae, scale=scale, eta=cfg["eta"], null_label=cfg["null_label"], eps=cfg["eps"])


def loss_run(make, cfg, z, y, noise, shift):
    """``get_train_loss(LOSS_B)`` with the identity VAE, scale 1 and Notebook 1's deterministic
    doubles (data ``z: (LOSS_B, c, h, w)``, labels ``y``, path noise, model shift ``(c, h, w)``):
    ``(loss, log, last model call)``. ``make``: the class (recorder) or the probe's context."""
    path = _FixedPath(z, y, noise)
    trainer = _new_trainer(make, path, _IdentityVAE(), cfg, 1.0)
    trainer.model = _FixedModel(shift)
    return _loss_and_calls(trainer, path, z.shape[0])


def latent_run(make, cfg, images, labels, noise, weight, bias, logvar):
    """``get_train_loss(LATENT_B)`` on the given images with the VAE double (given parameters and
    noise) and ``cfg``'s scale: ``(loss, path log, trainer)``."""
    path = _Path(1, cfg["classes"])
    path.p_data = _FixedData(images, labels, path.log)
    trainer = _new_trainer(make, path, _VAE(weight, bias, logvar, noise), cfg, cfg["scale"])
    trainer.model = _Model()
    loss, log, _ = _loss_and_calls(trainer, path, images.shape[0])
    return loss, log, trainer


def _run(ctx, b=None, device="cpu"):
    """A run on random images (fresh VAE noise) of ``b`` samples: ``(loss, path log, trainer)``."""
    b = ctx["b"] if b is None else b
    c = ctx["channels"]
    path = _Path(1, ctx["classes"], device)
    path.p_data = _Images(ctx["size"], ctx["classes"], device, path.log)
    weight, bias = torch.linspace(0.5, 1.5, c), torch.linspace(-0.3, 0.3, c)
    vae = _VAE(weight, bias, torch.full((c,), -2.0)).to(device)
    trainer = _new_trainer(ctx, path, vae, ctx, ctx["scale"])
    trainer.model = _Model().to(device)
    loss, log, _ = _loss_and_calls(trainer, path, b)
    return loss, log, trainer


def _probe_shape(ctx):
    """What ``get_train_loss`` returns on the random doubles."""
    if "run" not in ctx.cache:
        ctx.cache["run"] = _run(ctx, b=64)
    loss = ctx.cache["run"][0]
    return {"loss": as_obs(loss.detach() if isinstance(loss, torch.Tensor) else loss)}


def _verdict_shape(obs, exp):
    loss = obs["loss"]
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise Fail(f"get_train_loss must return a scalar tensor (F.mse_loss gives one), got {shape_of(loss)}")


def _latent_obs(ctx):
    if "latent" not in ctx.cache:
        ctx.cache["latent"] = latent_run(ctx, ctx.cfg, ctx.tensor("images"), ctx.tensor("labels").long(),
                                         ctx.tensor("vae_noise"), ctx.tensor("vae_weight"),
                                         ctx.tensor("vae_bias"), ctx.tensor("vae_logvar"))
    return ctx.cache["latent"]


def _probe_latent(ctx):
    """The z that the path received (None when it was never sampled)."""
    _, log, _ = _latent_obs(ctx)
    return {"path_z": as_obs(log["sample"][-1][0].detach()) if log["sample"] else None}


LATENT_FACTORS = [  # the path's z = factor * (a posterior sample), factor as a function of the scale
    ("ok", lambda s: s, ""),
    ("none", lambda s: 1.0, "the scale is missing: the path got vae.sample_latent(images); the flow model "
     "works on z = scale * vae.sample_latent(images) (latents of about unit variance)"),
    ("inverse", lambda s: 1.0 / s, "the latents were divided by the scale: z = scale * "
     "vae.sample_latent(images), the scale multiplies (it is 1 / std of the latents)"),
    ("twice", lambda s: s * s, "the scale was applied twice: z = scale * vae.sample_latent(images), once"),
]


def _own_sample(z, mean, std) -> bool:
    """Whether ``(z - mean) / std`` looks like fresh N(0, 1) noise (a sample of the posterior
    drawn by the student's own reparameterisation)."""
    r = ((z.double() - mean) / std).reshape(-1)
    return abs(float(r.mean())) < 0.3 and 0.75 < float(r.std()) < 1.3


def _verdict_latent(obs, exp):
    z = obs["path_z"]
    if z is None:
        raise Fail("x was not sampled from the path: x = self.path.sample_conditional_path(z, t)")
    sample, mean, std = exp.tensor("lat_sample"), exp.tensor("lat_mean"), exp.tensor("lat_std")
    s, images = exp["scale"], exp.tensor("images")
    if isinstance(z, torch.Tensor) and z.shape == images.shape:
        raise Fail(f"the path got the images {tuple(images.shape)}, not their latents: encode them first, "
                   "z = scale * vae.sample_latent(images) (under torch.no_grad())")
    if not isinstance(z, torch.Tensor) or z.shape != sample.shape:
        raise Fail(f"the path got z of shape {shape_of(z)}, expected the latents {tuple(sample.shape)}: "
                   "z = scale * vae.sample_latent(images)")
    for name, factor, msg in LATENT_FACTORS:
        k = factor(s)
        if close(z, k * sample) or _own_sample(z, k * mean, k * std):
            if name == "ok":
                return
            raise Fail(msg)
    for name, factor, msg in LATENT_FACTORS:
        if close(z, factor(s) * mean):
            extra = "" if name == "ok" else f" (and {msg.split(':')[0]})"
            raise Fail("the path got the posterior's mean z_mean, not a sample: use "
                       "vae.sample_latent(images), which adds exp(z_logvar / 2) * noise (the log-variance "
                       f"was ignored){extra}")
    if _own_sample(z, s * mean, s * std**2):
        raise Fail("the latent's noise has the wrong size: the posterior's standard deviation is "
                   "exp(z_logvar / 2), not exp(z_logvar) (vae.sample_latent(images) draws it for you)")
    raise Fail("the path's z differs from scale * vae.sample_latent(images) on the same images")


def _probe_frozen(ctx):
    """After ``loss.backward()`` on the latent run: whether the VAE was called, the largest
    gradient its parameters got and the largest the model's got."""
    loss, _, trainer = _latent_obs(ctx)
    vae, model = trainer.vae, trainer.model
    obs = {"vae_called": bool(getattr(vae, "calls", None)), "scalar": False, "backward": None,
           "vae_grad": 0.0, "model_grad": 0.0}
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        return obs
    obs["scalar"] = True
    if not loss.requires_grad:
        obs["backward"] = "the loss does not require grad"
        return obs
    loss.reshape(()).backward()

    def largest(module):
        grads = [p.grad.detach().abs().max() for p in module.parameters()
                 if p.grad is not None and p.grad.numel()]
        return float(torch.stack(grads).max()) if grads else 0.0

    obs["vae_grad"], obs["model_grad"] = largest(vae), largest(model)
    return obs


def _verdict_frozen(obs, exp):
    if not obs["vae_called"]:
        raise Fail("the VAE was never called: encode the images, z = scale * self.vae.sample_latent(images)")
    if not obs["scalar"]:
        raise Fail("get_train_loss must return a scalar tensor")
    if obs["backward"] is not None:
        raise Fail("the loss has no gradient: only the VAE's encoding goes under torch.no_grad(); the "
                   "model's forward pass and the loss must be recorded for backward (no .item(), no "
                   ".detach())")
    if obs["vae_grad"] > 0:
        raise Fail("gradients flow into the VAE: loss.backward() gave its encoder's parameters a gradient, "
                   "but the VAE is frozen: compute the latents under torch.no_grad()")
    if obs["model_grad"] == 0:
        raise Fail("loss.backward() gave the model's parameters no gradient: the loss must come from "
                   "self.model(x, t, y)")


def _probe_loss(ctx):
    """The loss of the identity-VAE run with Notebook 1's deterministic doubles, and what it was
    computed from."""
    loss, log, call = loss_run(ctx, ctx.cfg, ctx.tensor("z"), ctx.tensor("y").long(), ctx.tensor("noise"),
                               ctx.tensor("shift"))
    obs = inputs_obs(loss, log, call)
    obs["loss"] = obs["loss"].detach() if isinstance(obs["loss"], torch.Tensor) else obs["loss"]
    return obs


def _verdict_loss(obs, exp):
    c, h, w = latent_shape(exp.cfg)
    cfg_loss.judge_loss(obs, exp, c * h * w, need_grad=False)  # the gradient is the frozen sub-check's


def _big_run(ctx):
    if "big" not in ctx.cache:
        _, log, trainer = _run(ctx)
        if not log["sample"]:
            raise Fail("x was not sampled from the path")
        ctx.cache["big"] = {"model_y": as_obs(trainer.model.calls[-1][2]), "data_y": log["data"][-1][1],
                            "t": log["sample"][-1][1]}
    return ctx.cache["big"]


def _probe_labels(ctx):
    """The labels the data gave and those the model received, on a large batch."""
    big = _big_run(ctx)
    return {"model_y": big["model_y"], "data_y": big["data_y"]}


def _probe_times(ctx):
    """The times the path received on a large batch (shared by times and eps)."""
    return {"t": as_obs(_big_run(ctx)["t"])}


def _verdict_times(obs, exp):
    if not isinstance(obs["t"], torch.Tensor):
        raise Fail(f"t passed to the path is {obs['t']}, expected a tensor of shape (b,)")
    cfg_loss._verdict_times(obs, exp)


def _verdict_eps(obs, exp):
    if isinstance(obs["t"], torch.Tensor):
        cfg_loss._verdict_eps(obs, exp)


_META_ERRORS = (RuntimeError, NotImplementedError)  # a CPU tensor meeting meta ones: either, by the op


def _names_device(e: BaseException) -> bool:
    """Whether an exception is a device mismatch with the meta device's tensors (a RuntimeError
    that names a device, or the NotImplementedError of copying a meta tensor to the CPU; a bare
    ``raise NotImplementedError()``, the unfilled cell, is not)."""
    text = str(e).lower()
    return "device" in text or "meta tensor" in text


def _probe_device(ctx):
    """A run on the meta device (cfg_loss's pattern): whether it raised a RuntimeError that names
    a device, else the loss's device type."""
    raised, device = on_meta(lambda: _run(ctx, b=16, device="meta")[0], _META_ERRORS, _names_device)
    return {"raised": raised, "mentions_device": raised is not None, "loss_device": device}


LATENT_CFG_LOSS = CheckTable(
    "latent_cfg_loss",
    [
        SubCheck("shape", "get_train_loss returns a scalar tensor", 0.75, _probe_shape, _verdict_shape),
        SubCheck("latent", "the path gets z = scale * vae.sample_latent(images): a scaled posterior sample",
                 1.5, _probe_latent, _verdict_latent),
        SubCheck("frozen", "loss.backward() reaches the model, not the frozen VAE", 0.75, _probe_frozen,
                 _verdict_frozen),
        SubCheck("loss", "loss = mean((model(x, t, y) - u_t(x | z))^2) from the sampled x, z, t", 1.5,
                 _probe_loss, _verdict_loss),
        SubCheck("labels", "labels replaced by null_label with probability eta, others unchanged", 1,
                 _probe_labels, cfg_loss._verdict_labels),
        SubCheck("times", "t of shape (b,), uniform and independent per sample", 0.5, _probe_times,
                 _verdict_times),
        SubCheck("eps", "t below 1 - eps", 0.25, _probe_times, _verdict_eps),
        SubCheck("device", "mask and t created on the data's device", 0.5, _probe_device,
                 cfg_loss._verdict_device),
    ],
    LOSS_CONFIG,
    {"not on the expected device": "create the mask / t on the labels' device (device=y.device)",
     "unexpected keyword": "keep the signature LatentCFGTrainer(path, vae, scale, eta, null_label, eps=1e-3, "
                           "**kwargs)"},
    rationale=(
        "What is new in this loss weighs most: the latent the path gets (scale and posterior sample, 1.5) "
        "and the loss value of Notebook 1 on it (1.5). A VAE that receives gradients trains the encoder "
        "against the flow model (0.75). Label dropout changes what the model learns (1); the time "
        "distribution comes from the given sample_time (0.5, eps 0.25). Tensors on the CPU stop training on "
        "a GPU (0.5). A scalar is all a stub can show (0.75 of 6.75)."
    ),
    given=LOSS_GIVEN,
)


# --------------------------------------------------------------------------------------------
# latent_sampler

IMG = 32  # the decoder double's image side (the course's images are (b, 1, 32, 32))
SAMPLER_CONFIG = {"seed": 0, "b": 3, "latent_shape": [2, 4, 4], "null_label": 7, "classes": 4, "scale": 0.6,
                  "w": 3.0, "steps": 4, "heun_steps": 3, "x_logvar": -3.0}
SAMPLER_GIVEN = ("x0", "y", "gain", "tgain", "emb", "dec_w", "dec_b")


def upsample(m: torch.Tensor) -> torch.Tensor:
    """A ``(b, 1, h, w)`` map as the ``(b, 1, 32, 32)`` image of nearest-neighbour upsampling."""
    f = IMG // m.shape[-1]
    return m.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)


class _Field(nn.Module):
    """A deterministic conditional field on latents, ``tanh(gain x) + t tgain + emb[y]`` per
    channel, that checks the shapes it gets and counts its calls."""

    def __init__(self, gain, tgain, emb, shape):
        super().__init__()
        self.gain, self.tgain, self.emb = nn.Parameter(gain), nn.Parameter(tgain), nn.Parameter(emb)
        self.shape = tuple(int(s) for s in shape)
        self.calls = 0

    def forward(self, x, t, y):
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
            raise Fail(f"the model got x of shape {shape_of(x)}, expected (b, *latent_shape) = (b, "
                       f"{', '.join(map(str, self.shape))}): draw the initial noise with shape "
                       "(b, *self.latent_shape) (sample_cfg's shape=self.latent_shape)")
        b = x.shape[0]
        if not isinstance(t, torch.Tensor) or t.numel() != b:
            raise Fail(f"the model got t of shape {shape_of(t)}, expected (b,) = ({b},): one time per sample")
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (b,):
            raise Fail(f"the model got y of shape {shape_of(y)}, expected (b,) = ({b},)")
        self.calls += 1
        g, tg = self.gain[:, None, None], self.tgain[:, None, None]
        return torch.tanh(g * x) + _bcast(t, x) * tg + self.emb[y.long()][:, :, None, None]


class _Decoder(nn.Module):
    """The sampler's VAE double: ``decode(z)`` -> ``(x_mean, x_logvar)`` with x_mean the upsampled
    map ``m + tanh(m) / 2 + bias``, ``m = sum_c weight_c z_c`` (nonlinear, and never flat: every
    change of the latents shows) and a 0-d log-variance; records the shapes it decodes."""

    def __init__(self, weight, bias, x_logvar):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.x_logvar = float(x_logvar)
        self.decoded = []

    def lowres(self, z):
        """The ``(b, 1, h, w)`` map whose upsampling is the mean image."""
        m = (z * self.weight[:, None, None]).sum(1, keepdim=True)  # (b, 1, h, w)
        return m + 0.5 * torch.tanh(m) + self.bias

    def decode(self, z):
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[1] != self.weight.shape[0]:
            raise Fail(f"vae.decode got {shape_of(z)}, expected latents (b, *latent_shape)")
        self.decoded.append([int(s) for s in z.shape])
        return upsample(self.lowres(z)), torch.full((), self.x_logvar, device=z.device)

    def encode(self, x):
        raise Fail("the sampler called vae.encode: sampling needs only vae.decode, once at the end")

    def sample_latent(self, x):
        raise Fail("the sampler called vae.sample_latent: sampling needs only vae.decode, once at the end")


def doubles(cfg, tensors, *, emb=None, x_logvar=None, device="cpu"):
    """The sampler's field and decoder doubles from the given tensors (``emb`` and ``x_logvar``
    replaced where given)."""
    emb = tensors["emb"] if emb is None else emb
    model = _Field(tensors["gain"], tensors["tgain"], emb, cfg["latent_shape"])
    vae = _Decoder(tensors["dec_w"], tensors["dec_b"], cfg["x_logvar"] if x_logvar is None else x_logvar)
    return model.to(device), vae.to(device)


def _given(ctx):
    return {k: ctx.tensor(k) for k in SAMPLER_GIVEN}


def _new_sampler(ctx, model, vae, scale):
    return ctx.new(model=model, vae=vae, scale=scale, latent_shape=tuple(ctx["latent_shape"]),
                   null_label=ctx["null_label"])


def _out(x):
    return as_obs(x.detach() if isinstance(x, torch.Tensor) else x)


def _guided(ctx):
    """Two Euler runs at guidance scale w from the given x0 (cached: shape and guided share them)."""
    if "guided" not in ctx.cache:
        model, vae = doubles(ctx.cfg, _given(ctx))
        sampler = _new_sampler(ctx, model, vae, ctx["scale"])
        y = ctx.tensor("y").long()
        w, steps = ctx["w"], ctx["steps"]
        out = sampler.sample(y, w, num_steps=steps, solver="euler", x0=ctx.tensor("x0"))
        decoded = [s[0] for s in vae.decoded]
        again = sampler.sample(y.clone(), w, num_steps=steps, solver="euler", x0=ctx.tensor("x0"))
        ctx.cache["guided"] = {"out": _out(out), "again": _out(again), "decoded": decoded}
    return ctx.cache["guided"]


def _probe_shape_s(ctx):
    return {"out": _guided(ctx)["out"]}


def _verdict_shape_s(obs, exp):
    b, shape = exp["b"], tuple(exp["latent_shape"])
    out = obs["out"]
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (b, *shape):
        raise Fail(f"sample returned latents {tuple(out.shape)}, not images: decode them once at the end, "
                   "self.vae.decode(z / self.scale)[0]")
    if isinstance(out, str) and out == "tuple":
        raise Fail("sample returned a tuple: vae.decode gives (x_mean, x_logvar); return the images x_mean")
    expect_shape(out, (b, 1, IMG, IMG), "the images")


WRONG_SAMPLES = [  # recorded (b, 1, h, w) maps of known-wrong samplers, and the message
    ("noscale", "the scale was not undone: the flow model's latents are scale * z, decode "
     "self.vae.decode(z / self.scale)"),
    ("mulscale", "the latents were multiplied by the scale before decoding: undo it, "
     "self.vae.decode(z / self.scale)"),
    ("swapped", "guidance weights swapped: the guided field is (1 - w) u(x | null) + w u(x | y), the "
     "weight w goes with the label y"),
    ("ignored", "the guidance scale is ignored: these are the images of w = 1 (pass guidance_scale on)"),
    ("condonly", "the unguided field is missing: the guided field is (1 - w) u(x | null) + w u(x | y), not "
     "w u(x | y)"),
    ("offbyone", "guidance scale off by one: u(x | y) + w (u(x | y) - u(x | null)) is another convention's "
     "w + 1; use (1 - w) u(x | null) + w u(x | y)"),
    ("null10", "the null label 10 was used, not self.null_label: pass null_label=self.null_label on"),
    ("guided_heun", "solver='euler' gave Heun's result: pass the solver argument on"),
    ("steps30", "num_steps is ignored: these are the images of 30 steps (pass num_steps on)"),
]


def _images_or_fail(out, exp):
    b = exp["b"]
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (b, 1, IMG, IMG):
        raise Fail(f"no images of shape ({b}, 1, {IMG}, {IMG}) to compare, got {shape_of(out)} (see the "
                   "shape sub-check)")


def _decoder_sampled(out, mean, x_logvar) -> bool:
    """Whether ``out - mean`` looks like N(0, exp(x_logvar)) noise: the decoder's Gaussian sampled."""
    r = ((out.double() - mean) / torch.exp(torch.tensor(0.5 * x_logvar, dtype=torch.float64))).reshape(-1)
    return abs(float(r.mean())) < 0.15 and 0.85 < float(r.std()) < 1.15


def _post_processed(out, right) -> str:
    """What was done to the decoder's mean when ``out`` is ``right`` unnormalised or clamped
    (``""`` when it is neither): display steps that belong to the plotting helpers."""
    for what, image in (("unnormalised to pixel intensities", unnormalize(right)),
                        ("clamped to [0, 1]", right.clamp(0, 1)), ("clamped to [-1, 1]", right.clamp(-1, 1))):
        if max_err(image, right) > 0 and close(out, image):
            return what
    return ""


X0_IGNORED = ("two calls with the same x0 gave different images: start the ODE from the given x0 "
              "(sample_cfg(..., x0=x0)); draw noise only when x0 is None")


def _probe_guided(ctx):
    return _guided(ctx)


def _verdict_guided(obs, exp):
    out = obs["out"]
    _images_or_fail(out, exp)
    ok = upsample(exp.tensor("guided_ok"))
    if close(out, ok):
        n, b = sum(obs["decoded"]), exp["b"]
        if n > b:
            raise Fail(f"the decoder ran {len(obs['decoded'])} times on {n} latents for {b} images: decode "
                       "once, after the last step")
        return
    done = _post_processed(out, ok)
    if done:
        raise Fail(f"the images were {done}: return the decoder's mean as it is, "
                   "self.vae.decode(z / self.scale)[0] (the plotting helpers unnormalise and clamp)")
    if _decoder_sampled(out, ok, exp["x_logvar"]):
        raise Fail("the decoder's Gaussian was sampled: return its mean, self.vae.decode(z / self.scale)[0] "
                   "(noise would only blur the images)")
    if not close(obs["again"], out, 1e-6):
        raise Fail(X0_IGNORED)
    for name, msg in WRONG_SAMPLES:
        if close(out, upsample(exp.tensor(name))):
            raise Fail(msg)
    raise Fail(f"the images differ from vae.decode(z / scale)[0] of the guided ODE (solver='euler', "
               f"{exp['steps']} steps) from the same x0: max |difference| {max_err(out, ok):.3g}")


def _probe_heun(ctx):
    """Two Heun runs at w = 1 with scale 1, a label-free field and a noiseless decoder: only
    the solver (and x0) can change these images."""
    given = _given(ctx)
    model, vae = doubles(ctx.cfg, given, emb=torch.zeros_like(given["emb"]), x_logvar=float("-inf"))
    sampler = _new_sampler(ctx, model, vae, 1.0)
    y = ctx.tensor("y").long()
    out = sampler.sample(y, 1.0, num_steps=ctx["heun_steps"], solver="heun", x0=ctx.tensor("x0"))
    again = sampler.sample(y.clone(), 1.0, num_steps=ctx["heun_steps"], solver="heun", x0=ctx.tensor("x0"))
    return {"out": _out(out), "again": _out(again)}


def _verdict_heun(obs, exp):
    out = obs["out"]
    _images_or_fail(out, exp)
    ok = upsample(exp.tensor("heun_ok"))
    # sample_cfg's last Euler step, a textbook Heun step there, or Heun with num_steps ignored (the
    # guided sub-check's mistake)
    for name in ("heun_ok", "heun_full", "heun_steps30"):
        right = upsample(exp.tensor(name))
        if close(out, right) or _post_processed(out, right):  # display steps: the guided sub-check's
            return
    if not close(obs["again"], out, 1e-6):
        raise Fail(X0_IGNORED)
    if close(out, upsample(exp.tensor("heun_euler"))):
        raise Fail("solver='heun' gave Euler's result: pass the solver argument on "
                   "(sample_cfg(..., solver=solver))")
    raise Fail(f"the images of solver='heun' ({exp['heun_steps']} steps, w = 1) differ from Heun's rule from "
               f"the same x0: max |difference| {max_err(out, ok):.3g}")


def _probe_device_s(ctx):
    """A run with x0=None on the meta device: a device error, or the result's device, the
    decoded shapes and whether the model ran."""
    model, vae = doubles(ctx.cfg, _given(ctx), device="meta")
    sampler = _new_sampler(ctx, model, vae, ctx["scale"])
    y = ctx.tensor("y").long().to("meta")
    raised, device = on_meta(lambda: sampler.sample(y, ctx["w"], num_steps=2, solver="euler", x0=None),
                             _META_ERRORS, _names_device)
    return {"raised": raised is not None, "device": device, "decoded": [] if raised else vae.decoded,
            "model_calls": model.calls}


def _verdict_device_s(obs, exp):
    if obs["raised"]:
        raise Fail("a tensor was created on (or moved to) the CPU while y lives on another device (GPU): "
                   "draw the initial noise on y's device, torch.randn(..., device=y.device), or leave "
                   "x0=None to sample_cfg, and keep the images there")
    if not obs["model_calls"]:
        raise Fail("with x0=None the model was never called")
    if not obs["decoded"]:
        raise Fail("with x0=None the decoder was never called: decode the latents, "
                   "self.vae.decode(z / self.scale)")
    if obs["device"] != "meta":
        raise Fail("the images did not stay on y's device: create every tensor with device=y.device")


LATENT_SAMPLER = CheckTable(
    "latent_sampler",
    [
        SubCheck("shape", "sample returns images (b, 1, 32, 32)", 0.5, _probe_shape_s, _verdict_shape_s),
        SubCheck("guided", "guided Euler latents from x0, scale undone, decoded once to the decoder's mean",
                 1.75, _probe_guided, _verdict_guided),
        SubCheck("heun", "solver='heun' integrates with Heun's rule (w = 1)", 0.75, _probe_heun,
                 _verdict_heun),
        SubCheck("device", "with x0=None: noise of shape (b, *latent_shape) on y's device", 0.75,
                 _probe_device_s, _verdict_device_s),
    ],
    SAMPLER_CONFIG,
    {"not on the expected device": "draw the noise on y's device (device=y.device)",
     "unexpected keyword": "keep the signatures LatentCFGSampler(model, vae, scale, latent_shape, "
                           "null_label=10) and sample(y, guidance_scale, num_steps=30, solver='heun', "
                           "x0=None)"},
    rationale=(
        "The guided images are the part's result: guidance, scale and decoding (1.75). The solver argument "
        "(0.75) and noise drawn on y's device with the latent shape when x0 is None (0.75) each break a "
        "working notebook without touching the formula. A right-shaped stub earns the shape (0.5 of 3.75)."
    ),
    given=SAMPLER_GIVEN,
)
