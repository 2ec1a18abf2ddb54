"""Reference answers for the exercises of notebooks/02_lora_layer.ipynb (try them yourself first)."""

import math


# 02.1: the frozen path plus the scaled LoRA path. A is (r, in) and B is (out, r), as PEFT stores them, so
# x (..., in) @ A.T -> (..., r) @ B.T -> (..., out). Multiplying A first never forms the (out, in) matrix.
def lora_forward(x, W0, A, B, scaling):
    return x @ W0.T + (x @ A.T @ B.T) * scaling


# 02.2: r=16 on q_proj (576 -> 576) and v_proj (576 -> 192) of 30 layers. Each matrix trains r * (in + out):
# q_proj 16 * 1152 = 18,432 and v_proj 16 * 768 = 12,288, so 30,720 per layer and 921,600 in all.
trainable_parameters = 30 * (16 * (576 + 576) + 16 * (576 + 192))

# 02.3: r = 128, lora_alpha = 256. Standard: 256 / 128 = 2.0; rsLoRA: 256 / sqrt(128) = 256 / 11.31 = 22.6
# (= 16 * sqrt(2)): at this rank rsLoRA's scaling is sqrt(128) = 11.3 times the standard one.
scaling = (256 / 128, 256 / math.sqrt(128))

# 02.4: gate_proj is 576 -> 1536: 884,736 numbers against 16 * (576 + 1536) = 33,792, about 26.2 times fewer
# (the checker accepts anything within 1%, so 26 passes too).
compression = 576 * 1536 / (16 * (576 + 1536))

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_lora_forward(lora_forward)
    exercises.check_trainable_parameters(trainable_parameters)
    exercises.check_scaling(scaling)
    exercises.check_compression(compression)
