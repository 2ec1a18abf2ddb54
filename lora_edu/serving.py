"""Serving many LoRA adapters from one frozen base model, with a different adapter for each row of a batch.

One base model, many small adapters mounted at once: each row of a batch names its adapter, the base
matmul ``x @ W0^T`` runs once for the whole batch and only the low-rank part differs per row,

    h[b] = W0 x[b] + scaling[a_b] * B[a_b] (A[a_b] x[b]),   a_b = the adapter of row b,

which is what vLLM, S-LoRA (Sheng et al. 2023, arXiv 2311.03285) and Punica (Chen et al. 2023, arXiv
2310.18547) do on a GPU. Two ways to compute the per-row part, both here:

- ``"grouped"``: for each distinct adapter in the batch, take its rows and run its A and B on them (PEFT's
  ``_mixed_batch_forward``): one pair of small matmuls per distinct adapter, a Python loop;
- ``"gathered"``: stack every adapter, padded with zeros to the largest rank and with the scaling folded
  into B (as vLLM's ``LoRALayerWeights.optimize``), gather each row's A and B and apply them in one batched
  matmul (Punica's BGMV, vLLM's torch fallback ``bgmv_shrink``/``bgmv_expand``): no loop, but a copy of
  A and B per row.

``MultiLoraModel`` adds both to an unmodified transformers model through forward hooks on its linear
layers, so the base weights are never touched and the model outside a call is the plain base model.
PEFT's conventions: ``adapter_names=[...]``, one per row, and ``"__base__"`` for no adapter. DoRA is
refused: its weight norm ``||W0 + s B A||`` depends on the merged weight of each adapter, so the rows
cannot share one base matmul (PEFT refuses it too). Explained in notebooks/10_serving.ipynb.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

from .io import check_adapter_tensors, lora_config_of, read_adapter_config, read_adapter_weights
from .model import lora_layers

BASE = "__base__"  # PEFT's name for "no adapter on this row"
MODES = ("grouped", "gathered")
DORA_REASON = ("DoRA adapters cannot share a batch: DoRA rescales each output row by m / ||W0 + s B A||, a "
               "norm of the merged weight of that one adapter, so the rows cannot share one base matmul "
               "(PEFT refuses adapter_names with DoRA for the same reason). Merge it into its own copy of "
               "the base model (merge_and_unload) and serve that copy separately.")


def add_grouped_lora(output: torch.Tensor, x: torch.Tensor, rows_of: dict, adapters: list) -> torch.Tensor:
    """Add the per-row LoRA output to ``output`` (batch, seq, out) in place, one group of rows per adapter
    (PEFT's loop). ``x`` (batch, seq, in); ``rows_of``: slot -> row indices, or None for "every row";
    ``adapters[slot]`` = (A (r, in), B (out, r), scaling), or None where that adapter skips this layer."""
    for slot, rows in rows_of.items():
        if adapters[slot] is None:
            continue
        weight_A, weight_B, scaling = adapters[slot]
        part = x if rows is None else x[rows]  # (n_rows, seq, in): a gathered copy, unless it is every row
        # (n_rows, seq, in) -> (n_rows, seq, r) -> (n_rows, seq, out); F.linear as nn.Linear, as PEFT does
        part = nn.functional.linear(nn.functional.linear(part, weight_A), weight_B) * scaling
        if rows is None:
            output += part.to(output.dtype)
        else:
            output[rows] += part.to(output.dtype)
    return output


def gathered_lora_delta(x: torch.Tensor, slots: torch.Tensor, stacked_A: torch.Tensor,
                        stacked_B: torch.Tensor) -> torch.Tensor:
    """The per-row LoRA output in one batched matmul (BGMV). ``x`` (batch, seq, in), ``slots`` (batch,),
    ``stacked_A`` (n_slots, r_max, in), ``stacked_B`` (n_slots, out, r_max) with the scaling folded in."""
    weight_A, weight_B = stacked_A[slots], stacked_B[slots]  # (batch, r_max, in), (batch, out, r_max)
    shrink = torch.bmm(x, weight_A.transpose(1, 2))  # (batch, seq, r_max); padded ranks give zeros
    return torch.bmm(shrink, weight_B.transpose(1, 2))  # (batch, seq, out)


class MultiLoraModel(nn.Module):
    """A frozen, unmerged base model serving several LoRA adapters at once, one adapter per batch row.

    ``add_adapter(name, source)``: ``source`` is a PEFT-format adapter folder (ours or PEFT's) or a model
    adapted with ``inject_lora``/``load_adapter``. ``model(input_ids=..., adapter_names=[...])`` returns the
    base model's output (``.logits``); ``generate(..., adapter_names=[...])`` generates greedily.
    ``mode``: ``"grouped"`` (PEFT's loop) or ``"gathered"`` (BGMV-style, one batched matmul).
    """

    def __init__(self, base_model: nn.Module, mode: str = "grouped"):
        super().__init__()
        wrapped = next((n for n, m in base_model.named_modules() if hasattr(m, "lora_A")), None)
        if wrapped is not None:
            raise ValueError(f"The base model already has LoRA layers (e.g. {wrapped!r}); MultiLoraModel needs "
                             "the plain base model. Call unload(model), or load the base model again, and add "
                             "the adapted model with add_adapter(name, adapted_model).")
        self.set_mode(mode)
        self.base_model = base_model.eval().requires_grad_(False)
        self.adapters: dict[str, dict] = {}  # name -> {"layers": {layer: (A, B, scaling)}, "r": ..., ...}
        self._hooks: dict[str, torch.utils.hooks.RemovableHandle] = {}
        self._slots: torch.Tensor | None = None  # (batch,) adapter slot per row while a call runs, else None
        self._rows_of: dict | None = None  # slot -> rows (None: every row) while a call runs
        self._stacks: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> stacked A, B (gathered)
        self._layer_cache: dict[str, list] = {}  # layer -> per-slot adapters; both rebuilt after add/remove

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
        self.mode = mode

    # --- adapters -------------------------------------------------------------------------------------

    def add_adapter(self, name: str, source: str | os.PathLike | nn.Module) -> None:
        """Mount an adapter under ``name``; everything is checked before anything changes."""
        self._refuse_while_running("add an adapter")
        if not isinstance(name, str) or not name or name == BASE:
            raise ValueError(f"Adapter names must be non-empty strings other than {BASE!r} (which means the "
                             f"base model); got {name!r}.")
        if name in self.adapters:
            raise ValueError(f"An adapter named {name!r} is already mounted; two adapters under one name would "
                             f"make adapter_names ambiguous. Pick another name, or remove_adapter({name!r}) first.")
        adapter = self._read_model(source) if isinstance(source, nn.Module) else self._read_folder(Path(source))
        self.adapters[name] = adapter
        for layer in adapter["layers"]:
            if layer not in self._hooks:
                module = self.base_model.get_submodule(layer)
                self._hooks[layer] = module.register_forward_hook(self._hook_for(layer))
        self._stacks.clear()  # rebuilt on the next call
        self._layer_cache.clear()

    def remove_adapter(self, name: str) -> None:
        self._refuse_while_running("remove an adapter")
        self._check_known([name])
        del self.adapters[name]
        used = {layer for adapter in self.adapters.values() for layer in adapter["layers"]}
        for layer in list(self._hooks):
            if layer not in used:
                self._hooks.pop(layer).remove()
        self._stacks.clear()
        self._layer_cache.clear()

    def _read_folder(self, path: Path) -> dict:
        config = read_adapter_config(path)
        if config.get("use_dora"):
            raise ValueError(f"{path} is a DoRA adapter. {DORA_REASON}")
        self._check_base_name(config.get("base_model_name_or_path"), f"The adapter at {path}")
        lora_config = lora_config_of(config, path / "adapter_config.json")
        tensors = read_adapter_weights(path)
        names = check_adapter_tensors(self.base_model, lora_config, tensors)
        for layer in names:
            module = self.base_model.get_submodule(layer)
            if not isinstance(module, nn.Linear):
                raise TypeError(f"The adapter targets {layer!r}, a {type(module).__name__}; only nn.Linear "
                                "layers can be served.")
        scaling = lora_config.lora_alpha / (lora_config.r ** 0.5 if lora_config.use_rslora else lora_config.r)
        layers = {layer: (tensors[f"{layer}.lora_A.weight"], tensors[f"{layer}.lora_B.weight"], scaling)
                  for layer in names}
        return self._place(layers, lora_config.r)

    def _read_model(self, model: nn.Module) -> dict:
        layers = list(lora_layers(model))
        if not layers:
            raise ValueError("That model has no LoRA layers; pass a model adapted with inject_lora or "
                             "load_adapter, or an adapter folder.")
        self._check_base_name(getattr(getattr(model, "config", None), "name_or_path", None), "That model")
        found = {}
        for layer, lora in layers:
            if lora.use_dora:
                raise ValueError(f"{layer} is a DoRA layer. {DORA_REASON}")
            if lora.merged:
                raise ValueError(f"{layer} is merged into its base weight; A and B alone would add the update "
                                 "twice. Call layer.unmerge() (or use the adapter folder) first.")
            try:
                base = self.base_model.get_submodule(layer)
            except AttributeError:
                base = None
            if not isinstance(base, nn.Linear) or base.weight.shape != lora.base_layer.weight.shape:
                raise ValueError(f"{layer} has no matching nn.Linear in the base model (shape "
                                 f"{tuple(lora.base_layer.weight.shape)}): the adapter was made for another "
                                 "base model.")
            if not torch.equal(base.weight, lora.base_layer.weight.to(base.weight.device)):
                raise ValueError(f"The base weight of {layer} differs from this base model's: the adapter was "
                                 "trained on another base model (or a merged or quantized copy).")
            found[layer] = (lora.lora_A.weight.detach(), lora.lora_B.weight.detach(), lora.scaling)
        return self._place(found, max(lora.r for _, lora in layers))

    def _check_base_name(self, theirs: str | None, what: str) -> None:
        ours = getattr(getattr(self.base_model, "config", None), "name_or_path", None)
        if theirs and ours and theirs != ours:
            raise ValueError(f"{what} was made for the base model {theirs!r}, but this base model is {ours!r}. "
                             "Load the adapter's own base model (LoRA updates only fit the weights they were "
                             "trained on).")

    def _place(self, layers: dict, r: int) -> dict:
        """Copies of A and B on the base model's device, fp32 for a 16-bit base (as LoraLinear keeps them)."""
        weight = next(self.base_model.parameters())
        dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        placed = {layer: (A.to(weight.device, dtype).clone(), B.to(weight.device, dtype).clone(), float(s))
                  for layer, (A, B, s) in layers.items()}
        return {"layers": placed, "r": r}

    # --- running a batch ------------------------------------------------------------------------------

    def _refuse_while_running(self, what: str) -> None:
        if self._slots is not None:
            raise RuntimeError(f"Cannot {what} while a batch is running: its rows would see two different "
                               "sets of adapters. Do it between calls.")

    def _check_known(self, names) -> None:
        unknown = sorted({n for n in names if n != BASE and n not in self.adapters})
        if unknown:
            raise ValueError(f"Unknown adapter name(s) {unknown}; mounted: {sorted(self.adapters)} (and "
                             f"{BASE!r} for the base model). Call add_adapter(name, path) first, or fix the name.")

    @contextlib.contextmanager
    def _batch(self, adapter_names: list[str], batch_size: int):
        self._refuse_while_running("start a batch")
        if self.base_model.training:
            raise ValueError("The base model is in training mode; MultiLoraModel serves for inference only "
                             "(dropout would differ per row). Call model.eval().")
        if isinstance(adapter_names, str) or len(adapter_names) != batch_size:
            got = repr(adapter_names) if isinstance(adapter_names, str) else f"{len(adapter_names)} names"
            raise ValueError(f"adapter_names needs one name per row: the batch has {batch_size} rows, got {got}. "
                             f"Use {BASE!r} for rows without an adapter.")
        self._check_known(adapter_names)
        slot_of = {name: i + 1 for i, name in enumerate(self.adapters)}  # slot 0: the base (zeros)
        device = next(self.base_model.parameters()).device
        slots = [slot_of.get(n, 0) for n in adapter_names]
        # The plan of this call, made once (not once per layer): slot -> its rows (None: all rows)
        self._rows_of = {s: None if slots.count(s) == len(slots) else
                         torch.tensor([i for i, t in enumerate(slots) if t == s], device=device)
                         for s in dict.fromkeys(slots) if s != 0}
        self._slots = torch.tensor(slots, device=device)
        try:
            with torch.no_grad():
                yield
        finally:
            self._slots = self._rows_of = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                adapter_names: list[str] | None = None, **kwargs):
        """The base model's forward (``.logits`` (batch, seq, vocab)), row b through ``adapter_names[b]``."""
        names = [BASE] * len(input_ids) if adapter_names is None else adapter_names
        with self._batch(names, len(input_ids)):
            return self.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 adapter_names: list[str] | None = None, **kwargs) -> torch.Tensor:
        """Greedy generation (transformers' ``generate`` with a KV cache), row b through ``adapter_names[b]``.
        Pad on the left, as for any batched generation."""
        if kwargs.get("num_beams", 1) != 1 or kwargs.get("num_return_sequences", 1) != 1 or kwargs.get("do_sample"):
            raise ValueError("MultiLoraModel.generate is greedy: beams, several sequences per prompt or "
                             "sampling would change the rows the adapter names refer to. Drop num_beams, "
                             "num_return_sequences and do_sample.")
        names = [BASE] * len(input_ids) if adapter_names is None else adapter_names
        with self._batch(names, len(input_ids)):
            return self.base_model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                            **{**kwargs, "do_sample": False})

    def _hook_for(self, layer: str):
        def hook(module, args, output):
            if self._slots is None:  # outside a call: the plain base model
                return None
            x = args[0]  # (batch, seq, in)
            if x.shape[0] != len(self._slots):
                raise RuntimeError(f"{layer} saw {x.shape[0]} rows but adapter_names has {len(self._slots)}; "
                                   "something changed the batch size inside the call.")
            adapters = self._layer_adapters(layer)
            if not any(adapters[s] is not None for s in self._rows_of):
                return None  # no row of this batch has an adapter on this layer
            x = x.to(adapters[next(s for s in self._rows_of if adapters[s] is not None)][0].dtype)
            if self.mode == "grouped":  # "__base__" rows are never touched, so they stay exact
                return add_grouped_lora(output, x, self._rows_of, adapters)
            if layer not in self._stacks:
                self._stacks[layer] = stack_adapters(adapters)
            # base slots hold zeros: x @ 0 = 0 exactly and y + 0 = y, so "__base__" rows stay exact here too
            return output.add_(gathered_lora_delta(x, self._slots, *self._stacks[layer]).to(output.dtype))
        return hook

    def _layer_adapters(self, layer: str) -> list:
        """Per slot (0 = base), this layer's (A, B, scaling), or None where that adapter skips the layer."""
        if layer not in self._layer_cache:
            self._layer_cache[layer] = [None] + [a["layers"].get(layer) for a in self.adapters.values()]
        return self._layer_cache[layer]

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, adapters={ {n: a['r'] for n, a in self.adapters.items()} }"


def stack_adapters(adapters: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot-indexed stacks (n_slots, r_max, in) and (n_slots, out, r_max), zero-padded to the largest rank,
    the scaling folded into B (vLLM's layout). A slot that is None (the base, or an adapter that skips this
    layer) stays all zeros, so it adds nothing."""
    present = [a for a in adapters if a is not None]
    r_max = max(A.shape[0] for A, _, _ in present)
    in_f, out_f = present[0][0].shape[1], present[0][1].shape[0]
    like = present[0][0]
    stacked_A = like.new_zeros(len(adapters), r_max, in_f)
    stacked_B = like.new_zeros(len(adapters), out_f, r_max)
    for slot, adapter in enumerate(adapters):
        if adapter is not None:
            weight_A, weight_B, scaling = adapter
            stacked_A[slot, : weight_A.shape[0]] = weight_A
            stacked_B[slot, :, : weight_B.shape[1]] = weight_B * scaling
    return stacked_A, stacked_B


@contextlib.contextmanager
def merged(model: MultiLoraModel, name: str):
    """Inside the block, ``model.base_model`` is the merged model of adapter ``name`` (W0 + s B A in each of
    its layers); afterwards the original weights are copied back, so W0 returns exactly (no rounding drift).
    The merge-and-swap baseline of S-LoRA's section 7.5, and the oracle of the tests."""
    model._refuse_while_running("merge an adapter")
    model._check_known([name])
    saved = {}
    try:
        with torch.no_grad():
            for layer, (weight_A, weight_B, scaling) in model.adapters[name]["layers"].items():
                weight = model.base_model.get_submodule(layer).weight  # (out, in)
                saved[layer] = weight.detach().clone()
                weight += ((weight_B @ weight_A) * scaling).to(weight.dtype)
        yield model.base_model
    finally:
        with torch.no_grad():
            for layer, original in saved.items():
                model.base_model.get_submodule(layer).weight.copy_(original)
