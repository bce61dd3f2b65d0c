"""The lab's sanity check, end to end: train the MLP field with CFG on a 3-mode GMM, then
conditional samples of each label must land at that label's mode."""

from __future__ import annotations

import pytest
import torch

from cfgflow_ref.distributions import GMM
from cfgflow_ref.models import MLPConditionalVectorField
from cfgflow_ref.paths import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta
from cfgflow_ref.simulation import sample_cfg
from cfgflow_ref.training import CFGTrainer

NULL = 3


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    gmm = GMM.symmetric_2d()
    path = GaussianConditionalProbabilityPath(gmm, [2], LinearAlpha(), LinearBeta())
    model = MLPConditionalVectorField(dim=2, hidden_dim=256, class_dim=2, num_classes=3)
    trainer = CFGTrainer(path, eta=0.25, null_label=NULL)
    losses, _ = trainer.train(model, num_steps=3000, lr=1e-3, warmup_steps=100, batch_size=250,
                              progress=False)
    return gmm, model, losses


@pytest.mark.slow
@pytest.mark.parametrize("w", [1.0, 3.0])
def test_conditional_samples_land_on_their_mode(trained, w):
    gmm, model, losses = trained
    assert sum(losses[-100:]) / 100 < sum(losses[:100]) / 100
    n = 300
    y = torch.arange(3).repeat_interleave(n)
    x = sample_cfg(model, y, guidance_scale=w, num_steps=100, shape=(2,), null_label=NULL,
                   solver="euler")
    nearest = torch.cdist(x, gmm.means).argmin(dim=1)  # (3n,)
    acc = [(nearest[y == k] == k).float().mean().item() for k in range(3)]
    print(f"\nGMM sanity check, w = {w:g}: per-mode accuracy "
          + ", ".join(f"mode {k}: {a:.1%}" for k, a in enumerate(acc)))
    assert min(acc) >= 0.9, acc


@pytest.mark.slow
def test_null_label_samples_cover_all_modes(trained):
    gmm, model, _ = trained
    y = torch.full((900,), NULL)
    x = sample_cfg(model, y, guidance_scale=1.0, num_steps=100, shape=(2,), null_label=NULL,
                   solver="euler")
    freq = torch.bincount(torch.cdist(x, gmm.means).argmin(dim=1), minlength=3).float() / 900
    print(f"\nUnguided (null label) mode frequencies: {[round(f, 3) for f in freq.tolist()]}")
    assert (freq > 0.2).all(), freq  # each mode ~1/3 when sampling the marginal
