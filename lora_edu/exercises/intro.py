"""Self-checks of notebooks/00_welcome.ipynb and 01_low_rank_math.ipynb (parameter counts, Eckart-Young,
factor sizes, energy and subspace similarity)."""

from __future__ import annotations

import torch

from .core import Check, check_function, check_value

# --- notebook 00 ---
# SmolLM2-135M's shapes: hidden 576, MLP 1536, vocabulary 49,152, 30 layers, 134,515,008 parameters.

def check_mlp_parameters(answer) -> Check:
    """Exercise 00.1: the parameters in one decoder layer's MLP (gate_proj, up_proj, down_proj)."""
    return check_value("00.1 MLP parameters", answer, 3 * 576 * 1536,
                       "Three weight matrices, of shapes (1536, 576), (1536, 576) and (576, 1536) as printed in "
                       "section 5; no biases.")


def check_embedding_share(answer) -> Check:
    """Exercise 00.2: the embedding matrix's share of all parameters, as a fraction between 0 and 1."""
    return check_value("00.2 embedding share", answer, 49_152 * 576 / 134_515_008,
                       "Vocabulary x hidden size, divided by the total; lm_head shares the embedding's "
                       "weights, so it adds nothing.", rtol=1e-3)


# --- notebook 01 ---
# Checkers for notebooks/01_low_rank_math.ipynb. Each problem's data is stated in the notebook and here.

EX01_SINGULAR_VALUES = (10.0, 6.0, 3.0, 1.0)  # exercise 01.1: a 4 x 4 matrix with these singular values
EX01_ENERGY_VALUES = (4.0, 3.0, 2.0, 1.0, 1.0)  # exercise 01.4


def check_eckart_young_errors(answer) -> Check:
    """Exercise 01.1: (Frobenius error, spectral error) of the best rank-2 approximation, from S alone."""
    from ..lowrank import eckart_young_error

    S = torch.tensor(EX01_SINGULAR_VALUES)
    expected = (eckart_young_error(S, 2, "fro"), eckart_young_error(S, 2, "spectral"))
    # rtol 1e-3: an answer rounded to three significant digits, such as (3.16, 3), passes
    return check_value("01.1 Eckart-Young errors", answer, expected, rtol=1e-3,
                       hint="Drop the top 2 singular values; Frobenius: sqrt of the sum of the squares "
                            "of the rest; spectral: the largest of the rest. Answer a tuple (fro, spectral).")


def _factor_params(m: int, n: int, k: int) -> int:
    return k * (m + n)  # B (m x k) plus A (k x n)


def check_factor_params(fn) -> Check:
    """Exercise 01.2: ``fn(m, n, k)`` = numbers stored by a rank-k factorization B @ A of an m x n matrix."""
    return check_function("01.2 factor parameters", fn, _factor_params,
                          [(576, 576, 8), (1536, 576, 4), (4096, 4096, 8), (3, 5, 1), (10, 2, 2)],
                          hint="B is (m x k) and A is (k x n); count the entries of both.", atol=0)


def check_break_even_rank(answer) -> Check:
    """Exercise 01.3: the largest k for which rank-k factors of a 1536 x 576 matrix store fewer numbers."""
    m, n = 1536, 576
    expected = max(k for k in range(1, min(m, n) + 1) if _factor_params(m, n, k) < m * n)
    return check_value("01.3 break-even rank", answer, expected,
                       hint="Solve k * (m + n) < m * n for the largest whole k.")


def check_energy_rank(answer) -> Check:
    """Exercise 01.4: the smallest k whose top-k singular values hold at least 90% of the energy."""
    from ..lowrank import effective_rank

    expected = effective_rank(torch.tensor(EX01_ENERGY_VALUES), 0.9)
    return check_value("01.4 energy rank", answer, expected,
                       hint="Square the singular values, add them up from the top, stop at 90% of the total.")


def check_subspace_phi(answer) -> Check:
    """Exercise 01.5: phi between span(e1, e2) and span(e2, e3, e4) in R^5."""
    from ..lowrank import subspace_similarity

    E = torch.eye(5, dtype=torch.float64)
    expected = subspace_similarity(E[[0, 1]], E[[1, 2, 3]], 2, 3)
    return check_value("01.5 subspace similarity", answer, expected,
                       hint="The numerator ||V_1^T V_2||_F^2 counts the shared directions (each contributes 1); "
                            "divide by min(i, j).")
