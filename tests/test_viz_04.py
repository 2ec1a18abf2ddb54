"""Notebook 04's figures and table show what they claim: counts and shares, loss and lr, MB per part, ✓/✗."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lora_edu import memory, viz  # noqa: E402


def test_trainable_bars_are_peft_shares_on_a_linear_axis_with_a_zoomed_panel():
    base = 1_000_000_000
    left, right = viz.plot_trainable_by_target({"q, v": 460_800, "all-linear": 2_442_240}, base)
    assert left.get_xscale() == right.get_xscale() == "linear"  # a bar's length is its share of the model
    # PEFT's share: trainable / all parameters, the adapter's own included; full fine-tuning trains all of them
    assert [p.get_width() for p in left.patches] == pytest.approx(
        [100 * 460_800 / (base + 460_800), 100 * 2_442_240 / (base + 2_442_240), 100.0])
    assert [t.get_text() for t in left.texts] == ["460,800 (0.05%)", "2,442,240 (0.24%)",
                                                  "1,000,000,000 (100.00%)"]
    assert [t.get_text() for t in left.get_yticklabels()] == ["q, v", "all-linear", "full fine-tuning"]
    assert len(right.patches) == 2 and right.get_xlim()[1] < 1.0  # the adapters alone, zoomed in
    left.figure.canvas.draw()  # every label inside its axes, the long bar's too (it used to be cut at the right)
    for ax in (left, right):
        inside = ax.get_window_extent()
        assert all(t.get_window_extent().x1 <= inside.x1 for t in ax.texts)
    plt.close("all")
    (only,) = viz.plot_trainable_by_target({"q, v": 460_800}, base, full_finetuning=False)
    assert [p.get_width() for p in only.patches] == pytest.approx([100 * 460_800 / (base + 460_800)])
    plt.close("all")


def test_training_loss_plots_each_run_and_the_lr():
    history = [{"step": s, "loss": 2.0 / (s + 1), "lr": 1e-3 * min(1, (s + 1) / 2)} for s in range(5)]
    ax = viz.plot_training_loss({"a": history, "b": history[:3]})
    assert ax.get_yscale() == "log" and len(ax.lines) == 2
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3, 4, 5]  # steps counted from 1
    assert list(ax.lines[1].get_ydata()) == pytest.approx([2.0, 1.0, 2 / 3])
    twin = [a for a in ax.figure.axes if a is not ax][0]
    assert list(twin.lines[0].get_ydata()) == pytest.approx([h["lr"] for h in history])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a", "b", "learning rate (right axis)"]
    ax.figure.canvas.draw()  # the legend sits above the highest point of the lr line, not over it
    top_of_lr = twin.transData.transform((1, max(h["lr"] for h in history)))[1]
    assert ax.get_legend().get_window_extent().y0 > top_of_lr
    plt.close("all")
    ax = viz.plot_training_loss({"a": history}, show_lr=False)
    assert len(ax.figure.axes) == 1
    plt.close("all")


def test_memory_comparison_stacks_the_parts_in_mb():
    full = memory.training_memory(1e8, "full", weight_bits=32)
    lora = memory.training_memory(1e8, "lora", weight_bits=32, lora_params=1e6)
    ax = viz.plot_memory_comparison({"full": full, "LoRA": lora}, measured={"LoRA": lora.total})
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["weights", "LoRA weights", "gradients", "optimizer states"]  # zero parts left out
    tops = {}
    for patch in ax.patches:
        x = round(patch.get_x() + patch.get_width() / 2)
        tops[x] = max(tops.get(x, 0), patch.get_y() + patch.get_height())
    assert tops[0] == pytest.approx(1600.0) and tops[1] == pytest.approx(lora.total / 1e6)  # 16 B/param
    assert ax.texts[0].get_text() == "1,600.0 MB computed"
    # LoRA's parts above the weights (16 MB of a 1,920 MB axis) are too thin to see, so the label lists them
    assert ax.texts[1].get_text() == (f"{lora.total / 1e6:,.1f} MB computed\n{lora.total / 1e6:,.1f} MB measured\n"
                                      "the thin top, above the weights:\nLoRA weights 4.0 MB\ngradients 4.0 MB\n"
                                      "optimizer states 8.0 MB\n= 16.0 MB")
    plt.close("all")


def test_generations_table_rows_escape_and_mark_exact_matches():
    examples = [{"sentence": "Ada, 30, is a | pilot.", "prompt": "p", "target": '{"name": "Ada"}'},
                {"prompt": "only a prompt", "target": "x"}]
    table = viz.generations_table(examples, ['{\n  "name": "Ada"\n}', "<b>"], ['{"name": "Ada"}', "y" * 200],
                                  max_chars=50)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| sentence | base model | after LoRA | target")
    assert "&#124;" in lines[2] and "⏎" in lines[2] and lines[2].endswith("| ✓ |")  # | escaped, newline shown
    assert '"name"' in lines[2]  # quotes stay readable
    assert "&lt;b&gt;" in lines[3] and "y" * 49 + "…" in lines[3] and lines[3].endswith("| ✗ |")
    assert "only a prompt" in lines[3]  # no sentence field: the prompt is shown


def test_generations_table_names_its_input_column_after_the_examples():
    table = viz.generations_table([{"question": "Where is Veldara?", "prompt": "p", "target": "north"}],
                                  ["south"], ["north"])
    assert table.splitlines()[0].startswith("| question | base model |") and "Where is Veldara?" in table
    table = viz.generations_table([{"prompt": "only a prompt", "target": "x"}], ["a"], ["x"])
    assert table.splitlines()[0].startswith("| prompt | base model |")


def test_generations_table_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        viz.generations_table([{"prompt": "p", "target": "t"}], ["a", "b"], ["c"])


def test_adapter_strength_counts_k_of_n_and_rings_the_current_strength():
    results = {0.0: {"n": 4, "exact_match": 0.0, "valid_json": 0.5}, 1.0: {"n": 4, "exact_match": 1.0, "valid_json": 1.0},
               2.0: {"n": 4, "exact_match": 0.25, "valid_json": 0.75}}
    ax = viz.plot_adapter_strength([0.0, 1.0, 2.0], results, 2.0)
    valid, valid_ring, exact, exact_ring = ax.lines[:4]  # exact match drawn last, on top
    assert exact.get_ydata().tolist() == [0, 4, 1] and valid.get_ydata().tolist() == [2, 4, 3]  # counts of n = 4
    assert (exact_ring.get_xdata()[0], exact_ring.get_ydata()[0]) == (2.0, 1)
    assert ax.get_ylabel() == "test examples (of n = 4)"
    ax.figure.canvas.draw()  # the legend sits below the axes, off the curves
    assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0
    with pytest.raises(ValueError, match="was not measured"):
        viz.plot_adapter_strength([0.0, 1.0], results, 0.5)
    plt.close("all")
