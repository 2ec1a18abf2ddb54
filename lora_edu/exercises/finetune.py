"""Self-checks of notebooks/08_gpu_finetune.ipynb (rank and trainable parameters, rsLoRA's scale, the
precision choice, adapter size)."""

from __future__ import annotations

from .core import Check, _unanswered, check_value, read_prediction, report
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
    """Exercise 08.3: (dtype, GradScaler?) for an L4 (capability 8.9) and a P100 (6.0), as a pair of pairs: two
    GPUs that section 1's table did not print."""
    from ..runtime import precision_policy

    expected = tuple((p.dtype, p.use_grad_scaler) for p in (precision_policy("cuda", capability=(8, 9)),
                                                            precision_policy("cuda", capability=(6, 0))))
    form = "Answer ((torch.float16 or torch.bfloat16, True/False), (..., ...))."
    hint = ("bf16 needs compute capability >= 8.0 (Ampere); below it the policy uses fp16 autocast, whose small "
            "gradients need loss scaling. " + form)
    if _unanswered(answer):
        return report("08.3 precision by GPU", False, "replace the placeholder `...` with your answer, then "
                                                      "re-run. " + form)
    try:
        ok = tuple(tuple(pair) for pair in answer) == expected
    except TypeError:
        ok = False
    return report("08.3 precision by GPU", ok, hint)


def check_adapter_ratio(answer) -> Check:
    """Exercise 08.4: how many times larger the merged fp32 model is than the r = 8 all-linear fp32 adapter, from
    the parameter counts. rtol 3e-3 takes 55 or 55.1 but not the ratio of the two rounded disk sizes (542 / 9.8)."""
    return check_value("08.4 merged model / adapter", answer,
                       134_515_008 / smollm2_lora_params(SMOLLM2_LINEAR_SHAPES, 8), rtol=3e-3,
                       hint="both are 4 bytes per number: the merged model has the base's 134,515,008 parameters "
                            "(the tied embedding once), the adapter only A and B (r * (in + out) per layer).")


EX08_SAME = ("task", "method", "steps", "batch_size", "lr", "warmup_steps", "eval_examples", "n_facts", "use_rslora",
             "model_name")


def check_sweep_rank_experiment(prediction, row: dict, sweep: list) -> Check:
    """Exercise 08.5, an experiment: one more rank of section 6's sweep on the knowledge task (r = 16 or 32,
    lora_alpha = 2r, everything else as the sweep's runs), and whether its answer loss lands between the
    sweep's r = 8 and r = 64 (means over seeds). Any honest run passes; a second line says if the prediction held."""
    name = "08.5 experiment: one more rank on the sweep's curve"
    if any(_unanswered(a) for a in (prediction, row, sweep)):
        return report(name, False, 'replace each placeholder `...`: your prediction ("between" or "outside"), then '
                      "the .row of experiments.run_config(...) for your run, then re-run.")
    pick, problems = read_prediction(prediction, ("between", "outside"))
    if not (isinstance(row, dict) and isinstance(sweep, list) and sweep and all(isinstance(r, dict) for r in sweep)):
        problems.append("pass the .row dict of your run and the notebook's `sweep` list")
        return report(name, False, "; ".join(problems) + ".")
    template = next((r for r in sweep if r.get("task") == "knowledge" and not r.get("use_rslora")), None)
    if template is None:
        return report(name, False, "the sweep has no plain-LoRA knowledge run to compare with; run section 6 first.")
    if row.get("task") != "knowledge" or row.get("r") not in (16, 32):
        problems.append("train the knowledge task at r = 16 or r = 32 (a rank the sweep did not run)")
    elif row.get("lora_alpha") != 2 * row["r"]:
        problems.append(f"use lora_alpha = 2r = {2 * row['r']}, as every run of the sweep did")
    differ = [k for k in EX08_SAME if row.get(k) != template.get(k)]
    if differ:
        problems.append(f"change the rank only: {', '.join(differ)} differ from the sweep's runs "
                        "(start from templates['knowledge'] and dataclasses.replace(..., r=..., lora_alpha=...))")
    if row.get("answer_loss_after") is None:
        problems.append("the run has no answer loss after training (did it diverge?)")
    if problems:
        return report(name, False, "; ".join(problems) + ".")

    def mean_loss(r):
        values = [x["answer_loss_after"] for x in sweep if x.get("task") == "knowledge" and x.get("r") == r
                  and not x.get("use_rslora") and x.get("answer_loss_after") is not None]
        return sum(values) / len(values) if values else None

    low, high = mean_loss(8), mean_loss(64)
    if low is None or high is None:
        return report(name, False, "the sweep needs plain-LoRA knowledge runs at r = 8 and r = 64 to compare with.")
    loss = row["answer_loss_after"]
    outcome = "between" if min(low, high) <= loss <= max(low, high) else "outside"
    check = report(name, True, "")
    print(f"  measured answer loss: r = 8 {low:.3f}, your r = {row['r']} {loss:.3f}, r = 64 {high:.3f} ({outcome}); "
          f"you predicted {pick}: " + ("it held." if pick == outcome else "it did not. Section 6's findings say how "
                                                                         "the loss moved with the rank; why?"))
    return check
