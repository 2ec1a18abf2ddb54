"""Notebook 12's figures draw what they claim: bars at the mean with a dot per seed and counts of n, one row
per route with points on a log axis for trainable numbers and a dotted floor, a stored run's loss and field or
word accuracy, each labelled in its own unit."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lora_edu import viz  # noqa: E402


def test_quality_bars_are_means_with_a_dot_per_seed():
    scores = {"50 clean": {"LoRA": [0.8, 0.9], "full": [0.5]}, "500, 20% noisy": {"LoRA": [0.7, 0.7], "full": [0.6]}}
    ax = viz.plot_quality_quantity(scores, n_eval=40).axes[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [85.0, 70.0, 50.0, 60.0]  # LoRA's bars first, then full's
    assert [len(line.get_ydata()) for line in ax.lines] == [2, 2, 1, 1]
    texts = {t.get_text(): t for t in ax.texts}
    assert "32, 36 of 40 (seeds)" in texts and "20 of 40" in texts  # each seed's count: no mean of 34.0
    assert texts["32, 36 of 40 (seeds)"].xy[1] == 90.0  # above the higher seed's dot, not at the mean
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["LoRA", "full", "one seed"]
    ax.figure.canvas.draw()
    top_of_bars = ax.transData.transform((0, 100))[1]
    assert legend.get_window_extent().y0 >= top_of_bars - 1  # in the empty band above 100%, not over the bars
    with pytest.raises(ValueError, match="scores must map"):
        viz.plot_quality_quantity({"a": {}}, 40)
    plt.close("all")


def test_routes_figure_has_counts_a_floor_and_points_on_a_log_axis():
    rows = {"LoRA r=8": dict(word_accuracy=0.5, exact_match=0.1, train_time_s=60.0, trainable_params=2_442_240),
            "full": dict(word_accuracy=0.9, exact_match=0.6, train_time_s=120.0, trainable_params=134_515_008)}
    fig = viz.plot_routes(rows, n_eval=40, base={"word_accuracy": 0.0, "exact_match": 0.0},
                          floor=(0.374, "fixed answer"))
    words, times, params = fig.axes
    texts = [t.get_text() for t in words.texts]
    assert "4/40 exact" in texts and "50% of words" in texts
    assert {t.get_text(): t.xy[0] for t in words.texts}["4/40 exact"] == pytest.approx(37.4)  # right of the floor
    assert all(t.get_bbox_patch() is not None for t in fig.axes[0].texts)  # boxed: the floor's line stays behind
    assert words.lines[0].get_xdata()[0] == pytest.approx(37.4) and words.lines[0].get_linestyle() == ":"
    assert "fixed answer (37.4% of words)" in [t.get_text() for t in words.get_legend().get_texts()]
    assert "0/40 exact, 0% of the words" in words.get_title() and "of 40 sentences" in words.get_xlabel()
    assert params.get_xscale() == "log" and not params.patches  # points, not bars
    assert list(params.lines[0].get_xdata()) == [2_442_240, 134_515_008]
    assert len(viz.plot_routes(rows, n_eval=40).axes[0].lines) == 0  # no floor, no base: nothing drawn
    rows["LoRA r=8"]["pretrain_time_s"] = 20.0  # a CPT stage inside the training time is drawn and named
    times = viz.plot_routes(rows, n_eval=40).axes[1]
    assert "60 s (20 s CPT)" in [t.get_text() for t in times.texts] and len(times.patches) == 4
    with pytest.raises(ValueError, match="diverged"):
        viz.plot_routes({"x": dict(rows["full"], word_accuracy=None)}, 40)
    plt.close("all")


def test_run_detail_shows_loss_and_fields():
    row = {"losses": [2.0, 1.0, 0.5], "field_accuracy": {"name": 1.0, "age": 0.5}, "exact_match": 0.5, "n": 2,
           "word_accuracy": 0.7}
    loss_ax, acc_ax = viz.plot_run_detail(row, title="t", loss_label="training loss (own targets)").axes
    assert list(loss_ax.lines[0].get_ydata()) == [2.0, 1.0, 0.5] and loss_ax.get_ylabel() == "training loss (own targets)"
    assert [p.get_height() for p in acc_ax.patches] == [100.0, 50.0, 50.0]
    assert [t.get_text() for t in acc_ax.get_xticklabels()] == ["name", "age", "exact match"]
    assert [t.get_text() for t in acc_ax.texts] == ["2/2", "1/2", "1/2"]
    with pytest.raises(ValueError, match="losses"):
        viz.plot_run_detail({"losses": []})
    plt.close("all")


def test_run_detail_labels_word_accuracy_as_words_not_sentences():
    row = {"losses": [2.0, 1.0], "field_accuracy": None, "exact_match": 0.0, "n": 40, "word_accuracy": 0.301}
    _, acc_ax = viz.plot_run_detail(row).axes
    assert [t.get_text() for t in acc_ax.texts] == ["30.1% of words", "0/40"]
    assert [t.get_text() for t in acc_ax.get_xticklabels()] == ["word accuracy", "exact match"]
    assert acc_ax.get_ylabel() == "test set (%)"
    _, acc_ax = viz.plot_run_detail(row, floor=(0.374, "fixed answer")).axes
    assert acc_ax.lines[0].get_ydata()[0] == pytest.approx(37.4) and "fixed answer (37.4%)" in [
        t.get_text() for t in acc_ax.get_legend().get_texts()]
    plt.close("all")
