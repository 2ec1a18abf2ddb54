"""Reference answers for the exercises of notebooks/02_lora_layer.ipynb (try them yourself first)."""

import math


# 02.1: the frozen path plus the scaled LoRA path. A is (r, in) and B is (out, r), as PEFT stores them, so
# x (..., in) @ A.T -> (..., r) @ B.T -> (..., out). Multiplying A first never forms the (out, in) matrix.
def lora_forward(x, W0, A, B, scaling):
    return x @ W0.T + (x @ A.T @ B.T) * scaling


# 02.2: r=16 on q_proj (576 -> 576) and v_proj (576 -> 192) of 30 layers. Each matrix trains r * (in + out):
# q_proj 16 * 1152 = 18,432 and v_proj 16 * 768 = 12,288, so 30,720 per layer and 921,600 in all.
trainable_parameters = 30 * (16 * (576 + 576) + 16 * (576 + 192))

# 02.3: r = 64, lora_alpha = 16. Standard: 16 / 64 = 0.25; rsLoRA: 16 / sqrt(64) = 16 / 8 = 2.0.
scaling = (16 / 64, 16 / math.sqrt(64))

# 02.4: gate_proj is 576 -> 1536: 884,736 numbers against 16 * (576 + 1536) = 33,792, about 26.2 times fewer.
compression = 576 * 1536 / (16 * (576 + 1536))

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_lora_forward(lora_forward)
    exercises.check_trainable_parameters(trainable_parameters)
    exercises.check_scaling(scaling)
    exercises.check_compression(compression)
