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


def _mix(rows, merge_swap, peft, k=8):
    return {"rows": rows, "k": k, "tokens_per_s": {"merge-swap": merge_swap, "peft": peft, "gathered": 500.0}}


def test_the_merge_swap_batch_experiment_accepts_an_honest_pair_and_refuses_the_rest(capsys):
    small = _mix(8, 160.0, 400.0)
    assert exercises.check_merge_swap_batch_experiment("rise", small, _mix(32, 300.0, 450.0))
    assert exercises.check_merge_swap_batch_experiment(" Rise ", small, _mix(32, 100.0, 450.0))  # wrong: still passes
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    assert "0.40 with 8 rows, 0.67 with 32 rows (rise)" in out and "0.22 with 32 rows (fall)" in out
    assert not exercises.check_merge_swap_batch_experiment("rise", small, _mix(8, 300.0, 450.0))  # no more rows
    assert not exercises.check_merge_swap_batch_experiment("rise", small, _mix(32, 300.0, 450.0, k=4))  # two knobs
    assert not exercises.check_merge_swap_batch_experiment("rise", _mix(8, 1.0, 2.0, k=1), _mix(32, 1.0, 2.0, k=1))
    assert not exercises.check_merge_swap_batch_experiment("rise", small, _mix(32, float("nan"), 450.0))
    assert not exercises.check_merge_swap_batch_experiment("rise", small, {"merge-swap": 300.0})
    assert not exercises.check_merge_swap_batch_experiment("maybe", small, _mix(32, 300.0, 450.0))
    assert not exercises.check_merge_swap_batch_experiment(..., small, ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 7
    assert "change the batch only" in out and "more rows" in out and '"rise" or "fall", not' in out
