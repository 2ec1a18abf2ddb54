"""Notebook 09's figures draw what they claim: curves against the rank, and the three-panel comparison."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lora_edu import viz  # noqa: E402


def test_against_rank_skips_missing_points_and_draws_reference():
    ax = viz.plot_against_rank([1, 4, 16], {"alpha/r": [1.0, 0.5, 0.25], "rsLoRA": [1.0, None, 1.0]},
                               reference={"slope -1/2": [1.0, 0.5, 0.25]})
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert list(ax.lines[1].get_xdata()) == [1, 16]  # the None point is left out, not drawn at 0
    assert ax.lines[2].get_linestyle() == ":"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4", "16"]
    plt.close("all")


def test_variant_comparison_panels():
    fig = viz.plot_variant_comparison({"LoRA": [1.0, 0.1], "full": [1.0, 0.5]},
                                      {"base model": 0.25, "LoRA": 1.0, "full": 0.5},
                                      {"LoRA": 1000, "full": 10**8}, threshold=0.2, n_eval=4)
    loss_ax, acc_ax, params_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and len(loss_ax.lines) == 3  # two curves + the threshold
    assert [p.get_width() for p in acc_ax.patches] == pytest.approx([25.0, 100.0, 50.0])
    assert [t.get_text() for t in acc_ax.texts] == ["25% (1/4)", "100% (4/4)", "50% (2/4)"]  # n beside each %
    # counts on a log axis are dots, not bars (a bar's length there means nothing)
    assert params_ax.get_xscale() == "log" and not params_ax.patches
    assert params_ax.collections[0].get_offsets()[:, 0].tolist() == [1000, 10**8]
    fig.canvas.draw()  # the loss legend sits below the loss axes, off the curves
    assert loss_ax.get_legend().get_window_extent().y1 < loss_ax.get_window_extent().y0
    # one colour per variant across the panels: LoRA's bar matches LoRA's curve
    assert acc_ax.patches[1].get_facecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb(loss_ax.lines[0].get_color()))
    # the first training loss is optimizer step 1; crossing curves differ in dash as well as colour
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2]
    assert loss_ax.lines[0].get_linestyle() != loss_ax.lines[1].get_linestyle()
    low, high = params_ax.get_xlim()  # no dot on the axis' edge
    assert low < 1000 and high > 10**8
    plt.close("all")


def test_variant_comparison_refuses_empty():
    with pytest.raises(ValueError, match="non-empty"):
        viz.plot_variant_comparison({}, {"a": 1.0}, {"a": 1})


def test_first_adam_step_scales_with_alpha_and_rings_the_rank():
    unit = {"alpha / r": [(1.0, -2.0), (0.5, -2.0)], "rsLoRA": [(1.0, -2.0), (1.0, -4.0)]}
    fig = viz.plot_first_adam_step([1, 4], unit, r=4, alpha=16)
    size_ax, gain_ax = fig.axes
    rsl_line = size_ax.lines[1]
    assert rsl_line.get_ydata().tolist() == [16.0, 16.0]  # alpha x the unit values
    assert gain_ax.lines[0].get_ydata().tolist() == [32.0, 32.0]  # -<G, dW>, drawn positive
    rings = [ln for ln in size_ax.lines if ln.get_marker() == "o" and len(ln.get_xdata()) == 1]
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in rings] == [(4, 8.0), (4, 16.0)]
    assert size_ax.get_ylim() == pytest.approx((0.5 / 1.5, 64 * 1.0 * 1.5))  # fixed for every alpha in (1, 64)
    assert size_ax.get_legend() is None and fig.legends  # one legend, below both panels
    with pytest.raises(ValueError, match="not one of the measured ranks"):
        viz.plot_first_adam_step([1, 4], unit, r=2, alpha=1)
    plt.close("all")
