"""Reference answers for the exercises of notebooks/03_lora_toy_task.ipynb (try them yourself first)."""

import math

# 03.1: the planted update has singular values (5, 3, 2, 1). A rank-2 update can at best keep 5 and 3
# (Eckart-Young); the expected loss is ||delta_W* - delta_W||_F^2, so the floor is 2^2 + 1^2 = 5.
toy_loss_floor = 2.0**2 + 1.0**2

# 03.2: r = 16, lora_alpha = 32: standard 32 / 16 = 2, rsLoRA 32 / sqrt(16) = 8.
toy_scaling = (32 / 16, 32 / math.sqrt(16))

# 03.3: A is (8, 64) and B is (64, 8): 8 * (64 + 64) = 1,024 trainable numbers (W0's 4,096 are frozen).
toy_lora_parameters = 8 * 64 + 64 * 8

# 03.4: (4 * alpha) * B @ A = alpha * (2 B) @ (2 A). Adam's steps are ~lr per entry whatever the gradient's
# size, so the factors that are twice as large need steps twice as large: lr * 2, and A's init * 2.
alpha_equivalence = (math.sqrt(4), math.sqrt(4))

# 03.5 (an experiment): rsLoRA ends lower after 100 steps. At r = 16 its scaling is 8 / sqrt(16) = 2 against
# alpha / r's 0.5, so each Adam step moves delta W four times as far, and a task with 64 directions to learn
# rewards that speed (section 8: at step 100, 15.2 against 32.2; both reach the floor of 11.6 given enough steps).
from lora_edu import toy  # noqa: E402

wide_task = toy.make_toy_task(singular_values=[4 * 0.93**i for i in range(64)], seed=0)
prediction = "rslora"
run_standard = toy.train_lora_on_toy(16, lora_alpha=8, steps=100, lr=3e-3, task=wide_task)
run_rslora = toy.train_lora_on_toy(16, lora_alpha=8, steps=100, lr=3e-3, task=wide_task, use_rslora=True)

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_toy_loss_floor(toy_loss_floor)
    exercises.check_toy_scaling(toy_scaling)
    exercises.check_toy_lora_parameters(toy_lora_parameters)
    exercises.check_alpha_equivalence(alpha_equivalence)
    exercises.check_rank_rule_experiment(prediction, run_standard, run_rslora)
