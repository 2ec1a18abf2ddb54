"""Notebook 09's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import torch
from exercise_checks import solutions, standard_tests

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
    (exercises.check_loraplus_lrs, "loraplus_lrs", (2e-4, 3.2e-3, 2e-4)),  # magnitude left at A's lr
    (exercises.check_rslora_equivalent_alpha, "rslora_equivalent_alpha", 16 * 8 / 64),  # mixed up the rules
    (exercises.check_adapter_flops, "adapter_flops", 30 * (2 * 576 * 64 + 2 * 64 * 576)),  # one adapter/layer
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise():
    assert not exercises.check_loraplus_lrs(3.2e-3)  # a number, not the tuple of three
    assert not exercises.check_dora_weight(lambda *args: "W")  # returns a string: a hint, not a crash
    assert not exercises.check_dora_magnitude_count("many")


def _run(losses, lr=1e-3):
    from lora_edu.training import TrainResult

    return TrainResult(history=[{"step": i, "loss": v, "lr": lr, "grad_norm": 1.0} for i, v in enumerate(losses)])


def test_the_alpha_experiment_accepts_an_honest_pair_and_refuses_the_rest(capsys):
    import math

    from lora_edu import LoraConfig

    plain = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
    matched = LoraConfig(r=8, lora_alpha=16 * math.sqrt(8), target_modules="all-linear")
    low, high = _run([0.4] * 17 + [0.01] * 3), _run([0.4] * 17 + [0.03] * 3)
    assert exercises.check_alpha_experiment("45.25", (plain, high), (matched, low))
    assert exercises.check_alpha_experiment(16, (plain, high), (matched, low))  # a number works; wrong is fine
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    rs = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", use_rslora=True)
    assert not exercises.check_alpha_experiment("16", (plain, low), (rs, low))  # rsLoRA itself is not the knob
    assert not exercises.check_alpha_experiment("16", (matched, low), (plain, low))  # swapped
    assert not exercises.check_alpha_experiment("16", (plain, _run([0.4] * 12)), (matched, _run([0.4] * 12)))
    qv = LoraConfig(r=8, lora_alpha=16 * math.sqrt(8), target_modules=["q_proj", "v_proj"])
    assert not exercises.check_alpha_experiment("16", (plain, low), (qv, low))  # two knobs changed
    assert not exercises.check_alpha_experiment(..., ..., ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 5
