"""Notebook 01's figure functions: the rank-k panel reads on a log axis, and long grid titles do not collide."""

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
    assert legend._loc == 3  # lower left
    plt.close("all")
