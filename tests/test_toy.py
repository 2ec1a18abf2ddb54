"""The toy task: a planted rank-k update, Eckart-Young floors, and a LoRA training loop that reaches them."""

import math

import pytest
import torch

from lora_edu import lowrank
from lora_edu.toy import ToyTask, make_toy_task, steps_to_reach, train_lora_on_toy

PLANTED = (4.0, 3.0, 2.0, 1.0)


@pytest.fixture(scope="module")
def task():
    return make_toy_task(singular_values=PLANTED, seed=0)


def test_task_is_deterministic_and_planted_as_asked(task):
    again = make_toy_task(singular_values=PLANTED, seed=0)
    torch.testing.assert_close(task.delta_star, again.delta_star, rtol=0, atol=0)
    torch.testing.assert_close(task.W0, again.W0, rtol=0, atol=0)
    assert not torch.equal(make_toy_task(seed=1).W0, task.W0)
    assert task.k == 4 and task.delta_star.shape == (64, 64)
    S = torch.linalg.svdvals(task.delta_star.double())
    torch.testing.assert_close(S[:4], torch.tensor(PLANTED, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    assert S[4:].max() < 1e-5  # rank exactly k
    torch.testing.assert_close(task.U.T @ task.U, torch.eye(4), atol=1e-5, rtol=0)
    assert make_toy_task(singular_values=(1.0, 3.0)).singular_values.tolist() == [3.0, 1.0]  # sorted


def test_expected_loss_is_the_mean_minibatch_loss(task):
    # E ||y - W0 x||^2 = ||delta_W*||_F^2 = 16 + 9 + 4 + 1 = 30; a 20,000-sample mean is within ~1%.
    x, y = task.sample(20_000, torch.Generator().manual_seed(0))
    mc = (x @ task.W0.T - y).pow(2).sum(-1).mean().item()
    assert task.expected_loss(torch.zeros(64, 64)) == pytest.approx(30.0, rel=1e-5)
    assert mc == pytest.approx(30.0, rel=0.03)
    noisy = make_toy_task(noise_std=0.1)
    assert noisy.expected_loss(noisy.delta_star) == pytest.approx(64 * 0.01, rel=1e-5)


def test_loss_floor_is_the_eckart_young_tail_energy(task):
    S_full = torch.linalg.svdvals(task.delta_star.double())  # computed from the matrix, not from PLANTED
    for r in (1, 2, 3):
        tail = lowrank.eckart_young_error(S_full, r, "fro")
        assert task.loss_floor(r) == pytest.approx(tail**2, rel=1e-4)
    assert [task.loss_floor(r) for r in (1, 2, 3, 4, 8)] == pytest.approx([14.0, 5.0, 1.0, 0.0, 0.0])
    # the floor is reached by the truncated SVD and by nothing better
    for r in (1, 2, 3):
        assert task.expected_loss(lowrank.low_rank_approx(task.delta_star, r)) == pytest.approx(
            task.loss_floor(r), rel=1e-4)


@pytest.mark.parametrize("r", [4, 8])
def test_rank_at_least_k_recovers_the_planted_update(task, r):
    run = train_lora_on_toy(r, lora_alpha=8, steps=300, lr=1e-2, task=task)
    assert run.final_loss < 1e-4 * run.expected_losses[0]  # from 30 to below 0.003
    S = torch.linalg.svdvals(run.delta.double())
    torch.testing.assert_close(S[:4], torch.tensor(PLANTED, dtype=torch.float64), atol=0.02, rtol=0)
    assert S[4:].max() < 0.02
    for side in ("left", "right"):
        assert lowrank.subspace_similarity(run.delta, task.delta_star, 4, 4, side=side) > 0.999


@pytest.mark.parametrize("r", [1, 2, 3])
def test_rank_below_k_plateaus_at_the_eckart_young_floor(task, r):
    run = train_lora_on_toy(r, lora_alpha=8, steps=300, lr=1e-2, task=task)
    floor = task.loss_floor(r)
    assert floor <= run.final_loss <= 1.02 * floor  # never below (Eckart-Young), and gets within 2%
    S = torch.linalg.svdvals(run.delta.double())
    torch.testing.assert_close(S[:r], torch.tensor(PLANTED[:r], dtype=torch.float64), atol=0.05, rtol=0)
    assert S[r:].max() < 1e-4  # B @ A has rank r at most
    assert lowrank.subspace_similarity(run.delta, task.delta_star, r, r, side="left") > 0.99  # the top r


def test_noise_raises_the_floor_by_its_variance():
    noisy = make_toy_task(noise_std=0.1)
    assert noisy.loss_floor(2) == pytest.approx(5.0 + 64 * 0.01)
    run = train_lora_on_toy(2, lora_alpha=8, steps=300, lr=1e-2, task=noisy)
    assert noisy.loss_floor(2) <= run.final_loss <= 1.03 * noisy.loss_floor(2)


def test_runs_are_repeatable_and_leave_the_global_rng_alone(task):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = train_lora_on_toy(2, 8, steps=20, task=task, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = train_lora_on_toy(2, 8, steps=20, task=task, seed=5)
    c = train_lora_on_toy(2, 8, steps=20, task=task, seed=6)
    assert torch.equal(a.losses, b.losses) and torch.equal(a.delta, b.delta)
    assert not torch.equal(a.losses, c.losses)
    assert a.losses.shape == (20,) and a.expected_losses.shape == (21,)
    assert a.expected_losses[0] == pytest.approx(30.0, rel=1e-5)  # B = 0: the LoRA layer starts as W0
    assert torch.get_num_threads() >= 1  # restored (the loop pins one thread)


def test_scaling_and_rslora(task):
    assert train_lora_on_toy(16, 32, steps=1, task=task).scaling == 2.0
    assert train_lora_on_toy(16, 32, steps=1, task=task, use_rslora=True).scaling == 8.0


def test_alpha_times_c_equals_lr_and_init_times_sqrt_c_under_adam(task):
    # (c * alpha, lr) and (alpha, sqrt(c) * lr, A init * sqrt(c)) follow one trajectory, up to Adam's eps.
    c = 4.0
    a = train_lora_on_toy(4, 8 * c, steps=100, lr=3e-3, task=task)
    b = train_lora_on_toy(4, 8, steps=100, lr=3e-3 * math.sqrt(c), init_scale=math.sqrt(c), task=task)
    torch.testing.assert_close(a.expected_losses, b.expected_losses, rtol=1e-4, atol=1e-5)
    naive = train_lora_on_toy(4, 8, steps=100, lr=3e-3 * c, task=task)  # only approximately the same
    assert (naive.expected_losses - a.expected_losses).abs().max() > 0.1



def test_steps_to_reach():
    assert steps_to_reach(torch.tensor([5.0, 3.0, 1.0, 0.5]), 1.0) == 2
    assert steps_to_reach(torch.tensor([5.0, 3.0]), 1.0) is None


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(singular_values=()), ValueError, "positive finite"),
    (dict(singular_values=(1.0, -1.0)), ValueError, "positive finite"),
    (dict(singular_values=(1.0, float("nan"))), ValueError, "positive finite"),
    (dict(in_features=3, singular_values=(4.0, 3.0, 2.0, 1.0)), ValueError, "fewer singular values"),
    (dict(noise_std=-0.1), ValueError, "noise_std"),
    (dict(in_features=0), ValueError, "in_features must be >= 1"),
    (dict(out_features=8.0), TypeError, "out_features must be an int"),
])
def test_bad_task_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_toy_task(**kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(r=0, lora_alpha=8), ValueError, "r must be >= 1"),
    (dict(r=65, lora_alpha=8), ValueError, "larger than min"),
    (dict(r=4, lora_alpha=0), ValueError, "lora_alpha must be > 0"),
    (dict(r=4, lora_alpha=8, steps=0), ValueError, "steps must be >= 1"),
    (dict(r=4, lora_alpha=8, steps=1.5), TypeError, "steps must be an int"),
    (dict(r=4, lora_alpha=8, batch_size=0), ValueError, "batch_size"),
    (dict(r=4, lora_alpha=8, lr=0.0), ValueError, "lr must be a positive finite"),
    (dict(r=4, lora_alpha=8, lr=float("nan")), ValueError, "lr must be a positive finite"),
    (dict(r=4, lora_alpha=8, init_scale=-1.0), ValueError, "init_scale"),
    (dict(r=4, lora_alpha=8, task="toy"), TypeError, "ToyTask"),
])
def test_bad_training_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        train_lora_on_toy(**kwargs)


def test_bad_floor_rank(task):
    with pytest.raises(ValueError, match="r must be >= 1"):
        task.loss_floor(0)
    assert isinstance(task, ToyTask)
