"""Notebook 03's figures draw what they claim: log-scale curves with floors, grouped singular-value bars."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lora_edu import viz  # noqa: E402
from lora_edu.toy import make_toy_task  # noqa: E402


def test_loss_curves_log_scale_with_floors():
    ax = viz.plot_loss_curves({"r=2": torch.tensor([30.0, 6.0, 5.0]), "r=4": torch.tensor([30.0, 1.0, 0.0])},
                              floors={"r=2": 5.0, "r=4": 0.0})
    assert ax.get_yscale() == "log"
    floors = [ln for ln in ax.lines if ln.get_linestyle() == ":" and len(ln.get_ydata()) == 2]
    assert len(floors) == 1 and floors[0].get_ydata()[0] == 5.0  # a zero floor is not drawn on a log axis
    assert min(ax.lines[2].get_ydata()) == pytest.approx(1e-12)  # an exact zero is clipped, not dropped
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["r=2", "r=4", "Eckart-Young floor (predicted)"]
    plt.close("all")


def test_loss_curves_count_steps_from_where_the_curve_starts():
    before = viz.plot_loss_curves({"toy": [3.0, 2.0, 1.0]})  # the toy task's curve starts before step 1
    assert list(before.lines[0].get_xdata()) == [0, 1, 2] and before.get_xlabel() == "training step"
    plt.close("all")
    train = viz.plot_loss_curves({"run": [3.0, 2.0]}, first_step=1, xlabel="optimizer step")  # training losses
    assert list(train.lines[0].get_xdata()) == [1, 2] and train.get_xlabel() == "optimizer step"
    plt.close("all")


def test_singular_value_bars_match_the_spectra():
    planted = torch.tensor([4.0, 3.0])
    learned = torch.diag(torch.tensor([3.9, 2.0, 0.0]))
    ax = viz.plot_singular_values(planted, {"learned": learned}, n=3)
    heights = [p.get_height() for p in ax.patches]
    assert heights[:3] == pytest.approx([4.0, 3.0, 0.0])  # planted, padded with zeros
    assert heights[3:] == pytest.approx([3.9, 2.0, 0.0])  # svdvals of the learned matrix, descending
    plt.close("all")


def test_toy_run_figure_trains_and_reports(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda: None)
    fig = viz.plot_toy_run(r=2, lora_alpha=8, steps=30, task=make_toy_task())
    left, right = fig.axes
    assert "floor 5" in left.get_title() and left.get_yscale() == "log"
    assert len(right.patches) == 2 * 6  # planted + learned, 6 indices each
    plt.close("all")
