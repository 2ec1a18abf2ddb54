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
