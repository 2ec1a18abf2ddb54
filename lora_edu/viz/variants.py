"""Figures for notebooks/09_variants.ipynb: quantities against the rank (rsLoRA) and the variant
comparison."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .core import style

# --- notebook 09 ---
# Figures for notebooks/09_variants.ipynb: quantities against the rank (rsLoRA), and the variant comparison.

def plot_against_rank(ranks, curves: dict, ax=None, ylabel: str = r"$\|\Delta W\|_F$", title: str = "",
                      logy: bool = True, reference: dict | None = None):
    """One line with markers per ``label -> values`` (values[t] belongs to ranks[t]), log2 x axis.

    ``reference`` maps a label to values drawn dotted (e.g. a predicted slope). Missing values (None) are
    skipped, so a run that never reached a threshold leaves a gap instead of a fake point.
    """
    ranks = list(ranks)
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 4))
        for label, values in curves.items():
            points = [(r, float(v)) for r, v in zip(ranks, values, strict=True) if v is not None]
            ax.plot(*zip(*points, strict=True), "o-", label=label)
        for label, values in (reference or {}).items():
            ax.plot(ranks, [float(v) for v in values], ":", color="gray", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(r) for r in ranks])
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("rank r")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=9)
    return ax


def plot_variant_comparison(losses: dict, accuracy: dict, trainable: dict, threshold: float | None = None,
                            title: str = "LoRA variants and baselines on the format task"):
    """Three panels: training-loss curves (log y), exact match (bars), trainable parameters (bars, log x).

    ``losses``: label -> per-step training losses; ``accuracy``: label -> exact match in [0, 1] (a
    ``"base model"`` entry may appear here only); ``trainable``: label -> trainable parameter count.
    ``threshold`` draws the loss level used for "steps to reach". Returns the figure.
    """
    if not losses or not accuracy or not trainable:
        raise ValueError("losses, accuracy and trainable must be non-empty dicts keyed by variant name.")
    colors = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys([*losses, *accuracy, *trainable]))}
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw=dict(width_ratios=[1.4, 1, 1]))
        ax = axes[0]
        for label, curve in losses.items():
            ax.plot(range(1, len(curve) + 1), [max(float(v), 1e-6) for v in curve], label=label,
                    color=colors[label], lw=1.5)
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (per answer token)")
        ax.set_title("training loss", fontsize=11)
        ax.legend(fontsize=8, ncol=2)
        labels = list(accuracy)
        ax = axes[1]
        ax.barh(labels, [100 * float(v) for v in accuracy.values()], color=[colors[k] for k in labels])
        for i, v in enumerate(accuracy.values()):
            ax.annotate(f"{100 * float(v):.0f}%", (100 * float(v), i), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=9)
        ax.set_xlim(0, 115)
        ax.set_xlabel("exact match on the test examples (%)")
        ax.invert_yaxis()
        ax.set_title("accuracy after training", fontsize=11)
        labels = list(trainable)
        ax = axes[2]
        ax.barh(labels, [float(v) for v in trainable.values()], color=[colors[k] for k in labels])
        for i, v in enumerate(trainable.values()):
            ax.annotate(f"{float(v):,.0f}", (float(v), i), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlim(right=max(trainable.values()) * 30)
        ax.set_xlabel("trainable parameters (log scale)")
        ax.invert_yaxis()
        ax.set_title("what each variant trains", fontsize=11)
        fig.suptitle(title)
        fig.tight_layout()
    return fig
