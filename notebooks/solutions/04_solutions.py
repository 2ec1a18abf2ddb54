"""Reference answers for the exercises of notebooks/04_lora_in_a_transformer.ipynb (try them yourself first)."""

# 04.1: q_proj is 576 -> 576 and v_proj 576 -> 192, so r * (in + out) = 16 * 1152 + 16 * 768 = 30,720 per
# decoder layer; 30 layers: 921,600.
qv_trainable = 30 * (16 * (576 + 576) + 16 * (576 + 192))

# 04.2: a string is a regex that must match a whole name, and no name is just "q_proj": 0 modules. A list entry
# matches every name ending in ".q_proj": one per decoder layer, 30.
string_vs_list = (0, 30)

# 04.3: r".*\.1\d\.mlp\.(up|down)_proj" takes layers 10..19 (ten layers), and in each up_proj and down_proj: 20.
regex_count = 10 * 2

# 04.4: r = 8 on all seven types: 8 * (2 * 1152 + 2 * 768 + 3 * 2112) = 81,408 per layer, 2,442,240 in 30 layers;
# AdamW keeps exp_avg and exp_avg_sq in fp32, 8 bytes per trainable parameter: 19,537,920 bytes (about 19.5 MB).
adam_state_bytes = 8 * 30 * 8 * (2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536))



# 04.5 (an experiment): all-linear ends lower. Measured with the function below (seed 0, 12 steps of batch 8, on a
# 2-core CPU in 158 s): mean loss of the last 3 steps 0.0429 for all-linear against 0.0980 for q_proj, v_proj. At
# r = 8 all-linear trains 2,442,240 numbers in all seven layer types, q_proj + v_proj 460,800 in two (section 4),
# so each Adam step moves about 5x as many numbers, in the MLPs too. One seed and one task: a direction, not a law.
def targets_experiment(steps: int = 12):
    """The two runs of 04.5 (about three minutes on a laptop CPU): (config, run) for q_proj, v_proj and all-linear."""
    from lora_edu import LoraConfig, exercises

    return exercises.format_task_runs([LoraConfig(r=8, lora_alpha=16, target_modules=targets)
                                       for targets in (["q_proj", "v_proj"], "all-linear")], steps=steps)


prediction = "all-linear"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_targets_experiment(prediction, *targets_experiment())

    exercises.check_qv_trainable(qv_trainable)
    exercises.check_string_vs_list(string_vs_list)
    exercises.check_regex_count(regex_count)
    exercises.check_adam_state_bytes(adam_state_bytes)
