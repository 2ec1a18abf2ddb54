"""Reference answers for the exercises of notebooks/03_lora_toy_task.ipynb (try them yourself first)."""

import math

# 03.1: the planted update has singular values (5, 3, 2, 0.5). A rank-2 update can at best keep 5 and 3
# (Eckart-Young); the expected loss is ||delta_W* - delta_W||_F^2, so the floor is 2^2 + 0.5^2 = 4.25.
toy_loss_floor = 2.0**2 + 0.5**2

# 03.2: r = 16, lora_alpha = 32: standard 32 / 16 = 2, rsLoRA 32 / sqrt(16) = 8.
toy_scaling = (32 / 16, 32 / math.sqrt(16))

# 03.3: A is (8, 64) and B is (64, 8): 8 * (64 + 64) = 1,024 trainable numbers (W0's 4,096 are frozen).
toy_lora_parameters = 8 * 64 + 64 * 8

# 03.4: (9 * alpha) * B @ A = alpha * (3 B) @ (3 A). Adam's steps are ~lr per entry whatever the gradient's
# size, so the factors that are three times as large need steps three times as large: lr * 3, and A's init * 3
# (B starts at 0, and 3 * 0 = 0, so only A's init changes).
alpha_equivalence = (math.sqrt(9), math.sqrt(9))

# 03.5 (an experiment): rsLoRA is lower after 100 steps. At r = 32 its scaling is 8 / sqrt(32) = 1.41 against
# alpha / r's 0.25, so each Adam step moves delta W about 5.7 times as far, and a task with 64 directions to learn
# rewards that speed (the runs below: about 4.0 against 23.4 at step 100; the r = 32 floor is 1.13).
from lora_edu import toy  # noqa: E402

wide_task = toy.make_toy_task(singular_values=[4 * 0.93**i for i in range(64)], seed=0)
prediction = "rslora"
run_standard = toy.train_lora_on_toy(32, lora_alpha=8, steps=100, lr=3e-3, task=wide_task)
run_rslora = toy.train_lora_on_toy(32, lora_alpha=8, steps=100, lr=3e-3, task=wide_task, use_rslora=True)

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_toy_loss_floor(toy_loss_floor)
    exercises.check_toy_scaling(toy_scaling)
    exercises.check_toy_lora_parameters(toy_lora_parameters)
    exercises.check_alpha_equivalence(alpha_equivalence)
    exercises.check_rank_rule_experiment(prediction, run_standard, run_rslora)
