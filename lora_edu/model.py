"""LoRA on a whole model: pick layers by name, wrap them, freeze the rest, count, merge and unload.

``inject_lora(model, config)`` does what ``peft.get_peft_model`` does for plain LoRA, without the wrapper
class: it swaps each matching ``nn.Linear`` for a ``LoraLinear`` in place, using PEFT's matching rules for
``target_modules``, and leaves only the adapters trainable. The parameter arithmetic reproduces the
LoRA paper's count (Hu et al. 2021, arXiv 2106.09685, section 5.1: r * (d_in + d_out) per adapted matrix).
Explained in notebooks/02_lora_layer.ipynb and used from notebook 03 on.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from .config import DEFAULT_TARGET_MODULES, LoraConfig, check_regex
from .layers import LoraLinear

# --- choosing the layers ------------------------------------------------------------------------------


def output_head_name(model: nn.Module) -> str | None:
    """The name of the output head (e.g. ``lm_head``), which ``"all-linear"`` leaves alone, or None."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is None:
        return None
    return next((name for name, module in model.named_modules() if module is head), None)


def default_target_modules(model: nn.Module) -> list[str]:
    """The ``target_modules`` PEFT uses for this architecture when the config gives None."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in DEFAULT_TARGET_MODULES:
        raise ValueError(f"No default target_modules for model type {model_type!r}; pass them explicitly, "
                         f"e.g. LoraConfig(target_modules=['q_proj', 'v_proj']) or 'all-linear'. "
                         f"{_linear_names_hint(model)}")
    return list(DEFAULT_TARGET_MODULES[model_type])


def find_target_modules(model: nn.Module, target_modules: list[str] | str | None) -> list[str]:
    """Names of the modules that ``target_modules`` selects, in ``named_modules()`` order (PEFT's rules).

    A list matches a name equal to an entry or ending in "." + entry; a string must match the whole name as
    a regular expression; ``"all-linear"`` (any case) is every ``nn.Linear`` but the output head; None is
    the architecture's default. The result may contain modules that are not linear; ``inject_lora`` refuses
    those.
    """
    if target_modules is None:
        target_modules = default_target_modules(model)
    names = [name for name, _ in model.named_modules() if name]
    if isinstance(target_modules, str) and target_modules.lower() == "all-linear":
        head = output_head_name(model)
        return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != head]
    if isinstance(target_modules, str):
        pattern = check_regex(target_modules)
        return [n for n in names if pattern.fullmatch(n)]
    return [n for n in names if n in target_modules or any(n.endswith("." + t) for t in target_modules)]


def _linear_names_hint(model: nn.Module) -> str:
    """A short list of the linear layers that exist, for error messages (full names get long)."""
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        return "The model has no nn.Linear layers at all."
    last_parts = sorted({n.rsplit(".", 1)[-1] for n in linear})
    return (f"The model's nn.Linear layers are named (last part): {last_parts}; "
            f"{len(linear)} in all, e.g. {linear[0]!r}.")


# --- wrapping and freezing ----------------------------------------------------------------------------


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoraLinear]]:
    """Yield ``(name, layer)`` for every ``LoraLinear`` in the model, in ``named_modules()`` order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module (e.g. a transformers model), got {type(model).__name__}.")
    for name, module in model.named_modules():
        if isinstance(module, LoraLinear):
            yield name, module


def inject_lora(model: nn.Module, config: LoraConfig | None = None) -> nn.Module:
    """Replace the matching ``nn.Linear`` layers by ``LoraLinear`` in place, freeze the rest; return model.

    Refuses (and changes nothing) when the model already has LoRA layers, when nothing matches, when a
    match is not an ``nn.Linear``, or when r does not fit a matched layer: re-running a notebook cell is
    safe. The adapters are built in ``named_modules()`` order, as PEFT does, so the same seed gives the
    same initial A matrices as ``peft.get_peft_model``.
    """
    config = LoraConfig() if config is None else config
    if isinstance(config, dict):
        raise TypeError(f"config must be a LoraConfig, got a dict {config!r}. Fix: inject_lora(model, "
                        "LoraConfig(**config)), which also checks every value.")
    existing = [n for n, m in model.named_modules() if hasattr(m, "lora_A")]
    if existing:
        raise ValueError(
            f"The model already has {len(existing)} LoRA layers (e.g. {existing[0]!r}); injecting again "
            "would wrap LoRA inside LoRA. Keep using it, or start over with unload(model) (drop the "
            "adapters) or merge_and_unload(model) (keep them, merged), or reload the model.")
    targets = find_target_modules(model, config.target_modules)
    if not targets:
        raise ValueError(f"target_modules={config.target_modules!r} matched no module. A list entry must "
                         "equal a module name or its last dotted part(s); a string must match a whole name "
                         "as a regex. "
                         f"{_linear_names_hint(model)}")
    for name in targets:  # check every target before touching the model, so a failure changes nothing
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear) and hasattr(module, "in_features"):  # e.g. a 4-bit NF4Linear
            raise TypeError(f"{name!r} is a {type(module).__name__}, a linear layer that inject_lora cannot "
                            "wrap (it adapts full-precision nn.Linear layers). For a 4-bit (NF4) base use "
                            "lora_edu.prepare_qlora(model, config); to load an adapter, load it into the "
                            "full-precision base model instead.")
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target_modules={config.target_modules!r} matched {name!r}, a "
                            f"{type(module).__name__}, not an nn.Linear; LoRA here adapts linear layers "
                            "only. "
                            f"Target the linear layers inside it. {_linear_names_hint(model)}")
        low = min(module.in_features, module.out_features)
        if config.r > low:
            raise ValueError(f"r={config.r} is larger than min(in, out) = {low} for {name!r} "
                             f"({module.in_features} -> {module.out_features}); B @ A cannot have a higher "
                             "rank, so the extra rank only adds parameters. Lower r or leave this layer out.")
    for name in targets:
        base = model.get_submodule(name)
        layer = LoraLinear(base, config.r, config.lora_alpha, config.lora_dropout,
                           config.use_rslora, config.init_lora_weights, use_dora=config.use_dora)
        layer.train(base.training)  # a new module starts in train mode; an eval model must stay in eval
        _replace(model, name, layer)
    mark_only_lora_as_trainable(model, bias=config.bias)
    return model


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def mark_only_lora_as_trainable(model: nn.Module, bias: str = "none") -> nn.Module:
    """Freeze everything except ``lora_A``/``lora_B``, DoRA's ``lora_magnitude_vector`` (and biases: "none",
    "all" or "lora_only")."""
    layers = [layer for _, layer in lora_layers(model)]
    if not layers:
        raise ValueError("The model has no LoRA layers, so nothing would train. "
                         "Call inject_lora(model, config) first.")
    if bias not in ("none", "all", "lora_only"):
        raise ValueError(f"bias must be 'none', 'all' or 'lora_only'; got {bias!r}.")
    model.requires_grad_(False)
    for layer in layers:
        layer.lora_A.requires_grad_(True)
        layer.lora_B.requires_grad_(True)
        if layer.use_dora:
            layer.lora_magnitude_vector.requires_grad_(True)
        if bias == "lora_only" and layer.base_layer.bias is not None:
            layer.base_layer.bias.requires_grad_(True)
    if bias == "all":
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1] == "bias":
                param.requires_grad_(True)
    return model


# --- counting -----------------------------------------------------------------------------------------


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; a tied weight (embedding = head) counts once, as in PEFT.

    A 4-bit layer (``qlora.NF4Linear``) keeps its codes in buffers; its ``quantized_numel`` weights count in the
    total, as PEFT counts a bitsandbytes 4-bit weight, so a QLoRA model and its fp32 twin report the same numbers.
    """
    trainable = total = 0
    for param in model.parameters():  # parameters() yields each shared tensor once
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    total += sum(getattr(module, "quantized_numel", 0) for module in model.modules())
    return trainable, total


def print_trainable_parameters(model: nn.Module) -> None:
    """Print the counts in exactly PEFT's ``print_trainable_parameters`` format."""
    trainable, total = trainable_parameters(model)
    if total == 0:
        raise ValueError("The model has no parameters, so there is nothing to count. Pass the model itself.")
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
          f"trainable%: {100 * trainable / total:.4f}")


def lora_parameter_count(in_features: int, out_features: int, r: int) -> int:
    """Numbers LoRA trains for one (out, in) matrix: A is (r, in), B is (out, r), so r * (in + out)."""
    for name, value in (("in_features", in_features), ("out_features", out_features), ("r", r)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r} (e.g. 4096, 4096, 8).")
    return r * (in_features + out_features)


def compression_ratio(in_features: int, out_features: int, r: int) -> float:
    """How many times fewer numbers LoRA trains than full fine-tuning of the matrix: in*out / (r*(in+out)).

    >>> lora_parameter_count(4096, 4096, 8), 4096 * 4096, compression_ratio(4096, 4096, 8)
    (65536, 16777216, 256.0)
    """
    return in_features * out_features / lora_parameter_count(in_features, out_features, r)


# --- merging and removing -----------------------------------------------------------------------------


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every adapter into its base weight and put the plain ``nn.Linear`` back; returns the model.

    The model is changed in place (PEFT's version returns a new base model: assign the result either way).
    The restored layers stay frozen.
    """
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError("The model has no LoRA layers to merge (already merged and unloaded?).")
    check_untied(model, [(n, layer) for n, layer in layers if not layer.merged])
    for _, layer in layers:  # every check before any change: a bad last layer leaves the model as it was
        if not layer.merged:
            layer.check_merge()
    for name, layer in layers:
        if not layer.merged:
            layer.merge()
        _replace(model, name, layer.base_layer)
    return model


def check_untied(model: nn.Module, layers) -> None:
    """Refuse to merge into a base weight that another module shares (SmolLM2 ties lm_head to embed_tokens):
    the merge would change that module too, so the merged model would differ from the adapted one."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and not isinstance(module, LoraLinear):
            owners.setdefault(id(weight), []).append(name)
    for name, layer in layers:
        weight = layer.base_layer.weight
        others = [n for n in owners.get(id(weight), []) if n != f"{name}.base_layer"] if isinstance(
            weight, nn.Parameter) else []
        if others:
            raise ValueError(f"{name}'s weight is tied to {others[0]} (the same tensor, as with "
                             f"tie_word_embeddings): merging the update into it would change {others[0]} too, "
                             "so the merged model would not equal the adapted one. Nothing was merged. Fix: "
                             "leave it out of target_modules, or untie first: "
                             f"base = model.get_submodule({(name + '.base_layer')!r}); "
                             "base.weight = nn.Parameter(base.weight.detach().clone()); "
                             "model.config.tie_word_embeddings = False.")


def unload(model: nn.Module) -> nn.Module:
    """Drop every adapter and put the plain ``nn.Linear`` back, unmerged first if merged; returns the model.

    An unmerge subtracts the update again, which gives back the original weight up to float rounding.
    """
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError("The model has no LoRA layers to unload.")
    for name, layer in layers:
        if layer.merged:
            layer.unmerge()
        _replace(model, name, layer.base_layer)
    return model


@contextmanager
def rescale_adapter_scale(model: nn.Module, multiplier: float):
    """Multiply every LoRA layer's ``scaling`` by ``multiplier`` inside a ``with`` block, as PEFT's
    ``peft.helpers.rescale_adapter_scale``: 0 is the base model, 1 the adapter as trained, 2 its update doubled.

    The old values come back when the block ends, also on an error. Merged layers are refused: their update is
    already in the weight, so changing ``scaling`` would change nothing (and unmerging would subtract the wrong
    amount).
    """
    if isinstance(multiplier, bool) or not isinstance(multiplier, numbers.Real) or not math.isfinite(multiplier):
        raise ValueError(f"multiplier must be a finite number, got {multiplier!r}. Fix: pass e.g. 0.5 or 2.")
    named = list(lora_layers(model))
    if not named:
        raise ValueError("The model has no LoRA layers to rescale. Fix: inject_lora or load_adapter first.")
    merged = [name for name, layer in named if layer.merged]
    if merged:
        raise ValueError(f"{len(merged)} LoRA layers are merged (e.g. {merged[0]}): their update is in the weight, "
                         "so rescaling would not change the output. Fix: unmerge them first.")
    layers = [layer for _, layer in named]
    saved = [layer.scaling for layer in layers]
    try:
        for layer, scaling in zip(layers, saved, strict=True):
            layer.scaling = scaling * float(multiplier)
        yield model
    finally:
        for layer, scaling in zip(layers, saved, strict=True):
            layer.scaling = scaling
