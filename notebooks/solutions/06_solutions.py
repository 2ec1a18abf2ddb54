"""Reference answers for the exercises of notebooks/06_quantization.ipynb (try them yourself first)."""

import torch

# 06.1: block (0.5, -1.27, 0.02, 0.9): absmax 1.27, scale = 1.27 / 127 = 0.01, codes = round(x / 0.01).
absmax_codes = (50, -127, 2, 90)


# 06.2: per-tensor absmax int8, quantized and dequantized again ("fake quantization").
def fake_quant_int8(x):
    scale = x.abs().max() / 127
    return torch.round(x / scale) * scale


# 06.3: 0.6 / 2.0 = 0.3. Its NF4 neighbours are 0.2461 (code 10) and 0.3379 (code 11); the midpoint
# between them is 0.2920 < 0.3, so the nearest is 0.3379: code 11.
nf4_index = 11

# 06.4: blocks of 128. Without: 4 + 32/128 = 4.25. With double quantization: 4 + 8/128 + 32/(128*256)
# = 4 + 0.0625 + 0.0009765625 = 4.0634765625.
bits_per_parameter = (4 + 32 / 128, 4 + 8 / 128 + 32 / (128 * 256))

# 06.5: the first code in the high nibble: 3 * 16 + 12 = 0x3C = 60.
packed_byte = 3 * 16 + 12

# 06.6: Q8_0 stores 2 bytes (fp16 d) + 32 bytes (32 int8 codes) = 34 bytes = 272 bits per 32 weights.
q8_0_bits = 34 * 8 / 32

# 06.7 (an experiment): less than half. On layer 15's up_proj (the default GGUF weights) NF4's relative error was
# 10.33% at blocks of 256, 9.37% at 64 and 8.17% at 16: 64 -> 16 multiplied it by 0.87. A block's absmax is set
# by its largest weight; smaller blocks help only the blocks that would have shared one outlier, and most weights
# are not near one, so four times as many constants buy about 13% less error (and cost 2 bits per weight at 16
# against 0.5 at 64). In the notebook:
#   errors = {b: quant.quantization_error(W_mlp, quant.dequantize_nf4(quant.quantize_nf4(W_mlp, b)))["rel_frobenius"]
#             for b in (256, 64, 16)}
blocksize_prediction = "less"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_absmax_codes(absmax_codes)
    exercises.check_fake_quant_int8(fake_quant_int8)
    exercises.check_nf4_index(nf4_index)
    exercises.check_bits_per_parameter(bits_per_parameter)
    exercises.check_packed_byte(packed_byte)
    exercises.check_q8_0_bits(q8_0_bits)
