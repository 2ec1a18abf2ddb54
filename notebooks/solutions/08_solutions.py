"""Reference answers for the exercises of notebooks/08_gpu_finetune.ipynb (try them yourself first)."""

import torch

# 08.1: r * (in + out) summed over the 7 linear types: 576+576, 576+192, 576+192, 576+576, 576+1536, 576+1536,
# 1536+576 = 10,176 per rank per decoder layer; times 30 layers and r = 64: 19,537,920 (8x the r=8 count).
rank64_trainable = 64 * 30 * (1152 + 768 + 768 + 1152 + 2112 + 2112 + 2112)

# 08.2: alpha = 128 at r = 64. rsLoRA: 128 / sqrt(64) = 16. LoRA: 128 / 64 = 2. So rsLoRA's update is 8x larger
# at the same A and B: switching rsLoRA on at fixed alpha multiplies the step size of delta W by sqrt(r).
rslora_scale = (128 / 64**0.5, (128 / 64**0.5) / (128 / 64))

# 08.3: an L4 (8.9, Ada) is >= 8.0: bf16, no scaler needed (bf16 has fp32's exponent range, so small gradients do
# not flush to zero). A P100 (6.0, Pascal) has no bf16 hardware: fp16 autocast with a GradScaler.
precision_choice = ((torch.bfloat16, False), (torch.float16, True))

# 08.4: 134,515,008 * 4 bytes for the merged model against 2,442,240 * 4 bytes for the adapter: about 55x.
adapter_ratio = 134_515_008 / 2_442_240

# 08.5 (an experiment): "between" is the better bet. With lora_alpha = 2r every run has the same scaling, 2, so a
# higher rank adds directions without shrinking the step, and in the stored CPU sweep the knowledge task's answer
# loss fell steadily from r = 1 through r = 8 to r = 64 (section 6's findings); r = 16 should land inside that
# range. A short run and one seed can still put it outside: that is what the check reports. In the notebook:
#   import dataclasses
#   cfg = dataclasses.replace(templates["knowledge"], r=16, lora_alpha=32, seed=0, measure_before=False)
#   sweep_row = experiments.run_config(cfg, device=device, log=lambda *a: None).row
sweep_prediction = "between"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_rank64_trainable(rank64_trainable)
    exercises.check_rslora_scale(rslora_scale)
    exercises.check_precision_choice(precision_choice)
    exercises.check_adapter_ratio(adapter_ratio)
