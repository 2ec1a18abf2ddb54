"""Notebook 02's figure functions draw the axes and lines they promise, and refuse mismatched inputs."""

import math
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lora_edu import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_init_distributions_one_histogram_per_sample_and_bound_lines():
    g = torch.Generator().manual_seed(0)
    samples = {"uniform": torch.rand(8, 64, generator=g) - 0.5, "gaussian": torch.randn(8, 64, generator=g)}
    fig = viz.plot_init_distributions(samples, bound=0.5)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 2  # one filled histogram per sample
    assert [line.get_xdata()[0] for line in ax.lines if len(line.get_xdata())] == [-0.5, 0.5]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("uniform") and labels[1].startswith("gaussian") and "0.5" in labels[2]


def test_plot_init_distributions_zoom_panel_keeps_the_density_scale():
    """The zoomed panel counts each bin against all of a sample's entries, so a uniform on [-0.5, 0.5] has
    density 1 there too (density=True would rescale it to the zoomed range only)."""
    values = torch.linspace(-0.5, 0.5, 30_001)[:-1]  # an exactly uniform sample
    fig = viz.plot_init_distributions({"uniform": values, "wide": 4 * values}, bound=0.5, zoom=0.75)
    assert len(fig.axes) == 2 and len(fig.legends) == 1  # one legend, under both panels
    zoomed = fig.axes[1]
    uniform_bars = [p for p in zoomed.patches][0]
    heights = uniform_bars.get_path().vertices[:, 1]
    assert heights.max() == pytest.approx(1.0, rel=0.01)
    assert zoomed.get_xlim() == (-0.75, 0.75)
    assert [line.get_xdata()[0] for line in zoomed.lines] == [-0.5, 0.5]  # the bound in both panels


def test_plot_scaling_curves_hold_both_rules():
    ranks = [1, 2, 4, 8, 16]
    fig = viz.plot_scaling(16, ranks)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    standard, rslora = fig.axes[0].lines
    assert list(standard.get_ydata()) == [16 / r for r in ranks]
    assert list(rslora.get_ydata()) == pytest.approx([16 / math.sqrt(r) for r in ranks])


def test_plot_scaling_with_change_panel_and_marked_rank():
    ranks = [1, 2, 4]
    fig = viz.plot_scaling(8, ranks, change={"standard": [0.3, 0.2, 0.1], "rsLoRA": [0.3, 0.3, 0.3]}, mark_r=2)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 4  # two curves and a marker on each at r = 2
    marked = [line.get_ydata()[0] for line in fig.axes[0].lines[1::2]]
    assert marked == pytest.approx([8 / 2, 8 / math.sqrt(2)])
    curves = fig.axes[1].lines[0::2]
    assert [list(line.get_ydata()) for line in curves] == [[0.3, 0.2, 0.1], [0.3, 0.3, 0.3]]
    assert [line.get_ydata()[0] for line in fig.axes[1].lines[1::2]] == [0.2, 0.3]  # r = 2 ringed there too
    assert fig.axes[0].get_legend()._loc == 3  # lower left: off the falling curves
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["2", "4", "8"]  # decimals, not 2^k


def test_plot_scaling_names_the_rules_as_the_change_panel_does():
    names = ["standard: lora_alpha/r", "rsLoRA: lora_alpha/sqrt(r)"]
    fig = viz.plot_scaling(16, [1, 4, 64], change=dict.fromkeys(names, [0.3, 0.2, 0.1]))
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == names
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0.25", "0.5", "1", "2", "4", "8", "16"]


def test_plot_output_change_panels_and_median():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 10, 6, generator=g)  # (batch, seq, out): flattened to 20 tokens
    delta = 0.1 * h  # every token changes by exactly 10%
    fig = viz.plot_output_change(h, delta, title="test", max_points=50)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    scatter = fig.axes[0].collections[0]
    assert len(scatter.get_offsets()) == 50
    median_line = fig.axes[1].lines[0]
    assert median_line.get_xdata()[0] == pytest.approx(0.1, rel=1e-5)
    assert fig._suptitle.get_text() == "test"


def test_plot_output_change_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        viz.plot_output_change(torch.zeros(4, 3), torch.zeros(4, 2))


def test_plot_output_change_handles_a_zero_update():
    """At step 0 (B = 0) every token's change is 0: the histogram must still draw, with its median at 0."""
    h = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    fig = viz.plot_output_change(h, torch.zeros_like(h))
    assert fig.axes[1].lines[0].get_xdata()[0] == 0.0


def test_lora_diagram_draws_both_paths_with_their_sizes():
    ax = viz.plot_lora_diagram(1536, 576, 8, 16)
    texts = " ".join(t.get_text() for t in ax.texts)
    for part in ("576 \u00d7 1536", "8 \u00d7 1536", "576 \u00d7 8", "frozen", "starts at 0", "r = 8", "scaling = ",
                 "= 2", "B^\\top"):  # a real multiplication sign, not the letter x of the input
        assert part in texts, part
    assert not re.search(r"\d x \d", texts)
    with pytest.raises(ValueError, match="positive int"):
        viz.plot_lora_diagram(1536, 576, 0, 16)
