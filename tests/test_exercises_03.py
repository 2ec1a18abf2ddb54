"""Notebook 03's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

from exercise_checks import solutions, standard_tests

from lora_edu import exercises, toy

SOLUTIONS = solutions("03")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_toy_loss_floor, "toy_loss_floor", 4.25 ** 0.5),  # the Frobenius error, not its square
    (exercises.check_toy_scaling, "toy_scaling", (2.0, 32 / 16 ** 0.5 / 2)),  # rsLoRA miscomputed
    (exercises.check_toy_lora_parameters, "toy_lora_parameters", 64 * 64 + 8 * 128),  # counted frozen W0
    (exercises.check_alpha_equivalence, "alpha_equivalence", (9.0, 1.0)),  # the naive "lr times c"
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_exercises_03_1_and_03_4_are_not_the_notebooks_own_printed_cases(capsys):
    assert not exercises.check_toy_loss_floor(5.0)  # the floor of the notebook's (4, 3, 2, 1) at r = 2
    assert not exercises.check_alpha_equivalence((2.0, 2.0))  # section 7's c = 4, on screen in its legend
    assert exercises.check_toy_loss_floor(4.25) and exercises.check_alpha_equivalence((3, 3))


def test_malformed_answers_do_not_raise():
    assert not exercises.check_toy_scaling(2.0)  # a number, not the (standard, rslora) pair
    assert not exercises.check_alpha_equivalence("twice")
    assert not exercises.check_toy_loss_floor("five")


def test_the_experiment_accepts_an_honest_pair_of_runs_and_says_if_the_prediction_held(capsys):
    runs = SOLUTIONS["run_standard"], SOLUTIONS["run_rslora"]
    assert exercises.check_rank_rule_experiment("rslora", *runs)
    assert exercises.check_rank_rule_experiment("alpha/r", *runs)  # a wrong prediction is still a valid experiment
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out


def test_the_experiment_refuses_runs_that_do_not_test_the_question(capsys):
    std, rs = SOLUTIONS["run_standard"], SOLUTIONS["run_rslora"]
    wide = SOLUTIONS["wide_task"]
    assert not exercises.check_rank_rule_experiment("rslora", rs, std)  # the two rules swapped
    assert not exercises.check_rank_rule_experiment("rslora", std, toy.train_lora_on_toy(
        32, lora_alpha=8, steps=100, lr=1e-2, task=wide, use_rslora=True))  # two knobs changed
    assert not exercises.check_rank_rule_experiment("rslora", toy.train_lora_on_toy(32, lora_alpha=8, steps=60), rs)
    assert not exercises.check_rank_rule_experiment("maybe", std, rs)
    assert not exercises.check_rank_rule_experiment(..., ..., ...)
    out = capsys.readouterr().out
    assert "swapped" not in out and "use_rslora=True" in out and "one knob" in out and "wide_task" in out
    assert "at least 100 steps" in out


def test_the_experiment_is_the_setting_it_asks_about_and_reads_step_100(capsys):
    wide = SOLUTIONS["wide_task"]
    r16 = {rs: toy.train_lora_on_toy(16, lora_alpha=8, steps=100, lr=3e-3, task=wide, use_rslora=rs)
           for rs in (False, True)}
    assert not exercises.check_rank_rule_experiment("rslora", r16[False], r16[True])  # section 8 printed r = 16
    assert "both runs should have r = 32" in capsys.readouterr().out
    default_lr = {rs: toy.train_lora_on_toy(32, lora_alpha=8, steps=100, task=wide, use_rslora=rs)
                  for rs in (False, True)}
    assert not exercises.check_rank_rule_experiment("rslora", default_lr[False], default_lr[True])  # lr = 1e-2
    assert "lr=0.003" in capsys.readouterr().out
    longer = {rs: toy.train_lora_on_toy(32, lora_alpha=8, steps=120, lr=3e-3, task=wide, use_rslora=rs)
              for rs in (False, True)}
    assert exercises.check_rank_rule_experiment("rslora", longer[False], longer[True])  # read at step 100, not 120
    at_100 = [f"{float(longer[rs].expected_losses[100]):.3g}" for rs in (False, True)]
    assert f"alpha / r {at_100[0]}, rsLoRA {at_100[1]};" in capsys.readouterr().out
