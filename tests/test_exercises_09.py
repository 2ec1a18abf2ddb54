"""Notebook 09's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import torch
from exercise_checks import solutions, standard_tests, train_result

from lora_edu import exercises

SOLUTIONS = solutions("09")


def dora_weight_wrong_dim(W0, A, B, m, scaling):
    """The convention trap: one norm per input column (dim=0) instead of per output row."""
    W = W0 + scaling * B @ A
    return W / torch.linalg.norm(W, dim=0, keepdim=True) * m[:, None]


# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_dora_magnitude_count, "dora_magnitude_count", 30 * (576 + 576)),  # v_proj taken as square
    (exercises.check_dora_weight, "dora_weight", dora_weight_wrong_dim),
    (exercises.check_loraplus_lrs, "loraplus_lrs", (5e-4, 4e-3, 5e-4)),  # magnitude left at A's lr
    (exercises.check_loraplus_lrs, "loraplus_lrs", (2e-4, 3.2e-3, 3.2e-3)),  # section 4's setting, copied
    (exercises.check_rslora_equivalent_alpha, "rslora_equivalent_alpha", 16 * 8 / 64),  # mixed up the rules
    (exercises.check_adapter_flops, "adapter_flops", 30 * (2 * 576 * 64 + 2 * 64 * 576)),  # one adapter/layer
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise():
    assert not exercises.check_loraplus_lrs(3.2e-3)  # a number, not the tuple of three
    assert not exercises.check_dora_weight(lambda *args: "W")  # returns a string: a hint, not a crash
    assert not exercises.check_dora_magnitude_count("many")



def test_the_rank64_experiment_accepts_an_honest_pair_and_says_if_the_prediction_held(capsys):
    from lora_edu import LoraConfig

    standard = (LoraConfig(r=64, lora_alpha=16, target_modules="all-linear"), train_result([0.5] * 9 + [0.2, 0.2, 0.2]))
    rslora = (LoraConfig(r=64, lora_alpha=16, target_modules="all-linear", use_rslora=True), train_result([0.5] * 9 + [0.1] * 3))
    assert exercises.check_rslora_rank64_experiment("rslora", standard, rslora)
    assert exercises.check_rslora_rank64_experiment("standard", standard, rslora)  # a wrong guess is still an experiment
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    assert "standard 0.2000, rslora 0.1000" in out


def test_the_rank64_experiment_refuses_runs_that_do_not_test_the_question(capsys):
    from lora_edu import LoraConfig

    standard = LoraConfig(r=64, lora_alpha=16, target_modules="all-linear")
    rslora = LoraConfig(r=64, lora_alpha=16, target_modules="all-linear", use_rslora=True)
    run = train_result([0.5] * 12)
    assert not exercises.check_rslora_rank64_experiment("rslora", (rslora, run), (standard, run))  # swapped
    assert not exercises.check_rslora_rank64_experiment(
        "rslora", (LoraConfig(r=8, lora_alpha=16), run), (LoraConfig(r=8, lora_alpha=16, use_rslora=True), run))
    assert not exercises.check_rslora_rank64_experiment(
        "rslora", (standard, run), (LoraConfig(r=64, lora_alpha=32, target_modules="all-linear", use_rslora=True), run))
    big = dict(r=64, lora_alpha=128, target_modules="all-linear")  # same alpha in both, but not the question's 16
    assert not exercises.check_rslora_rank64_experiment(
        "rslora", (LoraConfig(**big), run), (LoraConfig(**big, use_rslora=True), run))
    assert not exercises.check_rslora_rank64_experiment("rslora", (standard, train_result([0.5] * 5)), (rslora, train_result([0.5] * 5)))
    assert not exercises.check_rslora_rank64_experiment("maybe", (standard, run), (rslora, run))
    assert not exercises.check_rslora_rank64_experiment(..., ..., ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 7
