"""Notebook 00's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import runpy
from pathlib import Path

from lora_edu import exercises

SOLUTIONS = runpy.run_path(str(Path(__file__).resolve().parents[1] / "notebooks/solutions/00_solutions.py"))


def test_reference_answers_pass(capsys):
    assert exercises.check_mlp_parameters(SOLUTIONS["mlp_parameters"])
    assert exercises.check_embedding_share(SOLUTIONS["embedding_share"])
    assert capsys.readouterr().out.count("correct!") == 2


def test_wrong_answers_fail_with_a_hint(capsys):
    assert not exercises.check_mlp_parameters(2 * 576 * 1536)
    assert not exercises.check_embedding_share(2 * SOLUTIONS["embedding_share"])  # lm_head counted twice
    assert "Hint" in capsys.readouterr().out


def test_placeholders_do_not_raise(capsys):
    assert not exercises.check_mlp_parameters(...)
    assert not exercises.check_embedding_share(None)
    assert not exercises.check_mlp_parameters("lots")
    assert "placeholder" in capsys.readouterr().out
