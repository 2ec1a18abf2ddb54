"""Self-checks of notebooks/11_why_low_rank.ipynb (subspace similarity by chance, equal budgets, amplification)."""

from __future__ import annotations

import torch

from .. import lowrank
from .core import Check, check_function, check_value

# SmolLM2-135M: hidden 576; q_proj is 576 -> 576, v_proj 576 -> 192 (per unit of rank: 1152 and 768 numbers).
EX11_I, EX11_J, EX11_K = 4, 64, 576  # exercise 11.1: phi of a random 4-dim and a random 64-dim subspace of R^576


def check_random_phi(answer) -> Check:
    """Exercise 11.1: phi(A, B, 4, 64) for random A (4 x 576) and B (64 x 576), predicted then measured."""
    return check_value("11.1 phi by chance", answer, lowrank.random_subspace_similarity(EX11_I, EX11_J, EX11_K),
                       rtol=0.05, hint="a random i-dim subspace keeps about i/k of a unit vector's squared "
                                       "length in a random j-dim one, so phi ~ max(i, j) / k = 64 / 576.")


def check_budget_rank(answer) -> Check:
    """Exercise 11.2: the rank of LoRA on W_q alone with the budget of W_q and W_v at r = 4 (SmolLM2)."""
    return check_value("11.2 rank at an equal budget", answer, round(4 * (1152 + 768) / 1152),
                       hint="W_q and W_v at r = 4 train 4 * (1152 + 768) numbers per layer; W_q alone trains "
                            "1152 per unit of rank. Divide and round to the nearest whole rank.")


def _amplification_inputs() -> list[tuple]:
    g = torch.Generator().manual_seed(11)
    cases = []
    for out_f, in_f, r in ((6, 5, 1), (8, 12, 3), (10, 7, 4)):
        delta = torch.randn(out_f, r, generator=g, dtype=torch.float64) @ torch.randn(r, in_f, generator=g,
                                                                                   dtype=torch.float64)
        cases.append((delta, torch.randn(out_f, in_f, generator=g, dtype=torch.float64), r))
    return cases


def check_amplification(fn) -> Check:
    """Exercise 11.3: ``fn(delta_w, weight, r)`` returns ||delta W||_F / ||U^T W V^T||_F (LoRA App. H.4)."""
    def as_float(*args):  # a float or a 0-d tensor is fine; None (a stub) is passed on, for its own hint
        value = fn(*args)
        return None if value is None else float(value)

    return check_function("11.3 amplification factor", fn if fn is None or fn is Ellipsis else as_float, lowrank.amplification_factor, _amplification_inputs(),
                          atol=1e-8, hint="U, S, Vh = torch.linalg.svd(delta_w); project with U[:, :r].T @ weight "
                                          "@ Vh[:r].T (r x r); divide the Frobenius norm of delta_w by its norm.")
