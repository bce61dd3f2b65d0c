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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cfgflow/cfgflow-student/blob/v0.1.0/notebooks/01_cfg/01_cfg.ipynb)
#
# **Run this notebook on a GPU.** Colab opens it on a GPU runtime; to check or switch, use *Runtime > Change runtime type* and pick **T4 GPU** (the free tier's GPU), then *Save*. The imports cell below prints `device: cuda, ...` when `torch.cuda.is_available()` is `True`, and `device: cpu, ...` otherwise. Every cell of this notebook also runs on a CPU, more slowly; Notebook 2 trains the lab's transformer recipe only on a GPU.

# %% nbgrader={"grade": false, "grade_id": "colab_setup", "locked": true, "schema_version": 3, "solution": false}
# Set-up. On Google Colab this installs the course package `cfgflow` (the given code
# and the visible checks), pinned to this term's release; anywhere else it does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "cfgflow @ git+https://github.com/cfgflow/cfgflow-student@v0.1.0"], check=True)

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # Notebook 1: Conditional probability paths and classifier-free guidance
#
# In this notebook you train a flow-matching model that generates samples **of a class you
# choose**. You will
#
# 1. look at MNIST under the Gaussian conditional probability path (noise at t = 0, data
#    at t = 1);
# 2. derive *classifier-free guidance* (CFG) from the relation between a Gaussian path's
#    vector field and its score;
# 3. implement the CFG training loss and a small conditional vector field (an MLP);
# 4. check both on a 2-D Gaussian mixture, where you can see what guidance does.
#
# Notebook 2 replaces the MLP by a diffusion transformer and trains it on MNIST.
#
# **Points (15 in total).** Each part has a visible test cell (you see its result
# now) and a hidden test cell (the same checks on other sizes and seeds, run when the
# notebook is graded).
#
# | part | what you implement | visible | hidden | total |
# |---|---|---|---|---|
# | Q1 | `CFGTrainer.get_train_loss`: the CFG flow-matching loss | 4 | 6 | 10 |
# | Q2 | `MLPConditionalVectorField.forward` | 2 | 3 | 5 |
# | **total** | | 6 | 9 | **15** |
#
# In each graded cell, replace the two lines `# YOUR CODE HERE` /
# `raise NotImplementedError()` by your code and leave the rest of the cell as it is: do
# not rename the classes or change their signatures. Every convention the tests enforce
# is written in the stub's docstring. Run the cells top to bottom; the test cell after
# each part tells you what passes.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false}
import os

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from cfgflow import (
    GMM,
    MLP,
    ConditionalVectorField,
    GaussianConditionalProbabilityPath,
    LinearAlpha,
    LinearBeta,
    Trainer,
)
from cfgflow.checks import check
from cfgflow.data import notebook_mnist
from cfgflow.plotting import plot_losses, plot_path_snapshots

# True while nbgrader validates or autogrades this notebook: the training cells then
# take a few seconds instead of the full run.
QUICK_RUN = bool(os.environ.get("NBGRADER_EXECUTION"))
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)
print(f"device: {device}, quick run: {QUICK_RUN}")

# %% [markdown] nbgrader={"grade": false, "grade_id": "given_code", "locked": true, "schema_version": 3, "solution": false}
# ## 0. What is given
#
# The building blocks from the previous labs live in the course package `cfgflow` (the
# given code, documented here; `help(name)` shows the same documentation); we import them
# instead of pasting them again. The parts you implement are not in it:
#
# * **Distributions.** `GMM` (a labelled Gaussian mixture: `sample(n)` returns points
#   `(n, 2)` and component labels `(n,)`), `MNISTSampler` (digits `(n, 1, 32, 32)`
#   normalised with mean 0.1305 and std 0.2891, and labels `(n,)`; `notebook_mnist(device)`
#   builds one and prints a note if it has to use the offline digits). Samples are drawn on
#   the module's device, so after `.to(device)` everything lives on the GPU.
# * **The Gaussian path** `GaussianConditionalProbabilityPath(p_data, p_simple_shape, alpha,
#   beta)`: $p_t(x \mid z) = \mathcal N(\alpha_t z, \beta_t^2 I)$ with, here,
#   $\alpha_t = t$ and $\beta_t = 1 - t$. Its methods take `t` of shape `(b,)`:
#   `sample_conditional_path(z, t)` draws $x = \alpha_t z + \beta_t \epsilon$ and
#   `conditional_vector_field(x, z, t)` returns the regression target
#   $u_t(x \mid z) = \big(\dot\alpha_t - \tfrac{\dot\beta_t}{\beta_t}\alpha_t\big) z
#   + \tfrac{\dot\beta_t}{\beta_t} x$. The data distribution is `path.p_data`.
# * **`Trainer`**: `trainer.train(model, num_steps, lr, batch_size=...)` minimises
#   `trainer.get_train_loss(batch_size=...)` with AdamW and a linear warm-up and returns
#   `(losses, steps)`: the per-step losses and their step indices. You write
#   `get_train_loss` for CFG below.
# * **`MLP(dims)`**: linear layers of widths `dims` with SiLU in between.
# * **Sampling** (`cfgflow.simulation`): `CFGVectorFieldODE(net, null_label, w)` is the
#   guided field derived in Part 2, integrated from noise at t = 0 to t = 1 by the Euler or
#   Heun method; `plot_gmm_guidance` and the MNIST plots use it for you.

# %% [markdown] nbgrader={"grade": false, "grade_id": "part1_text", "locked": true, "schema_version": 3, "solution": false}
# ## 1. MNIST under the Gaussian conditional probability path
#
# Fix one image $z$. The conditional path moves a sample of pure noise at $t = 0$ to the
# image itself at $t = 1$:
#
# $$x_t = \alpha_t z + \beta_t \epsilon, \qquad \epsilon \sim \mathcal N(0, I),
# \qquad (\alpha_0, \beta_0) = (0, 1), \quad (\alpha_1, \beta_1) = (1, 0).$$
#
# The cell below loads MNIST (32×32, normalised) and shows the same nine digits at five
# times. Notice how late the digits become recognisable: with $\alpha_t = t$,
# $\beta_t = 1 - t$ the signal-to-noise ratio $\alpha_t / \beta_t$ passes 1 only at
# $t = 1/2$.

# %% nbgrader={"grade": false, "grade_id": "mnist_path_figure", "locked": true, "schema_version": 3, "solution": false}
mnist = notebook_mnist(device)  # MNISTSampler; prints a note if it falls back offline

mnist_path = GaussianConditionalProbabilityPath(
    p_data=mnist, p_simple_shape=[1, 32, 32], alpha=LinearAlpha(), beta=LinearBeta()
).to(device)
z, y = mnist.sample(9)  # (9, 1, 32, 32), (9,)
print("labels:", y.tolist())
fig = plot_path_snapshots(mnist_path, z, times=[0.0, 0.25, 0.5, 0.75, 1.0])
plt.show()


# %% [markdown] nbgrader={"grade": false, "grade_id": "cfg_derivation", "locked": true, "schema_version": 3, "solution": false}
# ## 2. Classifier-free guidance
#
# **Conditional generation.** Our data now comes in pairs $(z, y)$: an image and its label
# $y \in \{0, \dots, 9\}$. Conditioning the whole construction on $y$ changes nothing in
# the theory: for a fixed $y$ we have an ordinary generative problem with data
# $p_{\text{data}}(z \mid y)$, and its marginal vector field is
# $u_t(x \mid y) = \mathbb E[u_t(x \mid z) \mid x_t = x, y]$. Flow matching with the
# label fed to the network, $u^\theta_t(x \mid y)$, learns all ten of them at once:
#
# $$\mathcal L(\theta) =
# \mathbb E_{(z, y) \sim p_{\text{data}},\ t,\ x \sim p_t(\cdot \mid z)}
# \big\| u^\theta_t(x \mid y) - u_t(x \mid z) \big\|^2 .$$
#
# In principle sampling with $u^\theta_t(\cdot \mid y)$ already gives digits of class
# $y$. In practice the samples are more convincing if we *exaggerate* the label's
# influence. To see how, we need the score.
#
# **Vector field and score.** For the Gaussian path write a sample as
# $x = \alpha_t z + \beta_t \epsilon$. Its conditional score is
# $s = \nabla_x \log p_t(x \mid z) = -\epsilon / \beta_t$, so
# $\epsilon = -\beta_t s$ and $z = (x + \beta_t^2 s) / \alpha_t$. The velocity
# $\dot\alpha_t z + \dot\beta_t \epsilon$ is therefore an affine function of $x$ and
# $s$:
#
# $$u_t(x \mid z) = a_t\, x + b_t\, \nabla_x \log p_t(x \mid z), \qquad
# a_t = \frac{\dot\alpha_t}{\alpha_t}, \quad
# b_t = \frac{\dot\alpha_t \beta_t^2}{\alpha_t} - \dot\beta_t \beta_t .$$
#
# Averaging both sides over $z$ given $(x, y)$ (the average of conditional scores is the
# score of the marginal) gives the same identity for the label-conditional field,
#
# $$u_t(x \mid y) = a_t\, x + b_t\, \nabla_x \log p_t(x \mid y),$$
#
# and, averaging over $y$ as well, $u_t(x) = a_t x + b_t \nabla_x \log p_t(x)$.
#
# **Bayes.** $p_t(x \mid y) = p_t(x)\, p_t(y \mid x) / p(y)$, and $p(y)$ does not
# depend on $x$, so $\nabla_x \log p_t(x \mid y) = \nabla_x \log p_t(x) +
# \nabla_x \log p_t(y \mid x)$. Substituting,
#
# $$u_t(x \mid y) = u_t(x) + b_t\, \nabla_x \log p_t(y \mid x).$$
#
# The conditional field is the unconditional one plus a push along the gradient of a
# *noisy classifier* $p_t(y \mid x)$: towards images that look more like class $y$.
#
# **Guidance scale.** Classifier-free guidance scales that push by $w \ge 1$:
#
# $$\tilde u_t(x \mid y) = u_t(x) + w\, b_t \nabla_x \log p_t(y \mid x)
# = u_t(x) + w\,\big(u_t(x \mid y) - u_t(x)\big)
# = (1 - w)\, u_t(x) + w\, u_t(x \mid y).$$
#
# The second step replaced the classifier term by the difference of the two fields from
# the previous display; no classifier is ever trained, hence the name. $w = 1$ is plain
# conditional sampling; $w > 1$ extrapolates away from the unconditional field. (For
# $w \ne 1$, $\tilde u$ is no longer the field of any $p_t(x \mid y)$: guidance trades
# diversity for samples that are more typical of their class.)
#
# **One network, a null label.** We need both $u_t(x)$ and $u_t(x \mid y)$. Rather than
# two networks, add an eleventh label $\varnothing$ meaning "no label" and train one
# network $u^\theta_t(x \mid y)$ with $y \in \{0, \dots, 9, \varnothing\}$. We store
# $\varnothing$ as the index `num_classes` (10 for MNIST, 3 for a 3-mode mixture), so every
# label embedding has `num_classes + 1` rows. During training each label is replaced by
# $\varnothing$ independently with probability $\eta$. A sample labelled $\varnothing$
# carries no information about its class, so the best prediction for it is the average
# over all classes: $u^\theta_t(x \mid \varnothing) \approx u_t(x)$. At sampling time:
#
# $$\tilde u^\theta_t(x \mid y) =
# (1 - w)\, u^\theta_t(x \mid \varnothing) + w\, u^\theta_t(x \mid y).$$
#
# **Training objective.** Putting it together, one step of training
#
# 1. samples a batch $(z, y) \sim p_{\text{data}}$;
# 2. replaces each label by $\varnothing$ with probability $\eta$;
# 3. samples $t \sim \mathcal U[0, 1 - \varepsilon)$ and $x \sim p_t(x \mid z)$;
# 4. regresses $u^\theta_t(x \mid y)$ on the target $u_t(x \mid z)$.
#
# **Why $t < 1 - \varepsilon$?** The target divides by $\beta_t$, and $\beta_1 = 0$.
# With $\alpha_t = t$, $\beta_t = 1 - t$ it equals $(z - x) / (1 - t)$: a 0/0 at $t = 1$
# and a badly rounded ratio of two tiny numbers next to it. Drawing $t$ from
# $[0, 1 - \varepsilon)$ (here $\varepsilon = 10^{-3}$) keeps every target finite; the
# sampler never evaluates the field at $t = 1$ either.
#
# **The loss is a mean.** We average the squared error over *every element* of the batch
# (the default of `F.mse_loss`), not sum it: this differs from the squared norm above only
# by a constant factor (the data dimension), so it has the same minimiser, and the loss
# and the learning rate do not change meaning with batch size or image size.

# %% [markdown] nbgrader={"grade": false, "grade_id": "q1_text", "locked": true, "schema_version": 3, "solution": false}
# ### Question 1 (10 points): the CFG training loss
#
# Implement `CFGTrainer.get_train_loss(batch_size)` following the four steps above. The
# constructor is given. Hints:
#
# * `self.path.p_data.sample(batch_size)` returns `z` of shape `(b, ...)` and `y` of shape
#   `(b,)`.
# * A per-sample mask "with probability $\eta$" is `torch.rand(batch_size, device=...) <
#   self.eta`. Create it (and `t`) **on the device of the data**: on a GPU a CPU mask in
#   `torch.where` or `masked_fill` with GPU labels is an error (only plain indexing,
#   `y[mask] = ...`, tolerates it).
# * `t` has shape `(b,)`; the path reshapes it itself. `torch.rand`, not `torch.randn`.
# * `self.path.sample_conditional_path(z, t)` and
#   `self.path.conditional_vector_field(x, z, t)` give $x$ and the target.
# * The network is `self.model`, called as `self.model(x, t, y)`.

# %% nbgrader={"grade": false, "grade_id": "cfg_trainer", "locked": false, "schema_version": 3, "solution": true} cfgflow={"part": "cfg_loss"}
class CFGTrainer(Trainer):
    """Conditional flow matching with label dropout, for classifier-free guidance.

    Args:
        path: a conditional probability path; ``path.p_data.sample(b)`` gives ``(z, y)``.
        eta: probability of replacing a label by the null label, in (0, 1).
        null_label: index of the null label (``num_classes``, e.g. 10 for MNIST).
        eps: t is drawn from U[0, 1 - eps).
    """

    def __init__(self, path, eta: float, null_label: int, eps: float = 1e-3, **kwargs):
        if not 0.0 < eta < 1.0:
            raise ValueError(f"eta must be in (0, 1), got {eta}")
        super().__init__(**kwargs)
        self.path = path
        self.eta = eta
        self.null_label = null_label
        self.eps = eps

    def get_train_loss(self, batch_size: int) -> torch.Tensor:
        """The CFG flow-matching loss of one fresh batch, a scalar tensor.

        Conventions the tests check:
        - (z, y) from ``self.path.p_data.sample(batch_size)``: ``(b, ...)`` and ``(b,)``.
        - each label independently replaced by ``self.null_label`` with probability
          ``self.eta`` (NOT 1 - eta); the mask is drawn on the labels' device;
        - t of shape ``(b,)``, uniform on [0, 1 - self.eps), drawn on the data's device;
        - x ~ p_t(x | z) via ``self.path.sample_conditional_path(z, t)``; the target is
          ``self.path.conditional_vector_field(x, z, t)``;
        - loss = mean over EVERY element of (self.model(x, t, y) - target)^2
          (like ``F.mse_loss``), not a sum and not a per-sample norm.
        """
        ### BEGIN SOLUTION
        z, y = self.path.p_data.sample(batch_size)  # (b, ...), (b,)
        drop = torch.rand(batch_size, device=y.device) < self.eta  # (b,)
        y = y.masked_fill(drop, self.null_label)
        t = (1 - self.eps) * torch.rand(batch_size, device=z.device)  # (b,) in [0, 1 - eps)
        x = self.path.sample_conditional_path(z, t)  # (b, ...)
        target = self.path.conditional_vector_field(x, z, t)  # (b, ...)
        return F.mse_loss(self.model(x, t, y), target)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_cfg_loss", "locked": true, "points": 4, "schema_version": 3, "solution": false} cfgflow={"part": "cfg_loss"}
# Visible tests for CFGTrainer (4 points). Run me after your implementation.
# Each line printed below is one sub-check, then the score; a failing check says what looks wrong.
check("cfg_loss", CFGTrainer, points=4)

# %% nbgrader={"grade": true, "grade_id": "test_cfg_loss_hidden", "locked": true, "points": 6, "schema_version": 3, "solution": false} cfgflow={"part": "cfg_loss"}
# Hidden tests for CFGTrainer (6 points): the same checks on other sizes
# and seeds, run when your notebook is graded.
### BEGIN HIDDEN TESTS
check("cfg_loss", CFGTrainer, points=6, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "q2_text", "locked": true, "schema_version": 3, "solution": false}
# ### Question 2 (5 points): an MLP conditional vector field
#
# For 2-D data a small MLP is enough: embed the label, and feed the concatenation
# $[x,\ \mathrm{embed}(y),\ t]$ of width `dim + class_dim + 1` to the MLP. The
# constructor is given (note the `num_classes + 1` embedding rows: the last one belongs to
# the null label). Implement `forward`. The trainer and the sampler (`sample_cfg`) pass `t`
# as `(b,)`; the docstring also asks for `(b, 1, 1, 1)`, the shape an image-shaped time
# grid gives, and the tests pass both. Reshape it to `(b, 1)` with the batch size you know,
# never with `t.squeeze()`, which breaks at batch size 1.

# %% nbgrader={"grade": false, "grade_id": "mlp_field", "locked": false, "schema_version": 3, "solution": true} cfgflow={"part": "mlp_field"}
class MLPConditionalVectorField(ConditionalVectorField):
    """u_t^theta(x | y) = MLP([x, embed(y), t]) for flat data x of shape (b, dim).

    Args:
        dim: data dimension (2 for the mixture below).
        hidden_dim: width of the MLP's two hidden layers.
        class_dim: width of the label embedding.
        num_classes: number of real classes; label ``num_classes`` is the null label,
            so the embedding has ``num_classes + 1`` rows.
    """

    def __init__(self, dim: int, hidden_dim: int, class_dim: int, num_classes: int):
        super().__init__()
        self.mlp = MLP([dim + class_dim + 1, hidden_dim, hidden_dim, dim])
        self.class_embedding = nn.Embedding(num_classes + 1, class_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (b, dim) points.
            t: (b,) or (b, 1, 1, 1) times; must work for b = 1.
            y: (b,) int64 labels in {0, ..., num_classes} (num_classes = null).
        Returns:
            (b, dim): the vector field, ``self.mlp`` applied to the concatenation
            ``[x, self.class_embedding(y), t]`` along the last axis, in that order
            (the tests accept any order of the three blocks).
        """
        ### BEGIN SOLUTION
        b = x.shape[0]
        h = torch.cat([x, self.class_embedding(y), t.reshape(b, 1)], dim=-1)  # (b, dim + cd + 1)
        return self.mlp(h)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_mlp_field", "locked": true, "points": 2, "schema_version": 3, "solution": false} cfgflow={"part": "mlp_field"}
# Visible tests for MLPConditionalVectorField (2 points). Run me after your implementation.
# Each line printed below is one sub-check, then the score; a failing check says what looks wrong.
check("mlp_field", MLPConditionalVectorField, points=2)

# %% nbgrader={"grade": true, "grade_id": "test_mlp_field_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false} cfgflow={"part": "mlp_field"}
# Hidden tests for MLPConditionalVectorField (3 points): the same checks on other sizes
# and seeds, run when your notebook is graded.
### BEGIN HIDDEN TESTS
check("mlp_field", MLPConditionalVectorField, points=3, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "part3_text", "locked": true, "schema_version": 3, "solution": false}
# ## 3. Sanity check: guidance on a Gaussian mixture
#
# We train your `MLPConditionalVectorField` with your `CFGTrainer` on a mixture of three
# Gaussians on a circle (label = mode index, null label = 3, $\eta = 0.25$). The figure
# then shows, on shared axes (fixed by the target samples, so the panels line up):
#
# * **left**: samples of the target mixture, coloured by mode;
# * **middle**, one panel per guidance scale $w$: guided samples for each label
#   $y \in \{0, 1, 2\}$: each colour should sit on its own mode;
# * **right**: samples with the null label only, i.e. the learned unconditional field:
#   they should cover all three modes.
#
# With $w = 1$ the conditional samples spread like the modes themselves. With larger $w$
# they shrink into tight clusters and are pushed *away from the other modes*, past the
# centre of their own mode: $\tilde u$ extrapolates from the unconditional field towards
# the conditional one. Guidance buys unmistakable class membership with diversity (and
# with faithfulness to $p(x \mid y)$). Change `GUIDANCE_SCALES` and rerun to see it.

# %% nbgrader={"grade": false, "grade_id": "gmm_train", "locked": true, "schema_version": 3, "solution": false}
gmm = GMM.symmetric_2d(nmodes=3, radius=2.0, std=0.2).to(device)
gmm_path = GaussianConditionalProbabilityPath(
    p_data=gmm, p_simple_shape=[2], alpha=LinearAlpha(), beta=LinearBeta()
).to(device)
gmm_field = MLPConditionalVectorField(dim=2, hidden_dim=256, class_dim=2, num_classes=3).to(device)
gmm_trainer = CFGTrainer(path=gmm_path, eta=0.25, null_label=3)
num_steps = 200 if QUICK_RUN else 3000
losses, steps = gmm_trainer.train(model=gmm_field, num_steps=num_steps, lr=1e-3,
                                  warmup_steps=100, batch_size=250, progress=not QUICK_RUN)
print(f"{num_steps} steps, mean loss of the last 100: {sum(losses[-100:]) / 100:.3f}")
fig = plot_losses(losses)
plt.show()

# %%
from cfgflow.plotting import plot_gmm_guidance

GUIDANCE_SCALES = [1.0, 4.0]  # try changing me!
fig = plot_gmm_guidance(gmm, gmm_field, guidance_scales=GUIDANCE_SCALES, null_label=3)
plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "takeaways", "locked": true, "schema_version": 3, "solution": false}
# ### What to take away
#
# * CFG needs only one network and one extra label; the guided field is a linear
#   combination of two evaluations of it (the sampler batches them into one pass).
# * The training changes in two places only: labels are dropped to $\varnothing$ with
#   probability $\eta$, and the network sees the label.
# * In Notebook 2 the MLP becomes a diffusion transformer and the mixture becomes MNIST.
