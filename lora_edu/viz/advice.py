"""Figures of notebook 12 (the seed's advice, tested): quality against quantity, the training routes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .core import style


def plot_quality_quantity(scores: dict, n_eval: int, metric: str = "exact match",
                          title: str = "Clean and small, or large and noisy? Same steps for every run"):
    """Grouped bars: ``scores[condition][method]`` is a list of values in [0, 1] (one per seed); the bar is
    the mean, each seed a dot, the mean printed as a count of ``n_eval``. Returns the figure."""
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
                if not np.isnan(m):
                    seeds = f" ({len(values)} seeds)" if len(values) > 1 else ""
                    ax.annotate(f"{m * n_eval:.1f}/{n_eval}{seeds}" if len(values) > 1 else f"{m * n_eval:.0f}/{n_eval}",
                                (xi, 100 * m), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
        ax.set_xticks(np.arange(len(conditions)), conditions)
        ax.set_ylim(0, 118)
        ax.set_ylabel(f"{metric} on the clean test set (%)")
        ax.set_title(title, fontsize=11)
        ax.legend(loc="lower left", fontsize=9, framealpha=0.95)
        fig.tight_layout()
    return fig


def plot_routes(rows: dict, n_eval: int, base: dict | None = None,
                title: str = "A new language: what each route learned, and what it cost"):
    """One bar per route (``rows``: label -> run_route row): word accuracy and exact match on the test
    sentences, training time, trainable numbers (log axis). ``base``: the untrained model's scores, drawn as
    a dashed line. Returns the figure."""
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
        for yi, w, e in zip(y, word, exact, strict=True):
            axes[0].annotate(f"{w:.0f}%", (w, yi - h / 2), xytext=(3, 0), textcoords="offset points",
                             va="center", fontsize=8)
            axes[0].annotate(f"{e * n_eval / 100:.0f}/{n_eval}", (e, yi + h / 2), xytext=(3, 0),
                             textcoords="offset points", va="center", fontsize=8)
        if base is not None:
            axes[0].axvline(100 * base["word_accuracy"], color="k", ls="--", lw=1, label="base model (words)")
        axes[0].set_xlim(0, 118)
        axes[0].set_xlabel("test sentences (%)")
        axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False)
        times = [rows[k]["train_time_s"] for k in labels]
        axes[1].barh(y, times, 0.6, color="C2")
        for yi, t in zip(y, times, strict=True):
            axes[1].annotate(f"{t:.0f} s", (t, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        axes[1].set_xlim(0, max(times) * 1.3)
        axes[1].set_xlabel("training time (s)")
        params = [rows[k]["trainable_params"] for k in labels]
        axes[2].barh(y, params, 0.6, color="C4")
        axes[2].set_xscale("log")
        for yi, p in zip(y, params, strict=True):
            axes[2].annotate(f"{p / 1e6:.1f} M", (p, yi), xytext=(3, 0), textcoords="offset points", va="center",
                             fontsize=8)
        axes[2].set_xlim(min(params) / 2, max(params) * 8)
        axes[2].set_xlabel("trainable numbers (log axis)")
        axes[0].set_yticks(y, labels)
        axes[0].invert_yaxis()
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_run_detail(row: dict, title: str = ""):
    """One stored run: its training loss per step, and per-field accuracy (format task) or word accuracy.
    Returns the figure."""
    if not row.get("losses"):
        raise ValueError("row has no 'losses' (a diverged run, or not a run_route row).")
    with style():
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.4))
        ax_loss.plot(np.arange(1, len(row["losses"]) + 1), row["losses"], "o-", ms=3)
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("training loss (own targets)")
        fields = row.get("field_accuracy") or {"words": row["word_accuracy"]}
        n = row.get("n", 0)
        names = list(fields)
        ax_acc.bar(names + ["exact match"], [100 * fields[k] for k in names] + [100 * row["exact_match"]],
                   color=["C0"] * len(names) + ["C1"])
        for i, v in enumerate([fields[k] for k in names] + [row["exact_match"]]):
            ax_acc.annotate(f"{v * n:.0f}/{n}", (i, 100 * v), xytext=(0, 3), textcoords="offset points",
                            ha="center", fontsize=8)
        ax_acc.set_ylim(0, 115)
        ax_acc.set_ylabel("clean test set (%)")
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
    return fig
