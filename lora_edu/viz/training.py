"""Figures for notebooks/04_lora_in_a_transformer.ipynb (target modules, training loss, generations) and
the training-memory calculator of lora_edu.memory (notebooks 04 and 07)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .core import style

# --- notebook 04 ---
# Figures for notebooks/04_lora_in_a_transformer.ipynb: trainable parameters per choice of target modules,
# the training loss of a real fine-tune, and generations before and after it, side by side.

def plot_trainable_by_target(counts: dict, total: int, ax=None,
                             title: str = "Trainable parameters by choice of target modules"):
    """Horizontal bars of trainable parameters as a share of ``total`` (a linear axis, so a bar's length is its
    share: LoRA's bars are slivers next to full fine-tuning's, which is the point), each labelled with its count.

    ``counts`` maps a label (e.g. "q_proj, v_proj (r=8)") to a number of parameters; ``total`` is the base
    model's parameter count, which full fine-tuning trains (add it to ``counts`` to draw it as a bar).
    """
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 0.55 * len(counts) + 1.2))
        labels, values = list(counts), [float(v) for v in counts.values()]
        shares = [100 * v / total for v in values]
        bars = ax.barh(range(len(values)), shares, color=["C7" if v >= total else "C0" for v in values])
        for bar, v, share in zip(bars, values, shares, strict=True):
            ax.annotate(f"{v:,.0f} ({share:.2f}%)", (share, bar.get_y() + bar.get_height() / 2),
                        xytext=(4 if share < 60 else -4, 0), textcoords="offset points", va="center", fontsize=9,
                        ha="left" if share < 60 else "right", color="k" if share < 60 else "w")
        ax.set_yticks(range(len(values)), labels)
        ax.invert_yaxis()  # the first entry on top
        ax.set_xlim(0, max(100.0, max(shares)) * 1.02)
        ax.set_xlabel(f"trainable parameters, % of the {total:,} in the base model")
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
            twin.set_ylim(0, max(h["lr"] for h in first) * 1.5)  # headroom: the legend sits above the lr line
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

    from ..memory import MemoryBreakdown

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
    """A Markdown table: the input (the examples' "sentence", else "question", else "prompt", named so in the
    header), base output, tuned output, target, and whether tuned == target exactly.

    Newlines in an output are shown as ⏎ (the base model pretty-prints JSON over several lines); long outputs
    are cut at ``max_chars``. Display it with ``IPython.display.Markdown(...)``.
    """
    if not len(examples) == len(base) == len(tuned):
        raise ValueError(f"examples, base and tuned must have the same length, got {len(examples)}, {len(base)} "
                         f"and {len(tuned)}; pass the predictions of the same examples.")
    source = next((k for k in ("sentence", "question") if examples and k in examples[0]), "prompt")
    rows = [f"| {source} | base model | after LoRA | target | exact |", "|---|---|---|---|:-:|"]
    for ex, b, t in zip(examples, base, tuned, strict=True):
        cells = [_table_cell(s, max_chars) for s in (ex.get(source, ex["prompt"]), b, t, ex["target"])]
        rows.append("| " + " | ".join(cells) + f" | {'✓' if t.strip() == ex['target'] else '✗'} |")
    return "\n".join(rows)


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

    from ..memory import GB, MemoryBreakdown, training_memory

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


def plot_adapter_strength(strengths, results: dict, current: float, ax=None):
    """Notebook 04's slider figure: exact match and valid JSON (k of n) against the adapter's strength.

    ``results`` maps each strength in ``strengths`` (the multiplier of every layer's ``scaling``) to an
    ``evaluate`` result on the same n examples; ``current`` (one of ``strengths``) is marked. Returns the axes.
    """
    strengths = list(strengths)
    if current not in strengths:
        raise ValueError(f"strength {current} was not measured; pick one of {strengths}.")
    n = results[strengths[0]]["n"]
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4.2))
        for key, label, marker, color in (("valid_json", "valid JSON", "s--", "C1"), ("exact_match", "exact match", "o-", "C0")):
            counts = [round(results[m][key] * n) for m in strengths]
            line, = ax.plot(strengths, counts, marker, label=label, color=color)  # exact match drawn on top
            ax.plot([current], [counts[strengths.index(current)]], "o", ms=14, mfc="none", mew=2,
                    color=line.get_color())
        ax.axvline(current, color="gray", lw=0.8, ls=":")
        ax.axvline(1.0, color="k", lw=0.8, alpha=0.4)
        ax.annotate(" as trained", (1.0, n + 0.4), ha="left", fontsize=9, color="0.35")
        ax.set_ylim(-0.5, n + 1.2)
        ax.set_xlabel("adapter strength (multiplier of s = alpha / r; 0 = the base model)")
        ax.set_ylabel(f"test examples (of n = {n})")
        ax.set_title(f"The format adapter turned down and up: strength {current:g}", fontsize=11)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # off the data
        ax.figure.tight_layout()
    return ax
