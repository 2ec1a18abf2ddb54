"""Low-rank linear algebra behind LoRA: truncated SVD, Eckart-Young, energy, effective rank, subspace similarity.

Explained in notebooks/01_low_rank_math.ipynb; measured on SmolLM2's own fine-tunes in
notebooks/11_why_low_rank.ipynb.

- ``truncated_svd(W, k)`` and ``low_rank_approx(W, k)``: the best rank-k approximation of W keeps its top k
  singular triplets (Eckart-Young-Mirsky theorem).
- ``eckart_young_error(S, k, norm)``: the error of that approximation, read off the singular values alone:
  sigma_{k+1} in the spectral norm, sqrt(sum_{i>k} sigma_i^2) in the Frobenius norm. No rank-k matrix does better.
- ``energy(S, k)``, ``effective_rank(S, energy_fraction)``, ``entropy_effective_rank(S)``: how spread out a
  spectrum is, i.e. how many directions a matrix really uses.
- ``subspace_similarity(A, B, i, j)``: the normalized subspace similarity phi of the LoRA paper
  (Hu et al. 2021, arXiv 2106.09685, section 7.2, Eq. 4); ``random_subspace_similarity(i, j, k)`` is what
  phi comes to on average for random subspaces of R^k (max(i, j) / k), the line between signal and chance.
- ``projected_norm(W, D, r)`` and ``amplification_factor(delta_w, weight, r)``: how much of W lies in the top-r
  directions of an update, and how strongly the update amplifies them (LoRA section 7.3, Table 7, App. H.4).

Convention: ``S`` is always a 1-D tensor of singular values in descending order, as ``torch.linalg.svdvals``
returns them; ``k`` counts singular values and is 1-based in the math (sigma_1 is ``S[0]``).
"""

from __future__ import annotations

import numpy as np
import torch


def _as_matrix(W, name: str = "W") -> torch.Tensor:
    """``W`` as a floating 2-D torch tensor, or a clear error."""
    if isinstance(W, np.ndarray):
        W = torch.from_numpy(W)
    if not torch.is_tensor(W):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(W).__name__}. "
                        f"Fix: torch.as_tensor({name}).")
    if W.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(W.shape)}. Fix: pick one matrix "
                         f"(e.g. layer.weight) or reshape, e.g. {name}.reshape({name}.shape[0], -1).")
    if not W.is_floating_point():
        raise TypeError(f"{name} has dtype {W.dtype}; the SVD needs floats. Fix: pass {name}.float().")
    return W


def _as_spectrum(S) -> torch.Tensor:
    """``S`` as a 1-D tensor of non-negative singular values, or a clear error."""
    if isinstance(S, np.ndarray):
        S = torch.from_numpy(S)
    if not torch.is_tensor(S):
        S = torch.as_tensor(S, dtype=torch.float64)
    if S.ndim != 1:
        raise ValueError(f"S must be a 1-D tensor of singular values, got shape {tuple(S.shape)}. "
                         "Fix: pass torch.linalg.svdvals(W), not W itself.")
    if S.numel() == 0 or not S.is_floating_point() or (S < 0).any():
        raise ValueError("S must hold non-negative floating singular values (at least one). "
                         "Fix: S = torch.linalg.svdvals(W).")
    return S


def _check_rank(k, limit: int, what: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}.")
    if not 1 <= k <= limit:
        raise ValueError(f"k={k} is out of range: {what} has {limit} singular values, so k must be in "
                         f"1..{limit}. Fix: choose k between 1 and {limit}.")
    return int(k)


# --- best rank-k approximation ---------------------------------------------------------------------------

def truncated_svd(W, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top ``k`` singular triplets of ``W`` (m, n): ``U_k`` (m, k), ``S_k`` (k,), ``Vh_k`` (k, n).

    ``W ~ U_k @ diag(S_k) @ Vh_k``. Columns of ``U_k`` are left singular vectors (in R^m), rows of ``Vh_k``
    right singular vectors (in R^n). ``1 <= k <= min(m, n)``.
    """
    W = _as_matrix(W)
    k = _check_rank(k, min(W.shape), f"W of shape {tuple(W.shape)}")
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)  # (m, p), (p,), (p, n) with p = min(m, n)
    return U[:, :k], S[:k], Vh[:k, :]


def low_rank_approx(W, k: int) -> torch.Tensor:
    """The best rank-``k`` approximation of ``W`` (same shape), in both spectral and Frobenius norm."""
    U_k, S_k, Vh_k = truncated_svd(W, k)
    return (U_k * S_k) @ Vh_k  # scaling columns of U_k by S_k == U_k @ diag(S_k), without building diag


def eckart_young_error(S, k: int, norm: str = "fro") -> float:
    """The error ``||W - low_rank_approx(W, k)||`` from the singular values ``S`` of ``W`` alone.

    ``norm="fro"``: sqrt(sigma_{k+1}^2 + ... + sigma_p^2);  ``norm="spectral"``: sigma_{k+1}.
    Both are 0 when ``k`` equals the number of singular values. By Eckart-Young-Mirsky, no matrix of
    rank <= k has a smaller error in either norm.
    """
    S = _as_spectrum(S)
    k = _check_rank(k, S.numel(), "S")
    tail = S[k:]  # sigma_{k+1}, ..., sigma_p (0-based slicing skips the top k)
    if norm == "fro":
        return float(torch.sqrt((tail.double() ** 2).sum()))
    if norm == "spectral":
        return float(tail.max()) if tail.numel() else 0.0
    raise ValueError(f"norm must be 'fro' or 'spectral', got {norm!r}.")


# --- how spread out is a spectrum? ------------------------------------------------------------------------

def energy(S, k: int) -> float:
    """Fraction of the squared Frobenius norm captured by the top ``k`` singular values, in [0, 1].

    energy = (sigma_1^2 + ... + sigma_k^2) / (sigma_1^2 + ... + sigma_p^2) = 1 - (fro error / ||W||_F)^2.
    """
    S = _as_spectrum(S)
    k = _check_rank(k, S.numel(), "S")
    sq = S.double() ** 2
    total = sq.sum()
    if total == 0:
        raise ValueError("S is all zeros (the zero matrix): energy is undefined.")
    return float(sq[:k].sum() / total)


def effective_rank(S, energy_fraction: float = 0.9) -> int:
    """The smallest ``k`` whose top-k singular values capture at least ``energy_fraction`` of the energy.

    Energy is the squared Frobenius norm (see ``energy``). With 0.9: how many directions a rank-k
    approximation needs to keep 90% of ||W||_F^2, i.e. to reach a relative Frobenius error of sqrt(0.1).
    """
    S = _as_spectrum(S)
    if not 0 < energy_fraction <= 1:
        raise ValueError(f"energy_fraction must be in (0, 1], got {energy_fraction}. Fix: e.g. 0.9.")
    sq = S.double() ** 2
    if sq.sum() == 0:
        raise ValueError("S is all zeros (the zero matrix): it has rank 0.")
    cum = torch.cumsum(sq, 0) / sq.sum()
    # 1e-12 absorbs rounding, so a fraction of exactly 1.0 is reached at the last non-zero value
    return int((cum < energy_fraction - 1e-12).sum()) + 1


def entropy_effective_rank(S) -> float:
    """Roy & Vetterli's effective rank (EUSIPCO 2007): exp of the entropy of p_i = sigma_i / sum(sigma).

    A real number between 1 (one direction) and p (all singular values equal); unlike ``effective_rank``
    it needs no threshold. Note it normalizes the singular values themselves, not their squares.
    """
    S = _as_spectrum(S).double()
    if S.sum() == 0:
        raise ValueError("S is all zeros (the zero matrix): effective rank is undefined.")
    p = S / S.sum()
    p = p[p > 0]  # 0 * log 0 = 0
    return float(torch.exp(-(p * torch.log(p)).sum()))


# --- subspace similarity (LoRA section 7.2) ---------------------------------------------------------------

def _singular_basis(M: torch.Tensor, side: str) -> torch.Tensor:
    """Orthonormal singular vectors of ``M`` as columns, most important first: left (m, p) or right (n, p)."""
    U, _, Vh = torch.linalg.svd(M.double(), full_matrices=False)
    return U if side == "left" else Vh.T


def _check_pair(A, B, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    A, B = _as_matrix(A, "A"), _as_matrix(B, "B")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'right' (row spaces, for LoRA's A) or 'left' (column spaces, for "
                         f"LoRA's B), got {side!r}.")
    dim = 1 if side == "right" else 0
    if A.shape[dim] != B.shape[dim]:
        raise ValueError(f"A {tuple(A.shape)} and B {tuple(B.shape)} live in different spaces for side={side!r}: "
                         f"their {'column' if dim else 'row'} counts differ. Right singular vectors need equal "
                         "columns (two LoRA A matrices of one layer); left ones need equal rows.")
    return A, B


def subspace_similarity(A, B, i: int, j: int, side: str = "right") -> float:
    """phi(A, B, i, j) = ||U_{A,i}^T U_{B,j}||_F^2 / min(i, j), in [0, 1] (LoRA section 7.2, Eq. 4).

    ``U_{A,i}`` holds the top ``i`` singular vectors of ``A`` as columns; ``U_{B,j}`` the top ``j`` of ``B``.
    phi is 1 when one subspace contains the other, 0 when they are orthogonal.

    Which singular vectors: the LoRA paper compares LoRA's A matrices (shape r x in_features) and calls U
    the *right*-singular unitary matrix (its appendix G says "left"; the text is inconsistent). For an
    r x k matrix only the right singular vectors live in the k-dimensional input space shared by the two
    adapters, so ``side="right"`` (the default) compares row spaces. Use ``side="left"`` to compare column
    spaces, e.g. LoRA's B matrices (out_features x r) or the output directions of two weight updates.
    """
    A, B = _check_pair(A, B, side)
    i = _check_rank(i, min(A.shape), f"A of shape {tuple(A.shape)}")
    j = _check_rank(j, min(B.shape), f"B of shape {tuple(B.shape)}")
    U_A, U_B = _singular_basis(A, side)[:, :i], _singular_basis(B, side)[:, :j]  # (d, i), (d, j)
    return float((U_A.T @ U_B).pow(2).sum() / min(i, j))


def subspace_similarity_grid(A, B, side: str = "right") -> torch.Tensor:
    """phi(A, B, i, j) for every i and j at once: entry ``[i-1, j-1]`` (LoRA Fig. 3 and 4 plot this grid).

    One SVD per matrix: with M = U_A^T U_B, ||U_{A,i}^T U_{B,j}||_F^2 is the sum of M[:i, :j]^2, a 2-D
    cumulative sum.
    """
    A, B = _check_pair(A, B, side)
    M2 = (_singular_basis(A, side).T @ _singular_basis(B, side)).pow(2)  # (p_A, p_B)
    sums = M2.cumsum(0).cumsum(1)
    i = torch.arange(1, sums.shape[0] + 1, dtype=sums.dtype, device=sums.device)[:, None]  # (p_A, 1)
    j = torch.arange(1, sums.shape[1] + 1, dtype=sums.dtype, device=sums.device)[None, :]  # (1, p_B)
    return sums / torch.minimum(i, j)


def random_subspace_similarity(i: int, j: int, k: int) -> float:
    """The mean of phi for a random i-dim and a random j-dim subspace of R^k: max(i, j) / k.

    With P, Q the orthogonal projections onto them, ||U_i^T U_j||_F^2 = tr(P Q), and E[tr(P Q)] = i j / k
    (by symmetry E[P] = (i / k) I). Dividing by min(i, j) gives max(i, j) / k. A measured phi well above this
    is a shared direction; one near it is chance.
    """
    for name, value in (("i", i), ("j", j), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    if max(i, j) > k:
        raise ValueError(f"i={i} and j={j} must be at most k={k}: R^{k} has no {max(i, j)}-dimensional subspace.")
    return max(i, j) / k


# --- how an update relates to the weight it updates (LoRA section 7.3) ------------------------------------

def _check_same_shape(delta_w: torch.Tensor, weight: torch.Tensor) -> None:
    if delta_w.shape != weight.shape:
        raise ValueError(f"delta_w {tuple(delta_w.shape)} and weight {tuple(weight.shape)} must have the same "
                         "shape (out_features, in_features). Fix: pass layer.get_delta_weight() and "
                         "layer.base_layer.weight of one LoraLinear.")


def projected_norm(weight, directions, r: int) -> float:
    """||U^T W V^T||_F: the part of ``weight`` W (m, n) inside the top-``r`` singular directions of ``directions``.

    U (m, r) and V^T (n, r) hold the top-r left and right singular vectors of ``directions`` (same shape as W),
    so U^T W V^T is r x r. Pass the update delta W, W itself (then it is sqrt(sigma_1^2 + ... + sigma_r^2) of W)
    or a random matrix: the three rows of LoRA's Table 7.
    """
    W, D = _as_matrix(weight, "weight"), _as_matrix(directions, "directions")
    _check_same_shape(D, W)
    U_r, _, Vh_r = truncated_svd(D.double(), r)  # (m, r), (r,), (r, n)
    return float(torch.linalg.matrix_norm(U_r.T @ W.double() @ Vh_r.T))  # (r, m) (m, n) (n, r) -> (r, r)


def amplification_factor(delta_w, weight, r: int) -> float:
    """||delta W||_F / ||U^T W V^T||_F with U, V the top-``r`` singular vectors of ``delta_w`` (LoRA App. H.4).

    How much larger the update is, along its own top-r directions, than the pretrained weight is along them.
    The paper measures 6.91 / 0.32 ~ 21.5 at r = 4 and about 2 at r = 64 (GPT-3, W_q of layer 48): the
    update amplifies directions W barely uses. A very large factor means W is nearly orthogonal to them.
    """
    D = _as_matrix(delta_w, "delta_w")
    inside = projected_norm(weight, D, r)
    if inside <= 1e-12 * float(torch.linalg.matrix_norm(_as_matrix(weight, "weight").double())):  # rounding
        raise ValueError("weight is orthogonal to the top-r directions of delta_w (||U^T W V^T||_F = 0), so "
                         "the amplification factor is infinite. Fix: check that delta_w belongs to this weight.")
    return float(torch.linalg.matrix_norm(D.double())) / inside
