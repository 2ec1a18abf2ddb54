"""Reference answers for the exercises of notebooks/10_serving.ipynb (try them yourself first)."""

import torch

# 10.1: per block, r * (in + out) summed over the seven linear layers: 8 * (1152 + 768 + 768 + 1152 + 2112 +
# 2112 + 2112) = 8 * 10,176 = 81,408; times 30 blocks: 2,442,240 numbers (9.8 MB in fp32), about 1.8% of
# the 134.5M-number base model, so one extra merged copy costs as much as about 55 adapters.
adapter_numbers = 30 * 8 * (1152 + 768 + 768 + 1152 + 2112 + 2112 + 2112)


# 10.2: gather each row's A and B, then shrink (in -> r) and expand (r -> out), row by row, in one batched op.
def gathered_delta(x, slots, stacked_A, stacked_B):
    A, B = stacked_A[slots], stacked_B[slots]  # (batch, r, in), (batch, out, r)
    shrink = torch.bmm(A, x.unsqueeze(-1))  # (batch, r, 1)
    return torch.bmm(B, shrink).squeeze(-1)  # (batch, out)


# 10.3: max_lora_rank must be at least 40 and one of vLLM's values; the smallest such is 64. Every adapter is
# padded to it, so a larger setting only costs memory and time.
max_lora_rank = 64

# 10.4 (an experiment): "rise". Merge-and-swap pays a merge and a restore per adapter per batch, whatever the number
# of rows that use it, while its forward passes (and PEFT's) grow with the rows; four rows per adapter spread the
# fixed cost over four times the tokens. In the notebook (section 6's measure; about a minute on a CPU):
#   big = measure(8, torch.randint(1, 49152, (32, 32), generator=torch.Generator().manual_seed(1)))
#   exercises.check_merge_swap_batch_experiment(prediction, mixes[8], big)
# Measured once on a 2-core CPU, in a separate run (a copy of an earlier stored notebook run to this cell, 3 passes
# each): merge-swap / peft 0.42 with 8 rows, 0.64 with 32 rows. The stored notebook's own 8-row figure is 0.35 (7
# passes): timings on a shared machine move by 10-20% and more.
prediction = "rise"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_adapter_numbers(adapter_numbers)
    exercises.check_gathered_delta(gathered_delta)
    exercises.check_max_lora_rank(max_lora_rank)
