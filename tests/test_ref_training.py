"""Training: the CFG flow-matching loss against a hand computation, label dropout, time
range, device correctness (meta-device trick), the Trainer's warm-up, checkpoints, resume
and EMA."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn as nn

from cfgflow_ref.distributions import GMM, LabeledSampleable
from cfgflow_ref.models import MLPConditionalVectorField
from cfgflow_ref.paths import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta
from cfgflow_ref.training import EMA, CFGTrainer, Trainer

NULL = 3


def gmm_path(p_data=None):
    return GaussianConditionalProbabilityPath(p_data or GMM.symmetric_2d(), [2], LinearAlpha(),
                                              LinearBeta())


class RecordingData(LabeledSampleable):
    """Wraps a LabeledSampleable and keeps the last batch it handed out."""

    def __init__(self, inner):
        self.inner = inner
        self.last = None

    def sample(self, num_samples):
        self.last = self.inner.sample(num_samples)
        return self.last


class RecordingModel(nn.Module):
    """Records (x, t, y) and returns ``scale * x`` (a known, non-trivial prediction)."""

    def __init__(self, scale: float = 0.5):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.calls = []

    def forward(self, x, t, y):
        self.calls.append((x.detach().clone(), t.detach().clone(), y.detach().clone()))
        return self.scale * x


# -- the CFG loss ------------------------------------------------------------------------

def test_loss_is_the_element_mean_of_the_squared_error():
    data = RecordingData(GMM.symmetric_2d())
    model = RecordingModel()
    trainer = CFGTrainer(gmm_path(data), eta=0.3, null_label=NULL, model=model)
    loss = trainer.get_train_loss(batch_size=64)
    (x, t, _), (z, _) = model.calls[-1], data.last
    assert loss.dim() == 0
    # Linear path: x = t z + (1 - t) eps, so u_t(x | z) = (z - x) / (1 - t).
    target = (z - x) / (1 - t)[:, None]
    want = ((0.5 * x - target) ** 2).sum() / x.numel()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_loss_does_not_scale_with_batch_size():
    # With u_theta = 0 the expected loss is E (z - eps)_i^2 = E z_i^2 + 1 per element; for
    # symmetric_2d (radius 2, std 0.2) E z_i^2 = 2^2 / 2 + 0.2^2.
    expected = 2.0 + 0.04 + 1.0
    trainer = CFGTrainer(gmm_path(), eta=0.3, null_label=NULL, model=RecordingModel(0.0))
    big = trainer.get_train_loss(batch_size=20_000).item()
    small = torch.tensor([trainer.get_train_loss(batch_size=8).item() for _ in range(400)]).mean().item()
    assert big == pytest.approx(expected, rel=0.05)
    assert small == pytest.approx(expected, rel=0.1)


def test_label_dropout_fraction_and_null_index():
    data = RecordingData(GMM.symmetric_2d())
    model = RecordingModel()
    eta, n = 0.35, 20_000
    CFGTrainer(gmm_path(data), eta=eta, null_label=NULL, model=model).get_train_loss(batch_size=n)
    _, _, y = model.calls[-1]
    _, y_orig = data.last
    dropped = y == NULL
    frac = dropped.double().mean().item()
    assert abs(frac - eta) < 4 * math.sqrt(eta * (1 - eta) / n), frac
    assert torch.equal(y[~dropped], y_orig[~dropped])  # kept labels untouched
    assert not (y_orig == NULL).any()


@pytest.mark.parametrize("eps", [1e-3, 0.3])
def test_training_times_in_0_to_1_minus_eps(eps):
    model = RecordingModel()
    n = 20_000
    CFGTrainer(gmm_path(), eta=0.2, null_label=NULL, eps=eps, model=model).get_train_loss(batch_size=n)
    _, t, _ = model.calls[-1]
    assert t.shape == (n,)
    assert t.min().item() >= 0.0 and t.max().item() < 1 - eps
    assert t.max().item() > 1 - eps - 0.01 and t.min().item() < 0.01
    # Uniform: mean (1 - eps) / 2 within 4 standard errors.
    assert abs(t.mean().item() - (1 - eps) / 2) < 4 * (1 - eps) / math.sqrt(12 * n)


@pytest.mark.parametrize("eta", [0.0, 1.0, -0.1, 1.5])
def test_eta_outside_open_interval_raises(eta):
    with pytest.raises(ValueError, match="eta"):
        CFGTrainer(gmm_path(), eta=eta, null_label=NULL)


# -- device correctness on the meta device -------------------------------------------------

class MetaData(LabeledSampleable):
    def sample(self, num_samples):
        return (torch.randn(num_samples, 2, device="meta"),
                torch.randint(0, NULL, (num_samples,), device="meta"))


class CPUMaskTrainer(CFGTrainer):
    """The lab's defect: the dropout mask is drawn on the CPU."""

    def get_train_loss(self, batch_size):
        z, y = self.path.p_data.sample(batch_size)
        drop = torch.rand(batch_size) < self.eta  # no device=
        y = torch.where(drop, torch.full_like(y, self.null_label), y)
        t = (1 - self.eps) * torch.rand(batch_size, device=z.device)
        x = self.path.sample_conditional_path(z, t)
        return nn.functional.mse_loss(self.model(x, t, y), self.path.conditional_vector_field(x, z, t))


def _meta_model():
    return MLPConditionalVectorField(dim=2, hidden_dim=16, class_dim=4, num_classes=NULL).to("meta")


def test_reference_loss_is_device_correct_on_meta():
    trainer = CFGTrainer(gmm_path(MetaData()), eta=0.3, null_label=NULL, model=_meta_model())
    loss = trainer.get_train_loss(batch_size=8)
    assert loss.device.type == "meta" and loss.shape == ()


def test_device_wrong_variant_raises_on_meta():
    trainer = CPUMaskTrainer(gmm_path(MetaData()), eta=0.3, null_label=NULL, model=_meta_model())
    with pytest.raises(RuntimeError, match="device"):
        trainer.get_train_loss(batch_size=8)


# -- the loss decreases ------------------------------------------------------------------

def test_cfg_training_reduces_the_loss():
    torch.manual_seed(0)
    model = MLPConditionalVectorField(dim=2, hidden_dim=64, class_dim=4, num_classes=NULL)
    trainer = CFGTrainer(gmm_path(), eta=0.25, null_label=NULL)
    losses, steps = trainer.train(model, num_steps=200, lr=3e-3, warmup_steps=10, batch_size=128,
                                  progress=False)
    assert len(losses) == 200 and steps == list(range(200))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.6 * first, (first, last)


# -- the generic Trainer -----------------------------------------------------------------

class QuadraticTrainer(Trainer):
    """loss = ||w - target||^2 (deterministic); records lr and the step of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lrs, self.calls, self.ckpts = [], 0, []

    def get_train_loss(self, scale: float = 1.0):
        self.lrs.append(self.opt.param_groups[0]["lr"])
        self.calls += 1
        return scale * ((self.model.weight - 3.0) ** 2).sum()

    def checkpoint(self, step):
        self.ckpts.append(step)
        super().checkpoint(step)


def quad_model():
    torch.manual_seed(0)
    return nn.Linear(4, 1, bias=False)


def test_warmup_schedule_and_loss_history():
    trainer = QuadraticTrainer()
    lr, warm = 1e-2, 5
    losses, steps = trainer.train(quad_model(), num_steps=9, lr=lr, warmup_steps=warm, progress=False,
                                  scale=2.0)
    want = [lr * min(1.0, (s + 1) / warm) for s in range(9)]
    assert trainer.lrs == pytest.approx(want)
    assert len(losses) == 9 and steps == list(range(9))
    assert all(b < a for a, b in zip(losses, losses[1:]))  # deterministic descent
    assert trainer.step == 9


def test_no_warmup_uses_constant_lr():
    trainer = QuadraticTrainer()
    trainer.train(quad_model(), num_steps=3, lr=0.1, warmup_steps=0, progress=False)
    assert trainer.lrs == pytest.approx([0.1] * 3)


def test_checkpoint_called_at_the_right_steps(tmp_path):
    trainer = QuadraticTrainer()
    trainer.train(quad_model(), num_steps=10, lr=1e-2, warmup_steps=1, ckpt_every=3,
                  output_dir=str(tmp_path), progress=False)
    assert trainer.ckpts == [3, 6, 9, 10]
    assert os.path.exists(tmp_path / "last.pt")
    trainer = QuadraticTrainer()
    trainer.train(quad_model(), num_steps=4, lr=1e-2, progress=False)
    assert trainer.ckpts == []


def test_resume_continues_step_count_history_and_optimizer(tmp_path):
    full = QuadraticTrainer()
    full_losses, _ = full.train(quad_model(), num_steps=8, lr=0.05, warmup_steps=3, progress=False)
    first = QuadraticTrainer()
    first.train(quad_model(), num_steps=5, lr=0.05, warmup_steps=3, ckpt_every=5,
                output_dir=str(tmp_path), progress=False)
    resumed = QuadraticTrainer()
    model = quad_model()
    with torch.no_grad():
        model.weight.zero_()  # must be overwritten by the checkpoint
    losses, steps = resumed.train(model, num_steps=8, lr=0.05, warmup_steps=3,
                                  resume_from=str(tmp_path / "last.pt"), progress=False)
    assert resumed.calls == 3 and resumed.step == 8
    assert steps == list(range(8))
    # Same losses and weights as one uninterrupted run (AdamW moments restored too).
    assert losses == pytest.approx(full_losses, rel=1e-6)
    torch.testing.assert_close(model.weight, full.model.weight)


def test_ema_update_math():
    model = nn.Linear(3, 2)
    model.register_buffer("counter", torch.zeros(()))
    ema = EMA(model, decay=0.9)
    e = [p.detach().clone() for p in model.parameters()]
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model.counter.fill_(step + 1)
        ema.update(model)
        e = [0.9 * ei + 0.1 * p.detach() for ei, p in zip(e, model.parameters())]
    for ei, pe in zip(e, ema.model.parameters()):
        torch.testing.assert_close(pe, ei)
    assert ema.model.counter.item() == 3  # buffers copied
    assert not any(p.requires_grad for p in ema.model.parameters())
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_trainer_with_ema_uses_it_for_sampling():
    trainer = QuadraticTrainer()
    model = quad_model()
    trainer.train(model, num_steps=3, lr=0.1, warmup_steps=1, ema_decay=0.5, progress=False)
    assert trainer.sampling_model is trainer.ema.model
    assert not torch.allclose(trainer.sampling_model.weight, model.weight)


# -- MNIST-shaped data -------------------------------------------------------------------

class MetaImages(LabeledSampleable):
    def sample(self, num_samples):
        return (torch.randn(num_samples, 1, 32, 32, device="meta"),
                torch.randint(0, 10, (num_samples,), device="meta"))


def test_dit_training_loss_is_device_correct_on_meta():
    from cfgflow_ref.models import MNISTDiffusionTransformer

    model = MNISTDiffusionTransformer(patch_size=8, num_layers=1, dim=16, heads=2).to("meta")
    path = GaussianConditionalProbabilityPath(MetaImages(), [1, 32, 32], LinearAlpha(), LinearBeta())
    loss = CFGTrainer(path, eta=0.35, null_label=10, model=model).get_train_loss(batch_size=4)
    assert loss.device.type == "meta" and loss.shape == ()


@pytest.mark.slow  # ~10-17 s on a loaded 2-core machine (imports torchvision, samples)
def test_mnist_trainer_checkpoints_write_model_and_grids(tmp_path):
    from cfgflow_ref.models import MNISTDiffusionTransformer
    from cfgflow_ref.training import MNISTCFGTrainer

    class Digits(LabeledSampleable):
        def sample(self, num_samples):
            return torch.randn(num_samples, 1, 32, 32), torch.randint(0, 10, (num_samples,))

    torch.manual_seed(0)
    model = MNISTDiffusionTransformer(patch_size=8, num_layers=1, dim=16, heads=2)
    path = GaussianConditionalProbabilityPath(Digits(), [1, 32, 32], LinearAlpha(), LinearBeta())
    trainer = MNISTCFGTrainer(path, guidance_scales=(1.0, 3.0), samples_per_class=1, sample_steps=2)
    losses, _ = trainer.train(model, num_steps=2, lr=1e-3, warmup_steps=1, ckpt_every=2,
                              output_dir=str(tmp_path), progress=False, batch_size=4)
    assert len(losses) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.pt", "step_000002_w1.png", "step_000002_w3.png"]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == 2 and len(state["losses"]) == 2
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state["model"][k], v)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    trainer = QuadraticTrainer()
    lr, warm, n = 1e-2, 3, 11
    trainer.train(quad_model(), num_steps=n, lr=lr, warmup_steps=warm, lr_schedule="cosine",
                  progress=False)
    assert trainer.lrs[:warm] == pytest.approx([lr / 3, 2 * lr / 3, lr])
    decay = trainer.lrs[warm:]
    # half a cosine over the n - warm remaining steps, ending at exactly 0 on the last step
    want = [lr * 0.5 * (1 + math.cos(math.pi * (k + 1) / (n - warm))) for k in range(n - warm)]
    assert decay == pytest.approx(want, abs=1e-12)
    assert decay[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(b < a for a, b in zip(decay, decay[1:]))


def test_unknown_lr_schedule_is_refused_by_name():
    with pytest.raises(ValueError, match="lr_schedule"):
        QuadraticTrainer().train(quad_model(), num_steps=2, lr_schedule="linear", progress=False)


def test_time_beta_one_is_the_uniform_convention_bit_for_bit():
    """time_beta=1 must draw exactly the course's t = (1 - eps) U[0, 1) (students' loss is
    graded against it)."""
    trainer = CFGTrainer(gmm_path(), eta=0.3, null_label=NULL, eps=1e-2)
    torch.manual_seed(5)
    got = trainer.sample_time(1000, "cpu")
    torch.manual_seed(5)
    torch.testing.assert_close(got, (1 - 1e-2) * torch.rand(1000), rtol=0, atol=0)


@pytest.mark.parametrize("k", [1.5, 3.0])
def test_time_beta_draws_beta_1_k(k):
    """t / (1 - eps) ~ Beta(1, k): CDF 1 - (1 - x)^k; compare the empirical CDF at a few
    points and the mean 1 / (1 + k)."""
    eps = 1e-3
    trainer = CFGTrainer(gmm_path(), eta=0.3, null_label=NULL, eps=eps, time_beta=k)
    torch.manual_seed(0)
    t = trainer.sample_time(200_000, "cpu")
    assert t.min() >= 0 and t.max() < 1 - eps
    for x in (0.1, 0.25, 0.5, 0.9):
        assert (t <= x).float().mean().item() == pytest.approx(1 - (1 - x / (1 - eps)) ** k, abs=5e-3)
    assert (t / (1 - eps)).mean().item() == pytest.approx(1 / (1 + k), abs=3e-3)


def test_time_beta_reaches_the_loss():
    data = RecordingData(GMM.symmetric_2d())
    model = RecordingModel()
    CFGTrainer(gmm_path(data), eta=0.3, null_label=NULL, time_beta=3.0, model=model).get_train_loss(
        batch_size=20_000)
    t = model.calls[-1][1].flatten()
    assert t.median().item() == pytest.approx(1 - 0.5 ** (1 / 3), abs=0.01)


@pytest.mark.parametrize("bad", [0, 0.5, -1.0, float("nan"), float("inf"), "3"])
def test_bad_time_beta_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="time_beta"):
        CFGTrainer(gmm_path(), eta=0.3, null_label=NULL, time_beta=bad)
