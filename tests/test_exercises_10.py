"""Notebook 10's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("10")


def gathered_with_one_adapter(x, slots, stacked_A, stacked_B):
    """The mistake the check must catch: every row through slot 0's adapter (no gather)."""
    return x @ stacked_A[0].T @ stacked_B[0].T


CASES = [
    (exercises.check_adapter_numbers, "adapter_numbers", 8 * 10176),  # one block instead of 30
    (exercises.check_gathered_delta, "gathered_delta", gathered_with_one_adapter),
    (exercises.check_max_lora_rank, "max_lora_rank", 40),  # not a value vLLM accepts
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise():
    assert not exercises.check_gathered_delta(lambda *args: "delta")
    assert not exercises.check_max_lora_rank("sixty-four")
