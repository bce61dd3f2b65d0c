"""Plotting helpers return Figures (never show) and write PNG files."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from cfgflow_ref.distributions import GMM
from cfgflow_ref.models import MLPConditionalVectorField, MNISTDiffusionTransformer
from cfgflow_ref.paths import GaussianConditionalProbabilityPath, LinearAlpha, LinearBeta
from cfgflow_ref.plotting import (
    generate_class_grid,
    plot_gmm_guidance,
    plot_gmm_panels,
    plot_guidance_grids,
    plot_losses,
    plot_path_snapshots,
    save_sample_grids,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_dit():
    torch.manual_seed(0)
    return MNISTDiffusionTransformer(patch_size=8, num_layers=1, dim=16, heads=2).eval()


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


@pytest.mark.parametrize("b, c, nrow, padding", [(1, 1, 8, 2), (2, 1, 8, 2), (10, 1, 4, 2),
                                                  (12, 1, 3, 0), (7, 3, 5, 1), (5, 1, 1, 3)])
def test_tile_is_torchvisions_make_grid(b, c, nrow, padding):
    from torchvision.utils import make_grid

    from cfgflow.plotting import tile

    images = torch.rand(b, c, 6, 5)
    assert torch.equal(tile(images, nrow, padding, pad_value=0.25),
                       make_grid(images, nrow=nrow, padding=padding, pad_value=0.25))


def test_tile_names_a_wrong_shape():
    from cfgflow.plotting import tile

    with pytest.raises(ValueError, match=r"images: expected \(b, c, h, w\), got shape \(6, 5\)"):
        tile(torch.rand(6, 5), 4)


@pytest.mark.filterwarnings("error")  # a warning on stderr would zero a graded notebook cell
def test_plot_path_snapshots(tmp_path):
    path = GaussianConditionalProbabilityPath(GMM.symmetric_2d(), [1, 32, 32], LinearAlpha(), LinearBeta())
    fig = plot_path_snapshots(path, torch.randn(4, 1, 32, 32), times=[0.0, 0.5, 1.0], ncols=2)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["t = 0.00", "t = 0.50", "t = 1.00"]
    fig.savefig(tmp_path / "snap.png")
    assert _is_png(tmp_path / "snap.png")


@pytest.mark.filterwarnings("error")
def test_plot_gmm_panels_labels(tmp_path):
    gmm = GMM.symmetric_2d()
    model = MLPConditionalVectorField(dim=2, hidden_dim=16, class_dim=2, num_classes=3).eval()
    fig = plot_gmm_panels(gmm, model, guidance_scale=2.0, n_per_mode=20, num_steps=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert labels[0] == ["mode 0", "mode 1", "mode 2"]
    assert labels[1] == ["y = 0", "y = 1", "y = 2"]
    assert labels[2] == ["y = null"]  # not a stale loop variable
    assert "w = 2" in fig.axes[1].get_title()
    # Every panel holds all its points (3 modes x 20 = 60).
    for ax in fig.axes:
        assert sum(len(c.get_offsets()) for c in ax.collections) == 60
    fig.savefig(tmp_path / "gmm.png")
    assert _is_png(tmp_path / "gmm.png")


@pytest.mark.filterwarnings("error")
def test_plot_gmm_guidance_shares_axes_fixed_by_the_target(tmp_path):
    """Every panel (target, one per w, unguided) has the same limits, set by the target
    samples: far-out guided samples neither stretch a panel nor go missing silently."""
    torch.manual_seed(0)
    gmm = GMM.symmetric_2d(nmodes=3, radius=2.0, std=0.2)

    class FarOut(torch.nn.Module):  # a field that sends label 0 far away when guided
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, t, y):
            return torch.where((y == 0)[:, None], torch.full_like(x, 10.0), torch.zeros_like(x))

    fig = plot_gmm_guidance(gmm, FarOut(), guidance_scales=[1.0, 4.0], n_per_mode=20, num_steps=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    limits = {(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes}
    assert len(limits) == 1, limits
    (x0, x1), (y0, y1) = limits.pop()
    assert x1 - x0 == pytest.approx(y1 - y0) and x1 - x0 < 9  # ~ the target's circle, not 40 wide
    titles = [ax.get_title() for ax in fig.axes]
    assert "w = 1" in titles[1] and "w = 4" in titles[2]
    assert "20 of 60 samples outside the axes" in titles[2]  # label 0 at x + 40 at w = 4
    assert "outside" not in titles[0]
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert labels[0] == ["mode 0", "mode 1", "mode 2"] and labels[3] == ["y = null"]
    assert labels[1] == labels[2] == ["y = 0", "y = 1", "y = 2"]
    fig.savefig(tmp_path / "gmm.png")
    assert _is_png(tmp_path / "gmm.png")


def test_generate_class_grid_is_digit_major(tiny_dit):
    imgs = generate_class_grid(tiny_dit, 2.0, samples_per_class=2, num_steps=2)
    assert imgs.shape == (20, 1, 32, 32)


@pytest.mark.filterwarnings("error")
def test_plot_guidance_grids(tiny_dit):
    fig = plot_guidance_grids(tiny_dit, guidance_scales=(1.0, 3.0), samples_per_class=1, num_steps=2)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["guidance w = 1", "guidance w = 3"]


def test_save_sample_grids_writes_one_png_per_w(tmp_path, tiny_dit):
    spc = 3
    paths = save_sample_grids(tiny_dit, str(tmp_path), prefix="step_000010",
                              guidance_scales=(1.0, 2.5, 5.0), samples_per_class=spc, num_steps=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["step_000010_w1.png", "step_000010_w2.5.png", "step_000010_w5.png"]
    assert sorted(str(tmp_path / n) for n in names) == sorted(paths)
    for p in paths:
        assert _is_png(p)
        with Image.open(p) as im:  # 10 rows (digits) x spc columns of 32 px, 2 px padding
            assert im.size == (spc * 34 + 2, 10 * 34 + 2)


def test_plot_losses(tmp_path):
    fig = plot_losses([1.0 / (i + 1) for i in range(120)], smooth=10)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.lines[1].get_xdata()) == 111
    fig.savefig(tmp_path / "loss.png")
    assert _is_png(tmp_path / "loss.png")
