"""Figures of notebook 12 (the seed's advice, tested): quality against quantity, the training routes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from .core import style


def plot_quality_quantity(scores: dict, n_eval: int, metric: str = "exact match",
                          title: str = "Clean and small, or large and noisy? Same steps for every run"):
    """Grouped bars: ``scores[condition][method]`` is a list of values in [0, 1] (one per seed); the bar is
    the mean, each seed a black dot, each seed's count of ``n_eval`` printed above the highest seed (a mean of
    counts, such as 34.5, is no count a run scored). The
    legend sits in the band above 100%. Returns the figure."""
    if not scores or not all(isinstance(v, dict) and v for v in scores.values()):
        raise ValueError("scores must map each condition to {method: [values per seed]}.")
    conditions = list(scores)
    methods = list(dict.fromkeys(m for v in scores.values() for m in v))
    width = 0.8 / len(methods)
    with style():
        fig, ax = plt.subplots(figsize=(2.4 + 2.2 * len(conditions), 4.2))
        for j, method in enumerate(methods):
            x = np.arange(len(conditions)) + (j - (len(methods) - 1) / 2) * width
            means = [np.mean(scores[c][method]) if scores[c].get(method) else np.nan for c in conditions]
            ax.bar(x, 100 * np.array(means), width * 0.92, color=f"C{j}", label=method)
            for xi, c, m in zip(x, conditions, means, strict=True):
                values = scores[c].get(method) or []
                ax.plot([xi] * len(values), [100 * v for v in values], "o", color="k", ms=3.5, zorder=3)
                if not np.isnan(m):  # the label goes above the highest dot, so no dot covers it
                    counts = ", ".join(f"{v * n_eval:.0f}" for v in values)  # each seed's count, not the mean
                    ax.annotate(f"{counts} of {n_eval}" + (" (seeds)" if len(values) > 1 else ""),
                                (xi, 100 * max(m, *values)), xytext=(0, 5), textcoords="offset points",
                                ha="center", fontsize=8)
        ax.set_xticks(np.arange(len(conditions)), conditions)
        ax.set_ylim(0, 118)
        ax.set_ylabel(f"{metric} on the clean test set (%)")
        ax.set_title(title, fontsize=11)
        seed_dot = Line2D([], [], marker="o", ls="", color="k", ms=3.5, label="one seed")
        ax.legend(handles=[*ax.get_legend_handles_labels()[0], seed_dot], loc="upper center",
                  ncol=len(methods) + 1, fontsize=9, framealpha=0.95)
        fig.tight_layout()
    return fig


def plot_routes(rows: dict, n_eval: int, base: dict | None = None, floor: tuple | None = None,
                title: str = "A new language: what each route learned, and what it cost"):
    """One row per route (``rows``: label -> run_route row): word accuracy and exact match on the ``n_eval``
    test sentences, training time, trainable numbers (points on a log axis). ``base``: the model's scores
    before fine-tuning, written above the first panel; ``floor = (word_accuracy, label)``: a reference for
    word accuracy (such as a fixed answer), drawn as a dotted line. Returns the figure."""
    need = ("word_accuracy", "exact_match", "train_time_s", "trainable_params")
    for label, row in rows.items():
        missing = [k for k in need if row.get(k) is None]
        if missing:
            raise ValueError(f"row {label!r} lacks {missing} (a diverged run has no scores); leave it out.")
    labels, y = list(rows), np.arange(len(rows))
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(14, 1.4 + 0.5 * len(rows)), sharey=True)
        h = 0.38
        word = [100 * rows[k]["word_accuracy"] for k in labels]
        exact = [100 * rows[k]["exact_match"] for k in labels]
        axes[0].barh(y - h / 2, word, h, color="C0", label="word accuracy")
        axes[0].barh(y + h / 2, exact, h, color="C1", label=f"exact match (of {n_eval})")
        clear = 100 * floor[0] if floor is not None else 0  # labels start right of the floor's line, never on it
        for yi, w, e in zip(y, word, exact, strict=True):
            axes[0].annotate(f"{w:.0f}% of words", (max(w, clear), yi - h / 2), xytext=(3, 0), textcoords="offset points",
                             va="center", fontsize=8, zorder=4,  # a white box: the floor's line may cross the label
                             bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=0.3))
            axes[0].annotate(f"{e * n_eval / 100:.0f}/{n_eval} exact", (max(e, clear), yi + h / 2), xytext=(3, 0),
                             textcoords="offset points", va="center", fontsize=8, zorder=4,  # boxed, as above
                             bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=0.3))
        if floor is not None:
            value, floor_label = floor
            axes[0].axvline(100 * value, color="k", ls=":", lw=1.5, label=f"{floor_label} ({100 * value:.1f}% of words)")
        if base is not None:
            axes[0].set_title(f"base model: {base['exact_match'] * n_eval:.0f}/{n_eval} exact, "
                              f"{100 * base['word_accuracy']:.0f}% of the words", fontsize=9)
        axes[0].set_xlim(0, 118)
        axes[0].set_xlabel(f"% (word accuracy: of the words; exact match: of {n_eval} sentences)")
        axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3 if floor else 2, fontsize=8,
                       frameon=False)
        times = [rows[k]["train_time_s"] for k in labels]
        before = [rows[k].get("pretrain_time_s") or 0.0 for k in labels]  # a CPT stage, part of train_time_s
        axes[1].barh(y, times, 0.6, color="C2", label="training")
        if any(before):
            axes[1].barh(y, before, 0.6, color="C2", alpha=0.45, hatch="//", edgecolor="white", label="of which CPT")
            axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False)
        for yi, t, b in zip(y, times, before, strict=True):
            axes[1].annotate(f"{t:.0f} s" + (f" ({b:.0f} s CPT)" if b else ""), (t, yi), xytext=(3, 0),
                             textcoords="offset points", va="center", fontsize=8)
        axes[1].set_xlim(0, max(times) * 1.45)
        axes[1].set_xlabel("training time (s)")
        params = [rows[k]["trainable_params"] for k in labels]
        axes[2].plot(params, y, "o", color="C4")  # points, not bars: a bar's length means nothing on a log axis
        axes[2].set_xscale("log")
        for yi, p in zip(y, params, strict=True):
            axes[2].annotate(f"{p / 1e6:.1f} M", (p, yi), xytext=(5, 0), textcoords="offset points", va="center",
                             fontsize=8)
        axes[2].set_xlim(min(params) / 2, max(params) * 8)
        axes[2].set_xlabel("trainable numbers (log axis)")
        axes[0].set_yticks(y, labels)
        axes[0].invert_yaxis()
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_run_detail(row: dict, title: str = "", loss_label: str = "training loss", acc_label: str = "test set (%)",
                    floor: tuple | None = None):
    """One stored run: its training loss per step, and per-field accuracy (format task) or word accuracy, with
    exact match. Fields and exact match are counted per test example ("32/40"); word accuracy is a mean
    fraction of words ("30.1% of words"). ``floor = (word_accuracy, label)``: a reference drawn as a dotted line
    (such as a fixed answer's score). Returns the figure."""
    if not row.get("losses"):
        raise ValueError("row has no 'losses' (a diverged run, or not a run_route row).")
    with style():
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.4))
        ax_loss.plot(np.arange(1, len(row["losses"]) + 1), row["losses"], "o-", ms=3)
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel(loss_label)
        fields = row.get("field_accuracy")
        n = row.get("n", 0)
        names = list(fields) if fields else ["word accuracy"]
        values = [fields[k] for k in names] if fields else [row["word_accuracy"]]
        texts = [f"{v * n:.0f}/{n}" for v in values] if fields else [f"{100 * values[0]:.1f}% of words"]
        ax_acc.bar(names + ["exact match"], [100 * v for v in values] + [100 * row["exact_match"]],
                   color=["C0"] * len(names) + ["C1"])
        for i, (v, text) in enumerate(zip([*values, row["exact_match"]], [*texts, f"{row['exact_match'] * n:.0f}/{n}"],
                                          strict=True)):
            ax_acc.annotate(text, (i, 100 * v), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
        if floor is not None:
            ax_acc.axhline(100 * floor[0], color="k", ls=":", lw=1.5, label=f"{floor[1]} ({100 * floor[0]:.1f}%)")
            ax_acc.legend(loc="upper right", fontsize=8)
        ax_acc.set_ylim(0, 115)
        ax_acc.set_ylabel(acc_label)
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
    return fig
