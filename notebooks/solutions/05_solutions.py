"""Reference answers for the exercises of notebooks/05_merging.ipynb (try them yourself first)."""

# 05.1: bf16 keeps 8 significant bits. Numbers in [0.5, 1) are 0.5 * 2^-7 = 2^-8 = 0.00390625 apart.
# 0.501 is 0.001 above 0.5, less than half a gap (0.00195): it rounds back to 0.5, the update vanishes.
# 0.503 is closer to 0.5 + 0.00390625 than to 0.5: it is stored as 0.50390625 (the update grows by 30%).
bf16_rounding = (0.5, 0.50390625)


# 05.2: the unmerged path computes A x (r outputs, each `in` multiply-adds) and B (A x) (`out` outputs, each
# r multiply-adds): r * (in + out) multiply-adds per token, 2 FLOPs each. The merged layer adds nothing.
def unmerged_flops(in_features, out_features, r):
    return 2 * r * (in_features + out_features)


# 05.3: per decoder layer, sum of r * (in + out) over the seven shapes, divided by the sum of in * out:
# 8 * 10,176 / 3,538,944 = 0.023, about 2.3% more FLOPs in the linear layers (not counting attention
# scores or lm_head, which LoRA does not touch, so the share of the whole forward pass is smaller still).
shapes = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576)]
unmerged_share = sum(8 * (i + o) for i, o in shapes) / sum(i * o for i, o in shapes)

# 05.4: (a) and (d) pair every merge with an unmerge, so the weight is back at W0 up to rounding (in section 5,
# 99.53% of the weights came back bit for bit and the rest within half an fp32 spacing). (b) merges twice:
# refused (it would add delta_W twice). (c) unmerges a layer that is not merged: refused. (e) leaves W0 + delta_W, which is not W0 because the layer
# is trained (B != 0; on a fresh layer B = 0 and (e) would leave W0).
merge_sequences = "ad"

# 05.5 (an experiment): bf16 loses far more of the update. Both formats spend 16 bits, but bf16 keeps 8 exponent
# bits and 7 mantissa bits, fp16 5 and 10: fp16's gaps between neighbouring numbers are 2^3 = 8 times finer, so
# an update entry that is smaller than half a bf16 gap can still be several fp16 gaps wide. (fp16's price is its
# range: nothing above 65,504, which is why GPUs that can train in bf16 do.) In the notebook:
#   W0 = load_model()[0].model.layers[15].mlp.down_proj.weight  # fresh: section 8 merged into base_model
#   bf16_report = merging.merge_rounding(W0, delta, torch.bfloat16)
#   fp16_report = merging.merge_rounding(W0, delta, torch.float16)
dtype_prediction = "bf16"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_bf16_rounding(bf16_rounding)
    exercises.check_unmerged_flops(unmerged_flops)
    exercises.check_unmerged_share(unmerged_share)
    exercises.check_merge_sequences(merge_sequences)
