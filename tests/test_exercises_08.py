"""Notebook 08's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import torch
from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("08")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_rank64_trainable, "rank64_trainable", 2_442_240),  # the r=8 count
    (exercises.check_rslora_scale, "rslora_scale", (2.0, 1.0)),  # LoRA's scale, not rsLoRA's
    (exercises.check_precision_choice, "precision_choice", ((torch.bfloat16, False), (torch.bfloat16, False))),
    (exercises.check_adapter_ratio, "adapter_ratio", 134_515_008 / 460_800),  # q_proj, v_proj only
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise(capsys):
    assert not exercises.check_precision_choice("fp16 on a T4")
    assert not exercises.check_precision_choice(42)
    assert not exercises.check_precision_choice(((torch.float16, True),))  # the A100 is missing
    assert not exercises.check_rslora_scale(16.0)  # a number, not the pair
    assert capsys.readouterr().out.count("Hint") == 4


def test_the_answers_follow_from_the_library():
    from lora_edu import runtime
    from lora_edu.layers import LoraLinear

    assert SOLUTIONS["rank64_trainable"] == 8 * 2_442_240  # notebook 04 measured 2,442,240 at r=8
    rs = LoraLinear(torch.nn.Linear(64, 64), r=64, lora_alpha=128, use_rslora=True)
    plain = LoraLinear(torch.nn.Linear(64, 64), r=64, lora_alpha=128)
    assert (rs.scaling, rs.scaling / plain.scaling) == SOLUTIONS["rslora_scale"]
    t4 = runtime.precision_policy("cuda", capability=(7, 5))
    assert SOLUTIONS["precision_choice"][0] == (t4.dtype, t4.use_grad_scaler)
