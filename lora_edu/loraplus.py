"""LoRA+: train B with a learning rate ``loraplus_lr_ratio`` times A's, grouped exactly as PEFT does.

LoRA+ (Hayou, Ghosh and Yu 2024, arXiv 2402.12354) shows that one learning rate for A (r, in) and
B (out, r) is suboptimal at large width: B should learn faster, by a well-chosen ratio eta_B / eta_A.
PEFT's docs (and axolotl's config) suggest ``loraplus_lr_ratio=16`` (2^4); the authors' README says the
ratio must be >= 1, depends on model and task, and that A's ``lr`` may then want to be about 2x lower
than for plain LoRA.

``create_loraplus_optimizer`` builds the four parameter groups of PEFT's
``peft.optimizers.create_loraplus_optimizer`` (0.21), in the same order, by the same rules:

1. "A": every trainable parameter with 2 or more dims and no "lora_B" in its name (the ``lora_A``
   weights, or e.g. a trained embedding matrix): ``lr``, weight decay ``loraplus_weight_decay``;
2. "embedding": LoRA on embedding layers at ``loraplus_lr_embedding``; lora_edu adapts linear layers
   only, so this group is always empty (kept so the groups line up with PEFT's one to one);
3. "B": ``lora_B`` weights **and every 1-D trainable parameter** (DoRA's ``lora_magnitude_vector``, trained
   norm weights) at ``lr * loraplus_lr_ratio``, weight decay ``loraplus_weight_decay``;
4. "B, no decay": those of group 3 whose name contains "bias" or that sit in an ``nn.LayerNorm``, at
   ``lr * loraplus_lr_ratio`` with weight decay 0.

Two traps PEFT sets and this module keeps visible: the 1-D rule sends biases, norm weights and DoRA's
magnitude to B's fast learning rate (a consequence of the code, not a recommendation of the paper); and in
PEFT a plain ``weight_decay=`` argument does nothing, because every group sets its own weight decay from
``loraplus_weight_decay``. Here ``weight_decay=`` is refused with a pointer to ``loraplus_weight_decay``.
PEFT has no default ratio; ours is the recommended 16. (PEFT also asks 8-bit bitsandbytes optimizers to keep
32-bit state for embeddings; not done here.) Explained in notebooks/09_variants.ipynb.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn


def _no_decay_names(model: nn.Module) -> set[str]:
    """Names that get no weight decay: a "bias" in the name, or a parameter inside an ``nn.LayerNorm``.

    These are the Hugging Face Trainer's rules (``get_parameter_names(model, [nn.LayerNorm])`` minus
    "bias"), which PEFT uses. Llama's RMSNorm is not an ``nn.LayerNorm``, so its weights *do* decay.
    """
    names = {name for name, _ in model.named_parameters() if "bias" in name}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            names |= {f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters()}
    return names


def loraplus_parameter_groups(model: nn.Module, lr: float, loraplus_lr_ratio: float = 16.0,
                              loraplus_lr_embedding: float = 1e-6,
                              loraplus_weight_decay: float = 0.0) -> list[dict]:
    """The four optimizer parameter groups of LoRA+ (A, embedding, B, B without decay), as PEFT builds them.

    Only parameters with ``requires_grad`` are included, each once, in ``named_parameters()`` order.
    """
    _check_number("lr", lr, "It is A's learning rate, e.g. 1e-4; B's is lr * loraplus_lr_ratio.")
    _check_number("loraplus_lr_ratio", loraplus_lr_ratio, "The recommended value is 16 (= 2^4).")
    if loraplus_lr_ratio < 1:
        raise ValueError(f"loraplus_lr_ratio must be >= 1: B learns at lr * ratio, at least as fast as A "
                         f"(the LoRA+ authors' rule); got {loraplus_lr_ratio}. The recommended value is 16; "
                         "1 is plain LoRA.")
    _check_number("loraplus_lr_embedding", loraplus_lr_embedding, "PEFT's default is 1e-6.")
    if isinstance(loraplus_weight_decay, bool) or not isinstance(loraplus_weight_decay, numbers.Real) \
            or not (math.isfinite(loraplus_weight_decay) and loraplus_weight_decay >= 0):
        raise ValueError(f"loraplus_weight_decay must be a finite number >= 0; got "
                         f"{loraplus_weight_decay!r}. PEFT's default is 0.0.")
    no_decay = _no_decay_names(model)
    group_a, group_b, group_b_no_decay = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "lora_B" in name or param.ndim == 1:  # PEFT's rule: B weights and every 1-D parameter
            (group_b_no_decay if name in no_decay else group_b).append(param)
        else:
            group_a.append(param)
    if not (group_a or group_b or group_b_no_decay):
        raise ValueError("The model has no trainable parameters, so the optimizer would have nothing to "
                         "train. Call inject_lora(model, config) (or mark_only_lora_as_trainable) first.")
    return [
        {"params": group_a, "weight_decay": loraplus_weight_decay, "lr": lr},
        {"params": [], "weight_decay": loraplus_weight_decay, "lr": loraplus_lr_embedding},  # no embeddings
        {"params": group_b, "weight_decay": loraplus_weight_decay, "lr": lr * loraplus_lr_ratio},
        {"params": group_b_no_decay, "weight_decay": 0.0, "lr": lr * loraplus_lr_ratio},
    ]


def create_loraplus_optimizer(model: nn.Module,
                              optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW, *, lr: float,
                              loraplus_lr_ratio: float = 16.0, loraplus_lr_embedding: float = 1e-6,
                              loraplus_weight_decay: float = 0.0, **kwargs) -> torch.optim.Optimizer:
    """An optimizer (AdamW by default) whose B parameters learn ``loraplus_lr_ratio`` times faster than A's.

    ``kwargs`` go to ``optimizer_cls`` (e.g. ``betas``, ``eps``). Same groups, learning rates and weight
    decays as PEFT's ``create_loraplus_optimizer(model, optimizer_cls, lr=..., loraplus_lr_ratio=...)``.

    >>> from lora_edu import LoraConfig, inject_lora
    >>> from lora_edu.pretrained import tiny_llama
    >>> model = inject_lora(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    >>> opt = create_loraplus_optimizer(model, lr=1e-4)
    >>> [(len(g["params"]), g["lr"]) for g in opt.param_groups]  # A, embedding, B, B without decay
    [(4, 0.0001), (0, 1e-06), (4, 0.0016), (0, 0.0016)]
    """
    if "weight_decay" in kwargs:
        raise TypeError("create_loraplus_optimizer sets each group's weight decay from loraplus_weight_decay "
                        "(PEFT's name), so weight_decay= would be silently ignored (as it is in PEFT). "
                        f"Pass loraplus_weight_decay={kwargs['weight_decay']!r} instead.")
    groups = loraplus_parameter_groups(model, lr, loraplus_lr_ratio, loraplus_lr_embedding,
                                       loraplus_weight_decay)
    return optimizer_cls(groups, lr=lr, **kwargs)


def _check_number(name: str, value, hint: str) -> None:
    """A learning rate or ratio must be a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r}. {hint}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value}. {hint}")
