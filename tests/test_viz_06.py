"""Notebook 06's figures draw what they say (lines, bars, labels) and reject malformed input clearly."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lora_edu import quant, viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_weight_histogram_marks_absmax_and_std():
    w = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    w[7] = 25.0
    ax = viz.plot_weight_histogram(w, "toy")
    xs = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert xs[0] == pytest.approx(-25.0) and xs[-1] == pytest.approx(25.0)
    assert len(xs) == 4 and abs(xs[1]) == pytest.approx(float(w.std()), rel=1e-5)
    assert "toy" in ax.get_title() and ax.get_yscale() == "log"
    # the title measures the outlier in standard deviations, as the notebook's prose does; an outline, no bars
    assert f"{25.0 / float(w.std()):.1f} standard deviations" in ax.get_title()
    assert len(ax.patches) == 1 and not ax.patches[0].get_fill()


def test_weight_histogram_rejects_an_empty_weight():
    with pytest.raises(ValueError, match="empty"):
        viz.plot_weight_histogram(torch.empty(0))


def test_code_values_one_row_per_format_plus_histogram():
    codes = {"NF4": quant.nf4_code(), "FP4": quant.fp4_code()}
    fig = viz.plot_code_values(codes, sample=torch.rand(500) * 2 - 1)
    hist_ax, dots_ax = fig.axes
    assert len(hist_ax.patches) == 161
    rows = dots_ax.get_lines()
    assert [len(line.get_xdata()) for line in rows] == [16, 16]
    assert [t.get_text() for t in dots_ax.get_yticklabels()] == ["FP4", "NF4"]  # the first format on top
    assert list(rows[0].get_xdata()) == pytest.approx(quant.nf4_code().tolist())


def test_code_values_rejects_an_infinite_table():
    with pytest.raises(ValueError, match="finite"):
        viz.plot_code_values({"Eq. 4": quant.nf4_eq4_values()})


def test_format_errors_draws_one_bar_per_format_and_group():
    errors = {"int4": {"q": 0.11, "k": 0.12, "v": 0.10}, "NF4": {"q": 0.09, "k": 0.1, "v": 0.08}}
    ax = viz.plot_format_errors(errors)
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.11, 0.12, 0.10, 0.09, 0.1, 0.08])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["q", "k", "v"]
    assert ax.yaxis.get_major_formatter()(0.1, 0).startswith("10")  # fractions shown in percent


def test_format_errors_rejects_mismatched_groups():
    with pytest.raises(ValueError, match="same groups"):
        viz.plot_format_errors({"int4": {"q": 0.1}, "NF4": {"k": 0.1}})
    with pytest.raises(ValueError, match="empty"):
        viz.plot_format_errors({})


def test_error_vs_memory_rings_the_chosen_point():
    curves = {"int4": ([4.5, 4.25], [0.11, 0.13]), "NF4": ([4.5, 4.25], [0.09, 0.1])}
    ax = viz.plot_error_vs_memory(curves, chosen=(4.5, 0.09, "NF4, blocks of 64"))
    lines = ax.get_lines()
    assert len(lines) == 3 and list(lines[-1].get_xdata()) == [4.5]
    assert ax.get_yscale() == "log" and "NF4, blocks of 64" in [t.get_text() for t in ax.texts]


@pytest.mark.parametrize("corner", [(2.0078125, 0.5), (2.0078125, 0.002), (10.0, 0.5), (10.0, 0.002)])
def test_error_vs_memory_label_stays_inside_the_axes(corner):
    # notebook 06's slider labels a point anywhere on the grid; at int6 the box used to run out of the axes
    xs = [b + 32 / B for b in (2, 8) for B in (4096, 16)]
    curves = {"int2": (xs[:2], [0.5, 0.3]), "int8": (xs[2:], [0.004, 0.002])}
    x, y = corner
    ax = viz.plot_error_vs_memory(curves, chosen=(x, y, "int6, blocks of 64: 6.50 bits/weight, error 0.45%\nsecond line"))
    fig = ax.figure
    fig.canvas.draw()
    box = ax.texts[-1].get_window_extent(fig.canvas.get_renderer())
    inside = ax.get_window_extent()
    assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, (box, inside)
    plt.close(fig)


def test_error_vs_memory_rejects_ragged_curves():
    with pytest.raises(ValueError, match="one error per"):
        viz.plot_error_vs_memory({"int4": ([4.5, 4.25], [0.1])})


def test_error_vs_memory_label_covers_no_curve():
    # notebook 06's shape: error falls about 2x per extra bit, so the lower-left corner is empty
    blocks = (4096, 256, 64, 16)
    curves = {f"int{b}": ([b + 32 / B for B in blocks], [2.0 ** -b * (1 + 8 / B) for B in blocks]) for b in range(2, 9)}
    ax = viz.plot_error_vs_memory(curves, chosen=(4.5, 2.0 ** -4 * 1.125, "int4, blocks of 64\nNF4, same memory"))
    fig = ax.figure
    fig.canvas.draw()
    box = ax.texts[-1].get_bbox_patch().get_window_extent(fig.canvas.get_renderer())
    for line in ax.get_lines()[:-1]:  # every curve's points (the last line is the ring)
        for px, py in ax.transData.transform(line.get_xydata()):
            assert not (box.x0 <= px <= box.x1 and box.y0 <= py <= box.y1), (line.get_label(), px, py)
    plt.close(fig)


def test_weight_histogram_legend_sits_below_the_axes():
    import torch

    w = torch.randn(200, 50) * 0.1
    w[0, 0] = 5.0
    ax = viz.plot_weight_histogram(w, name="w")
    ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0  # off the bars and the lines
    plt.close(ax.figure)


def test_code_values_marks_draw_grey_lines_in_the_histogram():
    fig = viz.plot_code_values({"NF4": quant.nf4_code()}, sample=torch.rand(500) * 2 - 1,
                               marks={"1/15 inside the extreme": [-14 / 15, 14 / 15]})
    hist_ax = fig.axes[0]
    xs = sorted(line.get_xdata()[0] for line in hist_ax.get_lines())
    assert xs == pytest.approx([-14 / 15, 14 / 15])
    assert [t.get_text() for t in hist_ax.get_legend().get_texts()] == ["1/15 inside the extreme"]


def test_error_vs_memory_writes_point_labels_and_rejects_a_wrong_count():
    curves = {"int4": ([4.5, 4.25], [0.11, 0.13]), "NF4": ([4.5, 4.25], [0.09, 0.1])}
    ax = viz.plot_error_vs_memory(curves, point_labels={"NF4": ["B=64", "B=128"]})
    assert [t.get_text() for t in ax.texts] == ["B=64", "B=128"]
    with pytest.raises(ValueError, match="one text per point"):
        viz.plot_error_vs_memory(curves, point_labels={"NF4": ["B=64"]})
