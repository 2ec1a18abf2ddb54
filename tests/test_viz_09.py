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
                                      {"LoRA": 1000, "full": 10**8}, threshold=0.2)
    loss_ax, acc_ax, params_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and len(loss_ax.lines) == 3  # two curves + the threshold
    assert [p.get_width() for p in acc_ax.patches] == pytest.approx([25.0, 100.0, 50.0])
    assert params_ax.get_xscale() == "log" and [p.get_width() for p in params_ax.patches] == [1000, 10**8]
    # one colour per variant across the panels: LoRA's bar matches LoRA's curve
    assert acc_ax.patches[1].get_facecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb(loss_ax.lines[0].get_color()))
    plt.close("all")


def test_variant_comparison_refuses_empty():
    with pytest.raises(ValueError, match="non-empty"):
        viz.plot_variant_comparison({}, {"a": 1.0}, {"a": 1})
