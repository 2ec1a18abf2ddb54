"""Self-checks of notebooks/09_variants.ipynb (DoRA, LoRA+, rsLoRA, adapter FLOPs)."""

from __future__ import annotations

import torch

from .core import Check, _unanswered, check_function, check_paired_runs, check_value, report

# --- notebook 09 ---
# Checkers for notebooks/09_variants.ipynb. SmolLM2-135M: hidden 576, MLP 1536, 30 decoder layers; q_proj is
# 576 -> 576, v_proj 576 -> 192. Each problem's data is stated in the notebook and here.

EX09_LR, EX09_RATIO = 5e-4, 8  # exercise 09.3: LoRA+ with this lr (A's) and loraplus_lr_ratio (not section 4's)
EX09_BOTTLENECK = 64  # exercise 09.5: a Houlsby adapter's bottleneck width on SmolLM2


def check_dora_magnitude_count(answer) -> Check:
    """Exercise 09.1: DoRA's extra trainable numbers (magnitudes) with q_proj and v_proj in all 30 layers."""
    return check_value("09.1 DoRA magnitudes", answer, 30 * (576 + 192),
                       hint="one magnitude per output feature (per row of the (out, in) weight): q_proj has "
                            "576 outputs, v_proj 192; add them, then multiply by the 30 layers.")


def dora_weight_reference(W0, A, B, m, scaling):
    """W' = m * (W0 + scaling * B @ A) / ||W0 + scaling * B @ A||, one norm per row (output feature)."""
    W = W0 + scaling * B @ A  # (out, in)
    return m[:, None] * W / torch.linalg.norm(W, dim=1, keepdim=True)


def _dora_inputs() -> list[tuple]:
    """Fixed-seed (W0, A, B, m, scaling) cases, all non-square so a norm over the wrong dim is caught."""
    g = torch.Generator().manual_seed(9)
    cases = []
    for out_f, in_f, r, scaling in ((3, 5, 2, 2.0), (6, 4, 1, 0.5), (5, 7, 3, 1.0)):
        cases.append((torch.randn(out_f, in_f, generator=g), torch.randn(r, in_f, generator=g),
                      torch.randn(out_f, r, generator=g), torch.rand(out_f, generator=g) + 0.5, scaling))
    return cases


def check_dora_weight(fn) -> Check:
    """Exercise 09.2: ``fn(W0, A, B, m, scaling)`` returns DoRA's merged weight W' (out, in)."""
    return check_function("09.2 DoRA weight", fn, dora_weight_reference, _dora_inputs(), atol=1e-5,
                          hint="form W = W0 + scaling * B @ A; take the norm of each ROW "
                               "(torch.linalg.norm(W, dim=1, keepdim=True)); then m[:, None] * W / norm.",
                          placeholder_hint="W' is (out, in): over which dim does PEFT's norm run?")


def check_loraplus_lrs(answer) -> Check:
    """Exercise 09.3: (lr of lora_A, lr of lora_B, lr of DoRA's magnitude) for LoRA+ with EX09_LR, EX09_RATIO."""
    return check_value("09.3 LoRA+ learning rates", answer, (EX09_LR, EX09_LR * EX09_RATIO, EX09_LR * EX09_RATIO),
                       hint="A keeps lr; B gets lr * ratio; PEFT's grouping also sends every 1-D parameter "
                            "(such as lora_magnitude_vector) to B's group. Answer a tuple of three.")


def check_rslora_equivalent_alpha(answer) -> Check:
    """Exercise 09.4: at r = 64, the lora_alpha that gives standard scaling the scale of rsLoRA with alpha 16."""
    return check_value("09.4 rsLoRA's equivalent alpha", answer, 16 * 64 ** 0.5,
                       hint="rsLoRA's scaling is 16 / sqrt(64); solve alpha / 64 = that for alpha.")


def check_adapter_flops(answer) -> Check:
    """Exercise 09.5: extra FLOPs per token of Houlsby adapters (bottleneck EX09_BOTTLENECK) on SmolLM2."""
    d, m, layers = 576, EX09_BOTTLENECK, 30
    return check_value("09.5 adapter FLOPs per token", answer, layers * 2 * (2 * d * m + 2 * m * d),
                       hint="two adapters per layer, each a down (576 -> 64) and an up (64 -> 576) matmul; "
                            "a matmul of an (in -> out) layer costs 2 * in * out FLOPs per token.")


EX09_RANK = 64  # exercise 09.6: the rank where the two scaling rules differ by 8x at lora_alpha = 16


def check_rslora_rank64_experiment(prediction, standard_experiment, rslora_experiment) -> Check:
    """Exercise 09.6, an experiment: LoRA at r = 64, lora_alpha = 16 on the format task with standard scaling
    (alpha / r = 0.25) and with rsLoRA (alpha / sqrt(r) = 2), the same recipe (12+ steps). Any honest pair passes;
    the line after it says whether the prediction held."""
    name = "09.6 experiment: rsLoRA against standard scaling at r = 64"
    pairs = (standard_experiment, rslora_experiment)
    if not any(_unanswered(a) for a in (prediction, *pairs)) and all(isinstance(p, tuple) and len(p) == 2
                                                                     for p in pairs):
        if all(getattr(p[0], "r", None) != EX09_RANK for p in pairs):
            return report(name, False, f"train both at r = {EX09_RANK} (LoraConfig(r={EX09_RANK}, lora_alpha=16, "
                          "...)): at r = 8 and 32 section 6 already ran the pair.")
        if any(getattr(p[0], "lora_alpha", None) != 16 for p in pairs):
            return report(name, False, "the question is about lora_alpha = 16 (s = 0.25 against 2): use "
                          "LoraConfig(r=64, lora_alpha=16, ...) for both runs.")
    return check_paired_runs(
        name, prediction, {"standard": "standard", "rslora": "rslora"}, pairs,
        knob=lambda config: "rslora" if config.use_rslora else "standard",
        same=("r", "lora_alpha", "target_modules", "use_dora"),
        knob_hint="the first config has use_rslora=False, the second use_rslora=True",
        why="Section 2 says how the size of one Adam step's update follows the scaling s: compare "
            "16 / 64 with 16 / sqrt(64).")

