"""Figures for notebooks/05_merging.ipynb: latency of base / unmerged / merged, and how much of a LoRA
update survives rounding into a 16-bit weight (lora_edu.merging)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .core import style

# --- notebook 05 ---
# Figures for notebooks/05_merging.ipynb: forward latency of base / unmerged / merged, and how much of a
# LoRA update survives rounding into a 16-bit weight (lora_edu.merging).

def plot_latency(times: dict, ax=None, title: str = "Forward-pass latency on one fixed batch"):
    """Bars at the median of each ``label -> list of seconds`` (in ms), whiskers from the 25th to the 75th
    percentile, each repeat as a dot; the text above a bar's highest dot gives the median and its ratio to the
    first bar."""
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
            ax.annotate(f"{med:.0f} ms\n({med / first:.2f}x)", (i, max(hi, float(t.max()))), xytext=(0, 4),
                        textcoords="offset points", ha="center", va="bottom", fontsize=10)
        ax.set_xticks(range(len(ms)), list(ms))
        ax.set_ylabel("ms per forward pass")
        ax.set_ylim(0, 1.25 * max(float(t.max()) for t in ms.values()))
        ax.set_title(title)
    return ax


def plot_merge_rounding(weight, delta, dtypes=None, ax=None, bins: int = 120,
                        title: str = "How big is each update entry next to the gaps between stored weights?",
                        xlim: tuple | None = None):
    """Histogram of ``log2(|delta| / spacing(w))`` per dtype, where ``w`` is ``weight`` stored in that dtype.

    Left of the dashed line (half a spacing) an entry of delta_W rounds away when merged; near it, it is
    rounded to a whole number of spacings. The legend gives each dtype's vanished share (``merging.merge_rounding``,
    over all n nonzero entries, n printed) in head room above the bars; the histogram leaves out entries where W0
    is exactly 0. ``xlim`` fixes the x axis (a slider that rescales delta then moves the bars, not the axis).
    """
    import torch

    from ..merging import merge_rounding, spacing

    dtypes = (torch.bfloat16, torch.float32) if dtypes is None else tuple(dtypes)
    delta = torch.as_tensor(delta).detach().cpu().float()
    weight = torch.as_tensor(weight).detach().cpu()
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
    if xlim is not None:
        low, high = max(low, xlim[0]), min(high, xlim[1])
        if low >= high:  # every entry beyond one end of the axis: the bins span the whole axis
            low, high = xlim
    edges = torch.linspace(low, high, bins + 1).numpy()
    n = int((delta != 0).sum())
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(9, 3.8))
        for i, (dt, r) in enumerate(ratios.items()):
            lost = merge_rounding(weight, delta, dt)["vanished"]
            name = str(dt).removeprefix("torch.")
            ax.hist(r.clamp(low, high).numpy(), bins=edges, color=f"C{i}", alpha=0.7,
                    label=f"{name}: {100 * lost:.1f}% of n = {n:,} entries vanish")
        ax.axvline(-1, color="k", ls="--", label="half a spacing: smaller entries round away")
        if xlim is not None:
            ax.set_xlim(*xlim)
        ax.set_ylim(0, 1.5 * max(p.get_height() for p in ax.patches))  # head room: the legend sits above the bars
        ax.set_xlabel(r"$\log_2(|\Delta W_{ij}|\ /\ $spacing of stored numbers at $W_{0,ij})$")
        ax.set_ylabel("entries")
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=9, loc="upper left")
    return ax
