"""Figures for notebooks/10_serving.ipynb: generation throughput against the number of distinct adapters in
a batch (generated or processed), for a merged model, merge-and-swap, PEFT's mixed batch and lora_edu's grouped and gathered ways."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .core import style


def _check(throughput: dict) -> list[int]:
    if not throughput or not all(isinstance(v, dict) and v for v in throughput.values()):
        raise ValueError("throughput must map method -> {distinct adapters k: tokens per second}, e.g. "
                         "{'grouped': {1: 40.0, 2: 38.5}}. Fix: measure at least one k per method.")
    return sorted({k for per_k in throughput.values() for k in per_k})


def plot_serving_throughput(throughput: dict, k: int | None = None, ax=None,
                            title: str = "Tokens per second vs distinct adapters in the batch", spread: dict | None = None):
    """Lines of tokens/s against k (log2 axis), one per method (a method measured at one k only, like a
    merged model, is a hollow square, so a point under it shows); with ``k``, a marker on that k and the values
    printed beside it, alternately right and left in order of value (the slider's view).

    ``spread`` maps method -> {k: (slowest, fastest)} of the timed passes, drawn as a bar through each point;
    each method is then nudged a little along k so that its bars do not hide another's."""
    ks = _check(throughput)
    nudge = {m: 2 ** (0.05 * (i - (len(throughput) - 1) / 2)) if spread else 1.0 for i, m in enumerate(throughput)}
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7.5, 4))
        for i, (method, per_k) in enumerate(throughput.items()):
            xs = sorted(per_k)
            single = {"ms": 11, "mfc": "none", "mew": 2} if len(xs) == 1 else {}  # hollow: a dot under it shows
            ax.plot([x * nudge[method] for x in xs], [per_k[x] for x in xs], "o-" if len(xs) > 1 else "s",
                    color=f"C{i}", label=method, **single)
            bars = [x for x in xs if x in (spread or {}).get(method, {})]
            if bars:
                # errorbar takes distances, not ends; max(0, ...): a median computed in float32 can sit a rounding
                # error outside its own range (one pass: median = slowest = fastest)
                below = [max(0.0, per_k[x] - spread[method][x][0]) for x in bars]
                above = [max(0.0, spread[method][x][1] - per_k[x]) for x in bars]
                ax.errorbar([x * nudge[method] for x in bars], [per_k[x] for x in bars], yerr=[below, above],
                            fmt="none", ecolor=f"C{i}", capsize=3, lw=1)
            if k is not None and k in per_k:
                ax.plot([k * nudge[method]], [per_k[k]], "o", ms=12, mfc="none", color=f"C{i}")
        if k is not None:  # the values at k, sorted, on alternate sides so that close values do not overprint
            at_k = sorted((per_k[k], i) for i, per_k in enumerate(throughput.values()) if k in per_k)
            for rank, (value, i) in enumerate(at_k):
                right = rank % 2 == 0
                ax.annotate(f"{value:.0f}", (k * nudge[list(throughput)[i]], value), xytext=(9 if right else -9, 0), textcoords="offset points",
                            va="center", ha="left" if right else "right", fontsize=9, color=f"C{i}")
            ax.axvline(k, color="0.6", lw=1, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(x) for x in ks])
        ax.set_xlabel("distinct adapters in one batch (k)")
        ax.set_ylabel("tokens / s")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=9)
    return ax.figure
