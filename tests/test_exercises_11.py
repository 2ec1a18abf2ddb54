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


def _result(lr, factors, norms=None, **changes):
    row = {"task": "knowledge", "method": "lora", "r": 8, "lora_alpha": 16.0, "use_rslora": False, "steps": 24,
           "batch_size": 8, "warmup_steps": 2, "seed": 0, "n_facts": 20, "eval_examples": 20,
           "model_name": "HuggingFaceTB/SmolLM2-135M-Instruct", "trainable_params": 460_800, "lr": lr} | changes
    names = [f"model.layers.{i}.self_attn.q_proj" for i in range(len(factors))]
    norms = norms or [1.0] * len(factors)
    return {"row": row, "extract": {"updates": {n: {"amplification": a, "delta_norm": d}
                                                for n, a, d in zip(names, factors, norms, strict=True)}}}


def test_the_amplification_lr_experiment_accepts_an_honest_pair_and_refuses_the_rest(capsys):
    reference = _result(3e-3, [1.07, 0.83, 0.9], [1.5, 1.2, 1.0])
    assert exercises.check_amplification_lr_experiment("fall", reference, _result(1.5e-3, [0.6, 0.5, 1.0], [0.8, 0.6, 1.1]))
    assert exercises.check_amplification_lr_experiment("fall", reference, _result(1.5e-3, [1.2, 0.5, 1.0]))  # wrong
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    assert "lr 0.003 -> 0.0015: the factor fell in 2 of 3 matrices" in out and "1.07 -> 0.60" in out
    assert "||delta W||_F 1.50 -> 0.80) (fall)" in out and "fell in 1 of 3 matrices" in out
    assert not exercises.check_amplification_lr_experiment("fall", reference, _result(6e-3, [0.6, 0.5, 1.0]))
    assert not exercises.check_amplification_lr_experiment("fall", reference, _result(1.5e-3, [0.6] * 3, r=64))
    assert not exercises.check_amplification_lr_experiment("fall", reference,
                                                           _result(1.5e-3, [0.6] * 3, trainable_params=1))
    assert not exercises.check_amplification_lr_experiment("fall", _result(3e-3, [1.0], method="full"),
                                                           _result(1e-3, [1.0], method="full"))
    assert not exercises.check_amplification_lr_experiment("fall", reference, {"row": {}})
    assert not exercises.check_amplification_lr_experiment("falls?", reference, _result(1.5e-3, [0.6] * 3))
    assert not exercises.check_amplification_lr_experiment(..., reference, ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 7
    assert "change the learning rate only: r differ" in out and "lower lr" in out and "no rank-r update" in out
