"""The three tests every notebook's exercises get (imported by tests/test_exercises_NN.py):
the reference answer in notebooks/solutions/NN_solutions.py passes each check, a plausible wrong answer fails
with a hint, and the unanswered placeholder (``...`` or None) never raises."""

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def solutions(notebook: str) -> dict:
    """The names defined by notebooks/solutions/{notebook}_solutions.py."""
    return runpy.run_path(str(ROOT / f"notebooks/solutions/{notebook}_solutions.py"))


def standard_tests(cases: list[tuple], answers: dict):
    """Three test functions over ``cases``: (checker, name of the reference answer, a wrong answer)."""

    def test_reference_answers_pass(capsys):
        for check, name, _ in cases:
            assert check(answers[name]), name
        assert capsys.readouterr().out.count("correct!") == len(cases)

    def test_wrong_answers_fail_with_a_hint(capsys):
        for check, name, wrong in cases:
            assert not check(wrong), name
        out = capsys.readouterr().out
        assert out.count("Hint") == len(cases) and "correct!" not in out

    def test_placeholders_do_not_raise(capsys):
        for check, _, _ in cases:
            assert not check(...)
            assert not check(None)
        out = capsys.readouterr().out  # a value's hint says "placeholder", a function's "write the function"
        assert out.count("placeholder") + out.count("write the function first") == 2 * len(cases)
        for check, name, wrong in cases:  # the hint a wrong answer gets is not shown before a first try
            check(wrong)
            hint = capsys.readouterr().out.split("Hint: ", 1)[1].strip()
            check(...)
            assert hint not in capsys.readouterr().out, name

    return test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise


def train_result(losses, lr=1e-3):
    """A TrainResult with one history row per loss, the same lr at every step (for the paired-run checkers)."""
    from lora_edu.training import TrainResult

    return TrainResult(history=[{"step": i, "loss": v, "lr": lr, "grad_norm": 1.0} for i, v in enumerate(losses)])

