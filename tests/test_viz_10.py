"""Notebook 10's figure draws one line per method at the measured points and rejects malformed input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lora_edu import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_throughput_lines_sit_at_the_measurements_and_the_slider_marks_k():
    data = {"merged": {1: 50.0}, "grouped": {1: 40.0, 2: 30.0, 4: 20.0}, "gathered": {1: 35.0, 2: 34.0, 4: 33.0}}
    ax = viz.plot_serving_throughput(data, k=2).axes[0]
    lines = [line for line in ax.lines if line.get_label() in data]
    assert [line.get_label() for line in lines] == list(data)
    assert list(lines[1].get_ydata()) == [40.0, 30.0, 20.0]
    assert [t.get_text() for t in ax.texts] == ["30", "34"]  # the merged model has no k = 2 point
    assert [t.get_horizontalalignment() for t in ax.texts] == ["left", "right"]  # close values, opposite sides
    assert lines[0].get_markerfacecolor() == "none"  # merged, one point: hollow, gathered's k = 1 dot shows
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]


def test_spread_draws_each_points_slowest_to_fastest_pass():
    data = {"grouped": {1: 40.0, 2: 30.0}, "gathered": {1: 35.0, 2: 34.0}}
    spread = {"grouped": {1: (36.0, 45.0), 2: (29.0, 31.0)}, "gathered": {1: (30.0, 36.0)}}
    ax = viz.plot_serving_throughput(data, spread=spread).axes[0]
    bars = [c for c in ax.collections if len(c.get_segments())]
    ends = [sorted((seg[0][1], seg[1][1])) for c in bars for seg in c.get_segments()]
    assert ends == [[36.0, 45.0], [29.0, 31.0], [30.0, 36.0]]  # gathered's k = 2 had no spread: no bar
    grouped, gathered = (line for line in ax.lines if line.get_label() in data)
    assert grouped.get_xdata()[0] < 1 < gathered.get_xdata()[0]  # nudged apart so bars do not overprint


def test_spread_of_one_pass_draws_even_when_the_median_rounds_outside_it():
    one_pass = 256 / 0.1  # fast mode: one pass, so the median is the slowest and the fastest pass
    data = {"grouped": {1: one_pass * (1 + 1e-7)}}  # a float32 median, a rounding error above its range
    viz.plot_serving_throughput(data, spread={"grouped": {1: (one_pass, one_pass)}})  # no negative-yerr error


def test_malformed_input_is_refused():
    with pytest.raises(ValueError, match="method -> {distinct adapters k"):
        viz.plot_serving_throughput({})
    with pytest.raises(ValueError, match="at least one k"):
        viz.plot_serving_throughput({"grouped": {}})
