"""The baselines LoRA is compared with: full fine-tuning and BitFit-style bias tuning (train them with
``lora_edu.training.train``; its ``optimizer=`` takes any optimizer, such as LoRA+'s two learning rates).

- ``full_finetune_setup``: every parameter trains (the baseline of LoRA's Tables 2-4, "FT").
- BitFit (Ben Zaken et al. 2021, arXiv 2106.10199) trains only the bias terms of a pretrained model. SmolLM2
  (a Llama) has **no biases** in its linear layers, so true BitFit is impossible on it. ``add_zero_biases``
  adds a zero-initialised bias to each linear layer (the model's outputs do not change), and
  ``freeze_all_but_biases`` then trains only those: "BitFit with added biases". It keeps BitFit's idea (one
  additive offset per output feature) but not its premise (tuning biases the pretraining already shaped).
  The other option, training the RMSNorm weights, is a per-feature *scale* rather than an offset, on 35,136
  numbers; we chose the offsets because that is what BitFit trains.
- ``training_state_bytes``: the bytes of weights, gradients and optimizer state, counted from the tensors.
- ``steps_to_reach_loss``: the first step whose (moving-average) training loss is at or below a threshold.

LoRA's comparison with these baselines: Hu et al. 2021 (arXiv 2106.09685) section 5 and Tables 2 and 4.
Explained in notebooks/09_variants.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import LoraLinear
from .model import find_target_modules


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
