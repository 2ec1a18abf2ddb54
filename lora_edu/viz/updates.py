"""Figures of notebooks/11_why_low_rank.ipynb: which weights at a fixed budget, how much rank, phi with its
random baseline (LoRA section 7, Hu et al. 2021, arXiv 2106.09685), and the sliders over the stored results."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .core import style


def plot_target_sets(results: dict, base_loss: float | None = None, title: str = "Same budget, different weights"):
    """Bars of answer loss per target set (``name -> {"answer_loss", "exact_match", "n", "params"}``)."""
    names = list(results)
    with style():
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        losses = [results[n]["answer_loss"] for n in names]
        bars = ax.bar(names, losses, color="tab:blue")
        for bar, n in zip(bars, names, strict=True):
            r = results[n]
            ax.annotate(f"{r['exact_match']:.0%} of {r['n']}\n{r['params'] / 1e3:.0f}k params",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=9)
        if base_loss is not None:
            ax.axhline(base_loss, color="gray", ls=":", label=f"base model ({base_loss:.2f})")
            ax.legend(loc="upper right")
        ax.set_ylabel("answer loss after training (lower is better)")
        ax.set_xlabel("LoRA on (labels: exact match, trainable parameters)")
        ax.set_ylim(0, max(losses + [base_loss or 0]) * 1.3)
        ax.set_title(title)
    plt.show()
    return fig


def plot_rank_run(ranks, losses, spectra: dict, r: int, name: str = "delta W"):
    """Left: answer loss against r, the chosen ``r`` marked; right: the singular values of that run's delta W."""
    with style():
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        ax.plot(ranks, losses, "o-")
        ax.plot([r], [losses[list(ranks).index(r)]], "o", ms=14, mfc="none", mec="tab:red", mew=2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ranks), [str(x) for x in ranks])
        ax.set_xlabel("rank r")
        ax.set_ylabel("answer loss after training")
        ax.set_title("How much rank")
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
    """One phi grid with (i, j) marked; the title gives phi(i, j) and the random baseline max(i, j) / k."""
    grid = np.asarray(grid, dtype=float)
    p, q = grid.shape
    i, j = min(i, p), min(j, q)
    with style():
        fig, ax = plt.subplots(figsize=(7, 3.4))
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto",
                       extent=(0.5, q + 0.5, 0.5, p + 0.5))
        ax.plot([j], [i], "x", color="tab:red", ms=12, mew=3)
        ax.set_xlabel("j (top-j directions of the 2nd)")
        ax.set_ylabel("i (top-i of the 1st)")
        ax.set_title(f"{title}\nphi({i}, {j}) = {grid[i - 1, j - 1]:.2f}; random subspaces: {max(i, j) / k:.2f}")
        ax.grid(False)
        fig.colorbar(im, ax=ax, label=r"$\phi(i, j)$")
    plt.show()
    return fig
