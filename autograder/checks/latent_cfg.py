"""latent_cfg_loss and latent_sampler, instructor side: the hidden sizes and the recorders. Each
recorder draws the given inputs from the seed (data, labels, noise and the test doubles'
parameters), runs the reference (``cfgflow_ref.latent.LatentCFGTrainer`` / ``LatentCFGSampler``)
on the student runtime's doubles and records what it gave, plus the values of the known-wrong
variants the verdicts name (:data:`cfgflow.checks.cfg_loss.WRONG_LOSSES`,
:data:`cfgflow.checks.latent_cfg.WRONG_SAMPLES`). The tables, doubles, probes, verdicts and
messages are the student runtime's (:mod:`cfgflow.checks.latent_cfg`).
"""

from __future__ import annotations

import torch

from cfgflow.checks import cfg_loss as visible_cfg_loss
from cfgflow.checks import latent_cfg as visible

from .cfg_loss import losses

LOSS_CONFIG = {"seed": 10, "eta": 0.4, "null_label": 5, "classes": 5, "eps": 0.02, "b": 3000, "scale": 1.7,
               "channels": 3, "size": 6}
SAMPLER_CONFIG = {"seed": 10, "b": 2, "latent_shape": [3, 8, 8], "null_label": 5, "classes": 5, "scale": 1.7,
                  "w": 2.5, "steps": 5, "heun_steps": 4, "x_logvar": -2.5}


def _disagree(what: str, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5):
    err = float((a.double() - b.double()).abs().max())
    if not err <= tol * (1 + float(b.double().abs().max())):
        raise RuntimeError(f"the reference disagrees with the recorder on {what} (max error {err:.3g})")


def record_loss(cfg, seed):
    """The loss run's data (latent-shaped, ``LOSS_B`` samples), path noise and model shift; the
    latent run's images, labels, VAE noise and VAE parameters; the reference's loss and the
    known-wrong losses, and the unscaled posterior sample, mean and standard deviation of the
    latent run."""
    from cfgflow_ref.latent import LatentCFGTrainer

    g = torch.Generator().manual_seed(seed)
    c, h, w = visible.latent_shape(cfg)
    size, classes = cfg["size"], cfg["classes"]
    b, n = visible.LOSS_B, visible.LATENT_B
    y = torch.randint(0, classes, (b,), generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    sign = torch.tensor([(-1.0) ** i for i in range(c)])
    tensors = {
        "z": torch.randn(b, c, h, w, generator=g) + y.float()[:, None, None, None], "y": y.double(),
        "noise": torch.randn(b, c, h, w, generator=g), "shift": torch.randn(c, h, w, generator=g),
        "images": 0.5 * torch.randn(n, 1, size, size, generator=g)
        + 0.2 * labels.float()[:, None, None, None],
        "labels": labels.double(), "vae_noise": torch.randn(n, c, h, w, generator=g),
        # |mean| / std of several units: a sample with the wrong scale never passes for a fresh one
        "vae_weight": 0.5 + torch.rand(c, generator=g), "vae_bias": sign * (1 + torch.rand(c, generator=g)),
        "vae_logvar": -3 + torch.rand(c, generator=g),
    }
    t = {k: v.clone() for k, v in tensors.items()}
    loss, log, call = visible.loss_run(LatentCFGTrainer, cfg, t["z"], y.clone(), t["noise"], t["shift"])
    obs = visible_cfg_loss.inputs_obs(loss, log, call)
    visible_cfg_loss.check_inputs(obs)
    z0, xs = obs["z"].flatten(1), obs["sample"]["x"].flatten(1)
    with torch.no_grad():
        values = {k: float(v) for k, v in losses(call[3].flatten(1).double(), (z0 - xs).double(), xs.double(),
                                                 z0.double(), lambda a, b: b - a).items()}
    _disagree("the loss", loss.detach().reshape(1), torch.tensor([values["ok"]]))

    _, llog, _ = visible.latent_run(LatentCFGTrainer, cfg, t["images"], labels.clone(), t["vae_noise"],
                                    t["vae_weight"], t["vae_bias"], t["vae_logvar"])
    vae = visible._VAE(*(tensors[k] for k in ("vae_weight", "vae_bias", "vae_logvar", "vae_noise")))
    with torch.no_grad():
        mean, logvar = vae.encode(tensors["images"])
        sample = vae.sample_latent(tensors["images"])
    _disagree("the latent", llog["sample"][-1][0], cfg["scale"] * sample)
    tensors.update({"lat_sample": sample, "lat_mean": mean, "lat_std": torch.exp(0.5 * logvar)})
    return values, tensors


# --------------------------------------------------------------------------------------------
# latent_sampler

GUIDES = {  # the guided field of (conditional c, unguided u, scale w)
    "ok": lambda c, u, w: (1 - w) * u + w * c,
    "swapped": lambda c, u, w: (1 - w) * c + w * u,
    "condonly": lambda c, u, w: w * c,
    "offbyone": lambda c, u, w: c + w * (c - u),
}


def integrate(field, x0, y, w, steps, solver, null, guide="ok", full_last=False):
    """The guided ODE from ``x0`` at t = 0 to t = 1 in ``steps`` steps: Euler, or Heun whose last
    step is an Euler step as in ``sample_cfg`` (``full_last``: a Heun step there too)."""
    combine = GUIDES[guide]

    def drift(x, t):
        return combine(field(x, t, y), field(x, t, torch.full_like(y, null)), w)

    ts = torch.linspace(0, 1, steps + 1)
    x, b = x0.clone(), x0.shape[0]
    for i in range(steps):
        t, h = ts[i].expand(b), ts[i + 1] - ts[i]
        k1 = drift(x, t)
        if solver == "euler" or (i == steps - 1 and not full_last):
            x = x + h * k1
        else:
            k2 = drift(x + h * k1, ts[i + 1].expand(b))
            x = x + 0.5 * h * (k1 + k2)
    return x


SEPARATION = 1e-2
"""The least max |difference| between a named wrong variant's images and the accepted ones (the
verdicts compare at about 3e-4)."""


def record_sampler(cfg, seed):
    """x0, labels and the doubles' parameters; the decoder double's low-resolution map of the
    reference's images (Euler at w, and Heun at w = 1 with scale 1 and a label-free field) and of
    the known-wrong variants. Inputs whose variants come too close to the right images (a rare
    cancellation) are drawn again from a derived seed: the judge's recording never fails."""
    for attempt in range(20):
        tensors, gap = _record_sampler(cfg, (seed + 1_000_003 * attempt) % (2**31 - 1))
        if gap >= SEPARATION:
            return {}, tensors
    raise RuntimeError(f"no inputs separate the sampler's variants for seed {seed}")


def _record_sampler(cfg, seed):
    """One draw of :func:`record_sampler`: ``(tensors, least gap between a wrong variant and the
    accepted images)``."""
    from cfgflow_ref.latent import LatentCFGSampler

    g = torch.Generator().manual_seed(seed)
    shape, b, classes = tuple(cfg["latent_shape"]), cfg["b"], cfg["classes"]
    c = shape[0]
    sign = torch.tensor([(-1.0) ** i for i in range(c)])  # a field that changes with t: Euler != Heun
    y = torch.randperm(classes, generator=g)[:b]  # distinct labels (b <= classes)
    tensors = {"x0": torch.randn(b, *shape, generator=g), "y": y.double(),
               "gain": 0.5 + torch.rand(c, generator=g), "tgain": (0.5 + torch.rand(c, generator=g)) * sign,
               "emb": 0.7 * torch.randn(16, c, generator=g), "dec_w": 0.7 * torch.randn(c, generator=g),
               "dec_b": 0.2 * torch.randn(1, generator=g)}
    s, w, null, steps = cfg["scale"], cfg["w"], cfg["null_label"], cfg["steps"]
    model, vae = visible.doubles(cfg, {k: v.clone() for k, v in tensors.items()})
    out = {}
    with torch.no_grad():
        def end(**kw):
            args = dict(w=w, steps=steps, solver="euler", null=null)
            args.update(kw)
            return integrate(model, tensors["x0"], y, args.pop("w"), args.pop("steps"), args.pop("solver"),
                             args.pop("null"), **args)

        z = end()
        out["guided_ok"] = vae.lowres(z / s)
        ref = LatentCFGSampler(model, vae, s, shape, null_label=null).sample(
            y, w, num_steps=steps, solver="euler", x0=tensors["x0"].clone())
        _disagree("the guided images", ref, visible.upsample(out["guided_ok"]))
        out["noscale"], out["mulscale"] = vae.lowres(z), vae.lowres(z * s)
        for guide in ("swapped", "condonly", "offbyone"):
            out[guide] = vae.lowres(end(guide=guide) / s)
        out["ignored"] = vae.lowres(end(w=1.0) / s)
        out["null10"] = vae.lowres(end(null=10) / s)
        out["guided_heun"] = vae.lowres(end(solver="heun") / s)
        out["steps30"] = vae.lowres(end(steps=30) / s)

        flat, _ = visible.doubles(cfg, {**tensors, "emb": torch.zeros(16, c)}, x_logvar=float("-inf"))
        hs = cfg["heun_steps"]
        x0 = tensors["x0"]
        out["heun_ok"] = vae.lowres(integrate(flat, x0, y, 1.0, hs, "heun", null))
        ref = LatentCFGSampler(flat, vae, 1.0, shape, null_label=null).sample(
            y, 1.0, num_steps=hs, solver="heun", x0=tensors["x0"].clone())
        _disagree("Heun's images", ref, visible.upsample(out["heun_ok"]))
        out["heun_full"] = vae.lowres(integrate(flat, x0, y, 1.0, hs, "heun", null, full_last=True))
        out["heun_euler"] = vae.lowres(integrate(flat, x0, y, 1.0, hs, "euler", null))
        out["heun_steps30"] = vae.lowres(integrate(flat, x0, y, 1.0, 30, "heun", null))
    gaps = [float((out[name] - out["guided_ok"]).abs().max()) for name, _ in visible.WRONG_SAMPLES]
    gaps += [float((out["heun_euler"] - out[name]).abs().max())
             for name in ("heun_ok", "heun_full", "heun_steps30")]
    tensors.update(out)
    return tensors, min(gaps)


LATENT_CFG_LOSS = visible.LATENT_CFG_LOSS.replaced(LOSS_CONFIG, record=record_loss)
LATENT_SAMPLER = visible.LATENT_SAMPLER.replaced(SAMPLER_CONFIG, record=record_sampler)
