"""Notebook 00's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("00")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_mlp_parameters, "mlp_parameters", 2 * 576 * 1536),  # gate and up only, down forgotten
    (exercises.check_embedding_share, "embedding_share", 2 * SOLUTIONS["embedding_share"]),  # lm_head counted twice
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise(capsys):
    assert not exercises.check_mlp_parameters("lots")
    assert "Hint" in capsys.readouterr().out
