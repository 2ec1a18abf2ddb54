"""Notebook 11's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import torch
from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("11")


def amplification_with_w_directions(delta_w, weight, r):
    """The mix-up of Table 7's rows: W's own top directions instead of delta W's."""
    U, _, Vh = torch.linalg.svd(weight, full_matrices=False)
    return torch.linalg.matrix_norm(delta_w) / torch.linalg.matrix_norm(U[:, :r].T @ weight @ Vh[:r].T)


# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_random_phi, "random_phi", 4 * 64 / 576),  # forgot to divide by min(i, j)
    (exercises.check_budget_rank, "budget_rank", 8),  # the paper's number, for GPT-3's square W_v
    (exercises.check_amplification, "amplification", amplification_with_w_directions),
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise():
    assert not exercises.check_random_phi("about a tenth")
    assert not exercises.check_amplification(lambda *args: "big")


def test_a_stub_function_is_told_to_write_the_function(capsys):
    def amplification(delta_w, weight, r):  # the notebook's cell as a learner first runs it
        ...

    assert not exercises.check_amplification(amplification)
    out = capsys.readouterr().out
    assert "write the function first" in out and "TypeError" not in out
