"""Notebook 04's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import pytest
from exercise_checks import solutions, standard_tests, train_result

from lora_edu import exercises, find_target_modules

SOLUTIONS = solutions("04")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_qv_trainable, "qv_trainable", 30 * 16 * (576 + 576) * 2),  # v_proj taken as 576 -> 576
    (exercises.check_string_vs_list, "string_vs_list", (30, 30)),  # a string read as a list entry
    (exercises.check_regex_count, "regex_count", 2),  # "1\d" read as layer 1 only
    (exercises.check_adam_state_bytes, "adam_state_bytes", 4 * 2_442_240),  # one fp32 state, not two
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise():
    assert not exercises.check_string_vs_list(30)  # a number, not the (string, list) pair
    assert not exercises.check_qv_trainable("many")
    assert not exercises.check_adam_state_bytes([1, 2])


@pytest.fixture(scope="module")
def smollm2_shaped():
    """A random Llama with SmolLM2-135M's layer shapes (no weights loaded: the names and shapes are the point)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def test_the_checkers_shapes_and_names_are_smollm2s(smollm2_shaped):
    """The checkers' hard-coded SmolLM2 table agrees with a real Llama module tree of that size."""
    linear = find_target_modules(smollm2_shaped, "all-linear")
    assert linear == exercises.smollm2_linear_names()
    for name in linear:
        module = smollm2_shaped.get_submodule(name)
        kind = name.rsplit(".", 1)[-1]
        assert (module.in_features, module.out_features) == exercises.SMOLLM2_LINEAR_SHAPES[kind]
    assert len(find_target_modules(smollm2_shaped, exercises.EX04_REGEX)) == SOLUTIONS["regex_count"]
    assert len(find_target_modules(smollm2_shaped, "q_proj")) == SOLUTIONS["string_vs_list"][0]
    assert len(find_target_modules(smollm2_shaped, ["q_proj"])) == SOLUTIONS["string_vs_list"][1]



def test_the_targets_experiment_accepts_an_honest_pair_and_says_if_the_prediction_held(capsys):
    from lora_edu import LoraConfig

    qv = (LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]), train_result([0.5] * 9 + [0.3, 0.3, 0.3]))
    every = (LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"), train_result([0.5] * 9 + [0.1, 0.1, 0.1]))
    assert exercises.check_targets_experiment("all-linear", qv, every)
    assert exercises.check_targets_experiment("q_proj,v_proj", qv, every)  # a wrong prediction is still an experiment
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    assert "q_proj,v_proj 0.3000, all-linear 0.1000" in out
    assert "2,442,240 against 460,800" in out  # the reason fits the outcome: all-linear ended lower


def test_the_targets_experiments_reason_fits_the_outcome_when_q_proj_v_proj_ends_lower(capsys):
    from lora_edu import LoraConfig

    qv = (LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]), train_result([0.5] * 9 + [0.1] * 3))
    every = (LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"), train_result([0.5] * 9 + [0.3] * 3))
    assert exercises.check_targets_experiment("all-linear", qv, every)
    out = capsys.readouterr().out
    assert "it did not." in out and "fewer trained numbers did better" in out and "2,442,240" not in out


def test_the_adam_state_hint_asks_for_exact_bytes(capsys):
    assert not exercises.check_adam_state_bytes(19.5e6)  # section 5's rounded MB is not the answer
    assert "in bytes, exactly" in capsys.readouterr().out


def test_the_targets_experiment_refuses_runs_that_do_not_test_the_question(capsys):
    from lora_edu import LoraConfig

    qv_config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    all_config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
    run = train_result([0.5] * 12)
    assert not exercises.check_targets_experiment("all-linear", (all_config, run), (qv_config, run))  # swapped
    assert not exercises.check_targets_experiment("all-linear", (qv_config, run),
                                                  (LoraConfig(r=16, lora_alpha=16, target_modules="all-linear"), run))
    assert not exercises.check_targets_experiment("all-linear", (qv_config, train_result([0.5] * 5)), (all_config, train_result([0.5] * 5)))
    assert not exercises.check_targets_experiment("all-linear", (qv_config, run), (all_config, train_result([0.5] * 12, lr=2e-3)))
    assert not exercises.check_targets_experiment("maybe", (qv_config, run), (all_config, run))
    assert not exercises.check_targets_experiment("all-linear", run, run)  # not (config, run) pairs
    assert not exercises.check_targets_experiment(..., ..., ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 7
