"""``LoraLinear``: a frozen ``nn.Linear`` plus a trainable low-rank update, the way PEFT builds it.

LoRA (Hu et al. 2021, arXiv 2106.09685, section 4.1) keeps the pretrained weight W0 (out, in) frozen and
learns ``delta_W = scaling * B @ A`` with A (r, in) and B (out, r), so the layer computes

    h = W0 x + scaling * B (A x),   scaling = lora_alpha / r   (rsLoRA: lora_alpha / sqrt(r)).

The names, shapes, initialisation, forward arithmetic and merge rules follow PEFT's
``peft.tuners.lora.Linear`` (one adapter, no variants), so with the same A and B the two give the same
numbers (tests/test_layers.py).
Explained in notebooks/02_lora_layer.ipynb; the merge is section 4.1's "no additional inference latency".

DoRA (Liu et al. 2024, arXiv 2402.09353, ``use_dora=True``) splits the weight into a trainable magnitude m and
a direction, and lets LoRA update only the direction (Eq. 5):

    W' = m * (W0 + s B A) / ||W0 + s B A||,   m = ``lora_magnitude_vector.weight`` (out,), init ||W0||,

with one norm per *output feature*: the norm of each row of the (out, in) weight, as in PEFT and the authors'
code (``torch.linalg.norm(weight, dim=1)`` on ``nn.Linear.weight``). The paper says "column-wise"; in the
authors' code a "column" holds one output feature's weights. Convention trap: some from-scratch write-ups
(e.g. Raschka's DoRA article) take ``norm(dim=0)`` of the (out, in) weight, one magnitude per *input*
feature: a different model, whose magnitudes mean something else (and for a non-square layer do not even
have PEFT's shape). The norm is detached, a constant in the backward pass (section 4.3: 24.4% less training
memory on LLaMA for a 0.2-point accuracy change). Explained in notebooks/09_variants.ipynb.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import check_flag, check_lora_hyperparameters


class DoraMagnitude(nn.Module):
    """DoRA's magnitude m as ``.weight``, shape (out,): PEFT's layout, so the state-dict key reads
    ``<layer>.lora_magnitude_vector.weight`` (PEFT's adapter files drop the ``.weight``, and so do ours)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def extra_repr(self) -> str:
        return f"out_features={self.weight.numel()}"


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
        use_dora: add DoRA's magnitude ``lora_magnitude_vector.weight`` (out,), initialised to the row norms
            of ``W0 + scaling * B @ A`` (= ||W0|| when B = 0, so the layer starts equal to its base layer).
            A weight with an all-zero row (a pruned output unit) is refused with a ValueError: DoRA would
            divide by its zero norm, and an epsilon would hide a division that has no meaningful answer.

    The adapter weights are fp32 when the base is fp16/bf16 (PEFT's default since v0.12), else the base
    dtype; they live on the base layer's device. Merging is explicit: ``merge()`` / ``unmerge()``.
    """

    use_dora = False  # class default; set per layer in __init__
    base_types: tuple[type, ...] = (nn.Linear,)  # what this class wraps (QLoRALinear: a 4-bit NF4Linear)

    def __init__(self, base_layer: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: bool | str = True, use_dora: bool = False):
        super().__init__()
        if hasattr(base_layer, "lora_A"):
            raise ValueError("base_layer already has a LoRA adapter; wrapping it again would stack two "
                             "adapters. Use it as it is, or wrap its .base_layer instead.")
        if not isinstance(base_layer, self.base_types):
            wanted = " or ".join("nn.Linear" if t is nn.Linear else t.__name__ for t in self.base_types)
            raise TypeError(f"{type(self).__name__} wraps an {wanted}, got {type(base_layer).__name__}. "
                            "Target the linear layers inside it instead (e.g. 'q_proj' rather than "
                            "'self_attn').")
        check_flag("use_rslora", use_rslora)
        check_flag("use_dora", use_dora)
        r, lora_alpha, lora_dropout = check_lora_hyperparameters(r, lora_alpha, lora_dropout, init_lora_weights,
                                                                 use_rslora)
        if use_dora and base_layer.weight.is_meta:
            raise ValueError("DoRA starts its magnitude m at the row norms of the base weight, but this weight "
                             "is on the meta device (shapes only, no values). Load the real weights first "
                             "(e.g. from_pretrained without device_map='meta', or model.to_empty + "
                             "load_state_dict), then inject DoRA.")
        in_features, out_features = base_layer.in_features, base_layer.out_features
        if r > min(in_features, out_features):
            raise ValueError(
                f"r={r} is larger than min(in_features, out_features) = min({in_features}, {out_features}) = "
                f"{min(in_features, out_features)}: B @ A cannot have rank above that, so the extra rank "
                f"only adds parameters. Use r <= {min(in_features, out_features)}.")

        self.base_layer = base_layer
        base_layer.requires_grad_(False)  # frozen: only the adapter (A, B, and DoRA's m) trains
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
        weight = base_layer.weight  # (an NF4Linear dequantizes it: once per layer, for its dtype and device)
        dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        self.lora_A.to(device=weight.device, dtype=dtype)
        self.lora_B.to(device=weight.device, dtype=dtype)
        self.merged = False
        if use_dora:
            self.use_dora = True
            with torch.no_grad():  # m = ||W0 + s B A|| per output row, (out,), in the adapter dtype
                self.lora_magnitude_vector = DoraMagnitude(self.dora_weight_norm(self.get_delta_weight()))
            # The norm used by merge(), kept for unmerge() (PEFT caches it too); not saved in state_dict.
            self.register_buffer("merged_weight_norm", None, persistent=False)

    def reset_lora_parameters(self, init_lora_weights: bool | str = True) -> None:
        """(Re)initialise A and B; with True or "gaussian" B is zero, so the layer equals its base layer."""
        if init_lora_weights is False:
            return
        if init_lora_weights is True:
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # U(-1/sqrt(in), 1/sqrt(in))
        else:  # "gaussian", already validated
            nn.init.normal_(self.lora_A.weight, std=1 / self.r)
        nn.init.zeros_(self.lora_B.weight)
        if hasattr(self, "lora_magnitude_vector"):  # DoRA: back to m = ||W0||, so the layer is W0 again
            with torch.no_grad():
                self.lora_magnitude_vector.weight.copy_(self.dora_weight_norm(self.get_delta_weight()))

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
        if self.use_dora:
            return (result + self.dora_extra_output(x, result)).to(result_dtype)
        # A first, then B: (..., in) -> (..., r) -> (..., out); never forms the (out, in) matrix B @ A.
        result = result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        return result.to(result_dtype)

    # --- DoRA -----------------------------------------------------------------------------------------

    def dora_weight_norm(self, delta_weight: torch.Tensor, check: bool = True) -> torch.Tensor:
        """``||W0 + delta_W||`` of each row of the (out, in) weight: one norm per output feature, (out,).

        With ``check`` (at init, reset and merge; not in forward, where it would cost a device sync per
        step), an all-zero row raises a ValueError instead of giving m / 0.
        """
        weight = self.base_layer.weight.to(delta_weight.dtype) + delta_weight  # (out, in)
        norm = torch.linalg.norm(weight, dim=1)  # dim=1: across the inputs of each output row
        zero_rows = (norm == 0).nonzero().flatten().tolist() if check else []
        if zero_rows:
            raise ValueError(f"DoRA divides by the norm of each row of W0 + scaling * B @ A, but rows "
                             f"{zero_rows[:5]} (of {norm.numel()}) are all zero (a pruned or dead output "
                             "unit): m / ||W|| has no meaningful value there. Leave this layer out of "
                             "target_modules, or use plain LoRA (use_dora=False).")
        return norm

    def dora_extra_output(self, x: torch.Tensor, base_result: torch.Tensor) -> torch.Tensor:
        """What DoRA adds to the base output: ``W' x - W0 x = (m/n - 1) W0 x + (m/n) s B A x`` (no bias).

        ``n = ||W0 + s B A||`` is detached (DoRA section 4.3), so A and B get gradients only through the
        ``B A x`` term and m through both. Written as a correction to ``W0 x`` (PEFT's form) so ``W0 x`` is
        computed once and the (out, in) product ``m/n * (W0 + s B A)`` is never formed for the forward pass.
        """
        with torch.no_grad():
            norm = self.dora_weight_norm(self.get_delta_weight(), check=False)  # (out,), a constant
        scale = self.lora_magnitude_vector.weight / norm  # (out,): m / n, broadcast over (..., out)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            base = base_result if self.bias is None else base_result - self.bias  # W0 x, (..., out)
        else:  # with dropout, the correction uses the dropped x too (as PEFT and the DoRA authors' code)
            x = self.lora_dropout(x)
            base = nn.functional.linear(x, self.base_layer.weight.to(x.dtype))
        return (scale - 1) * base + scale * self.lora_B(self.lora_A(x)) * self.scaling

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
        DoRA merges ``W' = (m / n) * (W0 + delta_W)`` row by row and keeps n for ``unmerge()``.
        """
        if self.merged:
            raise ValueError("This LoraLinear is already merged; merging again would add the update twice. "
                             "Call unmerge() first, or check layer.merged.")
        merged, norm = self._merged_weight()
        self.base_layer.weight.data.copy_(merged)
        if self.use_dora:
            self.merged_weight_norm = norm
        self.merged = True

    @torch.no_grad()
    def check_merge(self) -> None:
        """Raise the ValueError that ``merge()`` would raise (NaN/Inf update, overflow), changing nothing.

        ``merge_and_unload`` calls it on every layer before merging any, so a bad last layer leaves the
        whole model as it was.
        """
        self._merged_weight()

    def _merged_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight ``merge()`` would write (in the base dtype) and DoRA's norm n (else None), checked."""
        delta = self.get_delta_weight()
        bad = (~torch.isfinite(delta)).sum().item()
        if bad:
            raise ValueError(f"The LoRA update B @ A * scaling has {bad} NaN/Inf entries "
                             f"(of {delta.numel()}); "
                             "lora_A/lora_B are broken, often by a diverged training run (lower the learning "
                             "rate). Nothing was merged; the base weight is unchanged.")
        weight = self.base_layer.weight
        merged = weight + delta  # add in the wider dtype, round once (as PEFT's merge)
        norm = None
        if self.use_dora:
            if not torch.isfinite(self.lora_magnitude_vector.weight).all():
                raise ValueError("DoRA's lora_magnitude_vector has NaN/Inf entries, often from a diverged "
                                 "training run (lower the learning rate). Nothing was merged.")
            norm = self.dora_weight_norm(delta)  # (out,), ||W0 + delta_W|| of the unmerged weight
            merged = (self.lora_magnitude_vector.weight / norm).view(-1, 1) * merged  # row i times m_i/n_i
        merged = merged.to(weight.dtype)
        if not torch.isfinite(merged).all():
            raise ValueError(f"Merging overflows the base weight's dtype ({weight.dtype}): W0 + delta_W has "
                             "Inf entries. Merge in a wider dtype (e.g. model.float()). Nothing was merged.")
        return merged, norm

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ``delta_W`` from the base weight again, so the LoRA path is computed separately."""
        if not self.merged:
            raise ValueError("This LoraLinear is not merged, so there is nothing to unmerge. "
                             "Check layer.merged before calling unmerge().")
        weight = self.base_layer.weight
        if self.use_dora:  # W0 = W' / (m / n) - delta_W, with the n that merge() used
            if self.merged_weight_norm is None:
                raise ValueError("This DoRA layer is marked merged but has no record of the norm that "
                                 "merge() used, so W0 cannot be recovered (was layer.merged set by hand?). "
                                 "Reload the base model and load the adapter again.")
            scale = (self.lora_magnitude_vector.weight / self.merged_weight_norm).view(-1, 1)  # (out, 1)
            weight.data.copy_((weight / scale - self.get_delta_weight()).to(weight.dtype))
            self.merged_weight_norm = None
        else:
            weight.data -= self.get_delta_weight().to(weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        rule = "lora_alpha/sqrt(r)" if self.use_rslora else "lora_alpha/r"
        numbers = self.r * (self.in_features + self.out_features)
        dora = ""
        if self.use_dora:  # one magnitude per output feature
            numbers += self.out_features
            dora = f"; DoRA: W' = m * (W0 + delta_W) / ||W0 + delta_W||, m ({self.out_features},)"
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"lora_alpha={self.lora_alpha}, scaling={self.scaling:g} ({rule}), merged={self.merged}\n"
                f"delta_W = scaling * B @ A: ({self.out_features}, {self.r}) @ "
                f"({self.r}, {self.in_features}){dora}, "
                f"{numbers:,d} trainable numbers")
