"""reparameterize: ``DiagonalGaussian(mean, logvar).sample()``; vae_loss: ``VAELoss(beta)(x, x_mean,
x_logvar, z_mean, z_logvar)`` -> scalar.

**reparameterize.** A sample is random, so its values are judged by statistics and its structure by
properties that hold whatever the noise: on a large batch of rows that share one mean and one
log-variance per column, the empirical mean and standard deviation of each column must be the
given mean and ``exp(logvar / 2)`` (the recording holds the expected standard deviations and those
of the known-wrong formulas, which name the mistake); the noise must be fresh at every call, in
every new object and in every entry; under the same random state a sample must move with its mean
(so output that ignores its inputs earns nothing there); the gradient must be the pathwise one
(identity in ``mean``, proportional to the noise in ``logvar``: any such gradient passes, so a
wrong scale of the noise costs only the distribution sub-check); the noise must be drawn on
``mean``'s device (a run on the meta device).

**vae_loss.** Each term is isolated with the student's own loss: the reconstruction term is the
change of the loss when ``(x, x_logvar)`` go from ``(x_mean, 0)`` to the given values with the
latent inputs fixed (at beta = 1, so the KL term cancels whatever its formula or where beta sits,
and so does the constant ``1/2 log(2 pi)`` per pixel of the full Gaussian NLL), with a 0-d and a
full-shape ``x_logvar``; the KL term is the change of the loss between two betas divided by the
change of beta. Both are taken at batch size 1, so the batch reduction is the reduction
sub-check's alone: the loss of a batch must be the mean of its samples' losses (and a batch
repeated twice the same). Gradients must reach every input the loss depends on and match a finite
difference of the student's own loss. The expected terms and the values of known-wrong formulas
are recorded numbers (``data/vae_loss.json``; graded: computed by the judge).
"""

from __future__ import annotations

import torch

from ._core import CheckTable, Fail, SubCheck, as_obs, close, max_err, on_meta, shape_of

# --------------------------------------------------------------------------------------------
# reparameterize

REPARAM_CONFIG = {"seed": 0, "n": 4096, "k": 6, "shape": [4, 2, 4, 4], "grad_shape": [5, 3]}
REPARAM_GIVEN = ("mean", "logvar", "fresh_mean", "fresh_logvar", "grad_mean", "grad_w", "lv0")
# mean, logvar: (k,) one value per column of the distribution probe's (n, k) batch; fresh_mean,
# fresh_logvar: (*shape) for the shape, freshness and device probes; grad_mean, grad_w: (*grad_shape)
# the gradient probe's mean and the weights of its backward pass; lv0: a positive log-variance
# (value) used as a 0-d tensor, and for every entry of the gradient probe's full-shape logvar

SIGMAS = 6.0  # tolerances of the statistical verdicts, in standard errors: a correct sample never fails
SHIFT = 1.5  # the freshness probe's second mean: mean + SHIFT

# known-wrong standard deviations (recorded tensors, one per column) and their messages
WRONG_STDS = [
    ("std_var", "variance used as the standard deviation (exp(logvar)): std = exp(logvar / 2)"),
    ("std_var_half", "std = exp(logvar) / 2: the 1/2 belongs inside the exponential, std = exp(logvar / 2)"),
    ("std_inv", "std = exp(-logvar / 2) is 1 / std: use exp(logvar / 2)"),
    ("std_logvar", "logvar used as the standard deviation: std = exp(logvar / 2)"),
    ("std_half_logvar", "logvar / 2 used as the standard deviation (that is the log of the std): "
     "std = exp(logvar / 2)"),
    ("std_one", "the spread ignores logvar (noise of standard deviation 1): scale the noise by "
     "exp(logvar / 2)"),
]
UNIFORM_STD = 1 / 12 ** 0.5  # std of U[0, 1): the spread of torch.rand noise relative to the expected std


def _sample(ctx, mean, logvar):
    return ctx.new(mean, logvar).sample()


def _probe_shape(ctx):
    """The sample's shape with a 0-d and with a full-shape log-variance."""
    mean = ctx.tensor("fresh_mean")
    out = {}
    lv0 = torch.tensor(float(ctx.value("lv0")))
    for kind, logvar in (("zero_d", lv0), ("full", ctx.tensor("fresh_logvar"))):
        s = _sample(ctx, mean, logvar)
        out[kind] = shape_of(s) if not isinstance(s, torch.Tensor) else [int(d) for d in s.shape]
    return {"mean_shape": [int(d) for d in mean.shape], **out}


def _verdict_shape(obs, exp):
    want = list(obs["mean_shape"])
    for kind, what in (("zero_d", "a 0-d logvar"), ("full", "a logvar of mean's shape")):
        got = obs[kind]
        if got != want:
            shown = tuple(got) if isinstance(got, list) else got
            raise Fail(f"with {what} sample() returned {shown}, expected mean's shape {tuple(want)}")


def _probe_distribution(ctx):
    """Column statistics of one sample of ``n`` rows that share the given mean and log-variance
    per column: mean and standard deviation of each column, whether the rows are all equal."""
    n = int(ctx["n"])
    mean, logvar = ctx.tensor("mean"), ctx.tensor("logvar")
    s = _sample(ctx, mean.expand(n, -1).clone(), logvar.expand(n, -1).clone())
    if not isinstance(s, torch.Tensor) or tuple(s.shape) != (n, mean.shape[0]):
        return {"shape": shape_of(s)}
    s = s.detach().double()
    return {"shape": shape_of(s), "finite": bool(torch.isfinite(s).all()), "col_mean": s.mean(0),
            "col_std": s.std(0), "rows_equal": bool((s == s[:1]).all())}


def _verdict_distribution(obs, exp):
    m, std, n = exp.tensor("mean"), exp.tensor("std"), int(exp["n"])
    if obs["shape"] != str((n, m.shape[0])):
        raise Fail(f"with mean and logvar of shape {(n, m.shape[0])} sample() returned {obs['shape']}")
    if not obs["finite"]:
        raise Fail("the sample has NaN or infinite entries (the square root of a negative log-variance?): "
                   "std = exp(logvar / 2)")
    cm, cs = obs["col_mean"].double(), obs["col_std"].double()
    if obs["rows_equal"]:  # one draw for the whole batch: each entry's distribution may still be right
        offset = cm - m
        if max_err(cm, m) <= 1e-6 * (1 + float(m.abs().max())):
            raise Fail("no noise: sample() returned mean itself; add exp(logvar / 2) * noise, "
                       "noise ~ N(0, I)")
        z = offset / std
        if float((z - z.mean()).abs().max()) <= 1e-4 * (1 + float(z.abs().max())):
            return  # mean + exp(logvar / 2) * (one shared draw): the fresh sub-check names it
        raise Fail("the sample is the same in every row of the batch and is not "
                   "mean + exp(logvar / 2) * noise")
    tol = SIGMAS / (2 * n) ** 0.5  # relative standard error of a standard deviation: 1 / sqrt(2 n)
    ratio = cs / std
    if float((ratio - 1).abs().max()) <= tol:
        if float(((cm - m).abs() / std).max()) <= SIGMAS / n ** 0.5:
            return
        raise Fail("the sample is not centred on mean: sample = mean + exp(logvar / 2) * noise")
    for name, msg in WRONG_STDS:
        wrong = exp.tensor(name).abs()
        if bool((wrong > 0).all()) and float((cs / wrong - 1).abs().max()) <= tol:
            raise Fail(msg)
    if float((ratio / UNIFORM_STD - 1).abs().max()) <= tol:
        raise Fail("the noise is uniform (torch.rand): draw it from N(0, I) with torch.randn")
    raise Fail("the spread of the sample differs from exp(logvar / 2) in some column: "
               "sample = mean + exp(logvar / 2) * noise, noise ~ N(0, I)")


def _probe_fresh(ctx):
    """Two calls of one object, one call of a second object built from the same inputs (0-d
    log-variance), and two objects whose means differ by ``SHIFT`` sampled from the same random
    state."""
    mean, lv0 = ctx.tensor("fresh_mean"), float(ctx.value("lv0"))
    g = ctx.new(mean.clone(), torch.tensor(lv0))
    s1, s2 = g.sample(), g.sample()
    s3 = _sample(ctx, mean.clone(), torch.tensor(lv0))
    state = torch.random.get_rng_state()
    r1 = _sample(ctx, mean.clone(), torch.tensor(lv0))
    torch.random.set_rng_state(state)
    r2 = _sample(ctx, mean.clone() + SHIFT, torch.tensor(lv0))
    return {k: as_obs(v.detach()) if isinstance(v, torch.Tensor) else as_obs(v)
            for k, v in (("s1", s1), ("s2", s2), ("s3", s3), ("r1", r1), ("r2", r2))}


def _verdict_fresh(obs, exp):
    m = exp.tensor("fresh_mean")
    for k in ("s1", "s2", "s3", "r1", "r2"):
        if not isinstance(obs[k], torch.Tensor) or obs[k].shape != m.shape:
            raise Fail(f"sample() returned {shape_of(obs[k])}, expected mean's shape {tuple(m.shape)}")
    r1, r2 = obs["r1"].double(), obs["r2"].double()
    if not close(r2 - r1, torch.full_like(r1, SHIFT), 1e-5):
        raise Fail(f"your sample does not move with mean (the same random draws with mean + {SHIFT} "
                   f"should give the sample + {SHIFT}): sample = mean + exp(logvar / 2) * noise, so this "
                   "sub-check has nothing to credit")
    d1, d2 = obs["s1"].double() - m, obs["s2"].double() - m
    scale = 1e-6 * (1 + float(m.abs().max()))
    if float(d1.abs().max()) <= scale and float(d2.abs().max()) <= scale:
        raise Fail("no noise: sample() returned mean itself; add exp(logvar / 2) * noise, noise ~ N(0, I)")
    if torch.equal(obs["s1"], obs["s2"]):
        raise Fail("the same sample at every call (noise drawn once in __init__, or a fixed seed set in "
                   "sample()): draw fresh noise with torch.randn at each call")
    if torch.equal(obs["s1"], obs["s3"]):
        raise Fail("two DiagonalGaussians built from the same mean and logvar gave the same sample (a "
                   "generator seeded with a fixed seed?): draw the noise with torch.randn, the global "
                   "generator")
    spread = float(d1.abs().max())
    if spread == 0.0:
        raise Fail("no noise in the first call: sample() returned mean itself; add exp(logvar / 2) * noise")
    distinct = len(set(torch.round(d1.reshape(-1) / spread * 1e4).tolist()))
    if distinct < d1.numel() // 2:
        if distinct <= 1:
            raise Fail("one noise value shared by all entries (noise of shape () or of logvar's shape, and "
                       "logvar is 0-d?): draw noise of mean's shape, e.g. torch.randn_like(mean)")
        if distinct <= m.shape[0]:
            raise Fail("one noise value per sample, shared by its entries: draw noise of mean's full shape, "
                       "e.g. torch.randn_like(mean)")
        raise Fail("the noise repeats across entries: draw independent noise of mean's full shape, "
                   "e.g. torch.randn_like(mean)")


def _grads(ctx, logvar):
    mean = ctx.tensor("grad_mean").requires_grad_()
    logvar = logvar.requires_grad_()
    s = _sample(ctx, mean, logvar)
    if not isinstance(s, torch.Tensor):
        return {"s": as_obs(s)}
    out = {"s": s.detach(), "requires_grad": bool(s.requires_grad), "g_mean": None, "g_logvar": None}
    if s.requires_grad and s.shape == mean.shape:
        (s * ctx.tensor("grad_w")).sum().backward()
        out["g_mean"] = None if mean.grad is None else mean.grad.detach()
        out["g_logvar"] = None if logvar.grad is None else logvar.grad.detach()
    return out


def _probe_gradient(ctx):
    """The sample, and the gradients of ``sum(w * sample)`` in mean and logvar, with one positive
    log-variance as a full-shape tensor and as a 0-d tensor."""
    lv0 = float(ctx.value("lv0"))
    return {"full": _grads(ctx, torch.full(ctx.tensor("grad_mean").shape, lv0)),
            "zero_d": _grads(ctx, torch.tensor(lv0))}


NO_GRAD = ("the sample has no gradient (.detach(), .data, torch.no_grad() or Normal(...).sample()?): "
           "return mean + exp(logvar / 2) * noise (or Normal(...).rsample())")


def _check_grads(rec, w, m, what):
    """The pathwise gradient of ``sum(w * s)``: ``w`` in mean, ``c * w * (s - mean)`` in logvar for
    some constant ``c``; returns the logvar gradient and ``s - mean``."""
    s = rec["s"]
    if not isinstance(s, torch.Tensor) or s.shape != m.shape:
        raise Fail(f"with {what} sample() returned {shape_of(s)}, expected mean's shape {tuple(m.shape)}")
    if not rec["requires_grad"]:
        raise Fail(NO_GRAD)
    gm, gl = rec["g_mean"], rec["g_logvar"]
    if gm is None:
        raise Fail("no gradient reaches mean (mean.detach() or mean.data?): the sample must be "
                   "differentiable in mean")
    if not close(gm, w, 1e-5):
        if float(gm.abs().max()) == 0.0:
            raise Fail("zero gradient: torch.normal(mean, std) draws without a gradient path; use "
                       "mean + exp(logvar / 2) * torch.randn_like(mean)")
        raise Fail("the gradient with respect to mean is not the identity: sample = mean + (a noise term)")
    if gl is None:
        raise Fail("no gradient reaches logvar (the std computed from logvar.detach() or logvar.data?): the "
                   "sample must be differentiable in logvar")
    return gl.double(), s.double() - m


def _verdict_gradient(obs, exp):
    w, m = exp.tensor("grad_w"), exp.tensor("grad_mean")
    g, d = _check_grads(obs["full"], w, m, "a full-shape logvar")
    wd = w * d
    denom = float((wd * wd).sum())
    c = float((g * wd).sum()) / denom if denom > 0 else 0.0
    if c == 0.0 or c != c or float((g - c * wd).abs().max()) > 1e-4 * float(g.abs().max()):
        raise Fail("the gradient with respect to logvar is not the pathwise one (proportional to the noise): "
                   "sample = mean + std(logvar) * noise, the noise drawn without logvar")
    g0, d0 = _check_grads(obs["zero_d"], w, m, "a 0-d logvar")
    want = c * float((w * d0).sum())
    tol = 1e-4 * abs(c) * float((w * d0).abs().sum()) + 1e-7
    if g0.numel() != 1 or abs(float(g0.reshape(())) - want) > tol:
        raise Fail("with a 0-d logvar the gradient with respect to logvar is not the pathwise one: "
                   "sample = mean + exp(logvar / 2) * noise, logvar broadcast to mean's shape")


def _probe_device(ctx):
    """A sample of mean and logvar on the meta device: whether it raised a RuntimeError that names
    a device (any other error is the student's exception, reported as such), else the device type
    of the sample. ``Normal``'s argument validation reads values (impossible on meta): it is off
    during this call."""
    mean = torch.zeros(ctx["shape"], device="meta")
    dist = torch.distributions.Distribution
    validate = dist._validate_args
    dist.set_default_validate_args(False)
    try:
        raised, device = on_meta(lambda: _sample(ctx, mean, torch.zeros((), device="meta")))
    except RuntimeError as e:
        if "meta tensor" not in str(e).lower():
            raise
        # code that reads values (e.g. .item()): a device cannot be judged
        return {"raised": type(e).__name__, "mentions_device": False, "device": "undecided"}
    finally:
        dist.set_default_validate_args(validate)
    return {"raised": raised, "mentions_device": raised is not None, "device": device}


def _verdict_device(obs, exp):
    if obs["raised"] is not None and obs["mentions_device"]:
        raise Fail("the noise was created on the CPU while mean lives on another device (GPU): draw it on "
                   "mean's device (torch.randn_like(mean), or device=mean.device)")
    if obs["device"] not in ("meta", "undecided"):
        raise Fail("the sample did not stay on mean's device: draw the noise with device=mean.device")


REPARAMETERIZE = CheckTable(
    "reparameterize",
    [
        SubCheck("shape", "sample() has mean's shape (logvar 0-d or of mean's shape)", 0.5, _probe_shape,
                 _verdict_shape),
        SubCheck("distribution", "each entry ~ N(mean, exp(logvar)): column means and standard deviations "
                 "of a large batch", 2, _probe_distribution, _verdict_distribution),
        SubCheck("fresh", "fresh independent noise at every call, in every object and every entry", 1,
                 _probe_fresh, _verdict_fresh),
        SubCheck("gradient", "pathwise gradient: identity in mean, proportional to the noise in logvar", 1,
                 _probe_gradient, _verdict_gradient),
        SubCheck("device", "noise drawn on mean's device", 0.5, _probe_device, _verdict_device),
    ],
    REPARAM_CONFIG,
    {"not on the expected device": "draw the noise on mean's device (torch.randn_like(mean))",
     "positional argument": "keep the signature DiagonalGaussian(mean, logvar) and sample() without "
                            "arguments"},
    rationale=(
        "The distribution of the sample is the part's result: a wrong scale of the noise (variance for "
        "standard deviation, logvar for std) weighs most (2). Noise reused across calls, objects or entries "
        "and a sample without its gradient path each break training (1 each). Noise drawn on the CPU leaves "
        "the math alone but stops training on a GPU (0.5); the shape is what a stub earns (0.5)."
    ),
    given=REPARAM_GIVEN,
)


# --------------------------------------------------------------------------------------------
# vae_loss

LOSS_CONFIG = {"seed": 0, "b": 3, "image": [8, 8], "latent": [4, 2, 2], "betas": [0.6, 2.5]}
LOSS_GIVEN = ("x", "x_mean", "x_logvar", "z_mean", "z_logvar", "x_logvar0")
# x, x_mean, x_logvar: (b, 1, *image); z_mean, z_logvar: (b, *latent); x_logvar0: a value, the 0-d
# x_logvar of the reconstruction (with the full-shape one), KL, reduction and gradient probes

TERM_TOL = 1e-6  # relative tolerance of a term (float64 inputs)

# known-wrong reconstruction terms (recorded values ``rec_<kind>_<name>``; kind: zero_d or full) and KL
# terms (``kl_<name>``), and their messages
WRONG_REC = [
    ("no_half", "the reconstruction term misses its 1/2: 1/2 sum[(x - x_mean)^2 / exp(x_logvar) + x_logvar]"),
    ("logstd", "x_logvar treated as a log standard deviation: it is the log of the variance, "
     "1/2 sum[(x - x_mean)^2 / exp(x_logvar) + x_logvar]"),
    ("mean_pixels", "the reconstruction term is a mean over the pixels: sum over the pixels (per sample)"),
    ("mean_pixels_no_half", "the reconstruction term is a mean over the pixels and misses its 1/2 (the lab's "
     "per-element mean): 1/2 sum over the pixels (per sample)"),
    ("once", "x_logvar counted once: a 0-d log-variance adds 1/2 x_logvar per pixel (broadcast it to x's "
     "shape before summing)"),
    ("mse_half", "MSE without the variance: divide the squared error by exp(x_logvar) and add x_logvar"),
    ("mse", "MSE without the variance: divide the squared error by exp(x_logvar) and add x_logvar"),
    ("mse_mean", "MSE without the variance: divide the squared error by exp(x_logvar) and add x_logvar"),
    ("no_logvar", "the reconstruction term misses + x_logvar (the Gaussian's normaliser): "
     "1/2 sum[(x - x_mean)^2 / exp(x_logvar) + x_logvar]"),
    ("times_var", "the squared error is multiplied by exp(x_logvar): divide by it"),
]
WRONG_KL = [
    ("no_beta", "the loss does not change with beta: multiply the KL term by self.beta"),
    ("beta_rec", "beta multiplies the reconstruction term: it belongs to the KL term"),
    ("beta_both", "beta multiplies the whole loss: only the KL term is weighted by beta"),
    ("sign", "the KL sign is flipped: + beta * 1/2 sum[z_mean^2 + exp(z_logvar) - z_logvar - 1]"),
    ("no_half", "the KL term misses its 1/2: 1/2 sum[z_mean^2 + exp(z_logvar) - z_logvar - 1]"),
    ("logstd", "z_logvar treated as a log standard deviation in the KL: it is the log of the variance, "
     "1/2 sum[z_mean^2 + exp(z_logvar) - z_logvar - 1]"),
    ("mean_latents", "the KL term is a mean over the latent entries: sum over them (per sample)"),
    ("mean_latents_no_half", "the KL term is a mean over the latent entries and misses its 1/2 (the lab's "
     "per-element mean): 1/2 sum over them (per sample)"),
    ("mean_channels", "the KL term is averaged over the latent channels: sum over every latent entry"),
    ("reverse", "the KL of the wrong direction, KL(N(0, I) || q): use KL(q || N(0, I)) = "
     "1/2 sum[z_mean^2 + exp(z_logvar) - z_logvar - 1]"),
    ("no_minus_one", "the KL term misses its - 1: 1/2 sum[z_mean^2 + exp(z_logvar) - z_logvar - 1]"),
    ("logvar_for_exp", "exp(z_logvar) replaced by z_logvar in the KL: 1/2 sum[z_mean^2 + exp(z_logvar) - "
     "z_logvar - 1]"),
]


def _inputs(ctx):
    """The given inputs in float64: x, x_mean, x_logvar (full), z_mean, z_logvar, and the 0-d x_logvar."""
    names = ("x", "x_mean", "x_logvar", "z_mean", "z_logvar")
    return [ctx.tensor(n, torch.float64) for n in names] + [torch.tensor(float(ctx.value("x_logvar0")),
                                                                         dtype=torch.float64)]


def _value(out):
    """A loss as an observation: a float64 0-d tensor when it is one number, else its shape or type."""
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        return torch.tensor(float(out), dtype=torch.float64)
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return out.detach().double().reshape(())
    return shape_of(out)


def _number(v, what):
    if not isinstance(v, torch.Tensor):
        raise Fail(f"{what}: the loss should be one number (a scalar tensor), got {v}")
    if not bool(torch.isfinite(v)):
        raise Fail(f"{what}: the loss is NaN or infinite")
    return float(v)


def _loss(ctx, beta, *args):
    return ctx.new(beta=beta)(*args)


def _probe_loss_shape(ctx):
    """The loss of the given batch with a 0-d and with a full-shape x_logvar."""
    x, xm, xl, zm, zl, xl0 = _inputs(ctx)
    beta = ctx["betas"][0]
    out = {}
    for kind, lv in (("zero_d", xl0), ("full", xl)):
        loss = _loss(ctx, beta, x, xm, lv, zm, zl)
        out[kind] = {"tensor": isinstance(loss, torch.Tensor), "shape": shape_of(loss),
                     "numel": int(loss.numel()) if isinstance(loss, torch.Tensor) else 0}
    return out


def _verdict_loss_shape(obs, exp):
    for kind, what in (("zero_d", "a 0-d x_logvar"), ("full", "an x_logvar of x's shape")):
        rec = obs[kind]
        if not rec["tensor"] or rec["numel"] != 1:
            raise Fail(f"with {what} the loss is {rec['shape']}: return a scalar tensor (the mean over the "
                       "batch of per-sample sums)")


def _probe_reconstruction(ctx):
    """At beta = 1 and batch size 1: the loss of the first sample and the loss with x = x_mean and
    x_logvar = 0 (same latent inputs), with a 0-d and with a full-shape x_logvar."""
    x, xm, xl, zm, zl, xl0 = (t[:1] if t.dim() else t for t in _inputs(ctx))
    out = {}
    for kind, lv in (("zero_d", xl0), ("full", xl)):
        out[kind] = {"loss": _value(_loss(ctx, 1.0, x, xm, lv, zm, zl)),
                     "base": _value(_loss(ctx, 1.0, xm.clone(), xm, torch.zeros_like(lv), zm, zl))}
    return out


def _verdict_reconstruction(obs, exp):
    for kind, what in (("zero_d", "0-d x_logvar"), ("full", "full-shape x_logvar")):
        rec = obs[kind]
        got = _number(rec["loss"], f"with a {what}") - \
            _number(rec["base"], f"with x = x_mean and a {what} of 0")
        if abs(got - exp.value(f"rec_{kind}_ok")) <= TERM_TOL * (1 + abs(exp.value(f"rec_{kind}_ok"))):
            continue
        for name, msg in WRONG_REC:
            key = f"rec_{kind}_{name}"
            if key in exp.values and abs(got - exp.value(key)) <= TERM_TOL * (1 + abs(exp.value(key))):
                raise Fail(msg)
        raise Fail(f"with a {what} the reconstruction term differs from "
                   "1/2 sum[(x - x_mean)^2 / exp(x_logvar) + x_logvar] (summed over the pixels)")


def _probe_kl(ctx):
    """At batch size 1 (the first sample, 0-d x_logvar): the loss at the config's two betas."""
    x, xm, _, zm, zl, xl0 = (t[:1] if t.dim() else t for t in _inputs(ctx))
    return {"losses": [_value(_loss(ctx, beta, x, xm, xl0, zm, zl)) for beta in ctx["betas"]]}


def _verdict_kl(obs, exp):
    (b1, b2), (l1, l2) = exp["betas"], obs["losses"]
    got = (_number(l1, f"at beta = {b1}") - _number(l2, f"at beta = {b2}")) / (b1 - b2)
    if abs(got - exp.value("kl_ok")) <= TERM_TOL * (1 + abs(exp.value("kl_ok"))):
        return
    for name, msg in WRONG_KL:
        want = exp.value(f"kl_{name}")
        if abs(got - want) <= TERM_TOL * (1 + abs(want)):
            raise Fail(msg)
    raise Fail("the KL term (the change of the loss per unit of beta) differs from "
               "1/2 sum[z_mean^2 + exp(z_logvar) - z_logvar - 1] (summed over the latent entries)")


def _probe_reduction(ctx):
    """The loss of the batch, of each of its samples alone and of the batch repeated twice, at the
    config's first beta and at beta = 0 (0-d x_logvar)."""
    x, xm, _, zm, zl, xl0 = _inputs(ctx)
    out = {}
    for key, beta in (("beta", ctx["betas"][0]), ("zero", 0.0)):
        args = (x, xm, zm, zl)
        batch = _value(_loss(ctx, beta, x, xm, xl0, zm, zl))
        singles = [_value(_loss(ctx, beta, x[i:i + 1], xm[i:i + 1], xl0, zm[i:i + 1], zl[i:i + 1]))
                   for i in range(x.shape[0])]
        twice = [torch.cat([a, a]) for a in args]
        dup = _value(_loss(ctx, beta, twice[0], twice[1], xl0, twice[2], twice[3]))
        out[key] = {"batch": batch, "singles": singles, "twice": dup}
    return out


def _consistent(rec, b):
    """Whether the batch's loss is the mean of the single samples' (and of the batch repeated)."""
    batch = _number(rec["batch"], f"at batch size {b}")
    singles = [_number(v, "at batch size 1") for v in rec["singles"]]
    mean = sum(singles) / len(singles)
    tol = TERM_TOL * (1 + max(abs(v) for v in singles))
    twice = _number(rec["twice"], f"at batch size {2 * b}")
    return batch, singles, abs(batch - mean) <= tol, abs(twice - batch) <= tol


def _verdict_reduction(obs, exp):
    b = int(exp["b"])
    batch, singles, ok, twice = _consistent(obs["beta"], b)
    if max(singles) - min(singles) <= TERM_TOL * (1 + max(abs(v) for v in singles)):
        raise Fail("your loss is the same for every sample: it does not depend on the inputs, so this "
                   "sub-check has nothing to credit")
    if ok and twice:
        return
    if ok:
        raise Fail("the batch repeated twice gives another loss than the batch: take the mean over the batch")
    if abs(batch - sum(singles)) <= TERM_TOL * (1 + abs(sum(singles))):
        raise Fail("the loss is summed over the batch: take the mean over the batch of the per-sample losses")
    if _consistent(obs["zero"], b)[2]:
        raise Fail("the KL term is not averaged over the batch (summed?): the loss is the mean over the "
                   "batch of rec + beta * KL per sample")
    raise Fail("the loss of a batch is not the mean of its samples' losses (a term summed over the batch, "
               "or divided by another count?): sum over pixels and latents per sample, then the mean over "
               "the batch")


NAMES = ("x", "x_mean", "x_logvar", "z_mean", "z_logvar")
FD_STEP = 1e-5  # central differences of the loss in float64 along a fixed random direction


def _probe_gradients(ctx):
    """The gradient of the loss (the given batch, 0-d x_logvar, the config's first beta) with
    respect to each input along a fixed random direction, and the central difference of the loss
    along the same direction."""
    x, xm, _, zm, zl, xl0 = _inputs(ctx)
    inputs = [t.clone().requires_grad_() for t in (x, xm, xl0, zm, zl)]
    loss_fn = ctx.new(beta=ctx["betas"][0])
    out = loss_fn(*inputs)
    obs = {"value": _value(out), "requires_grad": bool(isinstance(out, torch.Tensor) and out.requires_grad),
           "inputs": {}}
    if obs["requires_grad"] and out.numel() == 1:
        out.reshape(()).backward()
    g = torch.Generator().manual_seed(int(ctx["seed"]) + 7)
    for i, (name, t) in enumerate(zip(NAMES, inputs)):
        direction = torch.randn(t.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            args = [a.detach() for a in inputs]
            up = _value(loss_fn(*[a + FD_STEP * direction if j == i else a for j, a in enumerate(args)]))
            down = _value(loss_fn(*[a - FD_STEP * direction if j == i else a for j, a in enumerate(args)]))
        fd = (float(up) - float(down)) / (2 * FD_STEP) if isinstance(up, torch.Tensor) and \
            isinstance(down, torch.Tensor) else None
        grad = None if t.grad is None else float((t.grad.double() * direction).sum())
        obs["inputs"][name] = {"fd": fd, "grad": grad}
    return obs


def _verdict_gradients(obs, exp):
    value = _number(obs["value"], "on the batch")
    if not obs["requires_grad"]:
        raise Fail("the loss has no gradient (.item(), float(), .detach() or torch.no_grad()?): return the "
                   "tensor")
    rec = obs["inputs"]
    for name in ("x_mean", "z_mean"):  # every plausible formula uses both
        fd = rec[name]["fd"]
        if fd is None or abs(fd) <= 1e-9 * (1 + abs(value)):
            raise Fail(f"your loss does not depend on {name}: changing {name} leaves it as it was, so this "
                       "sub-check has nothing to credit")
    for name in NAMES:
        fd, grad = rec[name]["fd"], rec[name]["grad"]
        if fd is None or abs(fd) <= 1e-9 * (1 + abs(value)):
            continue  # the loss does not depend on it: the terms' sub-checks name that
        if grad is None:
            raise Fail(f"no gradient reaches {name} although the loss depends on it ({name}.detach(), .data, "
                       ".item() or float()?)")
        if not abs(grad - fd) <= 1e-5 * (abs(fd) + 1e-3 * (1 + abs(value))):
            raise Fail(f"the gradient with respect to {name} does not match how the loss changes with "
                       f"{name}: part of its computation is detached (.detach(), .data, .item())")


VAE_LOSS = CheckTable(
    "vae_loss",
    [
        SubCheck("shape", "the loss is a scalar tensor (x_logvar 0-d or of x's shape)", 0.5,
                 _probe_loss_shape, _verdict_loss_shape),
        SubCheck("reconstruction", "reconstruction term 1/2 sum[(x - x_mean)^2 / exp(x_logvar) + x_logvar] "
                 "per sample, x_logvar 0-d and of x's shape", 1.5, _probe_reconstruction,
                 _verdict_reconstruction),
        SubCheck("kl", "beta * KL term, KL = 1/2 sum[z_mean^2 + exp(z_logvar) - z_logvar - 1] per sample",
                 1.5, _probe_kl, _verdict_kl),
        SubCheck("reduction", "mean over the batch of the per-sample losses", 0.75, _probe_reduction,
                 _verdict_reduction),
        SubCheck("gradients", "gradients reach every input the loss depends on", 0.75, _probe_gradients,
                 _verdict_gradients),
    ],
    LOSS_CONFIG,
    {"unexpected keyword": "keep the signature VAELoss(beta) and "
                           "forward(x, x_mean, x_logvar, z_mean, z_logvar)",
     "cannot be converted to scalar": "x_logvar may be a tensor of x's shape: keep it a tensor (no .item())"},
    rationale=(
        "The two terms are the part's result (1.5 each): a wrong constant, sign, variance convention or "
        "reduction over pixels or latents changes what the VAE learns. The batch reduction changes the "
        "loss's scale only (0.75); a detached input stops a part of the model from training (0.75); the "
        "shape is what a stub earns (0.5)."
    ),
    given=LOSS_GIVEN,
)
