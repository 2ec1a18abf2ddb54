"""Figures for notebooks/01_low_rank_math.ipynb: singular value spectra, error against rank, rank-k
reconstructions, captured energy, subspace similarity (lora_edu.lowrank)."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt

from .core import style

# --- notebook 01 ---
# Figures for notebooks/01_low_rank_math.ipynb: spectra, error against rank, rank-k reconstructions.

def plot_spectra(spectra: dict, normalize: bool = True, ax=None, title: str = "Singular value spectra"):
    """Singular values against their index, log scale, one line per ``label -> S`` in ``spectra``.

    ``normalize=True`` divides each spectrum by its Frobenius norm sqrt(sum S^2), so matrices of different
    sizes and scales compare by shape alone: a flat curve spreads energy over many directions, a cliff
    means a few directions hold it all.
    """
    import torch

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        dashes = ["-", "--", ":", "-."]  # so that a curve lying on another one stays visible
        for i, (label, S) in enumerate(spectra.items()):
            S = torch.as_tensor(S).detach().cpu().double()
            y = S / S.norm() if normalize else S
            ax.semilogy(range(1, len(y) + 1), y.clamp_min(1e-12), dashes[i % 4], label=label, lw=2.5 if i == 0 else 1.5)
        ax.set_xlabel("index i (sorted, largest first)")
        ax.set_ylabel(r"$\sigma_i / \|W\|_F$" if normalize else r"$\sigma_i$")
        ax.set_title(title)
        ax.legend()
    return ax


def plot_error_vs_rank(ranks, curves: dict, ax=None, ylabel: str = r"relative error $\|W - W_k\|_F / \|W\|_F$",
                       title: str = "Error against rank", styles: dict | None = None):
    """One line per ``label -> errors`` (errors[t] belongs to ranks[t]); ``styles`` maps a label to plot kwargs."""
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(9, 4))
        for label, errs in curves.items():
            ax.plot(list(ranks), [float(e) for e in errs], label=label, **(styles or {}).get(label, {}))
        ax.set_xlabel("rank k")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    return ax


def plot_rank_k(W, k: int, svd=None, cmap: str = "gray", name: str = "picture"):
    """The slider figure: ``W``, its best rank-``k`` approximation, the residual, and the error against rank.

    ``svd`` = ``torch.linalg.svd(W, full_matrices=False)`` computed once outside, so a slider move only
    multiplies three small matrices. The error panel marks ``k`` on the Eckart-Young curve; the storage
    count is that of two factors, (m x k) and (k x n), as LoRA stores B and A.
    """
    import torch

    U, S, Vh = svd if svd is not None else torch.linalg.svd(W, full_matrices=False)
    W_k = (U[:, :k] * S[:k]) @ Vh[:k]  # (m, n), rank k
    tail = torch.cumsum((S.double() ** 2).flip(0), 0).flip(0)  # tail[k] = sigma_{k+1}^2 + ... + sigma_p^2
    rel = torch.cat([tail, tail.new_zeros(1)]).div(tail[0]).sqrt()  # rel[k]: relative error at rank k
    R = W - W_k
    m, n = W.shape
    stored = k * (m + n)
    with style():
        # constrained layout takes the colour bar's room from the gap beside the residual, not from its image
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.8), gridspec_kw=dict(width_ratios=[1, 1, 1, 1.3]),
                                 layout="constrained")
        vmax = float(W.abs().max())
        lim = dict(vmin=float(W.min()), vmax=float(W.max())) if cmap == "gray" else dict(vmin=-vmax, vmax=vmax)
        axes[0].imshow(W, cmap=cmap, **lim)
        axes[0].set_title(f"{name} ({m} x {n})", fontsize=10)
        axes[1].imshow(W_k, cmap=cmap, **lim)
        axes[1].set_title(f"best rank-{k} approximation W_k", fontsize=10)
        r = float(torch.quantile(R.abs().flatten().float(), 0.99)) + 1e-12  # clip the rare extremes: contrast
        im = axes[2].imshow(R, cmap="RdBu_r", vmin=-r, vmax=r)
        axes[2].set_title("residual W - W_k", fontsize=10)
        cbar = fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04)
        cbar.set_label("red: W > W_k (W_k too low)\nblue: W < W_k (W_k too high)", fontsize=9)
        for ax in axes[:3]:
            ax.axis("off")
        ax = axes[3]
        ax.plot(range(1, len(rel)), rel[1:], label="Eckart-Young error, every k")  # from k = 1: a log axis
        ax.plot([k], [float(rel[k])], "o", color="C3", label=f"k = {k}: {float(rel[k]):.1%}")
        ax.set_xscale("log")  # the first tens of ranks do most of the work; a linear axis squeezes them
        ax.set_xlabel("rank k (log scale)")
        ax.set_ylabel(r"relative error $\|W - W_k\|_F / \|W\|_F$")
        ax.set_title(f"factors store {stored:,} numbers, {stored / (m * n):.1%} of {m * n:,}", fontsize=10)
        ax.legend(loc="upper right")  # the error falls from the top left to the bottom right: top right stays empty
    plt.show()
    return fig


def plot_energy(spectra: dict, ax=None, fraction: float = 0.9, title: str = "Energy captured by the top k",
                matrix: str = "W"):
    """``energy(S, k)`` against k for each ``label -> S``, with a dotted line at ``fraction``; ``matrix`` names
    what the singular values belong to in the y label (LaTeX, e.g. ``r"\Delta W"``)."""
    import torch

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        for label, S in spectra.items():
            sq = torch.as_tensor(S).detach().cpu().double() ** 2
            ax.plot(range(1, len(sq) + 1), torch.cumsum(sq, 0) / sq.sum(), label=label)
        ax.axhline(fraction, color="gray", ls=":", label=f"{fraction:.0%} of the energy")
        ax.set_xlabel("k (number of singular values kept)")
        ax.set_ylabel(rf"energy in the top k (fraction of $\|{matrix}\|_F^2$)")
        ax.set_title(title)
        ax.set_ylim(0, 1.02)
        ax.legend()
    return ax


def _ticks_from_one(n: int) -> list[int]:
    """Whole-number ticks 1, step, 2 step, ... n for an axis of n cells (step 1, 2, 4, 8, ...: at most 9 ticks)."""
    step = 1
    while n / step > 8:
        step *= 2
    return [1] + list(range(step, n + 1, step)) if step > 1 else list(range(1, n + 1))


def plot_similarity_grids(grids: dict, side: str = "right", vmax: float = 1.0):
    """Heatmaps of ``subspace_similarity_grid`` results, one per ``title -> grid`` (LoRA Fig. 3/4 style).

    Entry (i, j) is phi(A, B, i, j): 1 (yellow) when the top-i directions of A lie in the top-j of B,
    0 (dark) when they are orthogonal. ``vmax`` below 1 caps the colour scale there (the colour bar says so),
    for grids whose values all lie far below 1.
    """
    if not 0 < vmax <= 1:
        raise ValueError(f"vmax={vmax} is outside (0, 1]; phi lies in [0, 1]. Fix: pass a cap such as 0.25, or 1.")
    import torch

    with style():
        fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids) + 1, 4), squeeze=False)
        for ax, (title, grid) in zip(axes[0], grids.items(), strict=True):
            grid = torch.as_tensor(grid).detach().cpu()  # matplotlib reads host memory
            p, q = grid.shape
            im = ax.imshow(grid, vmin=0, vmax=vmax, cmap="viridis", origin="lower", extent=(0.5, q + 0.5, 0.5, p + 0.5),
                           aspect="auto" if p != q else "equal")  # an 8 x 64 grid fills the panel, as in Fig. 3
            ax.set_xticks(_ticks_from_one(q))  # 1 included: phi(1, 1), the top directions, is the corner to read
            ax.set_yticks(_ticks_from_one(p))
            ax.set_xlabel("j (top-j directions of the 2nd)", fontsize=12)
            ax.set_title(textwrap.fill(title, 26), fontsize=12)  # long titles wrap instead of running together
            ax.grid(False)
        axes[0, 0].set_ylabel("i (top-i directions of the 1st)", fontsize=12)
        capped = f", colours capped at {vmax:g}" if vmax < 1 else ""
        fig.colorbar(im, ax=axes[0].tolist(), label=rf"$\phi(i, j)$ ({side} singular vectors{capped})",
                     extend="max" if vmax < 1 else "neither")
    plt.show()
    return fig
