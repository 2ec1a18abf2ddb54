"""Notebook 03's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("03")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_toy_loss_floor, "toy_loss_floor", 5.0 ** 0.5),  # the Frobenius error, not its square
    (exercises.check_toy_scaling, "toy_scaling", (2.0, 32 / 16 ** 0.5 / 2)),  # rsLoRA miscomputed
    (exercises.check_toy_lora_parameters, "toy_lora_parameters", 64 * 64 + 8 * 128),  # counted frozen W0
    (exercises.check_alpha_equivalence, "alpha_equivalence", (4.0, 1.0)),  # the naive "lr times c"
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise():
    assert not exercises.check_toy_scaling(2.0)  # a number, not the (standard, rslora) pair
    assert not exercises.check_alpha_equivalence("twice")
    assert not exercises.check_toy_loss_floor("five")
