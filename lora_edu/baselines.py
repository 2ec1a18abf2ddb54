"""The baselines LoRA is compared with: full fine-tuning and BitFit-style bias tuning, plus a training loop
that takes any optimizer (LoRA+ needs one with two learning rates).

- ``full_finetune_setup``: every parameter trains (the baseline of LoRA's Tables 2-4, "FT").
- BitFit (Ben Zaken et al. 2021, arXiv 2106.10199) trains only the bias terms of a pretrained model. SmolLM2
  (a Llama) has **no biases** in its linear layers, so true BitFit is impossible on it. ``add_zero_biases``
  adds a zero-initialised bias to each linear layer (the model's outputs do not change), and
  ``freeze_all_but_biases`` then trains only those: "BitFit with added biases". It keeps BitFit's idea (one
  additive offset per output feature) but not its premise (tuning biases the pretraining already shaped).
  The other option, training the RMSNorm weights, is a per-feature *scale* rather than an offset, on 35,136
  numbers; we chose the offsets because that is what BitFit trains.
- ``train_with_optimizer``: ``lora_edu.train.train``'s loop (same seeded batches, same step, clipping and
  schedule; tests/test_baselines.py checks that the loss histories are equal) with the optimizer passed in,
  e.g. ``create_loraplus_optimizer``'s. Every group follows the same schedule, scaled from its own lr.
- ``training_state_bytes``: the bytes of weights, gradients and optimizer state, counted from the tensors.
- ``steps_to_reach_loss``: the first step whose (moving-average) training loss is at or below a threshold.

LoRA's comparison with these baselines: Hu et al. 2021 (arXiv 2106.09685) section 5 and Tables 2 and 4.
Explained in notebooks/09_variants.ipynb.
"""

from __future__ import annotations

import math
import time
import warnings

import torch
from torch import nn
from tqdm.auto import tqdm

from .layers import LoraLinear
from .model import find_target_modules
from .runtime import get_device, precision_policy, seed_everything
from .train import (
    TrainingDiverged,
    TrainResult,
    build_example,
    check_examples,
    collate,
    lr_factor,
    pad_token_id,
    to_device,
    training_step,
)


def full_finetune_setup(model: nn.Module) -> int:
    """Make every parameter trainable (full fine-tuning); return how many numbers train (tied ones once)."""
    if any(isinstance(m, LoraLinear) for m in model.modules()):
        raise ValueError("This model has LoRA layers; full fine-tuning would train their frozen base weights "
                         "and the adapters at once. Start from a fresh model (load_model()), or unload(model).")
    model.requires_grad_(True)
    return sum(p.numel() for p in model.parameters())  # parameters() lists a tied weight once


def add_zero_biases(model: nn.Module, target_modules: list[str] | str = "all-linear") -> int:
    """Give each selected ``nn.Linear`` without a bias a zero bias (out,), in its weight's dtype and device.

    The outputs do not change (the bias is 0). Layers that already have a bias keep it. Returns the number of
    bias entries added. ``target_modules`` follows ``LoraConfig``'s rules ("all-linear": all but the head).
    """
    added = 0
    for name in find_target_modules(model, target_modules):
        layer = model.get_submodule(name)
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"{name} is a {type(layer).__name__}, not an nn.Linear; only linear layers get a "
                            "bias. Name linear layers in target_modules (e.g. ['q_proj', 'v_proj']).")
        if layer.bias is None:
            weight = layer.weight
            layer.bias = nn.Parameter(torch.zeros(layer.out_features, dtype=weight.dtype, device=weight.device))
            added += layer.out_features
    if not added and not any(n.endswith("bias") for n, _ in model.named_parameters()):
        raise ValueError(f"target_modules={target_modules!r} selected no linear layer, so no bias was added. "
                         "Use 'all-linear' or names such as ['q_proj', 'v_proj'].")
    return added


def freeze_all_but_biases(model: nn.Module) -> int:
    """Train only the parameters named ``*.bias`` (BitFit); return how many numbers train."""
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name.endswith(".bias") or name == "bias")
        count += param.numel() if param.requires_grad else 0
    if not count:
        raise ValueError("The model has no bias parameters, so BitFit would train nothing (Llama-family models "
                         "such as SmolLM2 have none). Call add_zero_biases(model) first.")
    return count


def training_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Bytes held for training, counted from the tensors: weights (all, tied once), gradients (one per
    trainable number, in its dtype, as backward allocates them), optimizer state (AdamW: m and v, after its
    first step). Activations are not counted: they depend on batch and sequence length."""
    params = list(model.parameters())
    weights = sum(p.numel() * p.element_size() for p in params)
    gradients = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    state = 0
    if optimizer is not None:
        for per_param in optimizer.state.values():
            state += sum(v.numel() * v.element_size() for v in per_param.values()
                         if torch.is_tensor(v) and v.dim() > 0)  # m and v; not the scalar step counter
    return {"weights": weights, "gradients": gradients, "optimizer": state,
            "total": weights + gradients + state}


def train_with_optimizer(model, tokenizer, train_examples, optimizer: torch.optim.Optimizer, *, steps: int,
                         batch_size: int = 8, warmup_steps: int = 0, schedule: str = "linear",
                         max_grad_norm: float | None = 1.0, seed: int = 0, device=None,
                         progress: bool = True) -> TrainResult:
    """``train()``'s loop with ``optimizer`` given: the same batches, step, clipping, schedule and history.

    The optimizer must hold trainable parameters of ``model`` (build it after ``inject_lora`` and after the
    model is on ``device``). Returns a ``TrainResult`` (history of step/loss/lr/grad_norm, where lr is the
    first group's; ``train_time_s``; ``tokens_per_s``). Raises ``TrainingDiverged`` on a NaN/Inf loss.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}. Build one "
                        "from the model, e.g. torch.optim.AdamW(trainable params, lr=1e-3) or "
                        "create_loraplus_optimizer(model, lr=1e-4).")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warmup_steps must be in [0, steps) = [0, {steps}), got {warmup_steps!r}.")
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    held = [p for g in optimizer.param_groups for p in g["params"]]
    if not held or any(id(p) not in trainable for p in held):
        raise ValueError("The optimizer must hold trainable parameters of this model (and at least one). "
                         "Build it after inject_lora / freeze_all_but_biases / full_finetune_setup.")
    check_examples(train_examples, "train_examples")
    device = torch.device(device) if device is not None else get_device()
    precision = precision_policy(device)
    start = time.perf_counter()
    seed_everything(seed)  # as train(): the same seed gives the same dropout masks and batches
    model.to(device)
    pad = pad_token_id(tokenizer)
    features = [build_example(tokenizer, ex["prompt"], ex["target"]) for ex in train_examples]
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # one factor for all groups: each keeps its own peak lr
        optimizer, lambda s: lr_factor(s, steps, warmup_steps, schedule))
    scaler = precision.grad_scaler()
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    result = TrainResult(device=str(device), precision=precision.reason)
    tokens, train_time = 0, 0.0
    model.train()
    for step in tqdm(range(steps), desc="training", disable=not progress):
        if len(order) < batch_size:  # a fresh shuffle of the whole set for every epoch, as train()
            order += torch.randperm(len(features), generator=generator).tolist()
        chosen, order = order[:batch_size], order[batch_size:]
        batch = to_device(collate([features[i] for i in chosen], pad), device)
        t0 = time.perf_counter()
        current_lr = optimizer.param_groups[0]["lr"]
        loss, norm = training_step(model, batch, optimizer, scaler, precision, max_grad_norm)
        if not (math.isfinite(loss) and (math.isfinite(norm) or scaler.is_enabled())):
            model.eval()
            raise TrainingDiverged(f"step {step}: loss {loss}, gradient norm {norm}. Lower the learning rate "
                                   "(e.g. by 10x; for full fine-tuning 1e-5 .. 5e-5).", result)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            scheduler.step()
        train_time += time.perf_counter() - t0
        tokens += int(batch["attention_mask"].sum())
        result.history.append({"step": step, "loss": loss, "lr": current_lr, "grad_norm": norm})
    model.eval()
    optimizer.zero_grad(set_to_none=True)
    result.train_time_s, result.wall_time_s = train_time, time.perf_counter() - start
    result.tokens_per_s = tokens / train_time if train_time > 0 else 0.0
    return result


def steps_to_reach_loss(history: list[dict], threshold: float, window: int = 3) -> int | None:
    """Optimizer steps until the mean training loss of the last ``window`` steps is <= ``threshold``.

    Returns the count of steps taken (step index + 1), or None if never reached. The moving average keeps
    one lucky batch from counting as "reached"; ``window=1`` uses the raw losses.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}.")
    losses = [h["loss"] for h in history]
    for i in range(window - 1, len(losses)):
        if sum(losses[i - window + 1:i + 1]) / window <= threshold:
            return i + 1
    return None
