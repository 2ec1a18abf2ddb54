"""Reference answers for the exercises of notebooks/11_why_low_rank.ipynb (try them yourself first)."""

import torch

# 11.1: for random subspaces of R^k, E ||U_i^T U_j||_F^2 = i * j / k, so phi = max(i, j) / k = 64 / 576 ~ 0.11.
# Measured: phi of two random Gaussian matrices lands near it (a few hundredths either side).
g = torch.Generator().manual_seed(0)
A, B = torch.randn(4, 576, generator=g), torch.randn(64, 576, generator=g)
U_A = torch.linalg.svd(A.double(), full_matrices=False).Vh[:4].T  # (576, 4): right singular vectors
U_B = torch.linalg.svd(B.double(), full_matrices=False).Vh[:64].T  # (576, 64)
random_phi = float((U_A.T @ U_B).pow(2).sum() / 4)

# 11.2: W_q and W_v at r = 4 train 4 * (1152 + 768) = 7,680 numbers per layer; W_q alone trains 1152 per unit of
# rank, so r = 7680 / 1152 = 6.67, rounded to 7 (the paper's Table 5 used 8 for W_q against 4 for W_q, W_v, on
# GPT-3 where W_q and W_v have the same shape).
budget_rank = round(4 * (1152 + 768) / 1152)


# 11.3: the amplification factor of LoRA's appendix H.4.
def amplification(delta_w, weight, r):
    U, _, Vh = torch.linalg.svd(delta_w, full_matrices=False)
    inside = U[:, :r].T @ weight @ Vh[:r].T  # (r, r): W seen through delta W's top-r directions
    return torch.linalg.matrix_norm(delta_w) / torch.linalg.matrix_norm(inside)


# 11.3's question: a random rank-8 update (D built with 8 in place of 4, same seed) scaled to ||delta W||_F = 1.50
# (table7, W_q of layer 15, r = 8) has factor 1.00 there, against the trained update's 1.07: about the same. W seen
# through its directions is 1.50, through the trained update's 1.40 (the random row of table 7: 1.56). So the trained
# update's directions see no more of W than random ones do, as section 4 read, and it is not amplified beyond that.
#   g = torch.Generator().manual_seed(0)
#   D8 = torch.randn(576, 8, generator=g, dtype=torch.float64) @ torch.randn(8, 576, generator=g, dtype=torch.float64)
#   amplification(D8 * (table7[8, "q_proj"]["delta_norm"] / torch.linalg.matrix_norm(D8)), W, 8)


# 11.4 (an experiment): "fall". The factor is ||delta W||_F / ||U^T W V^T||_F: a smaller learning rate makes a
# smaller update (the numerator) while its top directions, and so W seen through them (the denominator), change
# less, so the factor tracks the update's size. Comparing factors across runs, ranks or models therefore compares
# how far each run trained as much as what it learned. In the notebook (one new run, 1-2 minutes on a 2-core CPU):
#   half = run(TASK, SETS[BEST], AMP_RANKS[0], lr=LR / 2)
#   exercises.check_amplification_lr_experiment(prediction, table6[AMP_RANKS[0], SEEDS[0]], half)
# Measured on a 2-core CPU (CPU plan, r = 8, lr 3e-3 -> 1.5e-3): the factor fell in 6 of 6 matrices (layer 0's W_q
# 0.33 -> 0.17, its ||delta W||_F 2.13 -> 0.97).
prediction = "fall"

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_random_phi(random_phi)
    exercises.check_budget_rank(budget_rank)
    exercises.check_amplification(amplification)
