"""Notebook 08's figures draw the rows they are given: the run summary and the rank sweep."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lora_edu import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def row(task="format", r=8, rslora=False, seed=0, em=(0.0, 1.0), loss=(1.2, 0.05), time=100.0, memory=None):
    return {"label": f"{task} r={r}{' rs' if rslora else ''}", "task": task, "r": r, "use_rslora": rslora,
            "seed": seed, "exact_match_before": em[0], "exact_match_after": em[1], "answer_loss_before": loss[0],
            "answer_loss_after": loss[1], "train_time_s": time, "tokens_per_s": 250.0,
            "peak_memory_bytes": memory, "n_eval": 12}


def test_run_summary_bars_and_cpu_memory_note():
    rows = [row(em=(0.0, 0.75)), row("knowledge", em=(0.0, None), loss=(9.0, None), time=50.0)]
    fig = viz.plot_run_summary(rows)
    acc, loss, time, memory = fig.axes
    assert [p.get_width() for p in acc.patches[2:]] == pytest.approx([75.0, float("nan")], nan_ok=True)
    assert [p.get_width() for p in loss.patches[:2]] == pytest.approx([1.2, 9.0])  # the "before" bars
    assert [p.get_width() for p in time.patches] == [100.0, 50.0]
    assert [t.get_text() for t in memory.texts] == ["n/a (CPU)", "n/a (CPU)"]
    assert list(memory.get_xticks()) == [] and "not measured" in memory.get_xlabel()  # no empty GiB scale
    assert [t.get_text() for t in acc.texts] == ["0%", "0%", "75% of n = 12"]  # a 0% bar still reads
    assert [t.get_text() for t in loss.texts] == ["1.200", "9.000", "0.050"]  # 0.004 would not print as 0.00
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["before", "after"]  # one legend, off the bars
    assert acc.get_legend() is None and loss.get_legend() is None and max(acc.get_xticks()) == 100
    assert [t.get_text() for t in acc.get_yticklabels()] == ["format r=8", "knowledge r=8"]


def test_run_summary_shows_gpu_memory_in_gib():
    fig = viz.plot_run_summary([row(memory=3 * 2**30)])
    assert fig.axes[3].patches[0].get_width() == pytest.approx(3.0)
    assert fig.axes[3].texts[0].get_text() == "3.00 GiB"


def test_rank_sweep_means_over_seeds_rslora_and_base_line():
    rows = [row(r=r, seed=s, em=(0.1, 0.2 * s + r / 100)) for r in (1, 8, 64) for s in (0, 1)]
    rows += [row(r=64, rslora=True, em=(0.1, 0.9)), row("knowledge", r=1, loss=(9.0, 3.0)),
             row("knowledge", r=64, loss=(9.0, None), em=(0.0, None))]  # a diverged run: a gap, not a point
    fig = viz.plot_rank_sweep(rows)
    assert len(fig.axes) == 4
    fmt_acc, know_acc, fmt_loss, know_loss = fig.axes  # row-major: exact match on top, loss below
    mean_line = fmt_acc.lines[0]
    assert list(mean_line.get_xdata()) == [1, 8, 64]
    assert list(mean_line.get_ydata()) == pytest.approx([11.0, 18.0, 74.0])  # 100 * mean over the two seeds
    assert len(fmt_acc.lines[1].get_xdata()) == 6  # each seed as a dot
    assert fmt_acc.lines[2].get_linestyle() == "--" and list(fmt_acc.lines[2].get_ydata()) == [90.0]
    assert fmt_acc.lines[2].get_markerfacecolor() == "none"  # hollow: a LoRA point under it shows through
    assert fmt_acc.lines[-1].get_ydata()[0] == pytest.approx(10.0)  # the base model, dotted
    assert list(know_loss.lines[0].get_xdata()) == [1]
    assert fmt_acc.get_xscale() == "log" and fmt_loss.get_yscale() == "log"
    assert [t.get_text() for t in fmt_acc.get_xticklabels()] == ["1", "8", "64"]
    assert know_acc.get_title() == "knowledge task (n = 12 test examples)"
    plt.close("all")
    fig = viz.plot_rank_sweep(rows, highlight=("format", 64))  # the sweep browser rings one (task, rank)
    rings = [ln for ln in fig.axes[0].lines if ln.get_markersize() == 15]
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in rings] == [(64, pytest.approx(74.0))]
    assert not [ln for ln in fig.axes[1].lines if ln.get_markersize() == 15]  # only the format column
    with pytest.raises(ValueError, match="not in the sweep"):
        viz.plot_rank_sweep(rows, highlight=("format", 16))
    plt.close("all")


def test_runs_table_and_memory_format():
    row = {"label": "format · LoRA r=8, alpha=16", "wall_time_s": 171.4, "train_time_s": 150.2,
           "tokens_per_s": 1234.5, "peak_memory_bytes": None, "exact_match_before": 0.0, "exact_match_after": 1.0,
           "answer_loss_before": 1.25, "answer_loss_after": None, "trainable_params": 2_442_240,
           "total_params": 136_957_248, "n_eval": 12}
    lines = viz.runs_table([row, {**row, "peak_memory_bytes": 3 * 2**30}]).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == 9 and lines[1] == "|" + "---|" * 8
    assert "| 171 s | 150 s | 1,234 | n/a (CPU) | 0% → 100% (n = 12) | 1.250 → - | 2,442,240 (1.78%) |" in lines[2]
    assert "| 3.00 GiB |" in lines[3]
    assert viz.format_memory(None) == "n/a (CPU)" and viz.format_memory(2**29) == "0.50 GiB"


@pytest.mark.parametrize("fn", [viz.plot_run_summary, viz.plot_rank_sweep, viz.runs_table])
@pytest.mark.parametrize("bad", [[], None, [{"task": "format"}]])
def test_bad_rows_get_a_clear_error(fn, bad):
    with pytest.raises(ValueError, match="lora_edu.experiments"):
        fn(bad)
