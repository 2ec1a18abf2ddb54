"""Self-checks of notebooks/08_gpu_finetune.ipynb (rank and trainable parameters, rsLoRA's scale, the
precision choice, adapter size)."""

from __future__ import annotations

from .core import Check, _unanswered, check_value, report
from .transformer import SMOLLM2_LINEAR_SHAPES, smollm2_lora_params

# --- notebook 08 ---
# Checkers for notebooks/08_gpu_finetune.ipynb: what a rank costs, the rsLoRA scale in the sweep, the precision
# policy by GPU, and adapter against merged model size. SmolLM2's shapes are notebook 04's (above).


def check_rank64_trainable(answer) -> Check:
    """Exercise 08.1: trainable parameters of LoRA with r = 64 on all seven linear types of SmolLM2-135M."""
    return check_value("08.1 trainable parameters at r=64", answer,
                       smollm2_lora_params(SMOLLM2_LINEAR_SHAPES, 64),
                       hint="r * (in + out) per adapted layer, 7 types per decoder layer, 30 layers; it grows "
                            "linearly in r, so it is 8x the r=8 count the table printed.")


def check_rslora_scale(answer) -> Check:
    """Exercise 08.2: the sweep's rsLoRA run at r = 64, alpha = 2r: (its scaling, scaling / LoRA's scaling)."""
    r, alpha = 64, 128
    return check_value("08.2 rsLoRA scaling at r=64", answer, (alpha / r**0.5, (alpha / r**0.5) / (alpha / r)),
                       hint="LoRA scales B A by alpha / r, rsLoRA by alpha / sqrt(r); with alpha = 2r the first "
                            "is always 2. Answer (rsLoRA's scaling, how many times LoRA's it is).")


def check_precision_choice(answer) -> Check:
    """Exercise 08.3: (dtype, GradScaler?) for a T4 (capability 7.5) and an A100 (8.0), as a pair of pairs."""
    from ..runtime import precision_policy

    expected = tuple((p.dtype, p.use_grad_scaler) for p in (precision_policy("cuda", capability=(7, 5)),
                                                            precision_policy("cuda", capability=(8, 0))))
    hint = ("bf16 needs compute capability >= 8.0 (Ampere); below it the policy uses fp16 autocast, whose small "
            "gradients need loss scaling. Answer ((torch.float16 or torch.bfloat16, True/False), (..., ...)).")
    if _unanswered(answer):
        return report("08.3 precision by GPU", False, "replace the placeholder `...` with your answer, then "
                                                      "re-run. " + hint)
    try:
        ok = tuple(tuple(pair) for pair in answer) == expected
    except TypeError:
        ok = False
    return report("08.3 precision by GPU", ok, hint)


def check_adapter_ratio(answer) -> Check:
    """Exercise 08.4: how many times larger the merged fp32 model is than the r = 8 all-linear fp32 adapter."""
    return check_value("08.4 merged model / adapter", answer,
                       134_515_008 / smollm2_lora_params(SMOLLM2_LINEAR_SHAPES, 8), rtol=1e-2,
                       hint="both are 4 bytes per number: the merged model has the base's 134,515,008 parameters "
                            "(the tied embedding once), the adapter only A and B (r * (in + out) per layer).")
