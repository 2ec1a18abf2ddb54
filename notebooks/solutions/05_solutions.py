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
# 64 * 10,176 / 3,538,944 = 0.184, about 18% more FLOPs in the linear layers, 8 times section 2's 2.3% at
# r = 8 (the extra FLOPs grow linearly in r). Attention scores and lm_head, which LoRA does not touch, are
# not counted, so the share of the whole forward pass is smaller.
shapes = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576)]
unmerged_share = sum(64 * (i + o) for i, o in shapes) / sum(i * o for i, o in shapes)

# 05.4: (a) and (d) pair every merge with an unmerge, so the weight is back at W0 up to rounding (each pair
# can leave an entry up to one fp32 spacing off; section 5 measured how many and how far). (b) merges twice:
# refused (it would add delta_W twice). (c) unmerges a layer that is not merged: refused. (e) leaves W0 + delta_W, which is not W0 because the layer
# is trained (B != 0; on a fresh layer B = 0 and (e) would leave W0).
merge_sequences = "ad"

# 05.5 (an experiment): fp16's gaps are 2^3 = 8 times finer than bf16's (fp16 keeps 11 significant bits, bf16 8;
# both spend 16 bits, bf16 the rest on its exponent's range, fp16 on precision: nothing above 65,504 in fp16).
# The tempting answer is "8 times as many vanish in bf16", but an entry vanishes when it is below half a gap, so
# each share is the part of the update's histogram left of a threshold, and fp16's threshold sits 3 steps further
# left on section 7's log2 axis. 8 times fewer would need the histogram to halve with every step to the left;
# section 7's falls more slowly (its left tail is wide), so fp16 still loses a sizeable share: "less" than 8
# times. Measured on section 7's down_proj with the run's format adapter: bf16 51.7%, fp16 9.4% of the 884,736
# entries, 5.5 times as many. In the notebook (`layer` is that down_proj, still unmerged, so `layer.weight` is W0):
#   bf16_report = merging.merge_rounding(layer.weight, delta, torch.bfloat16)
#   fp16_report = merging.merge_rounding(layer.weight, delta, torch.float16)
dtype_prediction = "less"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_bf16_rounding(bf16_rounding)
    exercises.check_unmerged_flops(unmerged_flops)
    exercises.check_unmerged_share(unmerged_share)
    exercises.check_merge_sequences(merge_sequences)
