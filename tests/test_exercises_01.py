"""Notebook 01's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import math

from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("01")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_eckart_young_errors, "eckart_young_errors", (math.sqrt(3**2 + 1**2), 1.0)),  # spectral: last
    (exercises.check_factor_params, "factor_params", lambda m, n, k: m * n * k),
    (exercises.check_break_even_rank, "break_even_rank", 419),  # rounded up: 419 * 2112 > 1536 * 576
    (exercises.check_energy_rank, "energy_rank", 2),  # 25 / 31 = 81% < 90%
    (exercises.check_subspace_phi, "subspace_phi", 1 / 3),  # divided by max(i, j)
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_an_answer_rounded_to_three_digits_passes(capsys):
    assert exercises.check_eckart_young_errors((3.16, 3))  # sqrt(10) = 3.1623 to three significant digits
    assert not exercises.check_eckart_young_errors((3.17, 3))  # off in the third digit


def test_malformed_answers_do_not_raise(capsys):
    assert not exercises.check_eckart_young_errors(3.16)  # a number, not the (fro, spectral) pair
    assert not exercises.check_energy_rank("three")
    assert not exercises.check_factor_params(lambda m, n, k: m / 0)  # a learner's bug is reported
    assert "ZeroDivisionError" in capsys.readouterr().out
