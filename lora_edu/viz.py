"""Figures and sliders shared by the notebooks.

Pattern (notebooks/02_lora_layer.ipynb shows it first): a plain function draws a figure from a few
numbers; ``sliders(fn, ...)`` wires ipywidgets sliders to it with ``interactive_output``; the same cell
also calls the function once, so GitHub, nbconvert and CI show a static figure. Inline backend only:
ipympl is unreliable on Colab, and Colab's ipywidgets 7.x works with this code.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

STYLE = {"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 11}


def style():
    """A context manager with the series' plot style: ``with viz.style(): fig, ax = plt.subplots()``."""
    return plt.rc_context(STYLE)


def sliders(fn, **controls):
    """Show ``controls`` (name -> ipywidgets slider) above the output of ``fn(**values)``; return the box.

    ``fn`` should draw one figure and call ``plt.show()``. Sliders should use ``continuous_update=False``
    so the figure redraws on release, not on every pixel of a drag.
    """
    import ipywidgets as widgets
    from IPython.display import display

    out = widgets.interactive_output(fn, controls)
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    display(box)
    return box


# Figure functions for each notebook follow, one section per notebook, in notebook order.

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
        for label, S in spectra.items():
            S = torch.as_tensor(S).double()
            y = S / S.norm() if normalize else S
            ax.semilogy(range(1, len(y) + 1), y.clamp_min(1e-12), label=label)
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
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.8), gridspec_kw=dict(width_ratios=[1, 1, 1, 1.3]))
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
        ax.plot(range(len(rel)), rel, label="Eckart-Young error, every k")
        ax.plot([k], [float(rel[k])], "o", color="C3", label=f"k = {k}: {float(rel[k]):.1%}")
        ax.set_xlabel("rank k")
        ax.set_ylabel(r"relative error $\|W - W_k\|_F / \|W\|_F$")
        ax.set_title(f"factors store {stored:,} numbers, {stored / (m * n):.1%} of {m * n:,}", fontsize=10)
        ax.legend()
        fig.tight_layout()
    plt.show()
    return fig


def plot_energy(spectra: dict, ax=None, fraction: float = 0.9, title: str = "Energy captured by the top k"):
    """``energy(S, k)`` against k for each ``label -> S``, with a dotted line at ``fraction``."""
    import torch

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        for label, S in spectra.items():
            sq = torch.as_tensor(S).double() ** 2
            ax.plot(range(1, len(sq) + 1), torch.cumsum(sq, 0) / sq.sum(), label=label)
        ax.axhline(fraction, color="gray", ls=":", label=f"{fraction:.0%} of the energy")
        ax.set_xlabel("k (number of singular values kept)")
        ax.set_ylabel(r"energy in the top k (fraction of $\|W\|_F^2$)")
        ax.set_title(title)
        ax.set_ylim(0, 1.02)
        ax.legend()
    return ax


def plot_similarity_grids(grids: dict, side: str = "right"):
    """Heatmaps of ``subspace_similarity_grid`` results, one per ``title -> grid`` (LoRA Fig. 3/4 style).

    Entry (i, j) is phi(A, B, i, j): 1 (yellow) when the top-i directions of A lie in the top-j of B,
    0 (dark) when they are orthogonal.
    """
    with style():
        fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids) + 1, 4), squeeze=False)
        for ax, (title, grid) in zip(axes[0], grids.items(), strict=True):
            p, q = grid.shape
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower",
                           extent=(0.5, q + 0.5, 0.5, p + 0.5))
            ax.set_xlabel("j (top-j directions of the 2nd)", fontsize=12)
            ax.set_title(title, fontsize=13)
            ax.grid(False)
        axes[0, 0].set_ylabel("i (top-i directions of the 1st)", fontsize=12)
        fig.colorbar(im, ax=axes[0].tolist(), label=rf"$\phi(i, j)$ ({side} singular vectors)")
    plt.show()
    return fig

# --- notebook 02 ---
# Figures for notebooks/02_lora_layer.ipynb: initialisations of A, scaling against r, an update's effect.

def plot_init_distributions(samples: dict, bound: float | None = None, bins: int = 80, ax=None):
    """Histograms (as densities) of the entries of each ``label -> tensor`` in ``samples``, on one axis.

    ``bound`` draws dotted lines at +-bound: kaiming-uniform with a = sqrt(5) draws A from U(-bound, bound)
    with bound = 1/sqrt(in_features). Returns the figure.
    """
    import torch

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(11, 3.8))
        for label, values in samples.items():
            values = torch.as_tensor(values).detach().flatten().double()
            ax.hist(values.numpy(), bins=bins, density=True, histtype="stepfilled", alpha=0.5,
                    label=f"{label}: std {values.std():.3g}")
        if bound is not None:
            for x in (-bound, bound):
                ax.axvline(x, color="k", ls=":", lw=1)
            ax.plot([], [], "k:", lw=1, label=f"$\\pm 1/\\sqrt{{in}}$ = $\\pm${bound:.3g}")
        ax.set_xlabel("value of an entry of A")
        ax.set_ylabel("density")
        ax.set_title("Initial entries of lora_A.weight (B starts at zero either way)")
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.figure.tight_layout()
    return ax.figure


def plot_scaling(lora_alpha: float, ranks, change: dict | None = None, mark_r: int | None = None):
    """Left: ``scaling`` against r for lora_alpha/r and rsLoRA's lora_alpha/sqrt(r) (log-log axes).

    ``change`` (optional) maps a label to values, one per rank, drawn in a second panel: for example the
    median relative change of a layer's outputs that a fixed-size random update causes under each rule.
    ``mark_r`` puts a dot on each curve at that rank. Returns the figure.
    """
    import math

    ranks = [int(r) for r in ranks]
    rules = {r"standard: $\alpha / r$": [lora_alpha / r for r in ranks],
             r"rsLoRA: $\alpha / \sqrt{r}$": [lora_alpha / math.sqrt(r) for r in ranks]}
    with style():
        fig, axes = plt.subplots(1, 2 if change else 1, figsize=(12 if change else 6.5, 4), squeeze=False)
        ax = axes[0, 0]
        for i, (label, values) in enumerate(rules.items()):
            ax.plot(ranks, values, "o-", color=f"C{i}", label=label)
            if mark_r is not None:
                s = lora_alpha / mark_r if i == 0 else lora_alpha / math.sqrt(mark_r)
                ax.plot([mark_r], [s], "o", ms=11, mfc="none", color="C3")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.set_xlabel("rank r")
        ax.set_ylabel("scaling")
        ax.set_title(f"scaling at lora_alpha = {lora_alpha:g}")
        handles, _ = ax.get_legend_handles_labels()
        if mark_r is not None:  # a legend entry for the open circles, kept out of ax.lines
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], ls="", marker="o", ms=11, mfc="none", color="C3",
                                  label=f"r = {mark_r} (used in the text)"))
        ax.legend(handles=handles)
        if change:
            ax = axes[0, 1]
            for i, (label, values) in enumerate(change.items()):
                ax.plot(ranks, [float(v) for v in values], "o-", color=f"C{i}", label=label)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ranks, [str(r) for r in ranks])
            ax.set_xlabel("rank r")
            ax.set_ylabel(r"median $\|\Delta h\| / \|h\|$ per token")
            ax.set_title("what a random update of fixed entry size does")
            ax.set_ylim(bottom=0)
            ax.legend()
        fig.tight_layout()
    return fig


def plot_output_change(h, delta_h, title: str = "", max_points: int = 4000, seed: int = 0):
    """Two panels for a batch of a layer's outputs: adapted against base, and the per-token change.

    ``h`` is the base output W0 x, ``delta_h`` the LoRA path's output scaling * B A x, both (tokens, out).
    Left: a scatter of ``h + delta_h`` against ``h`` for up to ``max_points`` random entries (points on the
    diagonal mean "unchanged"; the axes show the central 99.5% of the base outputs, so that a few very
    large entries do not squash the cloud). Right: a histogram of ||delta_h|| / ||h|| per token.
    Returns the figure.
    """
    import torch

    h, delta_h = torch.as_tensor(h).detach().flatten(0, -2), torch.as_tensor(delta_h).detach().flatten(0, -2)
    if h.shape != delta_h.shape:
        raise ValueError(f"h and delta_h must have the same shape (tokens, out); got {tuple(h.shape)} and "
                         f"{tuple(delta_h.shape)}. Pass base_layer(x) and the LoRA path's output, same x.")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(h.numel(), generator=g)[:max_points]
    base, adapted = h.flatten()[pick], (h + delta_h).flatten()[pick]
    rel = delta_h.norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-12)  # (tokens,)
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        ax = axes[0]
        lim = float(torch.quantile(base.abs().double(), 0.995)) * 1.1  # zoom on the bulk
        ax.plot([-lim, lim], [-lim, lim], color="gray", lw=1, label="unchanged (y = x)")
        ax.scatter(base, adapted, s=3, alpha=0.4, color="C0", label=f"{len(pick):,} random output entries")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel(r"base output $W_0 x$")
        ax.set_ylabel(r"adapted output $W_0 x + \Delta h$")
        ax.legend(loc="upper left", fontsize=9)
        ax = axes[1]
        spread = float(rel.max() - rel.min()) > 1e-6 * float(rel.max())  # False when all equal (B = 0)
        ax.hist(rel.double().numpy(), bins=30 if spread else 1, color="C1")
        ax.axvline(float(rel.median()), color="k", ls="--", label=f"median {float(rel.median()):.3g}")
        ax.set_xlabel(r"$\|\Delta h\| / \|h\|$ per token")
        ax.set_ylabel("tokens")
        ax.set_xlim(left=0)
        ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
    return fig


# --- memory (notebook 07) ---
# The training-memory calculator (lora_edu/memory.py) as stacked bars: full fine-tuning, LoRA, QLoRA.

MEMORY_COLORS = ("C0", "C2", "C1", "C4", "C3", "C7")  # one per MemoryBreakdown.PARTS entry


def plot_training_memory(n_params: float, trainable_fraction: float = 0.01, weight_bits: int = 16,
                         optimizer: str = "adamw", activations_gb: float = 0.0, gpu_gb: float | None = None,
                         ax=None):
    """Stacked bars of training memory in GB (1e9 bytes): full fine-tuning, LoRA, QLoRA; returns the Figure.

    One segment per ``MemoryBreakdown.PARTS`` (weights, LoRA weights, gradients, master weights, optimizer
    states, activations). Full fine-tuning and LoRA keep the base in ``weight_bits``; QLoRA in NF4 with
    double quantization and bf16 LoRA. LoRA and QLoRA train ``trainable_fraction`` of ``n_params``; all
    three get the same ``activations_gb`` (an input, not an estimate). ``gpu_gb`` draws a dashed line.
    """
    import numpy as np

    from .memory import GB, MemoryBreakdown, training_memory

    common = dict(optimizer=optimizer, activations_bytes=activations_gb * GB)
    bars = {"full fine-tuning": training_memory(n_params, "full", weight_bits=weight_bits, **common),
            "LoRA": training_memory(n_params, "lora", weight_bits=weight_bits,
                                    trainable_fraction=trainable_fraction, **common),
            "QLoRA (NF4 + DQ)": training_memory(n_params, "qlora", trainable_fraction=trainable_fraction,
                                                **common)}
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4.5))
        x, bottom = np.arange(len(bars)), np.zeros(len(bars))
        parts = zip(MemoryBreakdown.PARTS, MemoryBreakdown.LABELS, MEMORY_COLORS, strict=True)
        for part, label, color in parts:
            height = np.array([getattr(b, part) / GB for b in bars.values()])
            ax.bar(x, height, bottom=bottom, width=0.6, label=label, color=color)
            bottom += height
        for xi, total in zip(x, bottom, strict=True):
            ax.annotate(f"{total:,.1f} GB", (xi, total), ha="center", va="bottom", fontsize=10,
                        xytext=(0, 2), textcoords="offset points")
        if gpu_gb is not None:
            ax.axhline(gpu_gb, color="k", ls="--", lw=1, label=f"a {gpu_gb:g} GB GPU")
        ax.set_xticks(x, list(bars))
        ax.set_ylabel("memory (GB = 1e9 bytes)")
        ax.set_ylim(0, max(bottom.max(), gpu_gb or 0) * 1.12)
        ax.set_title(f"Training memory, {n_params / 1e9:g}B parameters (full and LoRA: {weight_bits}-bit base; "
                     f"LoRA trains {trainable_fraction:.2%}; {optimizer})", fontsize=10)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
        ax.figure.tight_layout()
    plt.show()
    return ax.figure


# --- notebook 03 ---
# Figures for notebooks/03_lora_toy_task.ipynb: loss curves with the Eckart-Young floor, learned against
# planted singular values, and the live rank/alpha slider figure (it retrains in a fraction of a second).

def plot_loss_curves(curves: dict, floors: dict | None = None, ax=None,
                     title: str = "Expected loss during training",
                     ylabel: str = r"expected loss $\|\Delta W^* - \Delta W\|_F^2$",
                     styles: dict | None = None):
    """One log-scale line per ``label -> losses`` (index = step); ``floors`` maps a label to a dotted floor.

    Losses are clipped at 1e-12 so an exact zero still shows. ``styles`` maps a label to plot kwargs.
    Minor log ticks carry no labels; when the curves span under two decades, ticks at 1, 2, 5 x 10^n do.
    """
    import torch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4))
        for label, losses in curves.items():
            y = torch.as_tensor(losses).double().clamp_min(1e-12)
            (line,) = ax.semilogy(range(len(y)), y, label=label, **(styles or {}).get(label, {}))
            floor = (floors or {}).get(label)
            if floor:  # a zero floor cannot be drawn on a log axis
                ax.axhline(floor, color=line.get_color(), ls=":", lw=1.5)
        if floors and any(floors.values()):
            ax.plot([], [], color="gray", ls=":", label="Eckart-Young floor (predicted)")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        low, high = ax.get_ylim()
        if high / low < 100:  # under two decades: label 1, 2, 5 x 10^n instead of awkward minor labels
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=9)
    return ax


def plot_singular_values(planted, learned: dict, n: int | None = None, ax=None,
                         title: str = "Singular values: learned update against planted"):
    """Grouped bars: the planted singular values, then the top ``n`` of each ``label -> learned update``.

    ``planted`` is a 1-D tensor (k,); each learned entry is an (out, in) matrix (its singular values are
    computed here) or a 1-D tensor of singular values.
    """
    import torch

    planted = torch.as_tensor(planted).double()
    spectra = {label: (torch.linalg.svdvals(torch.as_tensor(M).double()) if torch.as_tensor(M).ndim == 2
                       else torch.as_tensor(M).double()) for label, M in learned.items()}
    n = n or max(len(planted) + 2, 6)
    width = 0.8 / (1 + len(spectra))
    idx = torch.arange(1, n + 1, dtype=torch.float64)
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 3.8))
        padded = torch.zeros(n, dtype=torch.float64)
        padded[:min(n, len(planted))] = planted[:n]
        ax.bar((idx - 0.4 + width / 2).tolist(), padded.tolist(), width, color="k", alpha=0.75,
               label=r"planted $\Delta W^*$")
        for t, (label, S) in enumerate(spectra.items(), start=1):
            x = (idx - 0.4 + width * (t + 0.5))[:len(S[:n])]  # a learned spectrum may be shorter than n
            ax.bar(x.tolist(), S[:n].tolist(), width, label=label, color=f"C{t - 1}")
        ax.set_xticks(idx.tolist())
        ax.set_xlabel("index i (largest first)")
        ax.set_ylabel(r"$\sigma_i$")
        ax.set_title(title)
        ax.legend(fontsize=9)
    return ax


def plot_toy_run(r: int = 4, lora_alpha: float = 8.0, use_rslora: bool = False, lr: float = 1e-2,
                 steps: int = 300, task=None):
    """The slider figure: train LoRA on the toy task (a fraction of a second), then show the loss curve
    against its Eckart-Young floor and the learned singular values against the planted ones."""
    from .toy import make_toy_task, train_lora_on_toy

    task = make_toy_task() if task is None else task
    run = train_lora_on_toy(r, lora_alpha, steps=steps, lr=lr, use_rslora=use_rslora, task=task)
    floor = task.loss_floor(r)
    rule = r"$\alpha/\sqrt{r}$" if use_rslora else r"$\alpha/r$"
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
        label = f"r = {r}, alpha = {lora_alpha:g}, scaling {rule} = {run.scaling:.3g}"
        plot_loss_curves({label: run.expected_losses}, {label: floor}, ax=axes[0],
                         title=f"{steps} steps, trained in {run.seconds:.2f} s: final loss {run.final_loss:.3g}, "
                               f"floor {floor:.3g}")
        plot_singular_values(task.singular_values, {f"learned, r = {r}": run.delta}, n=max(task.k + 2, 6),
                             ax=axes[1], title="singular values of the update")
        fig.tight_layout()
    plt.show()
    return fig

# --- notebook 06 ---
# Figures for notebooks/06_quantization.ipynb: a weight's histogram with its outliers, the 16 values of the
# 4-bit formats over real weights, per-format errors, and the error-against-memory slider.

def plot_weight_histogram(weight, name: str = "weight", ax=None, bins: int = 201):
    """Histogram of ``weight``'s values, log counts, with its absmax (dashed) and its std (dotted) marked.

    With one scale per tensor (absmax int8), the dashed lines are codes -127 and 127; when they sit far
    outside the bulk, most of the 255 codes fall where almost no weight is.
    """
    import torch

    w = torch.as_tensor(weight).detach().float().reshape(-1)
    if w.numel() == 0:
        raise ValueError("weight is empty; nothing to draw. Fix: pass a layer's weight, e.g. layer.weight.")
    absmax, std, median = float(w.abs().max()), float(w.std()), float(w.abs().median())
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 3.6))
        ax.hist(w.numpy(), bins=bins, color="C0", log=True)
        for sign in (-1, 1):
            ax.axvline(sign * absmax, color="C3", ls="--", label="absmax (per-tensor int8 codes ±127)" if sign > 0 else None)
            ax.axvline(sign * std, color="k", ls=":", label="± std (where most weights are)" if sign > 0 else None)
        ax.set_xlabel("weight value")
        ax.set_ylabel("count (log scale)")
        ax.set_title(f"{name}: max |w| = {absmax:.3g} is {absmax / median:.0f}x the median |w| ({median:.3g})",
                     fontsize=10)
        ax.legend(fontsize=9)
    return ax


def plot_code_values(codes: dict, sample=None, title: str = "The 16 values of each 4-bit format"):
    """Each format's values (``label -> 16 numbers in [-1, 1]``) as a row of dots; above them, if given, a
    histogram of ``sample`` (weights divided by their block's absmax, so also in [-1, 1]).

    A format serves the weights well when its values are dense where the histogram is high.
    """
    import torch

    rows = {}
    for label, values in codes.items():
        v = torch.as_tensor(values).detach().double().reshape(-1)
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
            s = torch.as_tensor(sample).detach().float().reshape(-1).numpy()
            axes[0].hist(s, bins=161, range=(-1, 1), color="0.6")
            axes[0].set_ylabel("weights")
            axes[0].set_title(title)
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
    """Grouped bars: ``errors[format][group]`` (e.g. ``{"NF4": {"q_proj": 0.09, ...}, ...}``), one colour per format."""
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
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    return ax


def plot_error_vs_memory(curves: dict, chosen=None, ax=None, title: str = "Error against memory"):
    """One line per ``label -> (bits_per_parameter, errors)``, log error axis; ``chosen`` = ``(x, y, text)``
    is ringed and labelled. Lower left is better: fewer bits and less error."""
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8.5, 4.5))
        for i, (label, (xs, ys)) in enumerate(curves.items()):
            if len(xs) != len(ys):
                raise ValueError(f"curve {label!r} has {len(xs)} x values and {len(ys)} errors. "
                                 "Fix: one error per bits-per-parameter value.")
            style_kw = dict(ls="--", marker="s") if "NF4" in label else dict(marker="o")
            ax.plot([float(x) for x in xs], [float(y) for y in ys], label=label, color=f"C{i}", ms=4, **style_kw)
        if chosen is not None:
            x, y, text = chosen
            ax.plot([x], [y], "o", ms=16, mfc="none", mec="k", mew=2)
            ax.annotate(text, (x, y), xytext=(12, 12), textcoords="offset points", fontsize=10,
                        bbox=dict(boxstyle="round", fc="w", ec="0.5"))
        ax.set_yscale("log")
        ax.set_xlabel("bits per parameter (codes + one fp32 absmax per block)")
        ax.set_ylabel(r"relative error $\|\hat W - W\|_F / \|W\|_F$")
        ax.set_title(title)
        ax.legend(fontsize=9, loc="upper right")
    return ax


# --- notebook 04 ---
# Figures for notebooks/04_lora_in_a_transformer.ipynb: trainable parameters per choice of target modules,
# the training loss of a real fine-tune, and generations before and after it, side by side.

def plot_trainable_by_target(counts: dict, total: int, ax=None,
                             title: str = "Trainable parameters by choice of target modules"):
    """Horizontal bars (log scale) of trainable parameters, each labelled with its count and share of ``total``.

    ``counts`` maps a label (e.g. "q_proj, v_proj (r=8)") to a number of parameters; ``total`` is the base
    model's parameter count, which full fine-tuning trains (add it to ``counts`` to draw it as a bar).
    """
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 0.55 * len(counts) + 1.2))
        labels, values = list(counts), [float(v) for v in counts.values()]
        bars = ax.barh(range(len(values)), values, color=["C7" if v >= total else "C0" for v in values])
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(f"{v:,.0f} ({100 * v / total:.2f}%)", (v, bar.get_y() + bar.get_height() / 2),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=9)
        ax.set_yticks(range(len(values)), labels)
        ax.invert_yaxis()  # the first entry on top
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 3, max(values) * 12)  # room for the labels right of the bars
        ax.set_xlabel(f"trainable parameters (log scale); % of the {total:,} in the base model")
        ax.set_title(title, fontsize=11)
        ax.grid(axis="y", visible=False)
        ax.figure.tight_layout()
    return ax


def plot_training_loss(histories: dict, ax=None, show_lr: bool = True,
                       title: str = "Training loss (cross-entropy on the answer tokens)"):
    """Loss per step (log scale) for each run in ``histories`` (label -> ``TrainResult.history``).

    With ``show_lr`` the first run's learning rate is drawn on a second axis (dashed grey), so the warmup and
    the decay are visible next to the loss.
    """
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4))
        for label, history in histories.items():
            ax.plot([h["step"] + 1 for h in history], [h["loss"] for h in history], marker=".", label=label)
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_ylabel("loss per answer token (log scale)")
        ax.set_title(title, fontsize=11)
        handles, labels = ax.get_legend_handles_labels()
        if show_lr and histories:
            first = next(iter(histories.values()))
            twin = ax.twinx()
            lr_line, = twin.plot([h["step"] + 1 for h in first], [h["lr"] for h in first], color="0.5", ls="--",
                                 lw=1)
            twin.set_ylabel("learning rate", color="0.4")
            twin.set_ylim(0, max(h["lr"] for h in first) * 1.1)
            twin.grid(False)
            handles, labels = handles + [lr_line], labels + ["learning rate (right axis)"]
        ax.legend(handles, labels, loc="upper right", fontsize=9)
        ax.figure.tight_layout()
    return ax


def plot_memory_comparison(breakdowns: dict, measured: dict | None = None, ax=None,
                           title: str = "Training memory without activations (MB = 1e6 bytes)"):
    """Stacked bars in MB of weights, LoRA weights, gradients and optimizer states, one bar per breakdown.

    ``breakdowns`` maps a label to a ``memory.MemoryBreakdown``; ``measured`` maps some of the labels to a
    measured total in bytes, written above the bar next to the computed one.
    """
    import numpy as np

    from .memory import MemoryBreakdown

    parts = [(part, label, color) for part, label, color in
             zip(MemoryBreakdown.PARTS, MemoryBreakdown.LABELS, MEMORY_COLORS, strict=True)
             if any(getattr(b, part) for b in breakdowns.values())]  # drop parts that are zero everywhere
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.2))
        x, bottom = np.arange(len(breakdowns)), np.zeros(len(breakdowns))
        for part, label, color in parts:
            height = np.array([getattr(b, part) / 1e6 for b in breakdowns.values()])
            ax.bar(x, height, bottom=bottom, width=0.55, label=label, color=color)
            bottom += height
        for xi, (name, total) in zip(x, zip(breakdowns, bottom, strict=True), strict=True):
            text = f"{total:,.1f} MB computed"
            if measured and name in measured:
                text += f"\n{measured[name] / 1e6:,.1f} MB measured"
            ax.annotate(text, (xi, total), ha="center", va="bottom", fontsize=9, xytext=(0, 2),
                        textcoords="offset points")
        ax.set_xticks(x, list(breakdowns))
        ax.set_ylabel("MB (1e6 bytes)")
        ax.set_ylim(0, bottom.max() * 1.2)
        ax.set_title(title, fontsize=11)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9)
        ax.grid(axis="x", visible=False)
        ax.figure.tight_layout()
    return ax


def _table_cell(text: str, max_chars: int) -> str:
    import html

    text = text if len(text) <= max_chars else text[:max_chars - 1] + "…"
    return html.escape(text, quote=False).replace("|", "&#124;").replace("\n", "⏎")  # one row per example


def generations_table(examples: list[dict], base: list[str], tuned: list[str], max_chars: int = 120) -> str:
    """A Markdown table: sentence, base output, tuned output, target, and whether tuned == target exactly.

    Newlines in an output are shown as ⏎ (the base model pretty-prints JSON over several lines); long outputs
    are cut at ``max_chars``. Display it with ``IPython.display.Markdown(...)``.
    """
    if not len(examples) == len(base) == len(tuned):
        raise ValueError(f"examples, base and tuned must have the same length, got {len(examples)}, {len(base)} "
                         f"and {len(tuned)}; pass the predictions of the same examples.")
    rows = ["| sentence | base model | after LoRA | target | exact |", "|---|---|---|---|:-:|"]
    for ex, b, t in zip(examples, base, tuned, strict=True):
        sentence = ex.get("sentence", ex.get("question", ex["prompt"]))
        cells = [_table_cell(s, max_chars) for s in (sentence, b, t, ex["target"])]
        rows.append("| " + " | ".join(cells) + f" | {'✓' if t.strip() == ex['target'] else '✗'} |")
    return "\n".join(rows)

# --- notebook 05 ---
# Figures for notebooks/05_merging.ipynb: forward latency of base / unmerged / merged, and how much of a
# LoRA update survives rounding into a 16-bit weight (lora_edu.merging).

def plot_latency(times: dict, ax=None, title: str = "Forward-pass latency on one fixed batch"):
    """Bars at the median of each ``label -> list of seconds`` (in ms), whiskers from the 25th to the 75th
    percentile, each repeat as a dot; the text above a bar gives the median and its ratio to the first bar."""
    import torch

    if not times:
        raise ValueError("times is empty. Fix: pass {label: [seconds per forward pass, ...]}.")
    ms = {}
    for label, values in times.items():
        t = torch.as_tensor(values, dtype=torch.float64).reshape(-1) * 1e3
        if t.numel() == 0 or not torch.isfinite(t).all() or (t <= 0).any():
            raise ValueError(f"times[{label!r}] must be a non-empty list of positive, finite seconds. "
                             "Fix: time at least one forward pass per label.")
        ms[label] = t
    first = float(torch.quantile(ms[next(iter(ms))], 0.5))  # the same median as the bars'
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.8))
        for i, t in enumerate(ms.values()):
            med, lo, hi = (float(torch.quantile(t, q)) for q in (0.5, 0.25, 0.75))
            ax.bar(i, med, width=0.6, color=f"C{i}", alpha=0.8)
            ax.errorbar(i, med, yerr=[[med - lo], [hi - med]], color="k", capsize=6)
            jitter = torch.linspace(-0.2, 0.2, t.numel()) if t.numel() > 1 else torch.zeros(1)
            ax.plot((i + jitter).numpy(), t.numpy(), "o", color="k", ms=3, alpha=0.5)
            ax.annotate(f"{med:.0f} ms\n({med / first:.2f}x)", (i, hi), xytext=(0, 4),
                        textcoords="offset points", ha="center", va="bottom", fontsize=10)
        ax.set_xticks(range(len(ms)), list(ms))
        ax.set_ylabel("ms per forward pass")
        ax.set_ylim(0, 1.25 * max(float(t.max()) for t in ms.values()))
        ax.set_title(title)
    return ax


def plot_merge_rounding(weight, delta, dtypes=None, ax=None, bins: int = 120,
                        title: str = "How big is each update entry next to the gaps between stored weights?"):
    """Histogram of ``log2(|delta| / spacing(w))`` per dtype, where ``w`` is ``weight`` stored in that dtype.

    Left of the dashed line (half a spacing) an entry of delta_W rounds away when merged; near it, it is
    rounded to a whole number of spacings. The legend gives each dtype's vanished share (``merging.merge_rounding``,
    over all nonzero entries); the histogram leaves out entries where W0 is exactly 0.
    """
    import torch

    from .merging import merge_rounding, spacing

    dtypes = (torch.bfloat16, torch.float32) if dtypes is None else tuple(dtypes)
    delta = torch.as_tensor(delta).detach().float()
    weight = torch.as_tensor(weight).detach()
    if weight.shape != delta.shape:
        raise ValueError(f"weight {tuple(weight.shape)} and delta {tuple(delta.shape)} differ in shape. "
                         "Fix: pass a layer's weight and its layer.get_delta_weight().")
    if not (delta != 0).any():
        raise ValueError("delta is all zero (an untrained adapter), so there is nothing to draw. "
                         "Fix: train the adapter first.")
    shown = (delta != 0) & (weight != 0)  # at W0 = 0 the "gap" is the smallest subnormal: off any sensible scale
    ratios = {dt: torch.log2(delta[shown].abs() / spacing(weight.to(dt), dt)[shown]) for dt in dtypes}
    low = min(float(r.min()) for r in ratios.values())
    high = max(float(r.max()) for r in ratios.values())
    edges = torch.linspace(low, high, bins + 1).numpy()
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(9, 3.8))
        for i, (dt, r) in enumerate(ratios.items()):
            lost = merge_rounding(weight, delta, dt)["vanished"]
            name = str(dt).removeprefix("torch.")
            ax.hist(r.numpy(), bins=edges, color=f"C{i}", alpha=0.7, label=f"{name}: {100 * lost:.1f}% of entries vanish")
        ax.axvline(-1, color="k", ls="--", label="half a spacing: smaller entries round away")
        ax.set_xlabel(r"$\log_2(|\Delta W_{ij}|\ /\ $spacing of stored numbers at $W_{0,ij})$")
        ax.set_ylabel("entries")
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=9, loc="upper left")
    return ax

# --- notebook 07 ---
# Figures for notebooks/07_qlora.ipynb: the measured bytes of one model stored several ways (fp32, bf16, NF4
# with and without double quantization), as stacked bars of what the bytes hold. The training-memory
# calculator's figure is ``plot_training_memory`` above (section "memory (notebook 07)").

MODEL_BYTES_PARTS = {"codes": ("NF4 codes (4 bits each)", "C1"), "constants": ("block constants", "C4"),
                     "other": ("embeddings, norms, unquantized layers", "C0"), "lora": ("LoRA A and B", "C2")}


def plot_model_bytes(sizes: dict, ax=None, title: str = "Stored bytes of the model"):
    """Stacked bars in MiB, one per ``label -> model_nbytes(model)`` dict (keys codes, constants, lora, other).

    Each bar is annotated with its total and its size relative to the first bar. Returns the Axes.
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
        for xi, total in zip(x, bottom, strict=True):
            ax.annotate(f"{total:,.0f} MiB\n({total / bottom[0]:.0%})", (xi, total), ha="center", va="bottom",
                        fontsize=9, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(x, list(sizes))
        ax.set_ylabel("stored bytes (MiB)")
        ax.set_ylim(0, bottom.max() * 1.2)
        ax.set_title(title)
        ax.legend(loc="upper right", fontsize=9)
        ax.figure.tight_layout()
    return ax

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
