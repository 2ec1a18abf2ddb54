"""Notebook 08's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import torch
from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("08")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_rank64_trainable, "rank64_trainable", 2_442_240),  # the r=8 count
    (exercises.check_rslora_scale, "rslora_scale", (2.0, 1.0)),  # LoRA's scale, not rsLoRA's
    (exercises.check_precision_choice, "precision_choice", ((torch.bfloat16, False), (torch.bfloat16, False))),
    (exercises.check_precision_choice, "precision_choice", ((torch.bfloat16, False), (torch.float16, False))),  # no scaler
    (exercises.check_adapter_ratio, "adapter_ratio", 542 / 9.8),  # the two rounded disk sizes, not the counts
    (exercises.check_adapter_ratio, "adapter_ratio", 134_515_008 / 460_800),  # q_proj, v_proj only
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise(capsys):
    assert not exercises.check_precision_choice("fp16 on a T4")
    assert not exercises.check_precision_choice(42)
    assert not exercises.check_precision_choice(((torch.bfloat16, False),))  # the P100 is missing
    assert not exercises.check_rslora_scale(16.0)  # a number, not the pair
    assert capsys.readouterr().out.count("Hint") == 4


def test_the_answers_follow_from_the_library():
    from lora_edu import runtime
    from lora_edu.layers import LoraLinear

    assert SOLUTIONS["rank64_trainable"] == 8 * 2_442_240  # notebook 04 measured 2,442,240 at r=8
    rs = LoraLinear(torch.nn.Linear(64, 64), r=64, lora_alpha=128, use_rslora=True)
    plain = LoraLinear(torch.nn.Linear(64, 64), r=64, lora_alpha=128)
    assert (rs.scaling, rs.scaling / plain.scaling) == SOLUTIONS["rslora_scale"]
    l4, p100 = (runtime.precision_policy("cuda", capability=c) for c in ((8, 9), (6, 0)))
    assert SOLUTIONS["precision_choice"] == ((l4.dtype, l4.use_grad_scaler), (p100.dtype, p100.use_grad_scaler))
    assert exercises.check_adapter_ratio(55) and exercises.check_adapter_ratio(55.1)  # honest rounded answers


def _row(r, loss, **changes):
    row = {"task": "knowledge", "method": "lora", "r": r, "lora_alpha": 2 * r, "use_rslora": False, "steps": 16,
           "batch_size": 8, "lr": 1e-3, "warmup_steps": 4, "eval_examples": 8, "n_facts": 0, "seed": 0,
           "model_name": "HuggingFaceTB/SmolLM2-135M-Instruct", "answer_loss_after": loss}
    return {**row, **changes}


def test_the_sweep_rank_experiment_accepts_an_honest_run_and_refuses_the_rest(capsys):
    sweep = [_row(1, 5.0), _row(8, 4.0), _row(8, 4.2, seed=1), _row(64, 3.0), _row(64, 2.5, use_rslora=True)]
    assert exercises.check_sweep_rank_experiment("between", _row(16, 3.5), sweep)
    assert exercises.check_sweep_rank_experiment("between", _row(32, 2.0), sweep)  # wrong: still an experiment
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    assert "r = 8 4.100, your r = 16 3.500, r = 64 3.000 (between)" in out  # r = 8: the mean over seeds
    assert not exercises.check_sweep_rank_experiment("between", _row(8, 3.5), sweep)  # a rank already swept
    assert not exercises.check_sweep_rank_experiment("between", _row(16, 3.5, lora_alpha=16), sweep)
    assert not exercises.check_sweep_rank_experiment("between", _row(16, 3.5, steps=40), sweep)  # two knobs
    assert not exercises.check_sweep_rank_experiment("between", _row(16, None), sweep)
    assert not exercises.check_sweep_rank_experiment("maybe", _row(16, 3.5), sweep)
    assert not exercises.check_sweep_rank_experiment("between", "row", sweep)
    assert not exercises.check_sweep_rank_experiment(..., ..., ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 7
