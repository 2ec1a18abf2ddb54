"""Notebook 05's figures draw what they say (bars, histograms, labels) and reject malformed input clearly."""

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


def test_latency_bars_sit_at_the_medians_in_ms():
    times = {"base": [0.010, 0.012, 0.011], "unmerged": [0.020, 0.022, 0.021, 0.030], "merged": [0.011]}
    ax = viz.plot_latency(times)
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([11.0, 21.5, 11.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["base", "unmerged", "merged"]
    texts = [t.get_text() for t in ax.texts]
    assert "(1.00x)" in texts[0] and "(1.95x)" in texts[1]
    assert "ms" in ax.get_ylabel()


def test_latency_labels_sit_above_every_dot():
    """A slow pass above the 75th percentile must not run into the median's label (notebook 05's figure did)."""
    times = {"base": [0.010, 0.011, 0.012, 0.013, 0.020], "merged": [0.010, 0.011]}
    ax = viz.plot_latency(times)
    ax.figure.canvas.draw()
    dots = ax.get_lines()  # the errorbar's line, then each bar's dots
    for label, dot in zip(ax.texts, [d for d in dots if d.get_marker() == "o"], strict=True):
        top_dot = ax.transData.transform((0, max(dot.get_ydata())))[1]
        assert label.get_window_extent().y0 > top_dot


@pytest.mark.parametrize("times", [{}, {"base": []}, {"base": [0.1, float("nan")]}, {"base": [-1.0]}])
def test_latency_rejects_bad_times(times):
    with pytest.raises(ValueError, match="times"):
        viz.plot_latency(times)


def test_merge_rounding_histogram_one_per_dtype_with_vanished_share():
    weight = torch.full((4, 4), 0.5)
    delta = torch.full((4, 4), 1e-3)  # all vanish in bf16, none in fp32
    ax = viz.plot_merge_rounding(weight, delta, bins=10)
    labels = ax.get_legend_handles_labels()[1]
    assert labels[-1] == "half a spacing: smaller entries round away"
    assert "bfloat16: 100.0% of n = 16 entries vanish" in labels and "float32: 0.0% of n = 16 entries vanish" in labels
    assert len(ax.patches) == 20  # 10 bins per dtype
    assert ax.get_lines()[0].get_xdata()[0] == -1
    ax.figure.canvas.draw()  # the legend sits in the head room, above the tallest bar
    tallest = max(ax.patches, key=lambda p: p.get_height())
    assert ax.get_legend().get_window_extent().y0 > tallest.get_window_extent().y1


def test_merge_rounding_histogram_keeps_a_fixed_x_axis():
    weight = torch.full((4, 4), 0.5)
    ax = viz.plot_merge_rounding(weight, torch.full((4, 4), 1e-3), bins=10, xlim=(-20, 30))
    assert ax.get_xlim() == (-20, 30)
    ax = viz.plot_merge_rounding(weight, torch.full((4, 4), 1e6), bins=10, xlim=(-20, 30))  # beyond the axis
    assert ax.get_xlim() == (-20, 30) and sum(p.get_height() for p in ax.patches) == 32  # clamped, none lost
    ax = viz.plot_merge_rounding(weight, torch.full((4, 4), 1e12), bins=10, xlim=(-20, 30))  # all beyond it
    assert sum(p.get_height() for p in ax.patches) == 32


def test_merge_rounding_histogram_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        viz.plot_merge_rounding(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="all zero"):
        viz.plot_merge_rounding(torch.ones(2, 2), torch.zeros(2, 2))


def test_merge_rounding_histogram_skips_zero_weights():
    """A zero W0 entry has a subnormal 'gap' (fp32: 2^-149); drawing it would stretch the axis to infinity."""
    weight = torch.tensor([[0.5, 0.0], [0.25, 1.0]])
    delta = torch.full((2, 2), 1e-3)
    ax = viz.plot_merge_rounding(weight, delta, bins=5)
    low, high = ax.get_xlim()
    assert -10 < low and high < 30
