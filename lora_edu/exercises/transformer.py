"""Self-checks of notebooks/04_lora_in_a_transformer.ipynb and 05_merging.ipynb (target modules, Adam
state, bf16 rounding, the unmerged path's FLOPs, merge order)."""

from __future__ import annotations

import torch

from .core import Check, _unanswered, check_function, check_paired_runs, check_value, read_prediction, report

# --- notebook 04 ---
# Checkers for notebooks/04_lora_in_a_transformer.ipynb. SmolLM2-135M: hidden 576, MLP 1536, 30 decoder
# layers, 9 query heads and 3 key/value heads of 64 dims, so k_proj and v_proj map 576 -> 192.
SMOLLM2_LINEAR_SHAPES = {"q_proj": (576, 576), "k_proj": (576, 192), "v_proj": (576, 192), "o_proj": (576, 576),
                         "gate_proj": (576, 1536), "up_proj": (576, 1536), "down_proj": (1536, 576)}  # (in, out)
SMOLLM2_LAYERS = 30


def smollm2_linear_names() -> list[str]:
    """The 210 linear layer names inside SmolLM2's decoder blocks, in named_modules() order."""
    parts = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
             "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
    return [f"model.layers.{i}.{parts[n]}.{n}" for i in range(SMOLLM2_LAYERS) for n in SMOLLM2_LINEAR_SHAPES]


def smollm2_lora_params(target_modules, r: int) -> int:
    """LoRA parameters on SmolLM2 for a list of linear layer types: r * (in + out) each, in every layer."""
    return SMOLLM2_LAYERS * sum(r * sum(SMOLLM2_LINEAR_SHAPES[n]) for n in target_modules)


def check_qv_trainable(answer) -> Check:
    """Exercise 04.1: trainable parameters of LoRA with r = 16 on q_proj and v_proj of SmolLM2."""
    return check_value("04.1 q_proj + v_proj at r=16", answer, smollm2_lora_params(["q_proj", "v_proj"], 16),
                       hint="r * (in + out) per layer: q_proj is 576 -> 576, v_proj is 576 -> 192 (3 key/value "
                            "heads of 64); add them and multiply by the 30 decoder layers.")


def check_string_vs_list(answer) -> Check:
    """Exercise 04.2: modules selected by target_modules="q_proj" (a string) and by ["q_proj"] (a list)."""
    return check_value("04.2 string or list", answer, (0, SMOLLM2_LAYERS),
                       hint="a list entry matches a name that ends in '.q_proj'; a string is a regular "
                            "expression that must match the WHOLE name (re.fullmatch). Answer (string, list).")


EX04_REGEX = r".*\.1\d\.mlp\.(up|down)_proj"


def check_regex_count(answer) -> Check:
    """Exercise 04.3: how many modules the regex ``EX04_REGEX`` selects in SmolLM2."""
    import re

    expected = sum(bool(re.fullmatch(EX04_REGEX, n)) for n in smollm2_linear_names())
    return check_value("04.3 regex targets", answer, expected,
                       hint=r"'\.1\d\.' is a layer index from 10 to 19; each of those layers has one up_proj "
                            "and one down_proj. Check with len(find_target_modules(model, exercises.EX04_REGEX)).")


def check_adam_state_bytes(answer) -> Check:
    """Exercise 04.4: bytes of AdamW state for LoRA r = 8 on all seven linear types of SmolLM2 (fp32)."""
    return check_value("04.4 AdamW state bytes", answer, 8 * smollm2_lora_params(SMOLLM2_LINEAR_SHAPES, 8),
                       rtol=1e-3, hint="AdamW keeps two fp32 numbers (exp_avg and exp_avg_sq, 4 bytes each) per "
                                       "trainable parameter; count the trainable parameters first (r * (in + out) "
                                       "per layer, 7 types, 30 layers). Answer in bytes, exactly: the MB that "
                                       "section 5 prints are rounded too far for this check.")


EX04_SEVEN = set(SMOLLM2_LINEAR_SHAPES)


def _targets(config) -> str | None:
    """"qv" / "all" for the two target choices of exercise 04.5, None for anything else."""
    targets = getattr(config, "target_modules", None)
    if targets == "all-linear" or (isinstance(targets, (list, tuple, set)) and set(targets) == EX04_SEVEN):
        return "all"
    if isinstance(targets, (list, tuple, set)) and set(targets) == {"q_proj", "v_proj"}:
        return "qv"
    return None


def check_targets_experiment(prediction, qv_experiment, all_linear_experiment) -> Check:
    """Exercise 04.5, an experiment: 12+ steps on the format task with LoRA on q_proj, v_proj and on all linear
    layers, the same r, alpha and recipe. Any honest pair passes; the line after it says if the prediction held."""
    return check_paired_runs(
        "04.5 experiment: q_proj, v_proj against all-linear", prediction, {"qv": "q_proj,v_proj", "all": "all-linear"},
        (qv_experiment, all_linear_experiment), knob=_targets, same=("r", "lora_alpha", "use_rslora"),
        knob_hint='the first config targets ["q_proj", "v_proj"], the second "all-linear"',
        why={"all": "Section 4's counts say how many more numbers each step moves (2,442,240 against 460,800 at "
                    "r = 8, in all seven layer types); say it in your own words.",
             "qv": "Here fewer trained numbers did better in these steps; one seed and one task, so rerun with "
                   "another seed before you trust it."})


# --- notebook 05 ---
# Checkers for notebooks/05_merging.ipynb. SmolLM2-135M: hidden 576, MLP 1536, q_proj/o_proj 576 x 576,
# k_proj/v_proj 576 -> 192, gate_proj/up_proj 576 -> 1536, down_proj 1536 -> 576.

EX05_BF16_SUMS = (0.5 + 1e-3, 0.5 + 3e-3)  # exercise 05.1: what bf16 stores for each sum
EX05_SHAPES = ((576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576))  # (in, out)


def check_bf16_rounding(answer) -> Check:
    """Exercise 05.1: the bf16 numbers stored for 0.5 + 1e-3 and 0.5 + 3e-3 (a tuple of two floats)."""
    expected = tuple(float(torch.tensor(s).to(torch.bfloat16)) for s in EX05_BF16_SUMS)
    return check_value("05.1 bf16 rounding", answer, expected, rtol=1e-9,
                       hint="bf16 keeps 8 significant bits, so numbers in [0.5, 1) are 2^-8 = 0.00390625 apart; "
                            "each sum rounds to the nearest multiple of that. Answer a tuple of two floats.")


def _unmerged_extra_flops(in_features: int, out_features: int, r: int) -> int:
    return 2 * r * (in_features + out_features)  # x A^T: r * in multiply-adds, then B: out * r; 2 FLOPs each


def check_unmerged_flops(fn) -> Check:
    """Exercise 05.2: ``fn(in_features, out_features, r)`` = extra FLOPs per token of the unmerged LoRA path."""
    return check_function("05.2 unmerged FLOPs", fn, _unmerged_extra_flops,
                          [(576, 576, 8), (576, 1536, 8), (1536, 576, 16), (4096, 4096, 1), (3, 5, 2)],
                          hint="The side path is two skinny matmuls, x -> A x (r x in) -> B (A x) (out x r); "
                               "count a multiply-add as 2 FLOPs.", atol=0)


EX05_SHARE_RANK = 64  # exercise 05.3 asks at r = 64; section 2 of the notebook prints the share at r = 8


def check_unmerged_share(answer) -> Check:
    """Exercise 05.3: the unmerged path's extra FLOPs as a fraction of the seven linear layers' own FLOPs
    (r = EX05_SHARE_RANK on all seven types of a SmolLM2 decoder layer)."""
    r = EX05_SHARE_RANK
    extra = sum(_unmerged_extra_flops(i, o, r) for i, o in EX05_SHAPES)
    base = sum(2 * i * o for i, o in EX05_SHAPES)
    return check_value("05.3 unmerged share", answer, extra / base, rtol=1e-3,
                       hint=f"Per token a linear layer costs 2 * in * out FLOPs and its LoRA path 2 * r * (in + out), "
                            f"here with r = {r}; add both over the seven shapes, then divide. Answer a fraction "
                            "(0.05 is 5%).")


EX05_SEQUENCES = {"a": "merge, unmerge", "b": "merge, merge, unmerge, unmerge", "c": "unmerge, merge",
                  "d": "merge, unmerge, merge, unmerge", "e": "merge"}


def check_merge_sequences(answer) -> Check:
    """Exercise 05.4: which sequences (letters of EX05_SEQUENCES) run without an error on a trained (B != 0),
    unmerged LoraLinear and leave its weight at W0 (up to rounding)? Answer the letters as a string, e.g. "ab"."""
    if _unanswered(answer):
        return report("05.4 merge and unmerge order", False, "replace the placeholder `...` with a string of "
                      "letters, then re-run.")
    letters = "".join(sorted(c for c in str(answer).lower() if c.isalpha()))
    return report("05.4 merge and unmerge order", letters == "ad",
                  "the layer starts unmerged; merge() on a merged layer and unmerge() on an unmerged one raise "
                  "ValueError; when merges and unmerges pair up the weight is back at W0 up to rounding (each pair can "
                  "leave an entry up to one fp32 spacing off; section 5 measured how far).")


EX05_GAP_RATIO = 8  # fp16's gaps are 2^3 = 8 times finer than bf16's (11 significant bits against 8)


def check_merge_dtype_experiment(prediction, bf16_report, fp16_report) -> Check:
    """Exercise 05.5, an experiment: merge one trained layer's update into W0 stored in bf16 and in fp16
    (``merging.merge_rounding``). fp16's gaps are EX05_GAP_RATIO = 8 times finer; does bf16 lose "more" or "less"
    than 8 times the share of update entries that fp16 loses? Any two honest reports pass; the dtype of each is
    read off its ``half_spacing`` (bf16 2^-8, fp16 2^-11), and a second line gives the measured ratio and says
    if the prediction held."""
    name = "05.5 experiment: bf16 against fp16 merges"
    if any(_unanswered(a) for a in (prediction, bf16_report, fp16_report)):
        return report(name, False, 'replace each placeholder `...`: your prediction ("more" or "less": does bf16 '
                      f"lose more or less than {EX05_GAP_RATIO} times the share fp16 loses?), then the two dicts "
                      "merging.merge_rounding returns, then re-run.")
    pick, problems = read_prediction(prediction, ("more", "less"))
    keys = ("n", "vanished", "relative_error", "median_relative_size", "half_spacing")
    if not all(isinstance(r, dict) and all(k in r for k in keys) for r in (bf16_report, fp16_report)):
        problems.append("pass the two dicts that merging.merge_rounding(layer.weight, delta, dtype) returns")
        return report(name, False, "; ".join(problems) + ".")
    if (bf16_report["half_spacing"], fp16_report["half_spacing"]) != (2.0**-8, 2.0**-11):
        problems.append("the first report should be for torch.bfloat16, the second for torch.float16 (their "
                        "half_spacing says which dtype each was measured in)")
    sizes = (bf16_report["median_relative_size"], fp16_report["median_relative_size"])
    if bf16_report["n"] != fp16_report["n"] or min(sizes) <= 0 or max(sizes) > 1.05 * min(sizes):
        problems.append("measure the same layer's delta W in both (their n and median |dW| / |W0| should agree)")
    if problems:
        return report(name, False, "; ".join(problems) + ".")
    bf16_lost, fp16_lost = bf16_report["vanished"], fp16_report["vanished"]
    ratio = bf16_lost / fp16_lost if fp16_lost > 0 else float("inf")
    outcome = "more" if ratio > EX05_GAP_RATIO else "less"
    check = report(name, True, "")
    print(f"  measured: of the update's n = {bf16_report['n']:,} nonzero entries, bf16 loses {bf16_lost:.1%} and "
          f"fp16 {fp16_lost:.1%}, {ratio:.1f} times as many; you predicted {pick}: "
          + ("it held." if outcome == pick else "it did not.")
          + f" The gaps differ by exactly {EX05_GAP_RATIO} times; the shares that vanish are the entries below half "
          "a gap, so their ratio depends on how the entries' sizes spread (section 7's histogram).")
    return check
