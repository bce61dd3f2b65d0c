# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "colab_badge", "locked": true, "schema_version": 3, "solution": false}
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cfgflow/cfgflow-student/blob/v0.1.0/notebooks/03_latent/03_latent.ipynb)
#
# **Run this notebook on a GPU.** Colab opens it on a GPU runtime; to check or switch, use *Runtime > Change runtime type* and pick **T4 GPU** (the free tier's GPU), then *Save*. The imports cell below prints `device: cuda, ...` when `torch.cuda.is_available()` is `True`, and `device: cpu, ...` otherwise. On a CPU the training cells at the end fall back to a small configuration (`LATENT_QUICK`: about five minutes, rough digits); on a GPU they train a larger one.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false}
# Set-up. On Google Colab this installs the course package `cfgflow` (the given code
# and the visible checks), pinned to this term's release; anywhere else it does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "cfgflow @ git+https://github.com/cfgflow/cfgflow-student@v0.1.0"], check=True)

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # Notebook 3: Generating in a latent space
#
# Notebooks 1 and 2 trained a flow model directly on the 1,024 pixels of a digit. Image
# generators you will meet later (Stable Diffusion, DiT on ImageNet) do not: they first
# train an **autoencoder** that squeezes an image into a smaller *latent* tensor and back,
# and then train the flow (or diffusion) model on latents. Each step of the generator then
# works on fewer numbers, so it is cheaper; the price is that the generator can only be as
# good as the decoder that turns its latents back into images. Here you build both halves
# and measure that trade on your own machine:
#
# ```
# Part I, a variational autoencoder (VAE):
#   x (b, 1, 32, 32) --Encoder--> mu, log sigma^2 (b, 4, 8, 8) --sample--> z --Decoder--> x_mean (b, 1, 32, 32)
#
# Part II, classifier-free guidance in the latent space:
#   training:  x --frozen Encoder--> z --times scale--> the CFG loss of Notebook 1 on latents
#   sampling:  noise (b, 4, 8, 8) --guided ODE--> z --divided by scale--> Decoder mean --> image
# ```
#
# The latent has $4 \times 8 \times 8 = 256$ numbers, a quarter of the pixels, on a grid
# 16 times smaller. Shapes use `b` batch, `c` latent channels, `h, w` latent height and
# width, `k` hidden channels.
#
# **Points (40 in total)**, visible + hidden tests per part:
#
# | part | what you implement | visible | hidden | total |
# |---|---|---|---|---|
# | Q1 | `DiagonalGaussian.sample`: the reparameterised sample | 2 | 3 | 5 |
# | Q2 | `VAELoss`: the beta-weighted negative ELBO | 3 | 5 | 8 |
# | Q3 | `Encoder`: image to latent mean and log-variance | 3 | 4 | 7 |
# | Q4 | `Decoder`: latent to image mean and log-variance | 3 | 4 | 7 |
# | Q5 | `LatentCFGTrainer.get_train_loss`: CFG in the latent space | 3 | 5 | 8 |
# | Q6 | `LatentCFGSampler.sample`: guided latents, decoded | 2 | 3 | 5 |
# | **total** | | 16 | 24 | **40** |
#
# Every convention that a test enforces is stated in the stub's docstring; where the
# notebook leaves a choice free (the architecture of the encoder and decoder, a per-entry
# or a single learned log-variance, `sample_cfg` or your own ODE steps) every correct
# choice earns full marks. Replace each `# YOUR CODE HERE` / `raise NotImplementedError()`
# stub by your code; keep the class names and signatures. The training cells at the end
# are not graded: they train **your** VAE and use **your** latent trainer and sampler,
# then compare a latent model with a pixel model trained for the same time.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false}
import os
import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from cfgflow import Trainer, sample_cfg
from cfgflow.checks import check
from cfgflow.latent import VAE

# True while nbgrader validates or autogrades this notebook: training then takes seconds.
QUICK_RUN = bool(os.environ.get("NBGRADER_EXECUTION"))
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)
print(f"device: {device}, quick run: {QUICK_RUN}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "given_code", "locked": true, "schema_version": 3, "solution": false}
# Given, from the course package `cfgflow`: `VAE(encoder, decoder, loss, posterior)`
# (`cfgflow.latent`), which composes your classes: `vae.encode(x)` calls your encoder,
# `vae.decode(z)` your decoder, `vae.sample_latent(x)` is
# `posterior(*vae.encode(x)).sample()` with your `DiagonalGaussian` as the posterior, and
# `vae.compute_loss(x)` encodes, samples one latent, decodes and calls your `VAELoss`.
# Also Notebook 1's `Trainer` base and `sample_cfg(model, y, w, num_steps, shape,
# null_label, solver, x0)`, the guided ODE sampler (Euler or Heun) of Notebook 1.
#
# ## Part I: a variational autoencoder
#
# An autoencoder alone (encode, decode, minimise the reconstruction error) gives latents
# that nothing forces to be well behaved: two nearby latents may decode to unrelated
# images, and the latents of the data may sit on a thin, oddly shaped set. A **VAE**
# makes the encoder output a *distribution* $q_\phi(z \mid x)$ and asks it to stay close
# to a simple prior $p(z) = \mathcal N(0, I)$; the decoder defines $p_\theta(x \mid z)$.
# For any $x$, the log-likelihood is bounded from below by the **evidence lower bound**
# (ELBO):
#
# $$\log p_\theta(x) \;\ge\; \underbrace{\mathbb E_{z \sim q_\phi(z \mid x)}\big[\log p_\theta(x \mid z)\big]}_{\text{reconstruct } x \text{ from its latent}}
# \;-\; \underbrace{\mathrm{KL}\big(q_\phi(z \mid x)\,\|\,p(z)\big)}_{\text{stay close to the prior}} .$$
#
# (The gap is $\mathrm{KL}(q_\phi(z \mid x) \,\|\, p_\theta(z \mid x))$, so the bound is
# tight when the encoder matches the true posterior.) Training maximises the ELBO, i.e.
# minimises its negative, over encoder and decoder together. Our choices:
#
# * encoder: $q_\phi(z \mid x) = \mathcal N\big(\mu_\phi(x), \mathrm{diag}\,\sigma^2_\phi(x)\big)$,
#   returned as the mean `z_mean` and the **log**-variance `z_logvar` $= \log \sigma^2$
#   (any real number is a valid log-variance; a variance must stay positive);
# * decoder: $p_\theta(x \mid z) = \mathcal N\big(m_\theta(z), s^2 I\big)$ with a mean image
#   `x_mean` and a learned log-variance `x_logvar` $= \log s^2$.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_text", "locked": true, "schema_version": 3, "solution": false}
# ### Question 1 (5 points): the reparameterised sample
#
# The reconstruction term is an expectation over $z \sim q_\phi(z \mid x)$; we estimate it
# with one sample per image. Sampling with `torch.normal(mu, sigma)` would give a number
# with no gradient to $\mu$ and $\sigma$, so the encoder would never learn from the
# reconstruction. The **reparameterisation trick** moves the randomness into a
# parameter-free noise:
#
# $$z = \mu + \sigma \odot \varepsilon, \qquad \varepsilon \sim \mathcal N(0, I), \qquad
# \sigma = \exp\big(\tfrac12 \log \sigma^2\big),$$
#
# which has the same distribution, and now $\partial z / \partial \mu = 1$ and
# $\partial z / \partial \sigma = \varepsilon$ carry gradients back into the encoder. Note
# the $\tfrac12$: `logvar` is the log of the **variance**, and the standard deviation is
# its square root.
#
# Draw a fresh $\varepsilon$ at every call (a sample, not a fixed offset), one independent
# entry per entry of the mean, on the mean's device.

# %% nbgrader={"grade": false, "grade_id": "reparameterize", "locked": false, "schema_version": 3, "solution": true} cfgflow={"part": "reparameterize"}
class DiagonalGaussian:
    """N(mean, diag(exp(logvar))): a Gaussian with independent entries.

    ``logvar`` is the log of the VARIANCE, broadcastable to ``mean`` (a 0-d tensor shared by
    every entry, or a tensor of mean's full shape). The standard deviation is
    ``exp(logvar / 2)``.
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean, self.logvar = mean, logvar

    def sample(self) -> torch.Tensor:
        """The reparameterised sample ``mean + exp(logvar / 2) * noise``.

        ``noise ~ N(0, I)`` has mean's shape (one independent value per entry), is drawn
        fresh at each call, on mean's device. The result is differentiable in ``mean`` and
        ``logvar``.
        Returns:
            a tensor of mean's shape, e.g. (b, c, h, w).
        """
        ### BEGIN SOLUTION
        noise = torch.randn_like(self.mean)  # (b, ...) on mean's device
        return self.mean + torch.exp(0.5 * self.logvar) * noise
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_reparameterize", "locked": true, "points": 2, "schema_version": 3, "solution": false} cfgflow={"part": "reparameterize"}
# Visible tests for DiagonalGaussian (2 points). Run me after your implementation.
# Each line printed below is one sub-check, then the score; a failing check says what looks wrong.
check("reparameterize", DiagonalGaussian, points=2)

# %% nbgrader={"grade": true, "grade_id": "test_reparameterize_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false} cfgflow={"part": "reparameterize"}
# Hidden tests for DiagonalGaussian (3 points): the same checks on other sizes
# and seeds, run when your notebook is graded.
### BEGIN HIDDEN TESTS
check("reparameterize", DiagonalGaussian, points=3, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_text", "locked": true, "schema_version": 3, "solution": false}
# ### Question 2 (8 points): the VAE loss
#
# Both terms of the ELBO have closed forms for our Gaussians. With $D$ pixels and the
# decoder's $\mathcal N(m, s^2 I)$, the negative log-likelihood of an image is
#
# $$-\log p_\theta(x \mid z) = \frac12 \sum_{i=1}^{D} \Big[\frac{(x_i - m_i)^2}{s^2} + \log s^2\Big]
# + \frac D2 \log 2\pi .$$
#
# The constant does not change the gradients; leave it out (keeping it is also accepted).
# With a **learned** $s^2$ this is more than a scaled squared error: a small $s^2$ makes
# every pixel error expensive, the $\log s^2$ term stops $s^2$ from shrinking for free,
# and the optimum is $s^2$ = the mean squared error, so the model learns how sharp its
# reconstructions can be. The KL divergence of the encoder's diagonal Gaussian from
# $\mathcal N(0, I)$ is, summed over the $L$ latent entries,
#
# $$\mathrm{KL}\big(\mathcal N(\mu, \mathrm{diag}\,\sigma^2) \,\|\, \mathcal N(0, I)\big) =
# \frac12 \sum_{j=1}^{L} \big[\mu_j^2 + \sigma_j^2 - \log \sigma_j^2 - 1\big] \;\ge 0,$$
#
# zero exactly when $\mu = 0$ and $\sigma = 1$. (Derivation: the expectation under $q$ of
# $\log q - \log p$ for each entry is $-\frac12 \log \sigma^2 - \frac12 + \frac12(\mu^2 + \sigma^2)$.)
#
# The loss of one image is the negative ELBO with the KL weighted by $\beta$ (a
# **$\beta$-VAE**; $\beta = 1$ is the ELBO itself):
#
# $$\ell(x) = \frac12 \sum_{\text{pixels}} \Big[\frac{(x - x_\text{mean})^2}{e^{x_\text{logvar}}} + x_\text{logvar}\Big]
# + \beta \cdot \frac12 \sum_{\text{latent entries}} \big[z_\text{mean}^2 + e^{z_\text{logvar}} - z_\text{logvar} - 1\big],$$
#
# and the batch loss is the **mean over the batch** of $\ell(x)$. Mind the reductions:
# **sum** over the pixels and over the latent entries (the formulas above are sums; a mean
# over pixels would weigh the two terms differently), **mean** over the images. A
# scalar `x_logvar` counts once **per pixel** (broadcast it before you sum). The value can
# be negative: a log-density of a continuous variable can exceed 0.

# %% nbgrader={"grade": false, "grade_id": "vae_loss", "locked": false, "schema_version": 3, "solution": true} cfgflow={"part": "vae_loss"}
class VAELoss(nn.Module):
    """The beta-weighted negative ELBO of a batch.

    Per image: 1/2 sum over pixels of [(x - x_mean)^2 / exp(x_logvar) + x_logvar]
    plus beta * 1/2 sum over latent entries of [z_mean^2 + exp(z_logvar) - z_logvar - 1];
    then the MEAN over the batch. Sum over pixels and latent entries, never a mean there.
    ``x_logvar`` and ``z_logvar`` are log-VARIANCES broadcastable to ``x`` and ``z_mean``
    (a 0-d scalar counts once per pixel / latent entry). beta weighs the KL term only.
    """

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: torch.Tensor, x_mean: torch.Tensor, x_logvar: torch.Tensor,
                z_mean: torch.Tensor, z_logvar: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (b, 1, H, W) images; x_mean: (b, 1, H, W); x_logvar: broadcastable to x.
            z_mean: (b, c, h, w); z_logvar: broadcastable to z_mean.
        Returns:
            a 0-d tensor: the mean over the batch of the per-image loss.
        """
        ### BEGIN SOLUTION
        b = x.shape[0]
        x_logvar = x_logvar.expand_as(x_mean)  # a scalar counts once per pixel
        z_logvar = z_logvar.expand_as(z_mean)
        nll = 0.5 * ((x - x_mean) ** 2 / torch.exp(x_logvar) + x_logvar)  # (b, 1, H, W)
        kl = 0.5 * (z_mean ** 2 + torch.exp(z_logvar) - z_logvar - 1)  # (b, c, h, w)
        per_image = nll.reshape(b, -1).sum(dim=1) + self.beta * kl.reshape(b, -1).sum(dim=1)  # (b,)
        return per_image.mean()
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_vae_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false} cfgflow={"part": "vae_loss"}
# Visible tests for VAELoss (3 points). Run me after your implementation.
# Each line printed below is one sub-check, then the score; a failing check says what looks wrong.
check("vae_loss", VAELoss, points=3)

# %% nbgrader={"grade": true, "grade_id": "test_vae_loss_hidden", "locked": true, "points": 5, "schema_version": 3, "solution": false} cfgflow={"part": "vae_loss"}
# Hidden tests for VAELoss (5 points): the same checks on other sizes
# and seeds, run when your notebook is graded.
### BEGIN HIDDEN TESTS
check("vae_loss", VAELoss, points=5, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "blocks_text", "locked": true, "schema_version": 3, "solution": false}
# ### Building blocks of the encoder and decoder (not graded)
#
# A convolutional encoder halves the resolution a few times and a decoder mirrors it. Two
# blocks help, as in the autoencoders of latent diffusion:
#
# * a **residual block** `x + branch(x)` keeps the shape; the branch is GroupNorm, SiLU, a
#   3x3 convolution, SiLU, a 1x1 convolution. A residual path lets gradients reach the
#   early layers directly.
# * an **attention block** lets every position of a small feature map look at every other
#   one: normalise, read the $h \times w$ positions as $n = hw$ tokens of width $k$
#   (`rearrange(x, "b k h w -> b (h w) k")`), apply **your `MHA` of Notebook 2**, read the
#   tokens back as a map and add the input. Paste your `MHA` into the next cell.
#
# **The attention block is optional.** An encoder and a decoder made of convolutions
# only earn full marks too; if your `MHA` does not work yet, leave the attention block out
# of your encoder and decoder (and the `MHA` cell untouched).

# %% nbgrader={"grade": false, "grade_id": "your_mha", "locked": false, "schema_version": 3, "solution": true}
class MHA(nn.Module):
    """Your multi-head self-attention of Notebook 2 (paste it here; not graded here):
    ``(b, n, d)`` -> ``(b, n, d)``, scale ``head_dim ** -0.5``, softmax over the keys, an
    output projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        ### BEGIN SOLUTION
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_out = nn.Linear(dim, dim)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (b, n, d) tokens.
        Returns:
            (b, n, d).
        """
        ### BEGIN SOLUTION
        q, k, v = rearrange(self.to_qkv(x), "b n (three h hd) -> three b h n hd",
                            three=3, h=self.heads)  # 3 x (b, h, n, hd)
        scores = q @ k.transpose(-2, -1) * self.head_dim**-0.5  # (b, h, n, n)
        out = scores.softmax(dim=-1) @ v  # (b, h, n, hd)
        return self.to_out(rearrange(out, "b h n hd -> b n (h hd)"))
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "vae_blocks", "locked": false, "schema_version": 3, "solution": true}
def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (fewer when there are fewer channels)."""
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """``x + conv1x1(SiLU(conv3x3(SiLU(GroupNorm(x)))))``: (b, k, h, w) -> (b, k, h, w)."""

    def __init__(self, channels: int):
        super().__init__()
        ### BEGIN SOLUTION
        self.norm = group_norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=1)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return x + self.conv2(F.silu(self.conv1(F.silu(self.norm(x)))))
        ### END SOLUTION


class AttentionBlock(nn.Module):
    """``x + MHA(GroupNorm(x))`` over the h * w positions as tokens of width k:
    (b, k, h, w) -> (b, k, h, w). Uses YOUR ``MHA`` (optional: see above)."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        ### BEGIN SOLUTION
        self.norm = group_norm(channels)
        self.attn = MHA(channels, heads)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        h = x.shape[2]
        tokens = rearrange(self.norm(x), "b k h w -> b (h w) k")  # (b, h w, k)
        return x + rearrange(self.attn(tokens), "b (h w) k -> b k h w", h=h)
        ### END SOLUTION


# %% [markdown] nbgrader={"grade": false, "grade_id": "q3_text", "locked": true, "schema_version": 3, "solution": false}
# ### Question 3 (7 points): the encoder
#
# The encoder maps an image `(b, 1, 32, 32)` to the mean and log-variance of
# $q_\phi(z \mid x)$. With `hidden_channels = (k_1, ..., k_n)` it halves the resolution
# once per entry, so the latent grid is $32 / 2^n$ on a side: the default `(32, 64)` gives
# a `(b, 4, 8, 8)` latent. A design that works well (the tests accept any other that
# meets the shapes):
#
# ```
# x (b, 1, 32, 32) --3x3 conv--> (b, k_1, 32, 32)
#   per stage i: ResidualBlock, then a 3x3 conv with stride 2 to k_i channels  (halves h, w)
#   ResidualBlock, AttentionBlock (optional), ResidualBlock                    (b, k_n, 8, 8)
#   GroupNorm, SiLU, 3x3 conv to 2 c channels, split into z_mean and z_logvar  (b, c, 8, 8) each
# ```
#
# The log-variance must come from the network (it is learned, so gradients reach it):
# one per latent entry as above, or one learned scalar. Keep the images of a batch
# independent (no layer may mix them: GroupNorm does not, BatchNorm in training mode
# would).

# %% nbgrader={"grade": false, "grade_id": "encoder", "locked": false, "schema_version": 3, "solution": true} cfgflow={"part": "encoder"}
class Encoder(nn.Module):
    """``x: (b, 1, H, W)`` -> ``(z_mean, z_logvar)`` of q(z | x).

    ``z_mean`` has shape ``(b, latent_channels, H / 2^n, W / 2^n)`` with
    ``n = len(hidden_channels)`` (one halving per entry); ``z_logvar`` is a learned
    log-VARIANCE broadcastable to ``z_mean`` (per entry, or one learned scalar). Any
    architecture that meets the shapes is fine; it must work for b = 1 and keep the
    images of a batch independent.
    """

    def __init__(self, latent_channels: int = 4, hidden_channels=(32, 64), heads: int = 4):
        super().__init__()
        ### BEGIN SOLUTION
        hidden = list(hidden_channels)
        self.conv_in = nn.Conv2d(1, hidden[0], kernel_size=3, padding=1)
        layers, k = [], hidden[0]
        for out in hidden:
            layers.append(ResidualBlock(k))
            layers.append(nn.Conv2d(k, out, kernel_size=3, stride=2, padding=1))  # halves h, w
            k = out
        self.down = nn.Sequential(*layers)
        self.mid = nn.Sequential(ResidualBlock(k), AttentionBlock(k, heads), ResidualBlock(k))
        self.norm_out = group_norm(k)
        self.conv_out = nn.Conv2d(k, 2 * latent_channels, kernel_size=3, padding=1)
        ### END SOLUTION

    def forward(self, x: torch.Tensor):
        """Args:
            x: (b, 1, H, W) images, H and W divisible by 2^n.
        Returns:
            (z_mean, z_logvar): z_mean (b, c, H / 2^n, W / 2^n), z_logvar broadcastable to it.
        """
        ### BEGIN SOLUTION
        h = self.mid(self.down(self.conv_in(x)))  # (b, k_n, h, w)
        h = self.conv_out(F.silu(self.norm_out(h)))  # (b, 2c, h, w)
        z_mean, z_logvar = h.chunk(2, dim=1)  # (b, c, h, w) each
        return z_mean, z_logvar
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_encoder", "locked": true, "points": 3, "schema_version": 3, "solution": false} cfgflow={"part": "encoder"}
# Visible tests for Encoder (3 points). Run me after your implementation.
# Each line printed below is one sub-check, then the score; a failing check says what looks wrong.
check("encoder", Encoder, points=3)

# %% nbgrader={"grade": true, "grade_id": "test_encoder_hidden", "locked": true, "points": 4, "schema_version": 3, "solution": false} cfgflow={"part": "encoder"}
# Hidden tests for Encoder (4 points): the same checks on other sizes
# and seeds, run when your notebook is graded.
### BEGIN HIDDEN TESTS
check("encoder", Encoder, points=4, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q4_text", "locked": true, "schema_version": 3, "solution": false}
# ### Question 4 (7 points): the decoder
#
# The decoder mirrors the encoder: a latent `(b, c, h, w)` to the mean image
# `(b, 1, h 2^n, w 2^n)` of $p_\theta(x \mid z)$, plus its log-variance. `hidden_channels`
# is read from the latent side, `(64, 32)` by default: per entry, a residual block,
# nearest-neighbour upsampling by 2 (`nn.Upsample(scale_factor=2)`) and a 3x3 convolution
# to that many channels. Start with a 3x3 convolution from $c$ channels and a middle part
# as in the encoder, and end with GroupNorm, SiLU and a 3x3 convolution to 1 channel.
#
# For the log-variance a single learned number is enough (the lab's choice, and ours):
# `self.logvar = nn.Parameter(torch.zeros(()))`, returned as it is, a 0-d tensor that
# broadcasts to every pixel. Your `VAELoss` then learns one noise level $s^2$ for all
# pixels.

# %% nbgrader={"grade": false, "grade_id": "decoder", "locked": false, "schema_version": 3, "solution": true} cfgflow={"part": "decoder"}
class Decoder(nn.Module):
    """``z: (b, latent_channels, h, w)`` -> ``(x_mean, x_logvar)`` of p(x | z).

    ``x_mean`` has shape ``(b, 1, h 2^n, w 2^n)`` with ``n = len(hidden_channels)`` (one
    doubling per entry; ``hidden_channels`` listed from the latent side); ``x_logvar`` is a
    learned log-VARIANCE broadcastable to ``x_mean`` (e.g. one learned 0-d scalar). Any
    architecture that meets the shapes is fine; it must work for b = 1 and keep the
    latents of a batch independent.
    """

    def __init__(self, latent_channels: int = 4, hidden_channels=(64, 32), heads: int = 4):
        super().__init__()
        ### BEGIN SOLUTION
        hidden = list(hidden_channels)
        k = hidden[0]
        self.conv_in = nn.Conv2d(latent_channels, k, kernel_size=3, padding=1)
        self.mid = nn.Sequential(ResidualBlock(k), AttentionBlock(k, heads), ResidualBlock(k))
        layers = []
        for out in hidden:
            layers.append(ResidualBlock(k))
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))  # doubles h, w
            layers.append(nn.Conv2d(k, out, kernel_size=3, padding=1))
            k = out
        self.up = nn.Sequential(*layers)
        self.norm_out = group_norm(k)
        self.conv_out = nn.Conv2d(k, 1, kernel_size=3, padding=1)
        self.logvar = nn.Parameter(torch.zeros(()))
        ### END SOLUTION

    def forward(self, z: torch.Tensor):
        """Args:
            z: (b, c, h, w) latents.
        Returns:
            (x_mean, x_logvar): x_mean (b, 1, h 2^n, w 2^n), x_logvar broadcastable to it.
        """
        ### BEGIN SOLUTION
        h = self.up(self.mid(self.conv_in(z)))  # (b, k, H, W)
        x_mean = self.conv_out(F.silu(self.norm_out(h)))  # (b, 1, H, W)
        return x_mean, self.logvar
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_decoder", "locked": true, "points": 3, "schema_version": 3, "solution": false} cfgflow={"part": "decoder"}
# Visible tests for Decoder (3 points). Run me after your implementation.
# Each line printed below is one sub-check, then the score; a failing check says what looks wrong.
check("decoder", Decoder, points=3)

# %% nbgrader={"grade": true, "grade_id": "test_decoder_hidden", "locked": true, "points": 4, "schema_version": 3, "solution": false} cfgflow={"part": "decoder"}
# Hidden tests for Decoder (4 points): the same checks on other sizes
# and seeds, run when your notebook is graded.
### BEGIN HIDDEN TESTS
check("decoder", Decoder, points=4, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "part2_text", "locked": true, "schema_version": 3, "solution": false}
# ## Part II: classifier-free guidance in the latent space
#
# Once the VAE is trained it is **frozen**, and the data of the flow model become the
# latents $z \sim q_\phi(z \mid x)$ of the training images. Everything else is Notebook 1:
# the Gaussian path $x_t = t\, z + (1 - t)\, \varepsilon$ (now in latent space), label
# dropout with probability $\eta$ to the null label 10, and the guided field
# $\tilde u_t = (1 - w)\, u_t(x \mid \varnothing) + w\, u_t(x \mid y)$ at sampling time.
#
# **The latent scale.** The path starts from $\mathcal N(0, I)$, so the data it ends at
# should have about unit variance too: a latent spread of 0.2 would put the noise and the
# data at very different scales. The VAE does not promise unit variance (the KL pulls
# towards it, the reconstruction away from it), so we multiply every latent by a constant
# `scale` = 1 / (the standard deviation of the training latents), measured once after the
# VAE is trained (`cfgflow.latent.latent_scale`). Sampling divides by it again before
# decoding. (Stable Diffusion's famous factor 0.18215 is exactly this number for its
# autoencoder.)

# %% [markdown] nbgrader={"grade": false, "grade_id": "q5_text", "locked": true, "schema_version": 3, "solution": false}
# ### Question 5 (8 points): the latent CFG loss
#
# Write `get_train_loss` for one fresh batch:
#
# 1. `images, y = self.path.p_data.sample(batch_size)` (MNIST images and labels);
# 2. encode **without gradients** (`with torch.no_grad():`; the VAE is frozen and must
#    not be trained by this loss) and draw **one sample** of the posterior with
#    `self.vae.sample_latent(images)` (not just its mean: the flow model should learn the
#    distribution that the encoder defines), then multiply by `self.scale`: $z$;
# 3. from here on it is your loss of Notebook 1 with $z$ as the data: replace each label by
#    `self.null_label` with probability `self.eta` (the mask on the labels' device), draw
#    the times with the given `self.sample_time(batch_size, z.device)`, sample
#    $x \sim p_t(x \mid z)$ with `self.path.sample_conditional_path(z, t)`, and return the
#    mean squared error between `self.model(x, t, y)` and
#    `self.path.conditional_vector_field(x, z, t)`, averaged over every element.

# %% nbgrader={"grade": false, "grade_id": "latent_cfg_loss", "locked": false, "schema_version": 3, "solution": true} cfgflow={"part": "latent_cfg_loss"}
class LatentCFGTrainer(Trainer):
    """The CFG flow-matching loss of Notebook 1 on the scaled latents of a frozen VAE.

    Args:
        path: a Gaussian conditional probability path on the latent shape;
            ``path.p_data.sample(b)`` gives ``(images, y)``.
        vae: the trained VAE (frozen: no gradients into it); ``vae.sample_latent(images)``.
        scale: the latent scale; the flow model's data are ``scale * latents``.
        eta: probability of replacing a label by the null label, in (0, 1).
        null_label: index of the null label (10 for MNIST).
        eps: t stays below 1 - eps.
        time_beta: k >= 1; t / (1 - eps) ~ Beta(1, k) (k = 1: uniform, as in Notebook 1).
    """

    def __init__(self, path, vae, scale: float, eta: float, null_label: int, eps: float = 1e-3, *,
                 time_beta: float = 1.0, **kwargs):
        if not 0.0 < eta < 1.0:
            raise ValueError(f"eta must be in (0, 1), got {eta}")
        if not time_beta >= 1:
            raise ValueError(f"time_beta must be >= 1, got {time_beta}")
        super().__init__(**kwargs)
        self.path, self.vae, self.scale = path, vae, float(scale)
        self.eta, self.null_label, self.eps, self.time_beta = eta, null_label, eps, time_beta

    def sample_time(self, batch_size: int, device) -> torch.Tensor:
        """(b,) training times in [0, 1 - eps): (1 - eps) times a Beta(1, time_beta) draw
        (uniform for time_beta = 1)."""
        u = torch.rand(batch_size, device=device)  # (b,)
        return (1 - self.eps) * (1 - (1 - u) ** (1 / self.time_beta))

    def get_train_loss(self, batch_size: int) -> torch.Tensor:
        """The CFG loss of one fresh batch in the latent space.

        ``z = self.scale * self.vae.sample_latent(images)`` under ``torch.no_grad()`` (one
        reparameterised sample, the VAE frozen); each label replaced by ``self.null_label``
        with probability ``self.eta`` (mask on y's device); ``t = self.sample_time(b,
        z.device)``; ``x = path.sample_conditional_path(z, t)``; the mean over EVERY element
        of ``(model(x, t, y) - path.conditional_vector_field(x, z, t))^2``.
        Returns:
            a 0-d tensor.
        """
        ### BEGIN SOLUTION
        images, y = self.path.p_data.sample(batch_size)  # (b, 1, 32, 32), (b,)
        with torch.no_grad():
            z = self.scale * self.vae.sample_latent(images)  # (b, c, h, w)
        drop = torch.rand(batch_size, device=y.device) < self.eta  # (b,)
        y = torch.where(drop, torch.full_like(y, self.null_label), y)
        t = self.sample_time(batch_size, z.device)  # (b,)
        x = self.path.sample_conditional_path(z, t)  # (b, c, h, w)
        target = self.path.conditional_vector_field(x, z, t)
        return F.mse_loss(self.model(x, t, y), target)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_latent_cfg_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false} cfgflow={"part": "latent_cfg_loss"}
# Visible tests for LatentCFGTrainer (3 points). Run me after your implementation.
# Each line printed below is one sub-check, then the score; a failing check says what looks wrong.
check("latent_cfg_loss", LatentCFGTrainer, points=3)

# %% nbgrader={"grade": true, "grade_id": "test_latent_cfg_loss_hidden", "locked": true, "points": 5, "schema_version": 3, "solution": false} cfgflow={"part": "latent_cfg_loss"}
# Hidden tests for LatentCFGTrainer (5 points): the same checks on other sizes
# and seeds, run when your notebook is graded.
### BEGIN HIDDEN TESTS
check("latent_cfg_loss", LatentCFGTrainer, points=5, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q6_text", "locked": true, "schema_version": 3, "solution": false}
# ### Question 6 (5 points): guided sampling in the latent space
#
# To generate: start from noise of the latent shape, integrate the guided ODE from
# $t = 0$ to $t = 1$ in the latent space, undo the scale, and decode **once**, at the
# end:
#
# $$z_1 = \mathrm{ODE}_{0 \to 1}\big(\tilde u_t,\ z_0 \sim \mathcal N(0, I)\big), \qquad
# \text{image} = m_\theta\big(z_1 / \text{scale}\big).$$
#
# The given `sample_cfg(self.model, y, guidance_scale, num_steps, shape=self.latent_shape,
# null_label=self.null_label, solver=solver, x0=x0)` integrates the ODE (or write the
# Euler / Heun steps yourself). Pass `x0` through: it is the starting noise, and when it is
# `None` the noise is drawn with `self.latent_shape` on the labels' device. Return the
# decoder's **mean** (the first element of `self.vae.decode(...)`), not a sample of its
# Gaussian: that would only add pixel noise of variance $s^2$.

# %% nbgrader={"grade": false, "grade_id": "latent_sampler", "locked": false, "schema_version": 3, "solution": true} cfgflow={"part": "latent_sampler"}
class LatentCFGSampler:
    """Guided samples of a latent flow model, decoded to images.

    Args:
        model: the latent vector field ``model(x, t, y)``, x of shape (b, *latent_shape).
        vae: the trained VAE; ``vae.decode(z)`` returns ``(x_mean, x_logvar)``.
        scale: the latent scale the model was trained with (its data are scale * latents).
        latent_shape: (c, h, w) of one latent.
        null_label: index of the null label (10 for MNIST).
    """

    def __init__(self, model, vae, scale: float, latent_shape, null_label: int = 10):
        self.model, self.vae, self.scale = model, vae, float(scale)
        self.latent_shape, self.null_label = tuple(latent_shape), null_label

    @torch.no_grad()
    def sample(self, y: torch.Tensor, guidance_scale: float, num_steps: int = 30, solver: str = "heun",
               x0: torch.Tensor = None) -> torch.Tensor:
        """Integrate the guided ODE (guidance scale w, ``num_steps`` steps of ``solver``,
        null label ``self.null_label``) from ``x0`` at t = 0 to t = 1 in the latent space,
        divide by ``self.scale``, decode ONCE and return the decoder's mean.

        Args:
            y: (b,) int64 labels.
            x0: (b, *latent_shape) starting noise; None: drawn from N(0, I) with
                ``self.latent_shape`` on y's device.
        Returns:
            (b, 1, 32, 32) images (the decoder's mean).
        """
        ### BEGIN SOLUTION
        z = sample_cfg(self.model, y, guidance_scale, num_steps, shape=self.latent_shape,
                       null_label=self.null_label, solver=solver, x0=x0)  # (b, c, h, w)
        x_mean, _ = self.vae.decode(z / self.scale)  # (b, 1, 32, 32)
        return x_mean
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_latent_sampler", "locked": true, "points": 2, "schema_version": 3, "solution": false} cfgflow={"part": "latent_sampler"}
# Visible tests for LatentCFGSampler (2 points). Run me after your implementation.
# Each line printed below is one sub-check, then the score; a failing check says what looks wrong.
check("latent_sampler", LatentCFGSampler, points=2)

# %% nbgrader={"grade": true, "grade_id": "test_latent_sampler_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false} cfgflow={"part": "latent_sampler"}
# Hidden tests for LatentCFGSampler (3 points): the same checks on other sizes
# and seeds, run when your notebook is graded.
### BEGIN HIDDEN TESTS
check("latent_sampler", LatentCFGSampler, points=3, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "training_text", "locked": true, "schema_version": 3, "solution": false}
# ## Training: your VAE, then a latent model and a pixel model
#
# The cells below are not graded. They train **your** VAE (your encoder, decoder,
# posterior and loss, composed by the given `VAE`), freeze it, measure the latent scale,
# and then train the same small given vector field twice with **your**
# `LatentCFGTrainer`, for the same time:
#
# * **latent model**: `cfgflow.latent.LatentConvField(4)` on the `(4, 8, 8)` latents;
# * **pixel model** (the baseline): `LatentConvField(1)` on the `(1, 32, 32)` images, with
#   `cfgflow.latent.IdentityAutoencoder()` as the "VAE" (it encodes and decodes to the
#   input itself) and scale 1, so your trainer and sampler run it unchanged.
#
# `LatentConvField` is a small convolutional U-Net (two resolutions, residual conv blocks
# whose features are scaled and shifted by a conditioning vector built from the time
# through a small MLP and from the label through an `nn.Embedding(11, d)`). It works on
# any grid with even sides, which is what makes the comparison fair: the only difference
# between the two runs is the space the model lives in.
#
# The configurations come from `cfgflow.configs`:
#
# * **`LATENT_GPU`** (used on a GPU): the VAE with `hidden_channels=(32, 64)` for 4,000
#   steps at batch 128, then each flow model (width 64) for 10,000 steps at batch 128.
#   Its wall times are **not measured** (no GPU was available when this notebook was
#   written); expect minutes on a T4.
# * **`LATENT_QUICK`** (used on a CPU): a smaller VAE (`hidden_channels=(16, 32)`), trained
#   for a **time budget** of 75 s, then each flow model (width 32) for 60 s; about five
#   minutes top to bottom on two idle CPU cores, figures and evaluation included (more on a
#   busy machine: the budgets hold, the sampling and evaluation take longer). The trainers
#   time their first steps, print their plan (for example `~450 steps in 1.2 min at 6.1
#   steps/s on cpu`) and never run past the budget.
# * **`LATENT_TINY`** (used while nbgrader grades the notebook): seconds; only proves the
#   cells run.
#
# **The choice of $\beta$: 0.1.** A large $\beta$ pulls every posterior to
# $\mathcal N(0, I)$: the latents carry little about the image and reconstructions blur.
# A small $\beta$ lets the latents say more, which the flow model then has to learn. We
# measured three values with the CPU settings (the `(16, 32)` VAE at batch 64; scores on
# 300 test digits or samples):
#
# | $\beta$ | KL per image (nats) | latent entries in use (of 256) | reconstructions: distance / floor | latent model, accuracy at $w = 3$ | latent model, distance / floor at $w = 1$ |
# |---|---|---|---|---|---|
# | 10 | 6 | 42 | 109 | | |
# | 1 | 63 | 133 | 3.8 | 97.3 % | 30.7 |
# | **0.1** | 212 | 249 | 1.2 | **99.7 %** | **11.9** |
#
# (VAE columns after 200 steps; the latent-model columns after 400 VAE steps and 600 flow
# steps; an entry is "in use" when its KL averages over 0.05 nats.) At $\beta = 10$ the
# posterior collapses; $\beta = 0.1$ reconstructs almost as well as real digits score and
# its latent model generates better digits than $\beta = 1$'s. Part of the reason is the
# learned variance: in a short run $s^2$ is still far above the reconstruction error, so
# the reconstruction term weighs less than it will at the end, and a smaller $\beta$
# restores the balance.
#
# `PRECISION` in the next cell sets the mixed precision of training as in Notebook 2
# (`"auto"`: bf16 or fp16 autocast on a GPU, fp32 on a CPU).

# %%
# ---- the switch -----------------------------------------------------------------------
PRECISION = "auto"  # "auto" (bf16 on A100/L4/H100, fp16 + scaler on a T4, fp32 on a CPU)
# --------------------------------------------------------------------------------------

# %% nbgrader={"grade": false, "grade_id": "training_setup", "locked": true, "schema_version": 3, "solution": false}
from cfgflow import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta, configs, metrics
from cfgflow.data import MNISTFallbackWarning, notebook_mnist
from cfgflow.latent import IdentityAutoencoder, LatentConvField, VAETrainer, latent_scale
from cfgflow.plotting import plot_generator_grids, plot_latent_channels, plot_losses, plot_reconstructions

if QUICK_RUN:
    config = configs.LATENT_TINY
elif device.type == "cuda":
    config = configs.LATENT_GPU
else:
    config = configs.LATENT_QUICK
config = config.replace(precision=PRECISION)  # the knob of the cell above
print("configuration:", config)

mnist = notebook_mnist(device)  # MNISTSampler; prints a note if it falls back offline
# The weights go to a folder under the current directory (a temporary one while graded).
output_dir = tempfile.mkdtemp(prefix="cfgflow_03_latent_") if QUICK_RUN else os.path.join("runs", "03_latent")
os.makedirs(output_dir, exist_ok=True)

# %% nbgrader={"grade": false, "grade_id": "train_vae", "locked": true, "schema_version": 3, "solution": false}
vae = VAE(Encoder(config.latent_channels, config.hidden_channels, config.heads),
          Decoder(config.latent_channels, tuple(reversed(config.hidden_channels)), config.heads),
          VAELoss(config.beta), DiagonalGaussian).to(device)
print(f"training YOUR VAE: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters, beta = {config.beta:g}")
t0 = time.perf_counter()
vae_losses, _ = VAETrainer(mnist).train(model=vae, progress=not QUICK_RUN, **configs.vae_train_kwargs(config))
vae_seconds = time.perf_counter() - t0
vae.eval().requires_grad_(False)  # frozen from here on
torch.save(vae.state_dict(), os.path.join(output_dir, "vae.pt"))
print(f"{len(vae_losses)} steps in {vae_seconds:.0f} s; mean loss of the last 20: "
      f"{sum(vae_losses[-20:]) / len(vae_losses[-20:]):.1f} (per image, nats)")
fig = plot_losses(vae_losses, smooth=min(20, max(2, len(vae_losses) // 5)), log_scale=False,
                  title="VAE loss (negative ELBO with beta)")
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "reconstructions_text", "locked": true, "schema_version": 3, "solution": false}
# ### What the VAE keeps
#
# Top: test digits; bottom: the decoder's mean of the encoder's mean, i.e. what survives the
# trip through 256 latent numbers. The printout splits the loss into its terms on these
# digits: the reconstruction error per pixel (in the normalised units of the data, where
# the pixels have variance 1), the learned decoder variance $s^2$, and the KL per image
# in nats: how much the latents say about each image. At the optimum $s^2$ equals the
# error; in a short run it lags far behind, because it starts at 1 and Adam moves
# $\log s^2$ by about the learning rate per step. Until it catches up, the reconstruction
# term weighs less than it will at the end, as if $\beta$ were larger.

# %% nbgrader={"grade": false, "grade_id": "reconstructions", "locked": true, "schema_version": 3, "solution": false}
test_digits = notebook_mnist(device, train=False)  # the held-out split
idx = torch.cat([(test_digits.labels.cpu() == c).nonzero().flatten()[:2] for c in range(10)])
originals = test_digits.images[idx.to(test_digits.images.device)]  # (20, 1, 32, 32)
with torch.no_grad():
    z_mean, z_logvar = vae.encode(originals)
    x_mean, x_logvar = vae.decode(z_mean)
    kl = 0.5 * (z_mean ** 2 + z_logvar.exp() - z_logvar - 1).flatten(1).sum(1).mean()
print(f"reconstruction error per pixel {F.mse_loss(x_mean, originals).item():.3f}, decoder variance "
      f"s^2 = {x_logvar.exp().mean().item():.3f}, KL per image {kl.item():.1f} nats")
fig = plot_reconstructions(originals, x_mean, ncols=10)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "latents_text", "locked": true, "schema_version": 3, "solution": false}
# ### The latents and their scale
#
# Each row: a digit and the four $8 \times 8$ channels of its latent mean. The layout of
# the digit is still visible, coarsened: the encoder is convolutional, so each latent
# position describes its own $4 \times 4$ patch of the image. The scale is measured on
# posterior samples of 1,000 training images.

# %% nbgrader={"grade": false, "grade_id": "latents", "locked": true, "schema_version": 3, "solution": false}
images, _ = mnist.sample(1000)
scale = latent_scale(vae, images)
print(f"latent standard deviation {1 / scale:.3f}: the flow models' data are latents times scale = {scale:.3f}")
fig = plot_latent_channels(z_mean[::5], originals[::5])
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "train_flows_text", "locked": true, "schema_version": 3, "solution": false}
# ### Two flow models, the same training time
#
# Both models are the same `LatentConvField` (width and depth from the configuration)
# trained with your `LatentCFGTrainer` for the same number of seconds (or steps, on a
# GPU). Watch the printed plans: the steps per second differ because one model works on
# an $8 \times 8$ grid and the other on $32 \times 32$.

# %% nbgrader={"grade": false, "grade_id": "train_flows", "locked": true, "schema_version": 3, "solution": false}
runs = {}
for space, shape, autoencoder, data_scale in (
        ("latent", config.latent_shape, vae, scale),
        ("pixel", (1, 32, 32), IdentityAutoencoder(), 1.0)):
    path = GaussianConditionalProbabilityPath(p_data=mnist, p_simple_shape=list(shape),
                                              alpha=LinearAlpha(), beta=LinearBeta()).to(device)
    field = LatentConvField(shape[0], width=config.width, blocks=config.blocks).to(device)
    trainer = configs.make_latent_trainer(config, path, LatentCFGTrainer, autoencoder, data_scale)
    print(f"{space} model on {shape}: {sum(p.numel() for p in field.parameters()) / 1e6:.2f} M parameters")
    t0 = time.perf_counter()
    losses, _ = trainer.train(model=field, progress=not QUICK_RUN, **configs.train_kwargs(config))
    seconds = time.perf_counter() - t0
    trainer.save(os.path.join(output_dir, f"{space}_last.pt"))
    sampler = LatentCFGSampler(trainer.sampling_model, autoencoder, data_scale, shape)
    runs[space] = dict(sampler=sampler, losses=losses, seconds=seconds, steps_per_s=len(losses) / seconds)
    print(f"  {len(losses)} steps in {seconds:.0f} s ({len(losses) / seconds:.1f} steps/s); "
          f"mean loss of the last 50: {sum(losses[-50:]) / len(losses[-50:]):.3f}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "samples_text", "locked": true, "schema_version": 3, "solution": false}
# ### Samples for several guidance scales
#
# Row $r$ of each panel: samples asked to be digit $r$, the latent model first, then the
# pixel model. The latent model's digits are drawn by the decoder, so they are smooth
# even where their shape is wrong. The pixel model's flaws show up as grain and broken
# strokes; in the CPU run it takes about a tenth of the latent model's steps in the same
# time, and its samples may still be noise. Guidance sharpens what a model has learned.

# %% nbgrader={"grade": false, "grade_id": "samples", "locked": true, "schema_version": 3, "solution": false}
# Samples under bf16 autocast on a CPU where the config asks for it (twice as fast there).
sample_amp = config.sample_amp and device.type == "cpu"
for space, run in runs.items():
    def generate(y, w, sampler=run["sampler"]):
        return sampler.sample(y, w, num_steps=config.sample_steps, solver=config.solver).float()

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=sample_amp):
        fig = plot_generator_grids(generate, config.grid_scales, config.grid_per_class, device=device,
                                   title=f"{space} model")
    plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "evaluate_text", "locked": true, "schema_version": 3, "solution": false}
# ### Pixel model vs latent model
#
# The course's evaluator (`cfgflow.metrics`, as in Notebook 2) classifies the generated
# digits with a small pretrained LeNet: **class accuracy** at $w = 3$ is how often the
# requested digit comes out, and the **distance over the floor** at $w = 1$ is the
# Fréchet distance between LeNet features of unguided samples and of real test digits, as
# a multiple of the distance that as many real training digits have (1 = as good as real
# data). `metrics.generator_sweep` scores any generator `generate(labels, w) -> images`:
# here your sampler. The table also gives the training speed, and the last row the VAE's
# own floor: the same distance for the VAE's *reconstructions* of real digits, the best a
# latent model with this decoder could hope for.

# %% nbgrader={"grade": false, "grade_id": "evaluate", "locked": true, "schema_version": 3, "solution": false}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", MNISTFallbackWarning)
    reference = metrics.RealReference()
    for run in runs.values():
        def generate(y, w, sampler=run["sampler"]):
            return sampler.sample(y, w, num_steps=config.sample_steps, solver=config.solver).float()

        run["results"] = {r["w"]: r for r in metrics.generator_sweep(
            generate, scales=config.eval_scales, n_per_class=config.eval_per_class, device=device,
            reference=reference, amp=sample_amp)}
    real, labels = test_digits.sample(10 * config.eval_per_class)
    with torch.no_grad():
        rec = vae.reconstruct(real)
    floor = reference.floor(config.eval_per_class)[0]
    rec_dist = reference.distance(metrics.evaluator_features(rec, reference.evaluator.to(device))) / floor
    rec_acc = metrics.class_accuracy(rec, labels, reference.evaluator.to(device))["mean"]
w_acc, w_dist = max(config.eval_scales), min(config.eval_scales)
print(f"{10 * config.eval_per_class} samples per guidance scale, {config.sample_steps} {config.solver} steps")
print(f"model    steps/s   steps   accuracy at w = {w_acc:g}   distance/floor at w = {w_dist:g}")
for space, run in runs.items():
    acc, dist = run["results"][w_acc]["accuracy"], run["results"][w_dist]["distance_over_floor"]
    print(f"{space:7s} {run['steps_per_s']:8.1f} {len(run['losses']):7d} {100 * acc:17.1f}% {dist:26.1f}")
print(f"VAE reconstructions of test digits:     {100 * rec_acc:17.1f}% {rec_dist:26.1f}")
