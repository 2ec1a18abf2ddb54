"""Reference answers for the exercises of notebooks/09_variants.ipynb (try them yourself first)."""

import math

import torch

# 09.1: DoRA adds one magnitude per output feature. q_proj has 576 outputs, v_proj 192, in each of 30
# layers: 30 * (576 + 192) = 23,040 numbers on top of LoRA's A and B.
dora_magnitude_count = 30 * (576 + 192)


# 09.2: DoRA's merged weight. The norm is over each row of the (out, in) weight (dim=1), as PEFT and the
# DoRA authors' code take it; dim=0 would be the convention trap of section 3.
def dora_weight(W0, A, B, m, scaling):
    W = W0 + scaling * B @ A  # (out, in)
    return m[:, None] * W / torch.linalg.norm(W, dim=1, keepdim=True)


# 09.3: lr = 5e-4, ratio 8: A at 5e-4; B at 8 * 5e-4 = 4e-3; DoRA's magnitude is 1-D, and PEFT's grouping
# puts every 1-D trainable parameter with B, so it also gets 4e-3.
loraplus_lrs = (5e-4, 5e-4 * 8, 5e-4 * 8)

# 09.4: rsLoRA at r = 64, alpha = 16: scaling 16 / 8 = 2. Standard scaling alpha / 64 = 2 needs alpha = 128.
rslora_equivalent_alpha = 16 * math.sqrt(64)

# 09.5: each adapter is 576 -> 64 -> 576: 2 * 576 * 64 + 2 * 64 * 576 = 147,456 FLOPs per token; two per layer,
# 30 layers: 8,847,360 FLOPs per token (about 3% of the ~270 MFLOPs of SmolLM2's 135M-parameter forward pass).
adapter_flops = 30 * 2 * (2 * 576 * 64 + 2 * 64 * 576)


# 09.6 (an experiment): rsLoRA ends lower. Measured with the function below (seed 0, 12 steps of batch 8, lr 1e-3,
# all-linear, on a 2-core CPU in 98 s for both): mean loss of the last 3 steps 0.0146 for rsLoRA against 0.0431 for
# standard scaling. At r = 64, alpha = 16 rsLoRA's s = 2 is 8x standard's 0.25, and one Adam step's update grows
# with s (section 2), so each step moves the weights 8x further. One seed: a direction, not a law.
def rank64_experiment(steps: int = 12):
    """The two runs of 09.6 (a few minutes on a laptop CPU): (config, run) for standard scaling and rsLoRA at r = 64."""
    from lora_edu import LoraConfig, exercises

    return exercises.format_task_runs([LoraConfig(r=64, lora_alpha=16, target_modules="all-linear", use_rslora=rs)
                                       for rs in (False, True)], steps=steps)


prediction = "rslora"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_dora_magnitude_count(dora_magnitude_count)
    exercises.check_dora_weight(dora_weight)
    exercises.check_loraplus_lrs(loraplus_lrs)
    exercises.check_rslora_equivalent_alpha(rslora_equivalent_alpha)
    exercises.check_adapter_flops(adapter_flops)
    exercises.check_rslora_rank64_experiment(prediction, *rank64_experiment())
