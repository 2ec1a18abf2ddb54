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
    (exercises.check_unmerged_share, "unmerged_share", 0.0230),  # section 2's r = 8 share, copied from its table
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


def test_unmerged_share_is_asked_at_rank_64():
    """05.3 asks for a rank the notebook never prints: 64 * 10,176 / 3,538,944 = 0.184, not section 2's 0.023."""
    assert exercises.EX05_SHARE_RANK == 64
    assert SOLUTIONS["unmerged_share"] == pytest.approx(0.18403, abs=1e-5)
    assert not exercises.check_unmerged_share(8 * 10_176 / 3_538_944)  # the r = 8 share


def _dtype_reports(scale=1.0):
    from lora_edu import merging

    torch.manual_seed(0)
    weight, delta = torch.randn(64, 64) * 0.05, torch.randn(64, 64) * 1e-4 * scale
    return merging.merge_rounding(weight, delta, torch.bfloat16), merging.merge_rounding(weight, delta, torch.float16)


def test_the_merge_dtype_experiment_accepts_honest_reports_and_refuses_the_rest(capsys):
    bf16, fp16 = _dtype_reports()
    assert exercises.check_merge_dtype_experiment("more", bf16, fp16)
    assert exercises.check_merge_dtype_experiment("Less", bf16, fp16)  # a wrong prediction is still an experiment
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    assert f"n = {bf16['n']:,} nonzero entries" in out and "times as many" in out
    other = _dtype_reports(scale=10)[1]
    assert not exercises.check_merge_dtype_experiment("more", fp16, bf16)  # swapped dtypes
    assert not exercises.check_merge_dtype_experiment("more", bf16, other)  # another delta W
    assert not exercises.check_merge_dtype_experiment("bf16", bf16, fp16)  # the old question's answer
    assert not exercises.check_merge_dtype_experiment("more", 0.5, 0.1)
    assert not exercises.check_merge_dtype_experiment(..., ..., ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 5 and 'should be "more" or "less"' in out


@pytest.mark.parametrize("fp16_vanished, held_for", [(0.1, "less"), (0.05, "more"), (0.0, "more")])
def test_the_merge_dtype_experiment_compares_the_ratio_with_eight(capsys, fp16_vanished, held_for):
    """bf16 losing 0.6: fp16 at 0.1 is a ratio of 6 (less than 8), at 0.05 of 12, at 0 infinitely more."""
    bf16, fp16 = _dtype_reports()
    bf16, fp16 = {**bf16, "vanished": 0.6}, {**fp16, "vanished": fp16_vanished}
    for prediction in ("more", "less"):
        assert exercises.check_merge_dtype_experiment(prediction, bf16, fp16)
        held = "it held." in capsys.readouterr().out
        assert held == (prediction == held_for)
