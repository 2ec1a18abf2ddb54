"""Notebook 12's self-checks accept the reference answers and honest runs, reject wrong ones, never raise on `...`."""

from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("12")

CASES = [(exercises.check_embedding_bytes, "embedding_bytes", 49_152 * 576 * 2)]  # bf16, not the fp32 trained

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def _row(exact, losses, answer_loss=None):
    return {"route": "lora", "r": 8, "steps": len(losses), "n_train": 500, "n": 40, "losses": losses,
            "exact_match": exact, "answer_loss": answer_loss}


def test_the_placeholder_gets_no_solution_and_the_tables_own_difference_passes(capsys):
    assert not exercises.check_embedding_bytes(...)
    out = capsys.readouterr().out
    assert "a number of bytes" in out and "49,152" not in out  # the hint (the calculation) comes after a try
    assert exercises.check_embedding_bytes(123_064_120 - 9_816_048)  # the two files of the table, headers included
    assert "correct!" in capsys.readouterr().out
    assert not exercises.check_embedding_bytes(49_152 * 576)  # elements, not bytes
    assert "49,152 x 576" in capsys.readouterr().out


def test_an_honest_pair_of_runs_passes_and_reports_the_outcome(capsys):
    rows = {"truncated": _row(30 / 40, [2.0, 1.0, 0.6, 0.5]), "wrong_value": _row(34 / 40, [2.0, 1.1, 0.7, 0.4])}
    assert exercises.check_noise_kind_experiment(SOLUTIONS["noise_prediction"], rows)
    out = capsys.readouterr().out
    assert "truncated 30/40, wrong_value 34/40; worse: truncated" in out and "it held" in out
    assert exercises.check_noise_kind_experiment("wrong_value", rows)  # a wrong prediction still passes
    assert "it did not" in capsys.readouterr().out


def test_a_gap_under_three_examples_is_a_tie_and_the_answer_losses_are_shown(capsys):
    rows = {"truncated": _row(33 / 40, [2.0, 1.0, 0.6, 0.5], 0.061),
            "wrong_value": _row(35 / 40, [2.0, 1.1, 0.7, 0.4], 0.048)}
    assert exercises.check_noise_kind_experiment("truncated", rows)
    out = capsys.readouterr().out
    assert "worse: neither, a tie at this n (a gap under 3 of 40)" in out and "answer loss 0.061 and 0.048" in out
    assert "it held" not in out and "it did not" not in out and "end token" not in out


def test_runs_that_are_not_a_one_knob_pair_are_refused(capsys):
    good = _row(0.75, [2.0, 1.0, 0.6, 0.5])
    assert not exercises.check_noise_kind_experiment(..., ...)
    assert "placeholder" in capsys.readouterr().out
    assert not exercises.check_noise_kind_experiment("truncated", {"truncated": good})
    assert "pass rows as" in capsys.readouterr().out
    assert not exercises.check_noise_kind_experiment("truncated", {"truncated": good, "wrong_value": dict(good)})
    assert "same data" in capsys.readouterr().out
    other = dict(_row(0.5, [2.0, 1.0, 0.7, 0.6, 0.5]))
    assert not exercises.check_noise_kind_experiment("truncated", {"truncated": good, "wrong_value": other})
    assert "steps differ" in capsys.readouterr().out
    assert not exercises.check_noise_kind_experiment("both", {"truncated": good, "wrong_value": {"route": "lora"}})
    out = capsys.readouterr().out
    assert "lack" in out
    assert not exercises.check_noise_kind_experiment("louder", {"truncated": good, "wrong_value": _row(0.5, [1.0] * 4)})
    assert "prediction should be" in capsys.readouterr().out
