"""reparameterize and vae_loss, instructor side: the hidden sizes and the recorders (the judge's
inputs drawn from a seed, the reference's expectations computed with ``cfgflow_ref.latent`` and
the values of the known-wrong formulas named in :mod:`cfgflow.checks.vae`). The tables, probes,
verdicts and messages are the student runtime's.
"""

from __future__ import annotations

import torch

from cfgflow.checks import vae as visible

REPARAM_CONFIG = {"seed": 11, "n": 3000, "k": 8, "shape": [3, 3, 2, 5], "grad_shape": [4, 7]}
LOSS_CONFIG = {"seed": 12, "b": 4, "image": [12, 12], "latent": [3, 3, 2], "betas": [0.3, 1.7]}

LOGVAR_COLUMNS = [-3.0, 2.4, 0.5, -1.4, 1.4, -0.6, 3.0, -2.2]
"""The distribution probe's log-variance per column (before a small jitter and a shuffle): far
enough apart that every known-wrong standard deviation misses some column by many standard errors."""


def _wrong_stds(logvar):
    return {"std_var": logvar.exp(), "std_var_half": logvar.exp() / 2, "std_inv": (-logvar / 2).exp(),
            "std_logvar": logvar.abs(), "std_half_logvar": (logvar / 2).abs(),
            "std_one": torch.ones_like(logvar)}


def record_reparameterize(cfg, seed):
    """Column means ~ N(0, 2^2) and log-variances (``LOGVAR_COLUMNS``, jittered, shuffled) of the
    distribution probe, the freshness probe's mean and full log-variance, the gradient probe's mean
    and backward weights, a positive 0-d log-variance; the reference's standard deviation per
    column and the known-wrong ones."""
    from cfgflow_ref.latent import DiagonalGaussian

    k = int(cfg["k"])
    if not 1 <= k <= len(LOGVAR_COLUMNS):
        raise ValueError(f"k must be in [1, {len(LOGVAR_COLUMNS)}], got {k}")
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(LOGVAR_COLUMNS[:k])
    logvar = (base + 0.3 * torch.rand(k, generator=g) - 0.15)[torch.randperm(k, generator=g)]
    tensors = {"mean": 2 * torch.randn(k, generator=g), "logvar": logvar,
               "fresh_mean": 0.5 * torch.randn(cfg["shape"], generator=g),
               "fresh_logvar": torch.randn(cfg["shape"], generator=g) - 0.5,
               "grad_mean": torch.randn(cfg["grad_shape"], generator=g),
               "grad_w": torch.randn(cfg["grad_shape"], generator=g)}
    values = {"lv0": float(0.2 + 0.6 * torch.rand((), generator=g))}
    lv = logvar.double()
    # the reference's standard deviation: its sample with unit noise, less its mean
    with torch.random.fork_rng(devices=[]):
        ref = DiagonalGaussian(torch.zeros(k, dtype=torch.float64), lv)
        torch.manual_seed(seed)
        noise = torch.randn(k, dtype=torch.float64)
        torch.manual_seed(seed)
        std = ref.sample() / noise
    tensors["std"] = std
    if float((std - (lv / 2).exp()).abs().max()) > 1e-9:
        raise RuntimeError("cfgflow_ref.latent.DiagonalGaussian disagrees with exp(logvar / 2)")
    n = int(cfg["n"])
    tol = visible.SIGMAS / (2 * n) ** 0.5
    for name, wrong in _wrong_stds(lv).items():
        tensors[name] = wrong
        miss = float(torch.maximum(wrong / std - 1, std / wrong - 1).abs().max())
        if miss < 4 * tol:
            raise RuntimeError(f"{name} is within {miss:.3f} of the std in every column: spread "
                               "LOGVAR_COLUMNS")
    return values, tensors


def _rec(x, xm, xl):
    """Per-sample reconstruction terms, the correct one and the known-wrong ones (1 sample)."""
    xl = xl.expand_as(x)
    se = (x - xm) ** 2
    rec = 0.5 * (se / xl.exp() + xl).sum()
    return {"ok": rec, "no_half": 2 * rec, "logstd": (0.5 * se * (-2 * xl).exp() + xl).sum(),
            "mean_pixels": rec / x.numel(), "mean_pixels_no_half": 2 * rec / x.numel(),
            "mse_half": 0.5 * se.sum(), "mse": se.sum(), "mse_mean": se.mean(),
            "no_logvar": 0.5 * (se / xl.exp()).sum(), "times_var": 0.5 * (se * xl.exp() + xl).sum()}


def _kl(zm, zl):
    kl = 0.5 * (zm ** 2 + zl.exp() - zl - 1)  # (1, c, h, w)
    return {"ok": kl.sum(), "sign": -kl.sum(), "no_half": 2 * kl.sum(),
            "logstd": 0.5 * (zm ** 2 + (2 * zl).exp() - 2 * zl - 1).sum(), "mean_latents": kl.mean(),
            "mean_latents_no_half": 2 * kl.mean(),
            "mean_channels": kl.sum() / zm.shape[1],
            "reverse": 0.5 * (zl + (1 + zm ** 2) * (-zl).exp() - 1).sum(),
            "no_minus_one": kl.sum() + 0.5 * zm.numel(), "logvar_for_exp": 0.5 * (zm ** 2 - 1).sum()}


def record_vae_loss(cfg, seed):
    """Images x in [0, 1], decoder means x + N(0, 0.3^2), per-pixel log-variances N(-1, 0.5^2), a
    0-d one in [-1.5, -0.5], latent means N(0, 1) and log-variances N(-0.5, 0.5^2); the reference's
    reconstruction and KL terms of the first sample and the known-wrong ones."""
    from cfgflow_ref.latent import VAELoss

    b, (h, w), latent = int(cfg["b"]), cfg["image"], list(cfg["latent"])
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, h, w, generator=g)
    tensors = {"x": x, "x_mean": x + 0.3 * torch.randn(b, 1, h, w, generator=g),
               "x_logvar": 0.5 * torch.randn(b, 1, h, w, generator=g) - 1,
               "z_mean": torch.randn(b, *latent, generator=g),
               "z_logvar": 0.5 * torch.randn(b, *latent, generator=g) - 0.5}
    values = {"x_logvar0": float(-1.5 + torch.rand((), generator=g))}
    d = {k: v[:1].double() for k, v in tensors.items()}
    xl0 = torch.tensor(values["x_logvar0"], dtype=torch.float64)
    with torch.no_grad():
        for kind, lv in (("zero_d", xl0), ("full", d["x_logvar"])):
            terms = _rec(d["x"], d["x_mean"], lv)
            if kind == "zero_d":
                terms["once"] = 0.5 * ((d["x"] - d["x_mean"]) ** 2 / lv.exp()).sum() + 0.5 * lv
            ref = VAELoss(1.0)(d["x"], d["x_mean"], lv, d["z_mean"], d["z_logvar"]) - \
                VAELoss(1.0)(d["x_mean"], d["x_mean"], torch.zeros_like(lv), d["z_mean"], d["z_logvar"])
            _agree(ref, terms["ok"], f"reconstruction ({kind})")
            values.update({f"rec_{kind}_{k}": float(v) for k, v in terms.items()})
        kl = _kl(d["z_mean"], d["z_logvar"])
        (b1, b2), rec0 = cfg["betas"], terms_zero_d(d, xl0)
        ref = (VAELoss(b1)(d["x"], d["x_mean"], xl0, d["z_mean"], d["z_logvar"])
               - VAELoss(b2)(d["x"], d["x_mean"], xl0, d["z_mean"], d["z_logvar"])) / (b1 - b2)
        _agree(ref, kl["ok"], "KL")
        kl.update({"no_beta": torch.zeros(()), "beta_rec": rec0, "beta_both": rec0 + kl["ok"]})
        values.update({f"kl_{k}": float(v) for k, v in kl.items()})
    _separated(values)
    return values, tensors


def terms_zero_d(d, xl0):
    """The first sample's reconstruction term with the 0-d log-variance."""
    return _rec(d["x"], d["x_mean"], xl0)["ok"]


def _agree(ref, mine, what):
    if abs(float(ref) - float(mine)) > 1e-9 * (1 + abs(float(mine))):
        raise RuntimeError(f"cfgflow_ref.latent.VAELoss disagrees with the recorded {what} term")


def _separated(values):
    """Every known-wrong term is far (100 tolerances) from the correct one: a verdict never names a
    correct loss wrong, whatever the seed."""
    tol = 100 * visible.TERM_TOL
    for key, v in values.items():
        for prefix in ("rec_zero_d_", "rec_full_", "kl_"):
            if key.startswith(prefix) and not key.endswith("_ok"):
                ok = values[prefix + "ok"]
                if abs(v - ok) <= tol * (1 + abs(ok)):
                    raise RuntimeError(f"{key} is within {tol:g} of the correct term: change the inputs")


REPARAMETERIZE = visible.REPARAMETERIZE.replaced(REPARAM_CONFIG, record=record_reparameterize)
VAE_LOSS = visible.VAE_LOSS.replaced(LOSS_CONFIG, record=record_vae_loss)
