"""Notebook 05's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import pytest
import torch
from exercise_checks import solutions, standard_tests

from lora_edu import LoraLinear, exercises

SOLUTIONS = solutions("05")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_bf16_rounding, "bf16_rounding", (0.501, 0.503)),  # as if bf16 kept every digit
    (exercises.check_unmerged_flops, "unmerged_flops", lambda i, o, r: r * (i + o)),  # multiply-adds, not FLOPs
    (exercises.check_unmerged_share, "unmerged_share", 8 * (576 + 576) / (576 * 576)),  # q_proj alone
    (exercises.check_merge_sequences, "merge_sequences", "abd"),  # forgot that merging twice is refused
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise():
    assert not exercises.check_bf16_rounding(0.5)  # one number, not the pair
    assert not exercises.check_unmerged_share("two percent")
    assert not exercises.check_unmerged_flops(lambda i, o: i + o)  # wrong signature: a hint, not a crash


def test_bf16_answer_is_what_torch_stores():
    stored = [float(torch.tensor(s).to(torch.bfloat16)) for s in exercises.EX05_BF16_SUMS]
    assert stored == list(SOLUTIONS["bf16_rounding"])


@pytest.mark.parametrize("letter", sorted(exercises.EX05_SEQUENCES))
def test_merge_sequences_answer_matches_lora_linear(letter):
    """Run each sequence on a real LoraLinear: the answer's letters are exactly the ones that succeed at W0."""
    torch.manual_seed(0)
    layer = LoraLinear(torch.nn.Linear(6, 5), r=2, lora_alpha=2, init_lora_weights=False)  # B != 0
    w0 = layer.weight.detach().clone()
    try:
        for op in exercises.EX05_SEQUENCES[letter].split(", "):
            getattr(layer, op)()
        ok = torch.allclose(layer.weight, w0, atol=1e-6)
    except ValueError:
        ok = False
    assert ok == (letter in SOLUTIONS["merge_sequences"])


def test_the_merge_dtype_experiment_accepts_honest_reports_and_refuses_the_rest(capsys):
    import torch

    from lora_edu import merging

    torch.manual_seed(0)
    weight, delta = torch.randn(64, 64) * 0.05, torch.randn(64, 64) * 1e-4
    bf16, fp16 = merging.merge_rounding(weight, delta, torch.bfloat16), merging.merge_rounding(weight, delta, torch.float16)
    assert exercises.check_merge_dtype_experiment("bf16", bf16, fp16)
    assert exercises.check_merge_dtype_experiment("fp16", bf16, fp16)  # a wrong prediction is still an experiment
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    other = merging.merge_rounding(weight, 10 * delta, torch.float16)
    assert not exercises.check_merge_dtype_experiment("bf16", fp16, bf16)  # swapped dtypes
    assert not exercises.check_merge_dtype_experiment("bf16", bf16, other)  # another delta W
    assert not exercises.check_merge_dtype_experiment("int8", bf16, fp16)
    assert not exercises.check_merge_dtype_experiment("bf16", 0.5, 0.1)
    assert not exercises.check_merge_dtype_experiment(..., ..., ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 5
