"""Reference answers for the exercises of notebooks/07_qlora.ipynb (try them yourself first)."""

# 07.1: blocks of 32. Without DQ: 4 + 32/32 = 5.0. With DQ: 4 + 8/32 + 32/(32*256) = 4.25390625.
qlora_bits = (4 + 32 / 32, 4 + 8 / 32 + 32 / (32 * 256))

# 07.2: 7e9 weights * 4.126953125 bits / 8 bits per byte = 3.611e9 bytes = 3.61 GB.
nf4_7b_gb = 7e9 * (4 + 8 / 64 + 32 / (64 * 256)) / 8 / 1e9

# 07.3 (activations not counted, GB = 1e9 bytes):
# (a) 7B full fine-tuning in bf16, AdamW: 7e9 * (2 weights + 2 gradients + 8 Adam) = 84 GB: no.
# (b) 13B LoRA on a bf16 base, 1% trained in bf16: 26 GB of base alone is more than 24: no.
# (c) 33B QLoRA, 0.5% trained in bf16: 33e9 * 4.127 / 8 = 17.0 GB + 0.165e9 * 12 = 2.0 GB -> 19.0 GB: yes.
fits_24gb = (False, False, True)

# 07.4: NF4's nearest values to 0 on the positive side is 0.0795803; the boundary is halfway, 0.0397901.
# A smaller update rounds back to 0.0: merged into 4 bits, it is lost.
merge_threshold = 0.07958029955625534 / 2

# 07.5 (an experiment): less than 1%. On layer 15's down_proj (the default GGUF weights) NF4 with blocks of 64
# had a relative error of 9.4951% without double quantization and 9.5046% with it: +0.10% of the error, for
# 0.373 fewer bits per weight (4.5 -> 4.127). An 8-bit code stores a block's absmax to about 1 part in 256 of its
# range, far finer than the 16 levels of the 4-bit codes it scales, so the extra rounding is lost in the noise
# the codes make anyway. In the notebook:
#   W = load_model()[0].model.layers[15].mlp.down_proj.weight.data
#   dq_errors = {dq: quant.quantization_error(W, quant.dequantize_nf4(quant.quantize_nf4(W, 64, double_quant=dq)))
#                ["rel_frobenius"] for dq in (False, True)}
dq_prediction = "less"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_qlora_bits(qlora_bits)
    exercises.check_nf4_7b_gb(nf4_7b_gb)
    exercises.check_fits_24gb(fits_24gb)
    exercises.check_merge_threshold(merge_threshold)
