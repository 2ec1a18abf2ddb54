"""Notebook 03's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import runpy
from pathlib import Path

from lora_edu import exercises

SOLUTIONS = runpy.run_path(str(Path(__file__).resolve().parents[1] / "notebooks/solutions/03_solutions.py"))

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_toy_loss_floor, "toy_loss_floor", 5.0 ** 0.5),  # the Frobenius error, not its square
    (exercises.check_toy_scaling, "toy_scaling", (2.0, 32 / 16 ** 0.5 / 2)),  # rsLoRA miscomputed
    (exercises.check_toy_lora_parameters, "toy_lora_parameters", 64 * 64 + 8 * 128),  # counted frozen W0
    (exercises.check_alpha_equivalence, "alpha_equivalence", (4.0, 1.0)),  # the naive "lr times c"
]


def test_reference_answers_pass(capsys):
    for check, name, _ in CASES:
        assert check(SOLUTIONS[name]), name
    assert capsys.readouterr().out.count("correct!") == len(CASES)


def test_wrong_answers_fail_with_a_hint(capsys):
    for check, name, wrong in CASES:
        assert not check(wrong), name
    out = capsys.readouterr().out
    assert out.count("Hint") == len(CASES) and "correct!" not in out


def test_placeholders_do_not_raise(capsys):
    for check, _, _ in CASES:
        assert not check(...)
        assert not check(None)
    assert capsys.readouterr().out.count("placeholder") == 2 * len(CASES)


def test_malformed_answers_do_not_raise():
    assert not exercises.check_toy_scaling(2.0)  # a number, not the (standard, rslora) pair
    assert not exercises.check_alpha_equivalence("twice")
    assert not exercises.check_toy_loss_floor("five")
