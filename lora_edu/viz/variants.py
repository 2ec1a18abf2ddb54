"""Figures for notebooks/09_variants.ipynb: quantities against the rank (rsLoRA) and the variant
comparison."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

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
                            title: str = "LoRA variants and baselines on the format task", n_eval: int | None = None):
    """Three panels: training-loss curves (log y), exact match (bars), trainable parameters (dots, log x).

    ``losses``: label -> per-step training losses; ``accuracy``: label -> exact match in [0, 1] (a
    ``"base model"`` entry may appear here only); ``trainable``: label -> trainable parameter count.
    ``threshold`` draws the loss level used for "steps to reach"; ``n_eval`` (the number of test examples)
    prints "k/n" beside each percentage. The loss legend sits below its axes, off the curves; the parameter
    counts are dots, since a bar's length on a log axis means nothing. Returns the figure.
    """
    if not losses or not accuracy or not trainable:
        raise ValueError("losses, accuracy and trainable must be non-empty dicts keyed by variant name.")
    colors = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys([*losses, *accuracy, *trainable]))}
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(16, 5.4), gridspec_kw=dict(width_ratios=[1.4, 1, 1]))
        ax = axes[0]
        for i, (label, curve) in enumerate(losses.items()):  # colour and dash both differ: nine curves cross
            ax.plot(range(1, len(curve) + 1), [max(float(v), 1e-6) for v in curve], label=label,
                    color=colors[label], lw=1.5, ls=("-", "--", "-.", ":")[i % 4])
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (per answer token)")
        ax.set_title("training loss", fontsize=11)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        labels = list(accuracy)
        ax = axes[1]
        ax.barh(labels, [100 * float(v) for v in accuracy.values()], color=[colors[k] for k in labels])
        for i, v in enumerate(accuracy.values()):
            count = f" ({round(float(v) * n_eval)}/{n_eval})" if n_eval else ""
            ax.annotate(f"{100 * float(v):.0f}%{count}", (100 * float(v), i), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=9)
        ax.set_xlim(0, 135 if n_eval else 115)
        ax.set_xlabel("exact match on the test examples (%)")
        ax.invert_yaxis()
        ax.set_title("accuracy after training", fontsize=11)
        labels = list(trainable)
        ax = axes[2]
        ax.scatter([float(v) for v in trainable.values()], range(len(labels)), color=[colors[k] for k in labels],
                   s=60, zorder=3)
        ax.set_yticks(range(len(labels)), labels)
        for i, v in enumerate(trainable.values()):
            ax.annotate(f"{float(v):,.0f}", (float(v), i), xytext=(7, 0), textcoords="offset points",
                        va="center", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlim(min(trainable.values()) / 2, max(trainable.values()) * 30)  # no dot on the axis' edge
        ax.set_xlabel("trainable parameters (log scale)")
        ax.invert_yaxis()
        ax.set_title("what each variant trains", fontsize=11)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_first_adam_step(ranks, unit: dict, r: int, alpha: float, alpha_range: tuple = (1, 64)):
    """The slider figure of notebook 09: LoRA's first Adam step on a real gradient, against the rank.

    ``unit`` maps a scaling rule to ``[(||dW||_F, <G, dW>), ...]`` at ``alpha = 1``, one pair per rank in
    ``ranks``; both grow linearly with alpha (Adam's first step moves B by lr * sign, whatever s is), so the
    figure scales them by ``alpha`` and rings the values at rank ``r``. Left: the size of the step; right: the
    part that lowers the loss to first order, ``-<G, dW>``. The y limits cover every alpha in ``alpha_range``,
    so moving alpha moves the curves, not the axes. Returns the figure.
    """
    ranks = list(ranks)
    if r not in ranks:
        raise ValueError(f"r = {r} is not one of the measured ranks {ranks}; pick one of them.")
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.6))
        panels = ((0, "size of the step", r"$\|\Delta W\|_F$"),
                  (1, "loss it removes, to first order", r"$-\langle G, \Delta W\rangle$"))
        for ax, (k, title, ylabel) in zip(axes, panels, strict=True):
            unit_values = [abs(pair[k]) for pairs in unit.values() for pair in pairs]
            curves = {rule: [alpha * abs(pair[k]) for pair in pairs] for rule, pairs in unit.items()}
            plot_against_rank(ranks, curves, ax=ax, ylabel=ylabel, title=title)
            for line, values in zip(list(ax.lines), curves.values(), strict=True):
                ax.plot([r], [values[ranks.index(r)]], "o", ms=13, mfc="none", mew=2, color=line.get_color())
            ax.axvline(r, color="gray", lw=0.8, ls=":")
            ax.set_ylim(alpha_range[0] * min(unit_values) / 1.5, alpha_range[1] * max(unit_values) * 1.5)
            ax.get_legend().remove()
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(unit), frameon=False)
        fig.suptitle(f"LoRA's first Adam step on SmolLM2's gradient: alpha = {alpha:g}, rank r = {r} ringed")
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
