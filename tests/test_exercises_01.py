"""Notebook 01's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import math
import runpy
from pathlib import Path

from lora_edu import exercises

SOLUTIONS = runpy.run_path(str(Path(__file__).resolve().parents[1] / "notebooks/solutions/01_solutions.py"))

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_eckart_young_errors, "eckart_young_errors", (math.sqrt(3**2 + 1**2), 1.0)),  # spectral: last
    (exercises.check_factor_params, "factor_params", lambda m, n, k: m * n * k),
    (exercises.check_break_even_rank, "break_even_rank", 419),  # rounded up: 419 * 2112 > 1536 * 576
    (exercises.check_energy_rank, "energy_rank", 2),  # 25 / 31 = 81% < 90%
    (exercises.check_subspace_phi, "subspace_phi", 1 / 3),  # divided by max(i, j)
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
    out = capsys.readouterr().out
    assert out.count("placeholder") == 2 * (len(CASES) - 1) and out.count("write the function first") == 2


def test_malformed_answers_do_not_raise(capsys):
    assert not exercises.check_eckart_young_errors(3.16)  # a number, not the (fro, spectral) pair
    assert not exercises.check_energy_rank("three")
    assert not exercises.check_factor_params(lambda m, n, k: m / 0)  # a learner's bug is reported
    assert "ZeroDivisionError" in capsys.readouterr().out
