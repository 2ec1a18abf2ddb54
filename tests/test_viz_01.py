"""Notebook 01's figure functions: the rank-k panel reads on a log axis with its legend off the curve, and long grid
titles do not collide."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lora_edu import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_rank_k_error_panel_is_on_a_log_axis_from_k_1():
    W = torch.rand(40, 30, generator=torch.Generator().manual_seed(0))
    fig = viz.plot_rank_k(W, 5)
    ax = fig.axes[3]
    curve = ax.get_lines()[0]
    assert ax.get_xscale() == "log" and curve.get_xdata()[0] == 1 and len(curve.get_xdata()) == 30


def test_similarity_grid_titles_do_not_overlap():
    long = ["run 1 vs run 2 (shared rank-8 update)", "run 1 vs pretrained W_o", "Gaussian vs Gaussian, once more"]
    fig = viz.plot_similarity_grids({t: torch.rand(6, 6) for t in long})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:3]:  # each title within its own panel's width, so neighbours cannot run together
        assert ax.title.get_window_extent(renderer).width <= ax.get_window_extent().width, ax.title.get_text()


def test_a_wide_grid_fills_its_panel_with_whole_number_ticks():
    fig = viz.plot_similarity_grids({"A_r=8 vs A_r=64": torch.rand(8, 64)})
    ax = fig.axes[0]
    assert ax.get_aspect() == "auto"
    assert all(float(t).is_integer() for t in ax.get_yticks())
    assert list(ax.get_xticks())[:2] == [1, 8] and list(ax.get_yticks())[0] == 1  # phi(1, 1)'s row and column named


def test_a_capped_colour_scale_says_so_and_a_bad_cap_is_refused():
    fig = viz.plot_similarity_grids({"layer 15": torch.rand(8, 64) * 0.2}, vmax=0.25)
    assert fig.axes[0].images[0].norm.vmax == 0.25 and "capped at 0.25" in fig.axes[-1].get_ylabel()
    assert "capped" not in viz.plot_similarity_grids({"g": torch.rand(4, 4)}).axes[-1].get_ylabel()
    with pytest.raises(ValueError, match="outside"):
        viz.plot_similarity_grids({"g": torch.rand(4, 4)}, vmax=2)
    plt.close("all")


def test_spectra_that_overlap_stay_visible_and_the_rank_k_legend_is_off_the_curve():
    import torch

    S = torch.linspace(10, 0.1, 50)
    ax = viz.plot_spectra({"pretrained": S, "fine-tuned": S * 1.001}, normalize=False)
    assert [ln.get_linestyle() for ln in ax.get_lines()] == ["-", "--"]  # the second does not hide the first
    assert ax.get_lines()[0].get_linewidth() > ax.get_lines()[1].get_linewidth()
    plt.close("all")
    W = torch.randn(40, 30)
    fig = viz.plot_rank_k(W, 5)
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legend._loc == 1  # upper right: a photo's error falls from the top left to the bottom right
    plt.close("all")


def _photo_like(m=120, n=100, seed=0):
    """A matrix whose singular values decay like a photo's (sigma_i ~ 1 / i), as notebook 01's picture does."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, n, generator=g))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    return (U / torch.arange(1, n + 1)) @ V.T


@pytest.mark.parametrize("k", [1, 5, 30, 60, 99])
def test_rank_k_legend_covers_neither_the_curve_nor_the_marked_k(k):
    fig = viz.plot_rank_k(_photo_like(), k)
    fig.canvas.draw()
    ax = fig.axes[3]
    box = ax.get_legend().get_window_extent()
    curve, marker = ax.get_lines()
    points = ax.transData.transform(curve.get_xydata().tolist() + marker.get_xydata().tolist())
    assert not any(box.contains(x, y) for x, y in points)


def test_rank_k_residual_image_is_as_large_as_the_picture():
    fig = viz.plot_rank_k(_photo_like(), 10)
    fig.canvas.draw()
    picture, residual = (fig.axes[i].get_window_extent() for i in (0, 2))  # the colour bar takes no image room
    assert abs(residual.width - picture.width) < 0.02 * picture.width
    assert abs(residual.height - picture.height) < 0.02 * picture.height
