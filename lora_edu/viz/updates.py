"""Figures of notebooks/11_why_low_rank.ipynb: which weights at a fixed budget, how much rank, phi with its
random baseline (LoRA section 7, Hu et al. 2021, arXiv 2106.09685), and the sliders over the stored results."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .core import style


def plot_target_sets(results: dict, base_loss: float | None = None, title: str = "Same budget, different weights"):
    """Bars of answer loss per target set (``name -> {"answer_loss", "exact_match", "n", "params"}``).

    ``exact_match`` is a fraction of ``n``, or a label such as ``updates.exact_counts(runs)`` ("1 and 2 of 20")
    when the bar is a mean of several runs."""
    names = list(results)
    with style():
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        losses = [results[n]["answer_loss"] for n in names]
        bars = ax.bar(names, losses, color="tab:blue")
        for bar, n in zip(bars, names, strict=True):
            r = results[n]
            em = r["exact_match"] if isinstance(r["exact_match"], str) else f"{r['exact_match']:.0%} of {r['n']}"
            ax.annotate(f"{em}\n{r['params'] / 1e3:.0f}k params",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=9)
        if base_loss is not None:
            ax.axhline(base_loss, color="gray", ls=":", label=f"base model ({base_loss:.2f})")
            ax.legend(loc="upper right")
        ax.set_ylabel("answer loss (lower is better)")
        ax.set_xlabel("LoRA on (labels: exact match, trainable parameters)")
        ax.set_ylim(0, max(losses + [base_loss or 0]) * 1.3)
        ax.set_title(title)
    plt.show()
    return fig


def plot_rank_run(ranks, losses, spectra: dict, r: int, name: str = "delta W", base_loss: float | None = None,
                  title: str = "How much rank"):
    """Left: answer loss against r, the chosen ``r`` marked (``base_loss``: the model before training, a dotted
    line); right: the singular values of that run's delta W."""
    with style():
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        ax.plot(ranks, losses, "o-")
        ax.plot([r], [losses[list(ranks).index(r)]], "o", ms=14, mfc="none", mec="tab:red", mew=2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ranks), [str(x) for x in ranks])
        if base_loss is not None:
            ax.axhline(base_loss, color="gray", ls=":", label=f"base model ({base_loss:.2f})")
            ax.legend(loc="center right")
        ax.set_xlabel("rank r")
        ax.set_ylabel("answer loss after training")
        ax.set_ylim(0, 1.1 * max([*losses, base_loss or 0]))
        ax.set_title(title)
        S = np.asarray(spectra[r], dtype=float)
        ax2.semilogy(np.arange(1, len(S) + 1), np.maximum(S, 1e-12), ".")
        ax2.axvline(r, color="tab:red", ls=":", label=f"r = {r}")
        ax2.set_xlabel("index of the singular value")
        ax2.set_ylabel("singular value")
        ax2.set_title(f"singular values of {name}")
        ax2.legend()
    plt.show()
    return fig


def plot_phi(grid, i: int, j: int, k: int, title: str = ""):
    """One phi grid with (i, j) marked; the title gives phi(i, j) against the random baseline max(i, j) / k.

    The colours are on a log scale from 1 / k (chance for phi(1, 1)) to 1, so a phi of 0.06 against a chance
    of 0.002 shows, which a 0-1 linear scale would paint as dark as chance."""
    from matplotlib.colors import LogNorm

    grid = np.asarray(grid, dtype=float)
    p, q = grid.shape
    i, j = min(i, p), min(j, q)
    value, chance = grid[i - 1, j - 1], max(i, j) / k
    with style():
        fig, ax = plt.subplots(figsize=(7, 3.4))
        im = ax.imshow(np.clip(grid, 1 / k, 1), norm=LogNorm(vmin=1 / k, vmax=1), cmap="viridis", origin="lower",
                       aspect="auto", extent=(0.5, q + 0.5, 0.5, p + 0.5))
        ax.plot([j], [i], "x", color="tab:red", ms=12, mew=3)
        ax.set_xlabel("j (top-j directions of the 2nd)")
        ax.set_ylabel("i (top-i of the 1st)")
        ax.set_title(f"{title}\nphi({i}, {j}) = {value:.3f}; random subspaces: {chance:.2g} "
                     f"({value / chance:.1f}x chance)")
        ax.grid(False)
        fig.colorbar(im, ax=ax, label=rf"$\phi(i, j)$ (log scale, from 1/k = {1 / k:.2g})")
    plt.show()
    return fig
