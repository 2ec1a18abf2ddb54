"""Figures for notebooks/08_gpu_finetune.ipynb: the configuration table as a figure, the rank sweep, and
the runs as a Markdown table (rows of lora_edu.experiments)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker

from .core import style

# --- notebook 08 ---
# Figures for notebooks/08_gpu_finetune.ipynb: the configuration table as one figure (accuracy, answer loss,
# time, memory per run), the rank sweep (exact match and answer loss against r, log2 axis, both tasks), and
# the runs as a Markdown table. All take the row dicts of ``lora_edu.experiments`` (``RunResult.row``).

def _check_rows(rows, keys, what: str):
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError(f"{what} needs a non-empty list of rows from lora_edu.experiments (run_config(...).row "
                         "or rank_sweep(...)).")
    for i, row in enumerate(rows):
        missing = [k for k in keys if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"rows[{i}] lacks {missing}: pass the rows that lora_edu.experiments makes.")


def plot_run_summary(rows: list[dict], title: str = "Fine-tuning runs: what each configuration bought and cost"):
    """Four panels of horizontal bars, one bar (pair) per run: exact match before/after (each value printed,
    so a 0% bar still reads; the after value with its n), answer loss before/after (three decimals), training
    time (annotated with tokens/s) and peak GPU memory ("n/a (CPU)" without a GPU). Returns the figure."""
    import numpy as np

    keys = ("label", "exact_match_before", "exact_match_after", "answer_loss_before", "answer_loss_after",
            "train_time_s", "tokens_per_s", "peak_memory_bytes", "n_eval")
    _check_rows(rows, keys, "plot_run_summary")
    labels, y, h = [row["label"] for row in rows], np.arange(len(rows)), 0.38

    def vals(key, scale=1.0):
        return [np.nan if row[key] is None else scale * float(row[key]) for row in rows]

    with style():
        fig, axes = plt.subplots(1, 4, figsize=(16, 1.0 + 0.55 * len(rows)), sharey=True)
        for ax, key, unit, scale in ((axes[0], "exact_match", "exact match (%)", 100.0),
                                     (axes[1], "answer_loss", "answer loss (nats per token)", 1.0)):
            before, after = vals(f"{key}_before", scale), vals(f"{key}_after", scale)
            ax.barh(y - h / 2, before, h, color="C7", label="before")
            ax.barh(y + h / 2, after, h, color="C0", label="after")
            for offset, values, color in ((-h / 2, before, "dimgray"), (h / 2, after, "black")):
                for yi, v, row in zip(y, values, rows, strict=True):
                    if np.isnan(v):
                        continue
                    text = f"{v:.3f}" if scale == 1 else f"{v:.0f}%" + (f" of n = {row['n_eval']}" if offset > 0 else "")
                    ax.annotate(text, (v, yi + offset), xytext=(3, 0), textcoords="offset points", va="center",
                                fontsize=8, color=color)
            ax.set_xlabel(unit)
        handles, names = axes[0].get_legend_handles_labels()  # one legend for both panels, outside the data
        fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8, bbox_to_anchor=(0.3, 0.0))
        axes[0].set_xlim(0, 150)
        axes[0].set_xticks([0, 25, 50, 75, 100])  # room for the labels, no ticks past 100%
        axes[1].set_xlim(0, np.nanmax(vals("answer_loss_before") + vals("answer_loss_after") + [1.0]) * 1.35)
        times = vals("train_time_s")
        axes[2].barh(y, times, 0.6, color="C2")
        for yi, t, row in zip(y, times, rows, strict=True):
            if not np.isnan(t):
                axes[2].annotate(f"{t:.0f} s, {row['tokens_per_s'] or 0:,.0f} tok/s", (t, yi), xytext=(3, 0),
                                 textcoords="offset points", va="center", fontsize=8)
        axes[2].set_xlim(0, np.nanmax(times + [1.0]) * 1.8)
        axes[2].set_xlabel("training time (s)")
        memory = vals("peak_memory_bytes", 2.0**-30)
        axes[3].barh(y, np.nan_to_num(memory), 0.6, color="C3")
        for yi, m in zip(y, memory, strict=True):
            axes[3].annotate("n/a (CPU)" if np.isnan(m) else f"{m:.2f} GiB", (0 if np.isnan(m) else m, yi),
                             xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        axes[3].set_xlim(0, max(np.nan_to_num(memory).max(), 0.5) * 1.6)
        axes[3].set_xlabel("peak GPU memory in training (GiB)")
        if all(np.isnan(memory)):  # nothing measured (a CPU): no scale to read
            axes[3].set_xticks([])
            axes[3].set_xlabel("peak GPU memory: not measured on a CPU")
        axes[0].set_yticks(y, labels)
        axes[0].invert_yaxis()
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_rank_sweep(rows: list[dict], title: str = "The rank sweep: everything fixed but r",
                    highlight: tuple | None = None):
    """Exact match (top) and answer loss (bottom) after training against r (log2 x axis), one column per task.

    LoRA with lora_alpha = 2r: the mean over seeds (line) and each seed (dots); rsLoRA rows as a second line;
    the base model (every row's "before") as a dotted line. Diverged or unmeasured runs leave gaps.
    ``highlight=(task, r)`` rings that task's LoRA mean at rank r (notebook 08's sweep browser).
    Returns the figure.
    """
    keys = ("task", "r", "use_rslora", "exact_match_after", "answer_loss_after", "exact_match_before",
            "answer_loss_before")
    _check_rows(rows, keys, "plot_rank_sweep")
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    ranks = sorted({row["r"] for row in rows})
    if highlight is not None and (highlight[0] not in tasks or highlight[1] not in ranks):
        raise ValueError(f"highlight={highlight!r} is not in the sweep: tasks {tasks}, ranks {ranks}.")
    metrics = (("exact_match", "exact match after training (%)", 100.0),
               ("answer_loss", "answer loss after training (log scale)", 1.0))
    with style():
        fig, axes = plt.subplots(2, len(tasks), figsize=(5.5 * len(tasks), 7), squeeze=False)
        for col, task in enumerate(tasks):
            task_rows = [row for row in rows if row["task"] == task]
            for line, (key, ylabel, scale) in enumerate(metrics):
                ax = axes[line, col]
                for rslora, style_, name in ((False, "o-", "LoRA, alpha = 2r"), (True, "s--", "rsLoRA, alpha = 2r")):
                    # rsLoRA's squares are hollow and larger, so a LoRA point at the same place shows through
                    points = {}
                    for row in task_rows:
                        if row["use_rslora"] == rslora and row[f"{key}_after"] is not None:
                            points.setdefault(row["r"], []).append(scale * float(row[f"{key}_after"]))
                    if not points:
                        continue
                    rs = sorted(points)
                    means = [sum(points[r]) / len(points[r]) for r in rs]
                    (mean_line,) = ax.plot(rs, means, style_, label=name,
                                           **({"ms": 10, "mfc": "none", "mew": 1.5} if rslora else {}))
                    if highlight is not None and not rslora and highlight[0] == task and highlight[1] in rs:
                        ax.plot([highlight[1]], [means[rs.index(highlight[1])]], "o", ms=15, mfc="none", mew=2,
                                color=mean_line.get_color())
                    seeds = [(r, v) for r in rs for v in points[r]]
                    if len(seeds) > len(rs):  # several seeds: show each one
                        ax.plot(*zip(*seeds, strict=True), ".", color=mean_line.get_color(), alpha=0.4)
                base = [row[f"{key}_before"] for row in task_rows if row[f"{key}_before"] is not None]
                if base:
                    ax.axhline(scale * float(base[0]), color="gray", ls=":", label="base model (before)")
                ax.set_xscale("log", base=2)
                ax.set_xticks(ranks, [str(r) for r in ranks])
                ax.minorticks_off()
                ax.set_xlabel("rank r")
                ax.set_ylabel(ylabel)
                if key == "exact_match":
                    ax.set_ylim(-5, 105)
                    n = task_rows[0].get("n_eval")
                    ax.set_title(f"{task} task" + (f" (n = {n} test examples)" if n else ""), fontsize=11)
                else:  # losses span 0.01 .. 10 nats: a log axis shows both ends, in plain numbers
                    ax.set_yscale("log")
                    plain = mticker.FuncFormatter(lambda v, _: f"{v:g}")
                    ax.yaxis.set_major_formatter(plain)
                    low, high = ax.get_ylim()  # within one decade the minor ticks are the only labels: number them
                    ax.yaxis.set_minor_formatter(plain if high / low < 10 else mticker.NullFormatter())
                ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def format_memory(n_bytes: int | None) -> str:
    """Peak GPU memory for a table: "1.23 GiB", or "n/a (CPU)" where there is no GPU reading (None)."""
    return "n/a (CPU)" if n_bytes is None else f"{n_bytes / 2**30:.2f} GiB"


def runs_table(rows: list[dict]) -> str:
    """A Markdown table of runs (``lora_edu.experiments`` rows): wall and training time, tokens/s, peak GPU
    memory, exact match before -> after with the number of test examples n, answer loss before -> after,
    trainable parameters. Show it with ``display(Markdown(...))``."""
    keys = ("label", "wall_time_s", "train_time_s", "tokens_per_s", "peak_memory_bytes", "exact_match_before",
            "exact_match_after", "answer_loss_before", "answer_loss_after", "trainable_params", "total_params",
            "n_eval")
    _check_rows(rows, keys, "runs_table")

    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    lines = ["| run | wall time | train time | tokens/s | peak GPU memory | exact match before → after | "
             "answer loss before → after | trainable params |", "|" + "---|" * 8]
    for row in rows:
        share = 100 * row["trainable_params"] / row["total_params"]
        lines.append(f"| {row['label']} | {num(row['wall_time_s'], '.0f')} s | {num(row['train_time_s'], '.0f')} s "
                     f"| {num(row['tokens_per_s'], ',.0f')} | {format_memory(row['peak_memory_bytes'])} "
                     f"| {num(row['exact_match_before'], '.0%')} → {num(row['exact_match_after'], '.0%')} "
                     f"(n = {row['n_eval']}) "
                     f"| {num(row['answer_loss_before'], '.3f')} → {num(row['answer_loss_after'], '.3f')} "
                     f"| {row['trainable_params']:,} ({share:.2f}%) |")
    return "\n".join(lines)
