"""Figures for notebooks/04_lora_in_a_transformer.ipynb (target modules, training loss, generations) and
the training-memory calculator of lora_edu.memory (notebooks 04 and 07)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .core import style

# --- notebook 04 ---
# Figures for notebooks/04_lora_in_a_transformer.ipynb: trainable parameters per choice of target modules,
# the training loss of a real fine-tune, and generations before and after it, side by side.

def plot_trainable_by_target(counts: dict, base: int, full_finetuning: bool = True, ax=None,
                             title: str = "Trainable parameters by choice of target modules"):
    """Horizontal bars of trainable parameters as PEFT's share: trainable / all parameters of the adapted model,
    the adapter's own included (``print_trainable_parameters``), so ``n`` adapter numbers on a base model of
    ``base`` parameters train ``n / (base + n)``. Each bar is labelled with its count and share.

    ``counts`` maps a label (e.g. "q_proj, v_proj (r=8)") to the number of parameters an adapter adds and
    trains. ``full_finetuning`` adds a last, grey bar: all ``base`` parameters train, 100%. The axis is linear,
    so LoRA's bars are slivers next to that one (which is the point); unless ``ax`` is given, a second panel
    then zooms in on the adapters alone, where they can be compared. Returns the list of axes (one or two).
    """
    rows = [(label, float(n), 100 * n / (base + n)) for label, n in counts.items()]
    full = [("full fine-tuning", float(base), 100.0)] if full_finetuning else []
    with style():
        if ax is None:
            zoom = bool(full and rows)
            _, axes = plt.subplots(1, 2 if zoom else 1, sharey=True, squeeze=False,
                                   figsize=(13 if zoom else 8, 0.55 * (len(rows) + len(full)) + 1.4))
            axes = list(axes[0])
        else:
            axes = [ax]
        for a, shown in zip(axes, (rows + full, rows), strict=False):
            shares = [share for _, _, share in shown]
            top = max(shares) * (1.02 if a is axes[0] and full else 1.35)  # room for the labels beside the bars
            bars = a.barh(range(len(shown)), shares, color=["C7" if (label, n, s) in full else "C0"
                                                            for label, n, s in shown])
            for bar, (_, n, share) in zip(bars, shown, strict=True):
                inside = share > 0.6 * top  # a long bar carries its label inside, in white
                a.annotate(f"{n:,.0f} ({share:.2f}%)", (share, bar.get_y() + bar.get_height() / 2),
                           xytext=(-4 if inside else 4, 0), textcoords="offset points", va="center", fontsize=9,
                           ha="right" if inside else "left", color="w" if inside else "k")
            a.set_xlim(0, top)
            a.set_xlabel("trainable, % of all parameters")
            a.grid(axis="y", visible=False)
        axes[0].set_yticks(range(len(rows) + len(full)), [label for label, _, _ in rows + full])
        axes[0].invert_yaxis()  # the first entry on top
        heading = f"{title}\n(share of all parameters, LoRA's included, as PEFT counts; base model: {base:,})"
        if len(axes) == 2:
            axes[0].figure.suptitle(heading, fontsize=11)
            axes[0].set_title("with full fine-tuning", fontsize=10)
            axes[1].set_title("zoomed in: the adapters alone", fontsize=10)
            axes[1].annotate("full fine-tuning: 100%, off this scale", (0, len(rows)), xytext=(4, 0),
                             textcoords="offset points", va="center", fontsize=9, color="0.4")
        else:
            axes[0].set_title(heading, fontsize=11)
        axes[0].figure.tight_layout()
    return axes


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
    measured total in bytes, written above the bar next to the computed one. Where the parts above the
    weights are too thin to see (under 3% of the axis: LoRA's adapter, gradients and Adam states next to full
    fine-tuning), the label above the bar spells them out.
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
        top = bottom.max() * 1.2
        for xi, (name, b), total in zip(x, breakdowns.items(), bottom, strict=True):
            text = f"{total:,.1f} MB computed"
            if measured and name in measured:
                text += f"\n{measured[name] / 1e6:,.1f} MB measured"
            thin = [(label, getattr(b, part) / 1e6) for part, label, _ in parts if part != "weights" and getattr(b, part)]
            if thin and sum(mb for _, mb in thin) < 0.03 * top:  # too thin to see: say what the top holds
                text += ("\nthe thin top, above the weights:\n"
                         + "\n".join(f"{label} {mb:,.1f} MB" for label, mb in thin)
                         + f"\n= {sum(mb for _, mb in thin):,.1f} MB")
            ax.annotate(text, (xi, total), ha="center", va="bottom", fontsize=9, xytext=(0, 2),
                        textcoords="offset points")
        ax.set_xticks(x, list(breakdowns))
        ax.set_ylabel("MB (1e6 bytes)")
        ax.set_ylim(0, top)
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
    three get the same ``activations_gb`` (an input, not an estimate). ``gpu_gb`` draws a dashed line and,
    unless ``ax`` is given, a second panel zoomed to 0-1.5x the GPU, where each bar says how much room it
    leaves (full fine-tuning's hundreds of GB would squash the bars that fit into slivers beside the line).
    """
    import numpy as np

    from ..memory import GB, MemoryBreakdown, training_memory

    common = dict(optimizer=optimizer, activations_bytes=activations_gb * GB)
    bars = {"full fine-tuning": training_memory(n_params, "full", weight_bits=weight_bits, **common),
            "LoRA": training_memory(n_params, "lora", weight_bits=weight_bits,
                                    trainable_fraction=trainable_fraction, **common),
            "QLoRA (NF4 + DQ)": training_memory(n_params, "qlora", trainable_fraction=trainable_fraction,
                                                **common)}
    totals = np.array([b.total / GB for b in bars.values()])
    with style():
        if ax is None:
            zoom = gpu_gb is not None
            _, axes = plt.subplots(1, 2 if zoom else 1, figsize=(13, 4.8) if zoom else (8, 4.5),
                                   squeeze=False)
            axes = list(axes[0])
        else:
            axes = [ax]
        x = np.arange(len(bars))
        for a in axes:
            bottom = np.zeros(len(bars))
            parts = zip(MemoryBreakdown.PARTS, MemoryBreakdown.LABELS, MEMORY_COLORS, strict=True)
            for part, label, color in parts:
                height = np.array([getattr(b, part) / GB for b in bars.values()])
                a.bar(x, height, bottom=bottom, width=0.6, label=label, color=color)
                bottom += height
            if gpu_gb is not None:
                a.axhline(gpu_gb, color="k", ls="--", lw=1, label=f"a {gpu_gb:g} GB GPU")
            a.set_xticks(x, list(bars))
            a.set_ylabel("memory (GB = 1e9 bytes)")
        for xi, total in zip(x, totals, strict=True):
            axes[0].annotate(f"{total:,.1f} GB", (xi, total), ha="center", va="bottom", fontsize=10, zorder=4,
                             xytext=(0, 2), textcoords="offset points",  # boxed: the GPU's line may pass behind
                             bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=0.5))
        axes[0].set_ylim(0, max(totals.max(), gpu_gb or 0) * 1.12)
        title = (f"Training memory, {n_params / 1e9:g}B parameters (full and LoRA: {weight_bits}-bit base; "
                 f"LoRA and QLoRA train {trainable_fraction:.2%}; {optimizer})")
        if len(axes) == 1:
            axes[0].set_title(title, fontsize=10)
        else:  # the zoomed panel: 0 to 1.5x the GPU, each bar labelled with the room it leaves
            axes[0].figure.suptitle(title, fontsize=11)
            axes[0].set_title("all of it", fontsize=10)
            top = 1.5 * gpu_gb
            axes[1].set_ylim(0, top)
            axes[1].set_title(f"zoomed in: 0 to 1.5x the {gpu_gb:g} GB GPU", fontsize=10)
            for xi, total in zip(x, totals, strict=True):
                room = gpu_gb - total
                note = f"{total:,.1f} GB" + ("\n(off the scale)" if total > top else "") + "\n" + (
                    f"{room:,.1f} GB to spare" if room >= 0 else f"{-room:,.1f} GB over")
                shown = min(total, top)
                if shown > 0.25 * top:  # tall enough: the note goes inside the bar, clear of the GPU line
                    axes[1].text(xi, shown / 2, note, ha="center", va="center", fontsize=9, color="white",
                                 fontweight="bold", bbox=dict(facecolor="0.2", alpha=0.6, edgecolor="none"))
                else:
                    axes[1].annotate(note, (xi, total), ha="center", va="bottom", fontsize=9,
                                     xytext=(0, 3), textcoords="offset points")
        axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
        axes[0].figure.tight_layout()
    plt.show()
    return axes[0].figure


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
