"""The toy task: a frozen linear map, a planted rank-k update, and a tiny LoRA training loop for it.

A "pretrained" weight W0 (out, in) is frozen; the "fine-tuning task" asks for W0 + delta_W*, where
delta_W* = U diag(S) V^T has rank k and singular values S that we choose. Inputs are x ~ N(0, I), targets
y = (W0 + delta_W*) x (+ noise). LoRA learns delta_W = scaling * B @ A of rank r (Hu et al. 2021,
arXiv 2106.09685, section 4.1); with Adam, as the paper and PEFT users train it.

Why this toy is useful: for x ~ N(0, I) the expected loss has a closed form,

    E ||y - (W0 + delta_W) x||^2 = ||delta_W* - delta_W||_F^2 + out * noise_std^2,

(W0 cancels), so the best any rank-r update can reach is the Eckart-Young floor: the energy of the singular
values of delta_W* that a rank-r matrix must drop, sigma_{r+1}^2 + ... + sigma_k^2 (``lowrank``).
Explained in notebooks/03_lora_toy_task.ipynb; notebook 09 reuses it for rsLoRA (arXiv 2312.03732).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import LoraLinear
from .lowrank import eckart_young_error


@dataclass
class ToyTask:
    """A frozen ``W0`` (out, in) and a planted update ``delta_star = U @ diag(singular_values) @ V.T``."""

    W0: torch.Tensor  # (out, in), the frozen "pretrained" weight
    U: torch.Tensor  # (out, k), orthonormal columns: the output directions of the update
    singular_values: torch.Tensor  # (k,), descending: the planted sigma_1 >= ... >= sigma_k > 0
    V: torch.Tensor  # (in, k), orthonormal columns: the input directions of the update
    noise_std: float = 0.0  # standard deviation of the noise added to each target entry
    seed: int = 0

    @property
    def k(self) -> int:
        return self.singular_values.numel()

    @property
    def in_features(self) -> int:
        return self.W0.shape[1]

    @property
    def out_features(self) -> int:
        return self.W0.shape[0]

    @property
    def delta_star(self) -> torch.Tensor:
        """The planted update delta_W* (out, in), of rank k."""
        return (self.U * self.singular_values) @ self.V.T

    def base_layer(self) -> nn.Linear:
        """A fresh frozen ``nn.Linear(in, out, bias=False)`` holding a copy of W0 (each run gets its own)."""
        layer = nn.Linear(self.in_features, self.out_features, bias=False)
        with torch.no_grad():
            layer.weight.copy_(self.W0)
        return layer.requires_grad_(False)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` examples: x (n, in) ~ N(0, I) and y (n, out) = x (W0 + delta_W*)^T + noise."""
        x = torch.randn(n, self.in_features, generator=generator)
        y = x @ (self.W0 + self.delta_star).T
        if self.noise_std > 0:
            y = y + self.noise_std * torch.randn(n, self.out_features, generator=generator)
        return x, y

    def expected_loss(self, delta: torch.Tensor) -> float:
        """E ||y - (W0 + delta) x||^2 over x ~ N(0, I): ||delta_W* - delta||_F^2 + out * noise_std^2."""
        gap = (self.delta_star - delta.detach()).double()
        return float(gap.pow(2).sum()) + self.out_features * self.noise_std**2

    def loss_floor(self, r: int) -> float:
        """The lowest expected loss of any rank-r update (Eckart-Young): sum_{i>r} sigma_i^2 + noise floor."""
        _check_int("r", r, minimum=1)
        tail = eckart_young_error(self.singular_values, r, "fro") if r < self.k else 0.0
        return tail**2 + self.out_features * self.noise_std**2


def make_toy_task(in_features: int = 64, out_features: int = 64, singular_values=(4.0, 3.0, 2.0, 1.0),
                  noise_std: float = 0.0, seed: int = 0) -> ToyTask:
    """Build the toy task from a seed: W0 with N(0, 1/in) entries and a random rank-k update with the
    given ``singular_values`` (k = their count; random orthonormal U, V from a QR decomposition)."""
    _check_int("in_features", in_features, minimum=1)
    _check_int("out_features", out_features, minimum=1)
    S = torch.as_tensor(singular_values, dtype=torch.float32).flatten()
    if S.numel() == 0 or not torch.isfinite(S).all() or (S <= 0).any():
        raise ValueError(f"singular_values must be positive finite numbers (one per planted direction), got "
                         f"{singular_values!r}. Fix: e.g. singular_values=(4.0, 3.0, 2.0, 1.0).")
    if S.numel() > min(in_features, out_features):
        raise ValueError(f"{S.numel()} singular values cannot fit a {out_features} x {in_features} matrix "
                         f"(rank at most {min(in_features, out_features)}). Fix: give fewer singular values.")
    if isinstance(noise_std, bool) or not isinstance(noise_std, numbers.Real) or not noise_std >= 0:
        raise ValueError(f"noise_std must be a number >= 0, got {noise_std!r}. Fix: 0.0 for exact targets.")
    S = S.sort(descending=True).values
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(out_features, in_features, generator=g) / math.sqrt(in_features)
    U = torch.linalg.qr(torch.randn(out_features, S.numel(), generator=g)).Q  # (out, k), orthonormal columns
    V = torch.linalg.qr(torch.randn(in_features, S.numel(), generator=g)).Q  # (in, k)
    return ToyTask(W0=W0, U=U, singular_values=S, V=V, noise_std=float(noise_std), seed=seed)


@dataclass
class ToyRun:
    """What ``train_lora_on_toy`` returns: the settings, the loss histories and the learned update."""

    r: int
    lora_alpha: float
    use_rslora: bool
    scaling: float  # lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA
    lr: float
    losses: torch.Tensor  # (steps,): the minibatch loss at each step, before its update
    expected_losses: torch.Tensor  # (steps + 1,): task.expected_loss(delta) before each step and at the end
    delta: torch.Tensor  # (out, in): the learned update, layer.get_delta_weight() after training
    layer: LoraLinear = field(repr=False)
    seconds: float = 0.0  # wall time of the training loop

    @property
    def final_loss(self) -> float:
        """The expected loss of the learned update (exact, no minibatch noise)."""
        return float(self.expected_losses[-1])


def train_lora_on_toy(r: int, lora_alpha: float, steps: int = 300, lr: float = 1e-2, use_rslora: bool = False,
                      seed: int = 0, task: ToyTask | None = None, batch_size: int = 256,
                      init_scale: float = 1.0, init_lora_weights: bool | str = True) -> ToyRun:
    """Wrap the task's W0 in a ``LoraLinear`` and train A and B with Adam on fresh minibatches.

    Args:
        r, lora_alpha, use_rslora, init_lora_weights: passed to ``LoraLinear`` (it explains bad values).
        steps: optimizer steps (a few hundred take well under a second on a CPU).
        lr: Adam's learning rate.
        seed: seeds the LoRA initialisation and the data, so a run can be repeated exactly.
        task: a ``ToyTask``; default ``make_toy_task()`` (64 x 64, planted singular values 4, 3, 2, 1).
        batch_size: examples per step, drawn fresh each step (an endless stream of data).
        init_scale: multiplies A's initial weights (1.0 = PEFT's init). Notebook 03 uses it to show that with
            Adam, multiplying alpha by c equals multiplying lr and A's init by sqrt(c).

    The loss is the squared error summed over outputs, averaged over the batch, so its expectation is
    ``task.expected_loss(delta)`` and its floor ``task.loss_floor(r)``. The global RNG is left untouched;
    the loop runs on one CPU thread (restored afterwards), which is fastest for matrices this small.
    """
    task = make_toy_task() if task is None else task
    if not isinstance(task, ToyTask):
        raise TypeError(f"task must be a ToyTask (from make_toy_task()), got {type(task).__name__}.")
    _check_int("steps", steps, minimum=1)
    _check_int("batch_size", batch_size, minimum=1)
    for name, value in (("lr", lr), ("init_scale", init_scale)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}. "
                             f"Fix: e.g. lr=1e-2 (Adam), init_scale=1.0.")
    with torch.random.fork_rng(devices=[]):  # seed the init without changing the caller's random stream
        torch.manual_seed(seed)
        layer = LoraLinear(task.base_layer(), r=r, lora_alpha=lora_alpha, use_rslora=use_rslora,
                           init_lora_weights=init_lora_weights)
    with torch.no_grad():
        layer.lora_A.weight.mul_(init_scale)
    optimizer = torch.optim.Adam([layer.lora_A.weight, layer.lora_B.weight], lr=lr)
    data = torch.Generator().manual_seed(seed + 1)
    losses = torch.empty(steps)
    expected = torch.empty(steps + 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 64 x 64 matmuls: thread hand-offs cost more than they save (10x on a busy CPU)
    start = time.perf_counter()
    try:
        _train_loop(task, layer, optimizer, data, batch_size, losses, expected)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    delta = layer.get_delta_weight().detach()
    expected[steps] = task.expected_loss(delta)
    return ToyRun(r=r, lora_alpha=lora_alpha, use_rslora=use_rslora, scaling=layer.scaling, lr=lr,
                  losses=losses, expected_losses=expected, delta=delta, layer=layer, seconds=seconds)


def _train_loop(task, layer, optimizer, data, batch_size, losses, expected) -> None:
    for step in range(losses.numel()):
        expected[step] = task.expected_loss(layer.get_delta_weight())
        x, y = task.sample(batch_size, data)  # (batch, in), (batch, out)
        loss = (layer(x) - y).pow(2).sum(-1).mean()  # squared error per example
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()


def steps_to_reach(curve: torch.Tensor, threshold: float) -> int | None:
    """The first step at which ``curve`` (e.g. ``run.expected_losses``) is <= ``threshold``; None if never."""
    hits = (torch.as_tensor(curve) <= threshold).nonzero()
    return int(hits[0]) if hits.numel() else None


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
