"""Reference answers for the exercises of notebooks/01_low_rank_math.ipynb (try them yourself first)."""

import math

# 01.1: singular values (10, 6, 3, 1). The best rank-2 approximation keeps 10 and 6 and drops 3 and 1.
eckart_young_errors = (math.sqrt(3.0**2 + 1.0**2), 3.0)  # (Frobenius, spectral) = (sqrt(10), sigma_3)


# 01.2: a rank-k factorization B @ A of an m x n matrix: B is (m x k), A is (k x n).
def factor_params(m, n, k):
    return m * k + k * n


# 01.3: k * (1536 + 576) < 1536 * 576  <=>  k < 884,736 / 2,112 = 418.9..., so the largest whole k is 418.
break_even_rank = (1536 * 576 - 1) // (1536 + 576)

# 01.4: squares 16, 9, 4, 1, 1 (total 31); running sums 16, 25, 29: 29 / 31 = 93.5% >= 90% first at k = 3.
energy_rank = 3

# 01.5: span(e1, e2) and span(e2, e3, e4) share one direction, e2: ||V_1^T V_2||_F^2 = 1 and min(2, 3) = 2.
subspace_phi = 1 / 2

if __name__ == "__main__":
    from lora_edu import exercises

    exercises.check_eckart_young_errors(eckart_young_errors)
    exercises.check_factor_params(factor_params)
    exercises.check_break_even_rank(break_even_rank)
    exercises.check_energy_rank(energy_rank)
    exercises.check_subspace_phi(subspace_phi)
