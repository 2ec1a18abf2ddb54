"""Tests for lora_edu.lowrank: against torch.linalg / numpy, the Eckart-Young theorem, phi's properties, bad input."""

import math

import numpy as np
import pytest
import torch

from lora_edu import lowrank


def _randn(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _random_rank_k(m, n, k, seed):
    return _randn(m, k, seed=seed) @ _randn(k, n, seed=seed + 1000)


@pytest.mark.parametrize("shape", [(7, 5), (5, 7), (6, 6), (1, 4)])
def test_truncated_svd_matches_numpy(shape):
    W = _randn(*shape)
    U_np, S_np, Vh_np = np.linalg.svd(W.numpy(), full_matrices=False)
    for k in range(1, min(shape) + 1):
        U_k, S_k, Vh_k = lowrank.truncated_svd(W, k)
        assert U_k.shape == (shape[0], k) and S_k.shape == (k,) and Vh_k.shape == (k, shape[1])
        np.testing.assert_allclose(S_k.numpy(), S_np[:k], rtol=1e-10)
        # singular vectors are defined up to sign: compare the rank-k pieces they build
        ref = (U_np[:, :k] * S_np[:k]) @ Vh_np[:k]
        np.testing.assert_allclose(lowrank.low_rank_approx(W, k).numpy(), ref, atol=1e-10)
        torch.testing.assert_close(U_k.T @ U_k, torch.eye(k, dtype=W.dtype))
        torch.testing.assert_close(Vh_k @ Vh_k.T, torch.eye(k, dtype=W.dtype))


def test_low_rank_approx_has_rank_k_and_full_k_is_exact():
    W = _randn(8, 6, seed=1)
    for k in (1, 3, 5):
        assert torch.linalg.matrix_rank(lowrank.low_rank_approx(W, k)) == k
    torch.testing.assert_close(lowrank.low_rank_approx(W, 6), W)


def test_low_rank_approx_recovers_a_planted_rank_k_matrix():
    W = _random_rank_k(9, 7, 3, seed=2)
    torch.testing.assert_close(lowrank.low_rank_approx(W, 3), W)
    assert lowrank.eckart_young_error(torch.linalg.svdvals(W), 3) < 1e-10


def test_accepts_numpy_and_float32():
    W = _randn(6, 4, seed=3)
    torch.testing.assert_close(lowrank.low_rank_approx(W.numpy(), 2), lowrank.low_rank_approx(W, 2))
    assert lowrank.low_rank_approx(W.float(), 2).dtype == torch.float32


@pytest.mark.parametrize("shape", [(10, 6), (6, 10)])
def test_eckart_young_error_equals_measured_error(shape):
    W = _randn(*shape, seed=4)
    S = torch.linalg.svdvals(W)
    for k in range(1, min(shape) + 1):
        R = W - lowrank.low_rank_approx(W, k)
        fro = torch.linalg.matrix_norm(R, "fro").item()
        spec = torch.linalg.matrix_norm(R, 2).item()
        assert lowrank.eckart_young_error(S, k, "fro") == pytest.approx(fro, rel=1e-9, abs=1e-12)
        assert lowrank.eckart_young_error(S, k, "spectral") == pytest.approx(spec, rel=1e-9, abs=1e-12)
    assert lowrank.eckart_young_error(S, min(shape)) == 0.0
    assert lowrank.eckart_young_error(S, min(shape), "spectral") == 0.0


def test_eckart_young_error_from_hand_computed_spectrum():
    S = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    assert lowrank.eckart_young_error(S, 2) == pytest.approx(math.sqrt(9 + 4 + 1))
    assert lowrank.eckart_young_error(S, 2, "spectral") == 3.0


def test_truncation_beats_random_rank_k_matrices():
    W = _randn(12, 10, seed=5)
    S = torch.linalg.svdvals(W)
    for k in (1, 3, 6):
        best_fro, best_spec = lowrank.eckart_young_error(S, k), lowrank.eckart_young_error(S, k, "spectral")
        for seed in range(20):
            # a random rank-k matrix, and the best matrix within a random k-dim column space (Q Q^T W)
            Q, _ = torch.linalg.qr(_randn(12, k, seed=100 + seed))
            for X in (_random_rank_k(12, 10, k, seed=200 + seed), Q @ (Q.T @ W)):
                assert torch.linalg.matrix_norm(W - X, "fro") >= best_fro - 1e-12
                assert torch.linalg.matrix_norm(W - X, 2) >= best_spec - 1e-12
        # and the gap is real: a random subspace is strictly worse for a generic W
        Q, _ = torch.linalg.qr(_randn(12, k, seed=999))
        assert torch.linalg.matrix_norm(W - Q @ (Q.T @ W), "fro") > best_fro * 1.05


def test_energy():
    S = torch.tensor([3.0, 2.0, 1.0])
    assert lowrank.energy(S, 1) == pytest.approx(9 / 14)
    assert lowrank.energy(S, 2) == pytest.approx(13 / 14)
    assert lowrank.energy(S, 3) == pytest.approx(1.0)
    W = _randn(8, 5, seed=6)
    S = torch.linalg.svdvals(W)
    rel = lowrank.eckart_young_error(S, 2) / torch.linalg.matrix_norm(W).item()
    assert lowrank.energy(S, 2) == pytest.approx(1 - rel**2)


def test_effective_rank_by_energy():
    S = torch.tensor([4.0, 3.0, 2.0, 1.0, 1.0])  # cumulative energy 16, 25, 29, 30, 31 of 31
    assert lowrank.effective_rank(S, 0.5) == 1
    assert lowrank.effective_rank(S, 0.9) == 3
    assert lowrank.effective_rank(S, 25 / 31) == 2  # exactly reached counts
    assert lowrank.effective_rank(S, 1.0) == 5
    planted = _random_rank_k(30, 20, 4, seed=7)
    assert lowrank.effective_rank(torch.linalg.svdvals(planted), 1.0) == 4


def test_entropy_effective_rank():
    assert lowrank.entropy_effective_rank(torch.tensor([2.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert lowrank.entropy_effective_rank(torch.ones(7)) == pytest.approx(7.0)
    S = torch.tensor([3.0, 2.0, 1.0])
    p = S / S.sum()
    assert lowrank.entropy_effective_rank(S) == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert 1.0 < lowrank.entropy_effective_rank(S) < 3.0


def test_subspace_similarity_matches_definition():
    A, B = _randn(8, 30, seed=8), _randn(16, 30, seed=9)  # two "LoRA A" matrices: r x in_features
    _, _, Vh_A = np.linalg.svd(A.numpy(), full_matrices=False)
    _, _, Vh_B = np.linalg.svd(B.numpy(), full_matrices=False)
    for i, j in [(1, 1), (3, 5), (8, 16), (8, 2)]:
        ref = np.linalg.norm(Vh_A[:i] @ Vh_B[:j].T, "fro") ** 2 / min(i, j)
        assert lowrank.subspace_similarity(A, B, i, j) == pytest.approx(ref, rel=1e-9)
    grid = lowrank.subspace_similarity_grid(A, B)
    assert grid.shape == (8, 16)
    assert grid[2, 4].item() == pytest.approx(lowrank.subspace_similarity(A, B, 3, 5), rel=1e-9)


def test_subspace_similarity_properties():
    A = _randn(6, 20, seed=10)
    grid = lowrank.subspace_similarity_grid(A, _randn(9, 20, seed=11))
    assert grid.min() >= 0 and grid.max() <= 1 + 1e-12
    for i in range(1, 7):
        assert lowrank.subspace_similarity(A, A, i, i) == pytest.approx(1.0)
    # a subspace inside a bigger one: phi = 1; orthogonal subspaces: phi = 0
    E = torch.eye(20, dtype=torch.float64)
    assert lowrank.subspace_similarity(E[:2] * torch.tensor([[2.0], [1.0]], dtype=torch.float64),
                                       E[:5], 2, 5) == pytest.approx(1.0)
    assert lowrank.subspace_similarity(E[:3], E[3:7], 3, 4) == pytest.approx(0.0, abs=1e-15)
    # half overlapping: span(e1, e2) vs span(e1, e3)
    assert lowrank.subspace_similarity(E[[0, 1]], E[[0, 2]], 2, 2) == pytest.approx(0.5)


def test_subspace_similarity_left_side_compares_column_spaces():
    B1, B2 = _randn(30, 4, seed=12), _randn(30, 4, seed=13)  # two "LoRA B" matrices: out x r
    assert lowrank.subspace_similarity(B1, B1 @ _randn(4, 4, seed=14), 4, 4, side="left") == pytest.approx(1.0)
    assert lowrank.subspace_similarity(B1, B2, 4, 4, side="left") == pytest.approx(
        lowrank.subspace_similarity(B1.T, B2.T, 4, 4, side="right"))


@pytest.mark.parametrize("call, err, match", [
    (lambda: lowrank.truncated_svd(_randn(4, 3), 0), ValueError, "1..3"),
    (lambda: lowrank.truncated_svd(_randn(4, 3), 4), ValueError, "out of range"),
    (lambda: lowrank.truncated_svd(_randn(4, 3), 1.5), TypeError, "int"),
    (lambda: lowrank.truncated_svd(_randn(2, 4, 3), 1), ValueError, "2-D"),
    (lambda: lowrank.truncated_svd(_randn(4), 1), ValueError, "2-D"),
    (lambda: lowrank.low_rank_approx(torch.ones(3, 3, dtype=torch.int64), 1), TypeError, "float"),
    (lambda: lowrank.low_rank_approx([[1.0, 2.0]], 1), TypeError, "torch.as_tensor"),
    (lambda: lowrank.eckart_young_error(torch.ones(3), 0), ValueError, "out of range"),
    (lambda: lowrank.eckart_young_error(torch.ones(3), 4), ValueError, "out of range"),
    (lambda: lowrank.eckart_young_error(_randn(3, 3), 1), ValueError, "svdvals"),
    (lambda: lowrank.eckart_young_error(torch.tensor([1.0, -1.0]), 1), ValueError, "non-negative"),
    (lambda: lowrank.eckart_young_error(torch.ones(3), 1, "nuclear"), ValueError, "'fro' or 'spectral'"),
    (lambda: lowrank.energy(torch.ones(3), 0), ValueError, "out of range"),
    (lambda: lowrank.energy(torch.zeros(3), 1), ValueError, "all zeros"),
    (lambda: lowrank.effective_rank(torch.ones(3), 0.0), ValueError, "energy_fraction"),
    (lambda: lowrank.effective_rank(torch.ones(3), 1.5), ValueError, "energy_fraction"),
    (lambda: lowrank.entropy_effective_rank(torch.zeros(2)), ValueError, "all zeros"),
    (lambda: lowrank.subspace_similarity(_randn(4, 10), _randn(4, 9), 1, 1), ValueError, "different spaces"),
    (lambda: lowrank.subspace_similarity(_randn(4, 10), _randn(4, 10), 5, 1), ValueError, "1..4"),
    (lambda: lowrank.subspace_similarity(_randn(4, 10), _randn(4, 10), 1, 0), ValueError, "out of range"),
    (lambda: lowrank.subspace_similarity(_randn(4, 10), _randn(4, 10), 1, 1, "up"), ValueError, "side"),
    (lambda: lowrank.subspace_similarity_grid(_randn(4, 10), _randn(5, 10), side="left"), ValueError,
     "different spaces"),
    (lambda: lowrank.random_subspace_similarity(0, 1, 5), ValueError, "i must be an int"),
    (lambda: lowrank.random_subspace_similarity(2, 6, 5), ValueError, "at most k=5"),
    (lambda: lowrank.amplification_factor(_randn(4, 6), _randn(6, 4), 1), ValueError, "same shape"),
    (lambda: lowrank.amplification_factor(_randn(4, 6), _randn(4, 6), 5), ValueError, "out of range"),
    (lambda: lowrank.projected_norm(_randn(4, 6), _randn(4, 6).int(), 1), TypeError, "float"),
])
def test_bad_input_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


# --- random baseline of phi and the amplification factor (LoRA section 7.3) -------------------------------

def _orthonormal(n, seed):
    return torch.linalg.qr(_randn(n, n, seed=seed)).Q  # (n, n), columns orthonormal


def test_random_subspace_similarity_is_the_mean_phi_of_random_matrices():
    k, i, j = 48, 2, 12
    phis = [lowrank.subspace_similarity(_randn(i, k, seed=s), _randn(j, k, seed=s + 500), i, j)
            for s in range(300)]
    expected = lowrank.random_subspace_similarity(i, j, k)
    assert expected == 12 / 48
    assert abs(np.mean(phis) - expected) < 0.02  # standard error of the mean is about 0.01 here
    assert lowrank.random_subspace_similarity(3, 3, 3) == 1.0  # the whole space: every subspace contains it


def _planted_weight(m=12, n=10, seed=0):
    """W = U diag(S) V^T with known singular values 10, 5, 2, 1, 0.5, ... and its factors."""
    U, V = _orthonormal(m, seed)[:, :n], _orthonormal(n, seed + 1)
    S = torch.tensor([10.0, 5.0, 2.0, 1.0] + [0.5] * (n - 4), dtype=torch.float64)
    return (U * S) @ V.T, U, S, V


def test_projected_norm_of_w_on_itself_is_its_top_r_energy():
    W, _, S, _ = _planted_weight()
    for r in (1, 3, 10):
        assert math.isclose(lowrank.projected_norm(W, W, r), float(S[:r].pow(2).sum().sqrt()), rel_tol=1e-12)


def test_amplification_of_a_planted_update_along_a_known_direction():
    W, U, S, V = _planted_weight()
    # an update of norm 7 along W's 3rd singular pair: U^T W V^T = sigma_3 = 2, so the factor is 7 / 2
    delta = 7.0 * U[:, 2:3] @ V[:, 2:3].T
    assert math.isclose(lowrank.projected_norm(W, delta, 1), 2.0, rel_tol=1e-12)
    assert math.isclose(lowrank.amplification_factor(delta, W, 1), 3.5, rel_tol=1e-12)
    # a rank-2 update on pairs 1 and 4 (norms 3 and 4): ||delta||_F = 5, ||U^T W V^T||_F = sqrt(10^2 + 1^2)
    delta = 3.0 * U[:, :1] @ V[:, :1].T + 4.0 * U[:, 3:4] @ V[:, 3:4].T
    assert math.isclose(lowrank.amplification_factor(delta, W, 2), 5.0 / math.sqrt(101.0), rel_tol=1e-12)


def test_amplification_when_the_update_lives_in_an_orthogonal_subspace():
    # W uses only the first 3 input and output coordinates; an update on the others is invisible to W
    W = torch.zeros(8, 8, dtype=torch.float64)
    W[:3, :3] = _randn(3, 3, seed=3)
    delta = torch.zeros(8, 8, dtype=torch.float64)
    delta[3:, 3:] = _random_rank_k(5, 5, 2, seed=4)
    assert lowrank.projected_norm(W, delta, 2) < 1e-12
    with pytest.raises(ValueError, match="orthogonal"):
        lowrank.amplification_factor(delta, W, 2)
    # tilt the update slightly towards W's space: the factor is large but finite
    tilted = delta + 1e-2 * _randn(8, 1, seed=7) @ _randn(1, 8, seed=8)  # reaches into every coordinate
    assert 10 < lowrank.amplification_factor(tilted, W, 2) < 1e6


def test_amplification_matches_the_definition_on_random_matrices():
    W, delta, r = _randn(9, 7, seed=5), _random_rank_k(9, 7, 3, seed=6), 3
    U, _, Vh = torch.linalg.svd(delta)
    by_hand = torch.linalg.matrix_norm(delta) / torch.linalg.matrix_norm(U[:, :r].T @ W @ Vh[:r].T)
    assert math.isclose(lowrank.amplification_factor(delta, W, r), float(by_hand), rel_tol=1e-10)
    # a scaled update is amplified by the same scale; a scaled weight divides it
    assert math.isclose(lowrank.amplification_factor(4 * delta, W, r), 4 * float(by_hand), rel_tol=1e-10)
    assert math.isclose(lowrank.amplification_factor(delta, 2 * W, r), float(by_hand) / 2, rel_tol=1e-10)
