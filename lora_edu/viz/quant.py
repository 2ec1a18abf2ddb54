"""Figures for notebooks/06_quantization.ipynb and 07_qlora.ipynb: weight histograms, the 16 values of
the 4-bit formats, per-format errors, error against memory, and the stored bytes of a model."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

from .core import style

# --- notebook 06 ---
# Figures for notebooks/06_quantization.ipynb: a weight's histogram with its outliers, the 16 values of the
# 4-bit formats over real weights, per-format errors, and the error-against-memory slider.

def plot_weight_histogram(weight, name: str = "weight", ax=None, bins: int = 201):
    """Histogram of ``weight``'s values, log counts, with its absmax (dashed) and its std (dotted) marked.

    With one scale per tensor (absmax int8), the dashed lines are codes -127 and 127; when they sit far
    outside the bulk, most of the 255 codes fall where almost no weight is. The histogram is an outline
    (``histtype="step"``): on a log axis the length of a filled bar means nothing, only its top does.
    """
    import torch

    w = torch.as_tensor(weight).detach().cpu().float().reshape(-1)  # matplotlib reads host memory
    if w.numel() == 0:
        raise ValueError("weight is empty; nothing to draw. Fix: pass a layer's weight, e.g. layer.weight.")
    absmax, std = float(w.abs().max()), float(w.std())
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 3.6))
        ax.hist(w.numpy(), bins=bins, color="C0", log=True, histtype="step", lw=1.2)
        for sign in (-1, 1):
            ax.axvline(sign * absmax, color="C3", ls="--", label="absmax (per-tensor int8 codes ±127)" if sign > 0 else None)
            ax.axvline(sign * std, color="k", ls=":", label="± std (where most weights are)" if sign > 0 else None)
        ax.set_xlabel("weight value")
        ax.set_ylabel("count (log scale)")
        ax.set_title(f"{name}: max |w| = {absmax:.3g} = {absmax / std:.1f} standard deviations (std {std:.3g})",
                     fontsize=10)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # off the data
    return ax


def plot_code_values(codes: dict, sample=None, title: str = "The 16 values of each 4-bit format", marks=None):
    """Each format's values (``label -> its values in [-1, 1]``, 16 at most) as a row of dots; above them, if given, a
    histogram of ``sample`` (weights divided by their block's absmax, so also in [-1, 1]). ``marks`` (optional,
    ``label -> x values``) draws thin grey lines at those x in the histogram, e.g. a grid's boundary.

    A format serves the weights well when its values are dense where the histogram is high.
    """
    import torch

    rows = {}
    for label, values in codes.items():
        v = torch.as_tensor(values).detach().cpu().double().reshape(-1)
        if v.numel() < 2 or not torch.isfinite(v).all():
            raise ValueError(f"codes[{label!r}] must hold at least 2 finite values, got {v.tolist()}. "
                             "Fix: pass the table, e.g. quant.nf4_code() (drop an infinite end first).")
        rows[label] = v
    with style():
        n_top = 0 if sample is None else 1
        fig, axes = plt.subplots(n_top + 1, 1, figsize=(9, 1.9 + 0.45 * len(rows) + 2.2 * n_top), sharex=True,
                                 gridspec_kw=dict(height_ratios=[2.2] * n_top + [0.45 * len(rows) + 0.6]),
                                 squeeze=False)
        axes = axes[:, 0]
        if sample is not None:
            s = torch.as_tensor(sample).detach().cpu().float().reshape(-1).numpy()
            axes[0].hist(s, bins=161, range=(-1, 1), color="0.6")
            axes[0].set_ylabel("weights")
            axes[0].set_title(title)
            for label, xs in (marks or {}).items():
                for j, x in enumerate(xs):
                    axes[0].axvline(float(x), color="0.3", lw=0.8, ls=":", label=label if j == 0 else None)
                axes[0].legend(fontsize=9, loc="upper left")  # the histogram peaks in the middle
        ax = axes[-1]
        for i, v in enumerate(rows.values()):
            ax.plot(v.numpy(), [len(rows) - 1 - i] * v.numel(), "o", color=f"C{i}", ms=6)  # first row on top
        ax.set_yticks(range(len(rows)), list(rows)[::-1])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel("value (after dividing by the block's absmax)")
        if sample is None:
            ax.set_title(title)
        fig.tight_layout()
    return fig


def plot_format_errors(errors: dict, ax=None, ylabel: str = r"relative error $\|\hat W - W\|_F / \|W\|_F$",
                       title: str = "Quantization error by layer type"):
    """Grouped bars: ``errors[format][group]`` (e.g. ``{"NF4": {"q_proj": 0.09, ...}, ...}``), one colour per format.

    The errors are fractions; the y-axis shows them in percent, as the notebook prints them."""
    formats = list(errors)
    if not formats:
        raise ValueError("errors is empty. Fix: pass {format: {group: error}}.")
    groups = list(errors[formats[0]])
    for f in formats:
        if list(errors[f]) != groups:
            raise ValueError(f"errors[{f!r}] has groups {list(errors[f])}, but errors[{formats[0]!r}] has "
                             f"{groups}. Fix: give every format the same groups, in the same order.")
    width = 0.8 / len(formats)
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(9, 3.8))
        for i, f in enumerate(formats):
            xs = [g + (i - (len(formats) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, [float(errors[f][g]) for g in groups], width=width, label=f, color=f"C{i}")
        ax.set_xticks(range(len(groups)), groups)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    return ax


def plot_error_vs_memory(curves: dict, chosen=None, ax=None, title: str = "Error against memory",
                         point_labels=None):
    """One line per ``label -> (bits_per_parameter, errors)``, log error axis; ``chosen`` = ``(x, y, text)``
    is ringed and labelled. ``point_labels`` (optional, ``curve label -> one text per point``) writes each
    point's text beside it, e.g. its block size. Lower left is better: fewer bits and less error."""
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8.5, 4.5))
        for i, (label, (xs, ys)) in enumerate(curves.items()):
            if len(xs) != len(ys):
                raise ValueError(f"curve {label!r} has {len(xs)} x values and {len(ys)} errors. "
                                 "Fix: one error per bits-per-parameter value.")
            style_kw = dict(ls="--", marker="s") if "NF4" in label else dict(marker="o")
            ax.plot([float(x) for x in xs], [float(y) for y in ys], label=label, color=f"C{i}", ms=4, **style_kw)
            texts = (point_labels or {}).get(label)
            if texts is not None:
                if len(texts) != len(xs):
                    raise ValueError(f"point_labels[{label!r}] has {len(texts)} texts for {len(xs)} points. "
                                     "Fix: one text per point, in the curve's order.")
                for x, y, t in zip(xs, ys, texts, strict=True):
                    ax.annotate(t, (float(x), float(y)), xytext=(0, -11), textcoords="offset points",
                                ha="center", va="top", fontsize=8, color=f"C{i}")
        if chosen is not None:
            x, y, text = chosen
            ax.plot([x], [y], "o", ms=16, mfc="none", mec="k", mew=2)
            # the label sits in the empty lower-left corner (few bits and little error is where no format
            # reaches), with an arrow to the point, so it covers no curve wherever the point is
            ax.annotate(text, (x, y), xytext=(0.02, 0.03), textcoords="axes fraction", ha="left", va="bottom",
                        fontsize=10, bbox=dict(boxstyle="round", fc="w", ec="0.5"),
                        arrowprops=dict(arrowstyle="->", color="0.4", lw=1))
        ax.set_yscale("log")
        ax.set_xlabel("bits per parameter (codes + one fp32 absmax per block)")
        ax.set_ylabel(r"relative error $\|\hat W - W\|_F / \|W\|_F$")
        ax.set_title(title)
        ax.legend(fontsize=9, loc="upper right")
    return ax


# --- notebook 07 ---
# Figures for notebooks/07_qlora.ipynb: the measured bytes of one model stored several ways (fp32, bf16, NF4
# with and without double quantization), as stacked bars of what the bytes hold. The training-memory
# calculator's figure is ``plot_training_memory`` above (section "memory (notebook 07)").

MODEL_BYTES_PARTS = {"codes": ("NF4 codes (4 bits each)", "C1"), "constants": ("block constants", "C4"),
                     "other": ("embeddings, norms, unquantized layers", "C0"), "lora": ("LoRA A and B", "C2")}


def plot_model_bytes(sizes: dict, ax=None, title: str = "Stored bytes of the model"):
    """Stacked bars in MiB, one per ``label -> model_nbytes(model)`` dict (keys codes, constants, lora, other).

    Each bar is annotated with its total and, after the first, its size as a share of the first bar
    ("32% of fp32"). Returns the Axes.
    """
    import numpy as np

    if not isinstance(sizes, dict) or not sizes:
        raise ValueError("sizes must be a non-empty dict of label -> model_nbytes(model); e.g. "
                         "{'fp32': lora_edu.model_nbytes(model)}.")
    for label, parts in sizes.items():
        missing = [k for k in MODEL_BYTES_PARTS if not isinstance(parts, dict) or k not in parts]
        if missing:
            raise ValueError(f"sizes[{label!r}] lacks {missing}: pass the dict that lora_edu.model_nbytes "
                             "returns (codes, constants, lora, other, total).")
    mib = 2**20
    x, bottom = np.arange(len(sizes)), np.zeros(len(sizes))
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4.2))
        for key, (label, color) in MODEL_BYTES_PARTS.items():
            height = np.array([parts[key] / mib for parts in sizes.values()])
            if height.any():  # a part no bar has (e.g. no LoRA anywhere) gets no legend entry
                ax.bar(x, height, bottom=bottom, width=0.6, label=label, color=color)
            bottom += height
        first = " ".join(next(iter(sizes)).split())  # the bar the others are a share of
        for i, (xi, total) in enumerate(zip(x, bottom, strict=True)):
            share = f"\n({total / bottom[0]:.0%} of {first})" if i else ""
            ax.annotate(f"{total:,.0f} MiB{share}", (xi, total), ha="center", va="bottom",
                        fontsize=9, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(x, list(sizes))
        ax.set_ylabel("stored bytes (MiB)")
        ax.set_ylim(0, bottom.max() * 1.2)
        ax.set_title(title)
        ax.legend(loc="upper right", fontsize=9)
        ax.figure.tight_layout()
    return ax
