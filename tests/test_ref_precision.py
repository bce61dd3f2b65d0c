"""The mixed-precision policy (cfgflow.precision) and the Trainer's fp16 path.

No GPU here: the policy's choice is tested with the compute capability mocked; the fp16 path
of ``Trainer.train`` (autocast + GradScaler) runs for real on the CPU, where torch supports
fp16 autocast and ``GradScaler("cpu")`` too. What stays untested without a GPU is only the
speed of those kernels on CUDA (benchmarks/bench_gpu.py measures it).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from cfgflow.precision import BF16, FP16, FP32, Precision, choose_precision
from cfgflow.training import Trainer
from cfgflow_ref import train as ref_train


@pytest.mark.parametrize("capability, want", [((7, 5), FP16), ((7, 0), FP16), ((8, 0), BF16),
                                              ((8, 9), BF16), ((9, 0), BF16)])
def test_auto_policy_follows_the_compute_capability(monkeypatch, capability, want):
    asked = []

    def fake_capability(device=None):
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", fake_capability)
    got = choose_precision(torch.device("cuda", 0))
    assert got == want and asked == [torch.device("cuda", 0)]
    assert got.grad_scaler == (capability < (8, 0))  # the scaler exactly where fp16 is chosen


def test_t4_gets_fp16_with_a_scaler_and_a100_bf16_without(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    t4 = choose_precision("cuda")
    assert (t4.name, t4.dtype, t4.grad_scaler) == ("fp16", torch.float16, True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    a100 = choose_precision("cuda")
    assert (a100.name, a100.dtype, a100.grad_scaler) == ("bf16", torch.bfloat16, False)


def test_cpu_is_fp32_and_never_asks_cuda(monkeypatch):
    def no_cuda(device=None):
        raise AssertionError("the CPU policy must not query CUDA")

    monkeypatch.setattr(torch.cuda, "get_device_capability", no_cuda)
    for device in ("cpu", torch.device("cpu"), "meta"):
        assert choose_precision(device) == FP32
    assert FP32.dtype is None and not FP32.grad_scaler


def test_explicit_choices_and_bad_values():
    assert choose_precision("cpu", "bf16") == BF16
    assert choose_precision("cpu", "fp16") == FP16
    assert choose_precision("cpu", FP16) is FP16
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("cpu", "float16")
    with pytest.raises(ValueError, match="fp16"):
        choose_precision("meta", "fp16")


def test_the_knob_reaches_the_trainer():
    assert ref_train.LAB.precision == ref_train.QUICK.precision == "auto"
    assert ref_train.train_kwargs(ref_train.LAB.replace(precision="fp16"))["precision"] == "fp16"


# -- the Trainer's fp16 path ------------------------------------------------------------------

class LinearTrainer(Trainer):
    """loss = ``loss_scale`` * mean((model(x) - 3)^2) on a fixed x; records the dtype of the
    forward pass (fp16 under fp16 autocast). The default scale 0.01 keeps the scaled fp16
    gradients (x 65536) below fp16's maximum of 65504, so no step is skipped."""

    def __init__(self, loss_scale: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.loss_scale = loss_scale
        self.x = torch.linspace(-1, 1, 32).reshape(8, 4)
        self.forward_dtypes = []

    def get_train_loss(self):
        out = self.model(self.x)  # (8, 1)
        self.forward_dtypes.append(out.dtype)
        return self.loss_scale * ((out.float() - 3.0) ** 2).mean()


def linear_model():
    torch.manual_seed(0)
    return nn.Linear(4, 1)


class SpyScaler:
    """A real GradScaler whose calls are logged, with the gradient seen by ``step``."""

    def __init__(self, inner, log):
        self.inner, self.log = inner, log

    def is_enabled(self):
        return self.inner.is_enabled()

    def scale(self, loss):
        self.log.append(("scale", loss.item()))
        return self.inner.scale(loss)

    def step(self, opt):
        grad = next(iter(opt.param_groups[0]["params"])).grad
        self.log.append(("step", grad.abs().sum().item()))
        return self.inner.step(opt)

    def update(self):
        self.log.append(("update", self.inner.get_scale()))
        self.inner.update()

    def state_dict(self):
        return self.inner.state_dict()


class SpyPrecision(Precision):
    def make_scaler(self, device_type):
        self.__dict__.setdefault("log", [])
        return SpyScaler(super().make_scaler(device_type), self.__dict__["log"])


def test_fp16_path_scales_steps_and_updates_in_order():
    policy = SpyPrecision("fp16", torch.float16, True)
    trainer = LinearTrainer()
    trainer.train(linear_model(), num_steps=3, lr=1e-2, warmup_steps=0, progress=False,
                  precision=policy)
    assert trainer.forward_dtypes == [torch.float16] * 3  # the forward pass ran under fp16
    assert [kind for kind, _ in policy.log] == ["scale", "step", "update"] * 3
    # the gradient reaching step() is the scaled one (x 65536), unscaled inside step()
    scaled_grad = policy.log[1][1]
    model = linear_model()
    (0.01 * ((model(trainer.x) - 3.0) ** 2).mean()).backward()
    plain = model.weight.grad.abs().sum().item()
    assert scaled_grad == pytest.approx(65536.0 * plain, rel=1e-2)
    assert trainer.state_dict()["scaler"]["scale"] == 65536.0  # no overflow, no back-off


def test_fp16_step_matches_fp32_after_unscaling():
    """The scaler multiplies the loss by 65536 and divides the gradients back: the weights
    after fp16 training agree with fp32 training to fp16 accuracy, not 65536x off."""
    fp16, fp32 = LinearTrainer(), LinearTrainer()
    m16, m32 = linear_model(), linear_model()
    fp16.train(m16, num_steps=5, lr=1e-2, warmup_steps=0, progress=False, precision="fp16")
    fp32.train(m32, num_steps=5, lr=1e-2, warmup_steps=0, progress=False, precision="fp32")
    assert fp16.scaler.is_enabled() and not fp32.scaler.is_enabled()
    torch.testing.assert_close(m16.weight, m32.weight, atol=2e-3, rtol=0)
    assert not torch.equal(m16.weight, linear_model().weight)  # and it did train


def test_fp16_skips_an_overflowing_step_and_backs_off():
    """A finite loss of 1e34 times the scale 65536 overflows float32: the scaler must skip
    that optimiser step (weights unchanged) and halve its scale; fp32 would have stepped."""
    trainer = LinearTrainer(loss_scale=1e34)
    model = linear_model()
    before = model.weight.detach().clone()
    losses, _ = trainer.train(model, num_steps=1, lr=1e-2, warmup_steps=0, progress=False,
                              precision="fp16")
    assert math.isfinite(losses[0])  # the loss itself is fine: only the scaled gradient overflows
    torch.testing.assert_close(model.weight, before, atol=0, rtol=0)
    assert trainer.scaler.get_scale() == 32768.0
    stepped = linear_model()
    LinearTrainer(loss_scale=1e34).train(stepped, num_steps=1, lr=1e-2, warmup_steps=0,
                                         progress=False, precision="fp32")
    assert not torch.equal(stepped.weight, before)


def test_bf16_and_fp32_paths_have_no_scaler():
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        trainer = LinearTrainer()
        trainer.train(linear_model(), num_steps=2, lr=1e-2, warmup_steps=0, progress=False,
                      precision=name)
        assert trainer.forward_dtypes == [dtype] * 2
        assert not trainer.scaler.is_enabled() and trainer.state_dict()["scaler"] is None


def test_resume_restores_the_loss_scale(tmp_path):
    first = LinearTrainer(loss_scale=1e34)
    first.train(linear_model(), num_steps=1, lr=1e-2, warmup_steps=0, progress=False,
                precision="fp16", ckpt_every=1, output_dir=str(tmp_path))
    resumed = LinearTrainer()
    resumed.train(linear_model(), num_steps=1, lr=1e-2, warmup_steps=0, progress=False,
                  precision="fp16", resume_from=str(tmp_path / "last.pt"))
    assert resumed.scaler.get_scale() == 32768.0
