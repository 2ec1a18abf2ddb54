"""Figures for notebooks/02_lora_layer.ipynb and 03_lora_toy_task.ipynb: initialisations of A, scaling
against r, an update's effect, loss curves against the Eckart-Young floor, learned singular values."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .core import style

# --- notebook 02 ---
# Figures for notebooks/02_lora_layer.ipynb: the layer itself, initialisations of A, scaling against r, an
# update's effect.


def plot_lora_diagram(in_features: int, out_features: int, r: int, lora_alpha: float, ax=None):
    """The LoRA layer as the paper's Figure 1 draws it: the input x feeds the frozen W0 and, beside it, A
    (in -> r, narrowing) then B (r -> out); the two paths are summed into h. Widths follow the real sizes,
    except that the rank is drawn wider than to scale so that it stays visible."""
    from matplotlib.patches import Circle, Polygon, Rectangle

    for name, value in (("in_features", in_features), ("out_features", out_features), ("r", r)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}. Fix: e.g. 1536, 576, 8.")
    wide = 3.4  # drawing width of the larger of in and out
    w_in, w_out = (wide * n / max(in_features, out_features) for n in (in_features, out_features))
    w_r = max(0.35, wide * r / max(in_features, out_features))
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7.5, 5.2))
        left, right = 2.6, 7.4  # centres of the two paths
        ax.add_patch(Rectangle((5 - w_in / 2 - 2.2, 0.3), w_in + 4.4, 0.6, fc="0.9", ec="0.3"))
        ax.text(5, 0.6, f"x  (in = {in_features})", ha="center", va="center")
        ax.add_patch(Rectangle((left - w_in / 2, 2.2), w_in, 3.6, fc="#cfe2f3", ec="C0", lw=1.5))
        ax.text(left, 4.0, f"$W_0$\n{out_features} \u00d7 {in_features}\nfrozen", ha="center", va="center")
        ax.add_patch(Polygon([(right - w_in / 2, 2.2), (right + w_in / 2, 2.2), (right + w_r / 2, 3.7),
                              (right - w_r / 2, 3.7)], fc="#fde0c5", ec="C1", lw=1.5))
        ax.text(right, 2.75, f"$A$: {r} \u00d7 {in_features}\nrandom (kaiming)", ha="center", va="center", fontsize=9)
        ax.add_patch(Polygon([(right - w_r / 2, 4.3), (right + w_r / 2, 4.3), (right + w_out / 2, 5.8),
                              (right - w_out / 2, 5.8)], fc="#fde0c5", ec="C1", lw=1.5))
        ax.text(right + max(w_out, w_r) / 2 + 0.15, 5.05, f"$B$: {out_features} \u00d7 {r}\nstarts at 0",
                ha="left", va="center", fontsize=9)
        ax.text(right + w_r / 2 + 0.25, 4.0, f"r = {r}", ha="left", va="center", fontsize=9, color="C1")
        ax.add_patch(Circle((5, 7.3), 0.32, fc="w", ec="0.3"))
        ax.text(5, 7.3, "+", ha="center", va="center", fontsize=16)
        ax.add_patch(Rectangle((5 - w_out / 2 - 1.2, 8.4), w_out + 2.4, 0.6, fc="0.9", ec="0.3"))
        ax.text(5, 8.7, f"h  (out = {out_features})", ha="center", va="center")
        arrow = dict(arrowstyle="->", color="0.3", lw=1.2)
        for x0, y0, x1, y1 in ((left, 0.9, left, 2.2), (right, 0.9, right, 2.2), (left, 5.8, 4.72, 7.15),
                               (right, 5.8, 5.28, 7.15), (5, 7.62, 5, 8.4), (right, 3.7, right, 4.3)):
            ax.annotate("", (x1, y1), (x0, y0), arrowprops=arrow)
        ax.text(6.75, 6.45, "scaling $\\cdot\\, x A^\\top B^\\top$\n"  # the LoRA path's output, like x W0^T
                f"scaling = $\\alpha/r$ = {lora_alpha / r:g}", ha="left", va="center", fontsize=9, color="C1")
        ax.text(left, 6.2, "$x W_0^\\top$", ha="center", fontsize=10, color="C0")
        ax.set_xlim(0, 10.5)
        ax.set_ylim(0, 9.3)
        ax.axis("off")
        ax.set_title("A LoRA layer: only $A$ and $B$ train; at the start $B = 0$, so $h = x W_0^\\top$ exactly",
                     fontsize=11)
    return ax

def plot_init_distributions(samples: dict, bound: float | None = None, bins: int = 80, zoom: float | None = None):
    """Histograms (as densities) of the entries of each ``label -> tensor`` in ``samples``.

    ``bound`` draws dotted lines at +-bound: kaiming-uniform with a = sqrt(5) draws A from U(-bound, bound)
    with bound = 1/sqrt(in_features). ``zoom`` adds a second panel on [-zoom, zoom], on the same density
    scale (each bin's share of *all* of a sample's entries), where a narrow distribution's shape shows.
    Returns the figure.
    """
    import numpy as np
    import torch

    samples = {label: torch.as_tensor(v).detach().cpu().flatten().double().numpy()  # matplotlib reads host memory
               for label, v in samples.items()}
    with style():
        fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(13, 3.8) if zoom else (11, 3.8), squeeze=False)
        ax = axes[0, 0]
        for label, values in samples.items():
            ax.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.5,
                    label=f"{label}: std {values.std(ddof=1):.3g}")
        if zoom:
            edges = np.linspace(-zoom, zoom, 31)  # 30 bins: zoom = 1.5 * bound puts +-bound on bin edges
            for i, values in enumerate(samples.values()):  # not density=True, which would count only the zoom
                share = np.full(len(values), 1 / (len(values) * (edges[1] - edges[0])))
                axes[0, 1].hist(values, bins=edges, weights=share, histtype="stepfilled", alpha=0.5, color=f"C{i}")
            axes[0, 1].set_xlim(-zoom, zoom)
            axes[0, 1].set_title(f"zoom on [{-zoom:.3g}, {zoom:.3g}]")
        for panel in axes[0]:
            for x in (-bound, bound) if bound is not None else ():
                panel.axvline(x, color="k", ls=":", lw=1)
            panel.set_xlabel("value of an entry of A")
            panel.set_ylabel("density")
        if bound is not None:
            ax.plot([], [], "k:", lw=1, label=f"$\\pm 1/\\sqrt{{in}}$ = $\\pm${bound:.3g}")
        ax.set_title("Initial entries of lora_A.weight (B starts at zero either way)")
        if zoom:  # below both panels: inside either it would cover a histogram
            fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=9, frameon=False)
            fig.tight_layout(rect=(0, 0.14, 1, 1))
        else:
            ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            fig.tight_layout()
    return fig


def plot_scaling(lora_alpha: float, ranks, change: dict | None = None, mark_r: int | None = None):
    """Left: ``scaling`` against r for lora_alpha/r and rsLoRA's lora_alpha/sqrt(r) (log-log axes).

    ``change`` (optional) maps a label to values, one per rank, drawn in a second panel: for example the
    median relative change of a layer's outputs that a fixed-size random update causes under each rule.
    ``mark_r`` puts a dot on each curve at that rank. Returns the figure.
    """
    import math

    from matplotlib.ticker import NullFormatter

    ranks = [int(r) for r in ranks]
    rules = {"standard: lora_alpha/r": [lora_alpha / r for r in ranks],  # the names the notebook prints
             "rsLoRA: lora_alpha/sqrt(r)": [lora_alpha / math.sqrt(r) for r in ranks]}
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
        low, high = min(min(v) for v in rules.values()), max(max(v) for v in rules.values())
        powers = [2.0**k for k in range(math.floor(math.log2(low)), math.ceil(math.log2(high)) + 1)]
        ax.set_yticks(powers, [f"{p:g}" for p in powers])  # 0.25, 0.5, ..., 16: as the table prints them
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("rank r")
        ax.set_ylabel("scaling")
        ax.set_title(f"scaling at lora_alpha = {lora_alpha:g}")
        handles, _ = ax.get_legend_handles_labels()
        if mark_r is not None:  # a legend entry for the open circles, kept out of ax.lines
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], ls="", marker="o", ms=11, mfc="none", color="C3",
                                  label=f"r = {mark_r} (used in the text)"))
        ax.legend(handles=handles, loc="lower left")  # the curves fall from the top left: that corner is empty
        if change:
            ax = axes[0, 1]
            for i, (label, values) in enumerate(change.items()):
                ax.plot(ranks, [float(v) for v in values], "o-", color=f"C{i}", label=label)
                if mark_r in ranks:  # the same rank ringed in both panels
                    ax.plot([mark_r], [float(values[ranks.index(mark_r)])], "o", ms=11, mfc="none", color="C3")
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

    h, delta_h = torch.as_tensor(h).detach().cpu().flatten(0, -2), torch.as_tensor(delta_h).detach().cpu().flatten(0, -2)
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


# --- notebook 03 ---
# Figures for notebooks/03_lora_toy_task.ipynb: loss curves with the Eckart-Young floor, learned against
# planted singular values, and the live rank/alpha slider figure (it retrains in a fraction of a second).

def plot_loss_curves(curves: dict, floors: dict | None = None, ax=None,
                     title: str = "Expected loss during training",
                     ylabel: str = r"expected loss $\|\Delta W^* - \Delta W\|_F^2$",
                     styles: dict | None = None, first_step: int = 0, xlabel: str = "training step"):
    """One log-scale line per ``label -> losses``; ``floors`` maps a label to a dotted floor.

    ``losses[i]`` is drawn at step ``first_step + i``: 0 where the curve starts before training (the toy
    task's expected loss), 1 for training losses (the loss of optimizer step 1 is the first entry).

    Losses are clipped at 1e-12 so an exact zero still shows. ``styles`` maps a label to plot kwargs.
    Minor log ticks carry no labels; when the curves span under two decades, ticks at 1, 2, 5 x 10^n do.
    """
    import torch
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4))
        for label, losses in curves.items():
            y = torch.as_tensor(losses).detach().cpu().double().clamp_min(1e-12)
            (line,) = ax.semilogy(range(first_step, first_step + len(y)), y, label=label,
                                  **(styles or {}).get(label, {}))
            floor = (floors or {}).get(label)
            if floor:  # a zero floor cannot be drawn on a log axis
                ax.axhline(floor, color=line.get_color(), ls=":", lw=1.5)
        if floors and any(floors.values()):
            ax.plot([], [], color="gray", ls=":", label="Eckart-Young floor (predicted)")
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
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

    planted = torch.as_tensor(planted).detach().cpu().double()
    learned = {label: torch.as_tensor(M).detach().cpu().double() for label, M in learned.items()}
    spectra = {label: torch.linalg.svdvals(M) if M.ndim == 2 else M for label, M in learned.items()}
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
    from ..toy import make_toy_task, train_lora_on_toy

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
