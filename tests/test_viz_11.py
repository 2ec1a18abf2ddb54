"""Notebook 11's figures draw what they claim: bars per target set, the rank slider's two panels, phi with its
random baseline in the title."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from lora_edu import viz  # noqa: E402


def test_target_sets_bars_labels_and_base_line():
    results = {"q": {"answer_loss": 3.0, "exact_match": 0.1, "n": 10, "params": 622_080},
               "q,v": {"answer_loss": 2.0, "exact_match": 0.5, "n": 10, "params": 633_600}}
    ax = viz.plot_target_sets(results, base_loss=8.5).axes[0]
    assert [p.get_height() for p in ax.patches] == [3.0, 2.0]
    labels = [t.get_text() for t in ax.texts]
    assert labels[0] == "10% of 10\n622k params" and labels[1].startswith("50% of 10")
    assert ax.lines[0].get_ydata()[0] == 8.5  # the base model's loss as a dotted line
    results["q"]["exact_match"] = "1 and 2 of 10"  # a mean of two seeds is labelled by its counts
    assert viz.plot_target_sets(results).axes[0].texts[0].get_text() == "1 and 2 of 10\n622k params"
    plt.close("all")


def test_rank_run_marks_the_chosen_rank_and_draws_its_spectrum():
    spectra = {1: torch.tensor([2.0, 1e-9]), 8: torch.linspace(3, 1, 8)}
    fig = viz.plot_rank_run([1, 8], [3.0, 2.5], spectra, r=8)
    left, right = fig.axes
    assert list(left.lines[1].get_xdata()) == [8] and list(left.lines[1].get_ydata()) == [2.5]
    assert len(right.lines[0].get_xdata()) == 8 and right.lines[1].get_xdata()[0] == 8
    left = viz.plot_rank_run([1, 8], [3.0, 2.5], spectra, r=8, base_loss=8.4, title="mean of 2 seeds").axes[0]
    assert left.lines[-1].get_ydata()[0] == 8.4 and left.get_title() == "mean of 2 seeds" and left.get_ylim()[1] > 8.4
    plt.close("all")


def test_phi_title_gives_the_value_and_the_random_baseline():
    grid = torch.full((8, 64), 0.25)
    grid[0, 0] = 0.75
    grid[1, 1] = 0.064
    fig = viz.plot_phi(grid, 1, 1, k=576, title="q_proj")
    assert "phi(1, 1) = 0.750; random subspaces: 0.0017 (432.0x chance)" in fig.axes[0].get_title()
    fig = viz.plot_phi(grid, 20, 64, k=576)  # i beyond the grid is clipped to its last row
    assert "phi(8, 64) = 0.250; random subspaces: 0.11 (2.2x chance)" in fig.axes[0].get_title()
    # 0.064 at a chance of 2/576 shows in its own colour on the log scale, not as dark as chance
    image = fig.axes[0].images[0]
    assert image.norm.vmin == 1 / 576 and image.norm(0.064) > 0.4 and image.norm(1 / 576) == 0
    assert "phi(2, 2) = 0.064; random subspaces: 0.0035 (18.4x chance)" in viz.plot_phi(grid, 2, 2, k=576).axes[0].get_title()
    plt.close("all")


def test_energy_names_its_matrix_in_the_label():
    ax = viz.plot_energy({"a": torch.tensor([3.0, 1.0])}, matrix=r"\Delta W")
    assert ax.get_ylabel() == r"energy in the top k (fraction of $\|\Delta W\|_F^2$)"
    assert "$\\|W\\|_F^2$" in viz.plot_energy({"a": torch.tensor([1.0])}).get_ylabel()
    plt.close("all")
