"""QLoRA: LoRA on a frozen base stored in 4-bit NF4, dequantized on the fly in the forward pass.

QLoRA (Dettmers et al. 2023, arXiv 2305.14314, section 3, Eq. 5-6): the pretrained weight is kept as NF4
codes plus block constants (optionally double-quantized); each forward pass dequantizes it to the compute
dtype, ``Y = X doubleDequant(c1, c2, W_nf4) + X L1 L2 * scaling``, and only the LoRA matrices train. The
gradient reaches the input through the dequantized weight; no gradient for the 4-bit weight ever exists.
Explained in notebooks/07_qlora.ipynb; the NF4 format itself is notebook 06 (``lora_edu.quant``).

- ``NF4Linear``: the frozen 4-bit linear layer (bitsandbytes' ``Linear4bit`` with quant_type="nf4");
  codes and constants are buffers, so they are saved in the state dict and never trained.
- ``QLoRALinear``: a ``LoraLinear`` whose ``base_layer`` is an ``NF4Linear`` (PEFT's ``lora.bnb.Linear4bit``).
  It reuses LoraLinear's forward, init, scaling and delta; merging re-quantizes and warns, as PEFT does.
- ``quantize_model`` / ``prepare_qlora``: quantize the linear layers (all but ``lm_head``, as transformers'
  ``load_in_4bit`` does), then inject LoRA with ``LoraConfig.target_modules``; ``model_nbytes`` counts bytes.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .config import LoraConfig
from .layers import LoraLinear
from .model import _linear_names_hint, find_target_modules, mark_only_lora_as_trainable, output_head_name
from .quant.double_quant import NestedAbsmax
from .quant.intquant import check_blocksize, check_finite
from .quant.nf4 import Quant4bit, code_table, dequantize_nf4, quantize_nf4

# PEFT's warnings (peft.tuners.lora.bnb.Linear4bit.merge / unmerge), word for word.
MERGE_WARNING = "Merge lora module to 4-bit linear may get different generations due to rounding errors."
UNMERGE_WARNING = "Unmerge lora module to 4-bit linear may get different generations due to rounding errors."


class _DequantizeLinear(torch.autograd.Function):
    """``y = x W^T + b`` with W dequantized from the 4-bit buffers; backward dequantizes W again.

    Nothing (out, in)-sized is saved for backward (bitsandbytes' ``MatMul4Bit`` does the same): the graph
    keeps a reference to the layer, and grad_x = grad_y @ W is formed from a fresh dequantization. There
    is no gradient for W at all: it is not an input of this function.
    """

    @staticmethod
    def forward(ctx, x, layer, bias):
        ctx.layer = layer
        return F.linear(x, layer.dequantize(), bias)  # (..., in) -> (..., out), as nn.Linear computes it

    @staticmethod
    def backward(ctx, grad_y):
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_y @ ctx.layer.dequantize()  # (..., out) @ (out, in) -> (..., in)
        if ctx.needs_input_grad[2]:  # the bias trains only with LoraConfig(bias="all" / "lora_only")
            grad_bias = grad_y.reshape(-1, grad_y.shape[-1]).sum(0)
        return grad_x, None, grad_bias


class NF4Linear(nn.Module):
    """A frozen linear layer whose (out, in) weight is stored as NF4: packed codes plus block constants.

    Buffers (in the state dict, never in ``parameters()``): ``codes`` (ceil(in*out/2),) uint8, and either
    ``absmax`` (n_blocks,) fp32, or with ``double_quant`` ``nested_codes`` (n_blocks,) uint8,
    ``nested_absmax`` (ceil(n_blocks/256),) fp32 and ``nested_offset`` () fp32. The bias stays a frozen
    fp Parameter in ``compute_dtype``. ``weight`` is the dequantized weight (a new tensor on every read).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, blocksize: int = 64,
                 double_quant: bool = True, compute_dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        check_blocksize(blocksize, even=True)
        self.in_features, self.out_features = in_features, out_features
        self.blocksize, self.double_quant, self.compute_dtype = blocksize, double_quant, compute_dtype
        n = in_features * out_features
        n_blocks = -(-n // blocksize)
        self.register_buffer("codes", torch.zeros(-(-n // 2), dtype=torch.uint8, device=device))
        if double_quant:
            self.register_buffer("nested_codes", torch.zeros(n_blocks, dtype=torch.uint8, device=device))
            self.register_buffer("nested_absmax", torch.zeros(-(-n_blocks // 256), device=device))
            self.register_buffer("nested_offset", torch.zeros((), device=device))
        else:
            self.register_buffer("absmax", torch.zeros(n_blocks, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=compute_dtype, device=device),
                                 requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, blocksize: int = 64, double_quant: bool = True,
                    compute_dtype: torch.dtype | None = None) -> NF4Linear:
        """Quantize ``linear``'s weight to NF4 (compute dtype: the weight's own unless given)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"NF4Linear.from_linear quantizes an nn.Linear, got {type(linear).__name__}. "
                            "Quantize before injecting LoRA (prepare_qlora does both in that order).")
        weight = linear.weight
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, blocksize,
                    double_quant, compute_dtype or weight.dtype, weight.device)
        layer.quantize_(weight)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    @torch.no_grad()
    def quantize_(self, weight: torch.Tensor) -> None:
        """Store ``weight`` (out, in) as NF4 in place (a NaN/Inf weight is refused by ``quantize_nf4``)."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"weight must have shape {(self.out_features, self.in_features)}, got "
                             f"{tuple(weight.shape)}. Fix: pass the weight of the layer this one replaces.")
        # quantize on the CPU (the code tables live there) in fp32; the buffers keep their device
        q = quantize_nf4(weight.detach().float().cpu(), self.blocksize, self.double_quant)
        self.codes.copy_(q.codes)
        if self.double_quant:
            self.nested_codes.copy_(q.nested.codes)
            self.nested_absmax.copy_(q.nested.absmax)
            self.nested_offset.copy_(q.nested.offset)
        else:
            self.absmax.copy_(q.absmax)

    def quant_state(self) -> Quant4bit:
        """The buffers as the ``Quant4bit`` that ``lora_edu.quant.dequantize_nf4`` reads."""
        shape = torch.Size((self.out_features, self.in_features))
        nested = NestedAbsmax(self.nested_codes, self.nested_absmax, self.nested_offset) \
            if self.double_quant else None
        return Quant4bit(self.codes, None if nested else self.absmax, shape, torch.float32, self.blocksize,
                         "nf4", code_table("nf4", self.codes.device), nested)  # cached: no copy per call

    @torch.no_grad()
    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The (out, in) weight from the 4-bit buffers, in ``dtype`` (default: the compute dtype).

        ``dequantize_nf4(self.quant_state())`` (fp32), then cast; it runs twice per training step.
        """
        return dequantize_nf4(self.quant_state()).to(dtype or self.compute_dtype)

    @property
    def weight(self) -> torch.Tensor:
        return self.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # compute in compute_dtype, return in the input's dtype (as bitsandbytes' Linear4bit)
        return _DequantizeLinear.apply(x.to(self.compute_dtype), self, self.bias).to(x.dtype)

    @property
    def quantized_numel(self) -> int:
        """The weights the 4-bit codes stand for: ``trainable_parameters`` counts them, as PEFT counts
        bitsandbytes' packed ``Params4bit`` (the codes are buffers here, so ``parameters()`` skips them)."""
        return self.in_features * self.out_features

    def nbytes(self) -> int:
        """Bytes of the stored weight: packed codes plus constants (the bias is not counted)."""
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def extra_repr(self) -> str:
        bits = 8 * self.nbytes() / (self.in_features * self.out_features)  # codes + constants, per weight
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, blocksize={self.blocksize}, "
                f"double_quant={self.double_quant}, "
                f"compute_dtype={str(self.compute_dtype).removeprefix('torch.')}, {bits:.3f} bits/weight")


class QLoRALinear(LoraLinear):
    """LoRA around a frozen ``NF4Linear``: ``base_layer(x) + lora_B(lora_A(dropout(x))) * scaling``.

    Same arguments, names, init, scaling, forward and ``get_delta_weight`` as ``LoraLinear`` (inherited).
    Only ``base_types`` differs, so LoraLinear's constructor builds it. The adapters are in the compute
    dtype, or fp32 when that is fp16/bf16 (LoraLinear's rule, PEFT's default). ``merge()`` / ``unmerge()`` dequantize, add / subtract the
    update, re-quantize, and warn: the result is rounded to NF4 again (measured in notebook 07).
    """

    base_types = (NF4Linear,)  # LoraLinear's constructor does the rest: checks, A and B, init, placement

    def __init__(self, base_layer: NF4Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: bool | str = True, use_dora: bool = False):
        if use_dora:
            raise ValueError("DoRA on a 4-bit base is not supported here: its merge would need the row norms "
                             "of a weight that is rounded again on every merge. Use use_dora=False, or "
                             "DoRA on a full-precision LoraLinear.")
        if isinstance(base_layer, nn.Linear):
            raise TypeError("QLoRALinear wraps an NF4Linear, got an nn.Linear. Use QLoRALinear.from_linear("
                            "linear, r, lora_alpha) (quantizes it) or LoraLinear (keeps full precision).")
        super().__init__(base_layer, r, lora_alpha, lora_dropout, use_rslora, init_lora_weights)

    @classmethod
    def from_linear(cls, linear: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                    use_rslora: bool = False, init_lora_weights: bool | str = True, blocksize: int = 64,
                    double_quant: bool = True, compute_dtype: torch.dtype | None = None) -> QLoRALinear:
        """Quantize ``linear`` to NF4 and add LoRA (same seed -> same A as ``LoraLinear(linear, ...)``)."""
        base = NF4Linear.from_linear(linear, blocksize, double_quant, compute_dtype)
        return cls(base, r, lora_alpha, lora_dropout, use_rslora, init_lora_weights)

    @torch.no_grad()
    def _requantized(self, sign: int) -> torch.Tensor:
        """``dequant(W_nf4) +/- delta_W`` in fp32, checked finite: what ``_requantize`` rounds to NF4."""
        delta = self.get_delta_weight().float()  # (out, in)
        bad = (~torch.isfinite(delta)).sum().item()
        if bad:
            raise ValueError(f"The LoRA update B @ A * scaling has {bad} NaN/Inf entries "
                             f"(of {delta.numel()}); lora_A/lora_B are broken, often by a diverged run "
                             "(lower the learning rate). The 4-bit codes are unchanged.")
        new = self.base_layer.dequantize(torch.float32) + sign * delta  # add in fp32, then round to NF4
        if not torch.isfinite(new).all():
            raise ValueError("W0 +/- delta_W overflows fp32 (Inf entries). Nothing was changed.")
        check_finite(new, "W0 + delta_W")  # NF4 refuses values above 1e38 too: say so before any change
        return new

    @torch.no_grad()
    def _requantize(self, sign: int) -> None:
        new = self._requantized(sign)
        warnings.warn(MERGE_WARNING if sign > 0 else UNMERGE_WARNING, UserWarning, stacklevel=3)
        self.base_layer.quantize_(new)

    def check_merge(self) -> None:
        """Raise the ValueError ``merge()`` would raise, changing nothing (``merge_and_unload`` checks all
        layers first)."""
        self._requantized(+1)

    def merge(self) -> None:
        """``W_nf4 <- NF4(dequant(W_nf4) + delta_W)``: lossy (one more rounding to NF4), so it warns."""
        if self.merged:
            raise ValueError("This QLoRALinear is already merged; merging again would add the update twice. "
                             "Call unmerge() first, or check layer.merged.")
        self._requantize(+1)
        self.merged = True

    def unmerge(self) -> None:
        """``W_nf4 <- NF4(dequant(W_nf4) - delta_W)``: does not give back the original codes exactly."""
        if not self.merged:
            raise ValueError("This QLoRALinear is not merged, so there is nothing to unmerge. "
                             "Check layer.merged before calling unmerge().")
        self._requantize(-1)
        self.merged = False


# --- whole models -----------------------------------------------------------------------------------------

def _linear_targets(model: nn.Module, target_modules, what: str) -> list[str]:
    """``find_target_modules``, with "all-linear" also matching ``NF4Linear``; checks every match."""
    if isinstance(target_modules, str) and target_modules.lower() == "all-linear":
        head = output_head_name(model)
        names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, NF4Linear)) and n != head]
    else:
        names = find_target_modules(model, target_modules)
    if not names:
        raise ValueError(f"{what}={target_modules!r} matched no module. {_linear_names_hint(model)}")
    for name in names:
        module = model.get_submodule(name)
        if isinstance(module, LoraLinear):
            raise TypeError(f"{name!r} already has LoRA; quantize before injecting (prepare_qlora does "
                            "both), or reload the model.")
        if not isinstance(module, (nn.Linear, NF4Linear)):
            raise TypeError(f"{what}={target_modules!r} matched {name!r}, a {type(module).__name__}, not a "
                            f"linear layer. Target the linear layers inside it. {_linear_names_hint(model)}")
    return names


def quantize_model(model: nn.Module, target_modules: list[str] | str = "all-linear", blocksize: int = 64,
                   double_quant: bool = True, compute_dtype: torch.dtype | None = None) -> nn.Module:
    """Replace the matching ``nn.Linear`` layers by frozen ``NF4Linear`` in place; return the model.

    "all-linear" (the default) leaves the output head in full precision, as ``load_in_4bit`` does. Every
    layer is quantized before any is swapped in, so a bad weight (NaN/Inf) changes nothing.
    """
    names = [n for n in _linear_targets(model, target_modules, "target_modules")
             if isinstance(model.get_submodule(n), nn.Linear)]  # already-quantized layers stay as they are
    quantized = {n: NF4Linear.from_linear(model.get_submodule(n), blocksize, double_quant, compute_dtype)
                 for n in names}
    for name, layer in quantized.items():
        layer.train(model.get_submodule(name).training)  # a new module starts in train mode: keep the model's
        model.set_submodule(name, layer)
    if quantized:
        _guard_save_pretrained(model)
    return model


_SAVE_GUARDED: dict[type, type] = {}  # a transformers model class -> its subclass that guards save_pretrained


def _guard_save_pretrained(model: nn.Module) -> None:
    """Make ``model.save_pretrained`` refuse while ``NF4Linear`` layers remain, instead of writing a file
    that transformers reloads with random weights where our 4-bit buffers were.

    The model's class becomes a subclass of the same name whose only change is that check (so
    ``isinstance``, ``config.architectures`` and copies behave as before); ``dequantize_model`` lifts it.
    """
    cls = type(model)
    if not callable(getattr(cls, "save_pretrained", None)) or cls in _SAVE_GUARDED.values():
        return
    if cls not in _SAVE_GUARDED:
        def save_pretrained(self, *args, **kwargs):
            nf4 = [n for n, m in self.named_modules() if isinstance(m, NF4Linear)]
            if nf4:
                raise ValueError(
                    f"save_pretrained cannot write the {len(nf4)} NF4Linear layers (e.g. {nf4[0]!r}): transformers "
                    "does not know our 4-bit buffers and would reload those layers with random weights. Call "
                    "lora_edu.dequantize_model(model) first (after merge_and_unload, to keep a merged update), "
                    "or save only the adapter with save_adapter(model, path).")
            return super(guarded, self).save_pretrained(*args, **kwargs)

        guarded = type(cls.__name__, (cls,), {"save_pretrained": save_pretrained, "__module__": cls.__module__,
                                              "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
        _SAVE_GUARDED[cls] = guarded
    model.__class__ = _SAVE_GUARDED[cls]


def prepare_qlora(model: nn.Module, config: LoraConfig | None = None,
                  quantize_modules: list[str] | str = "all-linear", blocksize: int = 64,
                  double_quant: bool = True, compute_dtype: torch.dtype | None = None) -> nn.Module:
    """QLoRA in one call: ``quantize_model(model, quantize_modules, ...)``, then LoRA on
    ``config.target_modules`` (``QLoRALinear`` around quantized layers, ``LoraLinear`` around others),
    and only the adapters trainable. Built in ``named_modules()`` order, so the same seed gives the same A
    as ``inject_lora``. Checks everything before changing the model; returns it (changed in place).
    """
    config = LoraConfig() if config is None else config
    if config.use_dora:
        raise ValueError("prepare_qlora does not do DoRA (use_dora=True): DoRA on a 4-bit base is not "
                         "supported here. Use use_dora=False, or inject_lora on a full-precision model.")
    existing = [n for n, m in model.named_modules() if hasattr(m, "lora_A")]
    if existing:
        raise ValueError(f"The model already has {len(existing)} LoRA layers (e.g. {existing[0]!r}). "
                         "Start from the base model: reload it, or unload(model) first.")
    targets = _linear_targets(model, config.target_modules, "target_modules")
    for name in targets:
        module = model.get_submodule(name)
        if config.r > min(module.in_features, module.out_features):
            raise ValueError(f"r={config.r} is larger than min(in, out) for {name!r} "
                             f"({module.in_features} -> {module.out_features}). "
                             "Lower r or leave this layer out.")
    quantize_model(model, quantize_modules, blocksize, double_quant, compute_dtype)
    for name in targets:
        base = model.get_submodule(name)
        wrapper = QLoRALinear if isinstance(base, NF4Linear) else LoraLinear
        layer = wrapper(base, config.r, config.lora_alpha, config.lora_dropout, config.use_rslora,
                        config.init_lora_weights)
        layer.train(base.training)  # an eval model stays in eval: no LoRA dropout in generate()
        model.set_submodule(name, layer)
    return mark_only_lora_as_trainable(model, bias=config.bias)


def dequantize_model(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """Replace every ``NF4Linear`` by an ``nn.Linear`` holding its dequantized weight (in place); return it.

    Needed before transformers' ``save_pretrained``: transformers knows nothing of our NF4 buffers, so a
    saved NF4 model reloads with random weights where the codes were. After ``merge_and_unload`` of a QLoRA
    model, ``dequantize_model(model).save_pretrained(path)`` writes the merged 4-bit weights exactly (each
    NF4 value is a dequantized number, stored in ``dtype``: default each layer's compute dtype). Refuses a
    model that still has LoRA layers (merge_and_unload or unload it first) and changes nothing then.
    """
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoraLinear)]
    if wrapped:
        raise ValueError(f"The model still has {len(wrapped)} LoRA layers (e.g. {wrapped[0]!r}); dequantizing "
                         "under them would leave adapters on a plain layer. Call merge_and_unload(model) (keep "
                         "the update) or unload(model) (drop it) first.")
    names = [n for n, m in model.named_modules() if isinstance(m, NF4Linear)]
    if not names:
        raise ValueError("The model has no NF4Linear layers, so there is nothing to dequantize.")
    for name in names:
        nf4 = model.get_submodule(name)
        weight = nf4.dequantize(dtype)  # (out, in)
        linear = nn.Linear(nf4.in_features, nf4.out_features, bias=nf4.bias is not None, device=weight.device,
                           dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if nf4.bias is not None:
                linear.bias.copy_(nf4.bias)
        linear.requires_grad_(False)
        linear.train(nf4.training)
        model.set_submodule(name, linear)
    return model


def model_nbytes(model: nn.Module) -> dict:
    """Stored bytes of a model's weights (state dict, a tied tensor once), by kind.

    ``{"codes": packed NF4 codes, "constants": block constants (absmax or double-quantized),
    "lora": lora_A/lora_B, "other": everything else (embeddings, norms, head, biases), "total": the sum}``
    """
    nf4 = {name for name, m in model.named_modules() if isinstance(m, NF4Linear)}
    sizes = dict.fromkeys(("codes", "constants", "lora", "other"), 0)
    seen = set()
    for key, tensor in model.state_dict(keep_vars=True).items():
        if (tensor.data_ptr(), tensor.numel()) in seen:
            continue
        seen.add((tensor.data_ptr(), tensor.numel()))
        prefix, _, leaf = key.rpartition(".")
        if prefix in nf4 and leaf != "bias":
            kind = "codes" if leaf == "codes" else "constants"
        else:
            kind = "lora" if (".lora_A." in f".{key}" or ".lora_B." in f".{key}") else "other"
        sizes[kind] += tensor.numel() * tensor.element_size()
    sizes["total"] = sum(sizes.values())
    return sizes
