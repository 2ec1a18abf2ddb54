"""``LoraLinear``: a frozen ``nn.Linear`` plus a trainable low-rank update, the way PEFT builds it.

LoRA (Hu et al. 2021, arXiv 2106.09685, section 4.1) keeps the pretrained weight W0 (out, in) frozen and
learns ``delta_W = scaling * B @ A`` with A (r, in) and B (out, r), so the layer computes

    h = W0 x + scaling * B (A x),   scaling = lora_alpha / r   (rsLoRA: lora_alpha / sqrt(r)).

The names, shapes, initialisation, forward arithmetic and merge rules follow PEFT's
``peft.tuners.lora.Linear`` (one adapter, no variants), so with the same A and B the two give the same
numbers (tests/test_layers.py).
Explained in notebooks/02_lora_layer.ipynb; the merge is section 4.1's "no additional inference latency".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import check_lora_hyperparameters


class LoraLinear(nn.Module):
    """Wrap a frozen ``base_layer`` (``nn.Linear``) and add ``lora_B(lora_A(dropout(x))) * scaling``.

    Args:
        base_layer: the pretrained ``nn.Linear`` (in_features -> out_features). Its weight and bias are frozen
            (``requires_grad=False``) and kept as ``self.base_layer``, so state-dict keys read
            ``<name>.base_layer.weight``, ``<name>.lora_A.weight``, ``<name>.lora_B.weight`` as in PEFT.
        r: the rank. Must satisfy ``1 <= r <= min(in_features, out_features)``: ``B @ A`` cannot have a rank
            above ``min(in, out)``, so a larger r only adds parameters (from r = in*out/(in+out) on, more than
            the full matrix) and, through ``lora_alpha / r``, shrinks the update. PEFT accepts it silently; we
            refuse, because in a notebook it is almost always the wrong layer or a typo, and a warning is
            easy to miss in a cell's output.
        lora_alpha: scales the update by ``lora_alpha / r`` (or ``lora_alpha / sqrt(r)`` with ``use_rslora``).
        lora_dropout: dropout probability on the input of the LoRA path only (``nn.Identity`` when 0).
        use_rslora: use rsLoRA's ``lora_alpha / sqrt(r)``.
        init_lora_weights: True: A kaiming-uniform (a = sqrt(5)), B = 0 (PEFT's default, from microsoft/LoRA's
            code); "gaussian": A ~ N(0, (1/r)^2), B = 0 (the paper's text says Gaussian); False: both keep
            ``nn.Linear``'s random init, so the layer does not start as the base layer (for tests/debugging).

    The adapter weights are fp32 when the base is fp16/bf16 (PEFT's default since v0.12), else the base
    dtype; they live on the base layer's device. Merging is explicit: ``merge()`` / ``unmerge()``.
    """

    def __init__(self, base_layer: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: bool | str = True):
        super().__init__()
        if hasattr(base_layer, "lora_A"):
            raise ValueError("base_layer already has a LoRA adapter; wrapping it again would stack two "
                             "adapters. Use it as it is, or wrap its .base_layer instead.")
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"LoraLinear wraps an nn.Linear, got {type(base_layer).__name__}. Target the "
                            "linear layers inside it instead (e.g. 'q_proj' rather than 'self_attn').")
        check_lora_hyperparameters(r, lora_alpha, lora_dropout, init_lora_weights)
        in_features, out_features = base_layer.in_features, base_layer.out_features
        if r > min(in_features, out_features):
            raise ValueError(
                f"r={r} is larger than min(in_features, out_features) = min({in_features}, {out_features}) = "
                f"{min(in_features, out_features)}: B @ A cannot have rank above that, so the extra rank "
                f"only adds parameters. Use r <= {min(in_features, out_features)}.")

        self.base_layer = base_layer
        base_layer.requires_grad_(False)  # frozen: only A and B train
        self.r = r
        self.lora_alpha = lora_alpha
        self.use_rslora = use_rslora
        self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
        self.lora_dropout = nn.Dropout(p=lora_dropout) if lora_dropout > 0.0 else nn.Identity()
        # Same construction order as PEFT, so the same seed gives the same A: nn.Linear draws its default
        # init for A then B, and reset_lora_parameters() draws A again.
        self.lora_A = nn.Linear(in_features, r, bias=False)   # weight (r, in): x (..., in) -> (..., r)
        self.lora_B = nn.Linear(r, out_features, bias=False)  # weight (out, r): (..., r) -> (..., out)
        self.reset_lora_parameters(init_lora_weights)
        weight = base_layer.weight
        dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        self.lora_A.to(device=weight.device, dtype=dtype)
        self.lora_B.to(device=weight.device, dtype=dtype)
        self.merged = False

    def reset_lora_parameters(self, init_lora_weights: bool | str = True) -> None:
        """(Re)initialise A and B; with True or "gaussian" B is zero, so the layer equals its base layer."""
        if init_lora_weights is False:
            return
        if init_lora_weights is True:
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # U(-1/sqrt(in), 1/sqrt(in))
        else:  # "gaussian", already validated
            nn.init.normal_(self.lora_A.weight, std=1 / self.r)
        nn.init.zeros_(self.lora_B.weight)

    # --- the layer ------------------------------------------------------------------------------------

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight (merged or not), for code that reads ``layer.weight`` as on nn.Linear."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)  # (..., out): W0 x + b, or (W0 + delta_W) x + b when merged
        if self.merged:
            return result
        result_dtype = result.dtype
        x = x.to(self.lora_A.weight.dtype)  # the LoRA path runs in the adapter dtype (fp32 on a 16-bit base)
        # A first, then B: (..., in) -> (..., r) -> (..., out); never forms the (out, in) matrix B @ A.
        result = result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        return result.to(result_dtype)

    def get_delta_weight(self) -> torch.Tensor:
        """``delta_W = scaling * B @ A``, shape (out_features, in_features), in the adapter dtype.

        16-bit adapters on CPU are multiplied in fp32 and cast back, as PEFT does (slow 16-bit CPU matmuls).
        """
        weight_A, weight_B = self.lora_A.weight, self.lora_B.weight  # (r, in), (out, r)
        dtype = weight_B.dtype
        cast_to_fp32 = weight_B.device.type == "cpu" and dtype in (torch.float16, torch.bfloat16)
        if cast_to_fp32:
            weight_A, weight_B = weight_A.float(), weight_B.float()
        delta = (weight_B @ weight_A) * self.scaling
        return delta.to(dtype) if cast_to_fp32 else delta

    # --- merging --------------------------------------------------------------------------------------

    @torch.no_grad()
    def merge(self) -> None:
        """Add ``delta_W`` into the base weight, so the forward pass is one matmul (no extra latency).

        Checks first that the update and the merged weight are finite; on failure the base weight is left
        untouched. Unmerging later subtracts the same update; in floating point this returns W0 only up to
        rounding (exactly when the additions were exact), and merging into a 16-bit weight rounds the update.
        """
        if self.merged:
            raise ValueError("This LoraLinear is already merged; merging again would add the update twice. "
                             "Call unmerge() first, or check layer.merged.")
        delta = self.get_delta_weight()
        bad = (~torch.isfinite(delta)).sum().item()
        if bad:
            raise ValueError(f"The LoRA update B @ A * scaling has {bad} NaN/Inf entries "
                             f"(of {delta.numel()}); "
                             "lora_A/lora_B are broken, often by a diverged training run (lower the learning "
                             "rate). Nothing was merged; the base weight is unchanged.")
        weight = self.base_layer.weight
        merged = (weight + delta).to(weight.dtype)  # add in the wider dtype, round once (as PEFT's merge)
        if not torch.isfinite(merged).all():
            raise ValueError(f"Merging overflows the base weight's dtype ({weight.dtype}): W0 + delta_W has "
                             "Inf entries. Merge in a wider dtype (e.g. model.float()). Nothing was merged.")
        weight.data.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ``delta_W`` from the base weight again, so the LoRA path is computed separately."""
        if not self.merged:
            raise ValueError("This LoraLinear is not merged, so there is nothing to unmerge. "
                             "Check layer.merged before calling unmerge().")
        weight = self.base_layer.weight
        weight.data -= self.get_delta_weight().to(weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        rule = "lora_alpha/sqrt(r)" if self.use_rslora else "lora_alpha/r"
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"lora_alpha={self.lora_alpha}, scaling={self.scaling:g} ({rule}), merged={self.merged}\n"
                f"delta_W = scaling * B @ A: ({self.out_features}, {self.r}) @ "
                f"({self.r}, {self.in_features}), "
                f"{self.r * (self.in_features + self.out_features):,d} trainable numbers")
