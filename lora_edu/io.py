"""Adapter files in PEFT's format: ``save_adapter`` and ``load_adapter``, so adapters move to and from PEFT.

A LoRA adapter is small: only A and B of each adapted layer (Hu et al. 2021, arXiv 2106.09685, section 4.2:
"we only need to store and load a very small number of task-specific parameters"). PEFT keeps one in a
folder with two files, and so do we:

- ``adapter_config.json``: the ``LoraConfig`` fields, with PEFT's names (``peft_type``, ``r``, ``lora_alpha``,
  ``target_modules`` ...);
- ``adapter_model.safetensors``: the tensors, keyed ``base_model.model.<module path>.lora_A.weight`` (A is
  (r, in)) and ``....lora_B.weight`` (B is (out, r)); a DoRA adapter (``use_dora: true``) adds
  ``....lora_magnitude_vector`` (m is (out,); no ``.weight`` suffix in the file, as PEFT writes it).
  Safetensors only: a pickled ``.bin`` can run code when loaded, so it is refused.

A save is atomic (``lora_edu.files``): a new folder is written beside the target, then renamed into place;
in an existing adapter folder each of the two files is written beside its old self and renamed over it, and
every other file in the folder stays. An interrupted save leaves the previous adapter intact. Explained in notebook 05 (merge and
unmerge), which saves an adapter here and reloads it with PEFT.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import LoraConfig
from .files import publish_folder, replace_files
from .model import find_target_modules, inject_lora, lora_layers

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # PEFT's wrapper path (PeftModel.base_model.model) in front of every key
# Config fields we read and honour; every other field must be switched off (see read_adapter_config).
IMPLEMENTED = ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "use_dora", "init_lora_weights")
# Fields that describe the file, not the arithmetic; the last two are read only when use_qalora or
# megatron_config is on, which the allow-list refuses.
METADATA = ("peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping",
            "peft_version", "qalora_group_size", "megatron_core")
OFF_VALUES = (None, False, {}, [])  # how PEFT writes a variant that is not used
# Fields we cannot honour, written with PEFT's default when we save (bias "none" is off too).
UNSUPPORTED = {"fan_in_fan_out": False, "modules_to_save": None, "rank_pattern": {},
               "alpha_pattern": {}, "layers_to_transform": None, "lora_bias": False, "bias": "none",
               "target_parameters": None, "trainable_token_indices": None, "exclude_modules": None,
               "layers_pattern": None}


# --- saving -------------------------------------------------------------------------------------------


def _stored_target_modules(model: nn.Module, names: list[str]) -> list[str]:
    """The last parts of the wrapped names (["q_proj", "v_proj"]), as PEFT stores them, if those select
    exactly the wrapped layers again; else the full names (e.g. when only layer 1's up_proj was adapted)."""
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
    return suffixes if find_target_modules(model, suffixes) == names else sorted(names)


def adapter_config(model: nn.Module, base_model_name_or_path: str | None = None) -> dict:
    """The ``adapter_config.json`` contents for the LoRA layers in ``model``, read off the layers."""
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError("The model has no LoRA layers, so there is no adapter to save. "
                         "Call inject_lora(model, config) (and train) first.")
    kinds = {(m.r, m.lora_alpha, m.use_rslora, getattr(m.lora_dropout, "p", 0.0), m.use_dora)
             for _, m in layers}
    if len(kinds) > 1:
        raise ValueError(f"The LoRA layers differ in (r, lora_alpha, use_rslora, lora_dropout, use_dora): "
                         f"{sorted(kinds)}; one adapter_config.json describes one setting. Give every layer "
                         "the same one.")
    (r, lora_alpha, use_rslora, dropout, use_dora), = kinds
    if any(p.requires_grad for n, p in model.named_parameters() if n.endswith(".bias")):
        warnings.warn("Some biases are trainable, but an adapter file holds only lora_A and lora_B: trained "
                      "biases are not saved (PEFT's default bias='none' does the same).", stacklevel=3)
    if base_model_name_or_path is None:  # as PEFT does: the name or folder the base model was loaded from
        base_model_name_or_path = getattr(getattr(model, "config", None), "name_or_path", None) or None
    causal_lm = type(model).__name__.endswith("ForCausalLM")
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM" if causal_lm else None,
            "base_model_name_or_path": base_model_name_or_path, "r": r, "lora_alpha": lora_alpha,
            "lora_dropout": dropout, "target_modules": _stored_target_modules(model, [n for n, _ in layers]),
            "use_rslora": use_rslora, "use_dora": use_dora, "init_lora_weights": True, "inference_mode": True,
            "revision": None, **UNSUPPORTED}


def _adapter_tensors(name: str, layer) -> dict[str, torch.Tensor]:
    """One layer's adapter tensors under their file keys (without PEFT's prefix)."""
    tensors = {f"{name}.lora_A.weight": layer.lora_A.weight, f"{name}.lora_B.weight": layer.lora_B.weight}
    if layer.use_dora:
        tensors[f"{name}.lora_magnitude_vector"] = layer.lora_magnitude_vector.weight  # no .weight in files
    return tensors


def save_adapter(model: nn.Module, path: str | os.PathLike, base_model_name_or_path: str | None = None) -> Path:
    """Write the model's LoRA adapter to the folder ``path`` in PEFT's format, atomically; return the path.

    ``peft.PeftModel.from_pretrained(base_model, path)`` loads it. A new folder appears complete or not at
    all (written beside it, then renamed). In an existing adapter folder only our two files are replaced,
    each atomically (written beside it, then renamed over the old one), and every other file stays, as with
    PEFT's ``save_pretrained``. A symbolic link to a folder stays a link; the files go into its target.
    """
    config = adapter_config(model, base_model_name_or_path)
    # (r, in), (out, r) and DoRA's (out,) tensors under PEFT's names, contiguous copies (safetensors refuses
    # shared views)
    tensors = {f"{PEFT_PREFIX}{key}": tensor.detach().contiguous().clone()
               for name, layer in lora_layers(model) for key, tensor in _adapter_tensors(name, layer).items()}
    broken = [key.removeprefix(PEFT_PREFIX) for key, t in tensors.items() if not torch.isfinite(t).all()]
    if broken:
        raise ValueError(f"{len(broken)} adapter tensors have NaN/Inf entries (e.g. {broken[0]}), often from a "
                         "diverged training run; load_adapter would refuse the file. Nothing was written. "
                         "Retrain with a lower learning rate.")
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n"
    given = Path(path)
    if given.is_symlink() and not given.exists():
        raise ValueError(f"{given} is a symbolic link to {os.readlink(given)}, which does not exist. Create "
                         "the target folder first, or remove the link.")
    target = given.resolve()  # ".", "x/.." and links become the real folder, so nothing renames the cwd
    if target.exists():
        if not target.is_dir() or not (not any(target.iterdir()) or (target / CONFIG_NAME).is_file()):
            raise ValueError(f"{given} exists and is not an adapter folder (no {CONFIG_NAME}); saving would "
                             "mix the adapter into it. Pick a new folder, e.g. path / 'adapter'.")
        replace_files({target / WEIGHTS_NAME: lambda f: save_file(tensors, str(f), metadata={"format": "pt"}),
                       target / CONFIG_NAME: lambda f: f.write_text(text)})
        return given
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))  # same disk: atomic rename
    try:
        (tmp / CONFIG_NAME).write_text(text)
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        publish_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return given


# --- loading ------------------------------------------------------------------------------------------


def read_adapter_config(path: Path) -> dict:
    """Read and check ``adapter_config.json``: a LoRA adapter with only the features lora_edu has."""
    if not path.is_dir():
        raise FileNotFoundError(f"No adapter folder at {path}. save_adapter(model, path) or PEFT's "
                                "save_pretrained(path) writes one.")
    if not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{path} has no {CONFIG_NAME}, so it is not a PEFT adapter folder "
                                f"(found: {sorted(p.name for p in path.iterdir())}).")
    file = path / CONFIG_NAME
    try:
        config = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{file} is not UTF-8 text (byte {e.start}: {e.reason}); the file is corrupt. "
                         "Save the adapter again.") from None
    except RecursionError:
        raise ValueError(f"{file} is nested too deeply to read (thousands of [ or {{); it is not an adapter "
                         "config. Save the adapter again.") from None
    except ValueError as e:
        raise ValueError(f"{file} is not valid JSON ({e}); the file is corrupt. "
                         "Save the adapter again.") from e
    if not isinstance(config, dict):
        raise ValueError(f"{file} holds a JSON {type(config).__name__}, not a JSON object of fields "
                         "(peft_type, r, lora_alpha, ...); it is not an adapter config. Save the adapter again.")
    if config.get("peft_type") != "LORA":
        raise ValueError(f"This adapter's peft_type is {config.get('peft_type')!r}; lora_edu loads LoRA "
                         "adapters only ('LORA'). Load it with peft.PeftModel.from_pretrained instead.")
    missing = [key for key in ("r", "lora_alpha") if key not in config]
    if missing:
        raise ValueError(f"{file} has no {missing[0]!r}; an adapter config names its rank r and lora_alpha. "
                         "The file is incomplete: save the adapter again.")
    # An allow-list: a field we do not read changes PEFT's arithmetic unless it is switched off, so every
    # field that is neither implemented nor metadata must be off (None, False, {}, [], or PEFT's default).
    for key, value in config.items():
        if key in IMPLEMENTED or key in METADATA:
            continue
        if not (any(value == off and type(value) is type(off) for off in OFF_VALUES)
                or value == UNSUPPORTED.get(key, object())):
            raise ValueError(f"This adapter sets {key}={value!r}, a feature lora_edu does not implement "
                             f"(it reads only {', '.join(IMPLEMENTED)}; other fields must be off). Load it "
                             "with peft.PeftModel.from_pretrained instead.")
    init = config.get("init_lora_weights", True)
    if init not in (True, False, "gaussian"):  # e.g. "pissa": its base weights differ from the model's
        raise ValueError(f"init_lora_weights={init!r}: such an adapter expects a base model changed at init "
                         "time. Convert it to plain LoRA in PEFT (path_initial_model_for_weight_conversion).")
    return config


def read_adapter_weights(path: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors, keyed by module path (``...q_proj.lora_A.weight``, PEFT's prefix removed)."""
    file = path / WEIGHTS_NAME
    if not file.is_file():
        if (path / "adapter_model.bin").is_file():
            raise ValueError(
                f"{path} holds a pickled adapter_model.bin; lora_edu reads safetensors only, because "
                "unpickling a file can run any code in it. If you trust its source, convert it once: "
                "from safetensors.torch import save_file; save_file(torch.load('adapter_model.bin', "
                "weights_only=True), 'adapter_model.safetensors').")
        raise FileNotFoundError(f"{path} has no {WEIGHTS_NAME}; the save was incomplete. Save it again.")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{file} is not a readable safetensors file ({e}); it is corrupt or truncated. "
                         "Save the adapter again.") from e
    tensors = {k.removeprefix(PEFT_PREFIX): v for k, v in tensors.items()}
    for key, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{file}: {key} holds {tensor.dtype} numbers; LoRA weights are floating point. "
                             "The file was not written by an adapter save.")
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ValueError(f"{file}: {key} has {bad} NaN/Inf entries (of {tensor.numel()}), often saved from a "
                             "diverged training run; it would turn every output NaN. Retrain with a lower "
                             "learning rate, or load an earlier adapter.")
    return tensors


def lora_config_of(config: dict, where: str | os.PathLike = CONFIG_NAME) -> LoraConfig:
    """The ``LoraConfig`` an ``adapter_config.json`` describes (init False: the weights come from the file).

    LoraConfig's checks apply in the file's words (finite alpha, real booleans, a valid regex); an error
    names ``where``, the file it came from.
    """
    try:
        return LoraConfig(r=config["r"], lora_alpha=config["lora_alpha"],
                          lora_dropout=config.get("lora_dropout", 0.0),
                          target_modules=config.get("target_modules"),
                          use_rslora=config.get("use_rslora", False),
                          use_dora=config.get("use_dora", False), init_lora_weights=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def check_adapter_tensors(model: nn.Module, lora_config: LoraConfig, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Check that every tensor has a target layer of ``model`` and every target layer its tensors, with the
    shapes A (r, in), B (out, r), DoRA's m (out,); return the target layers' names."""
    names = find_target_modules(model, lora_config.target_modules)
    parts = ("lora_A.weight", "lora_B.weight") + (("lora_magnitude_vector",) if lora_config.use_dora else ())
    expected = {f"{n}.{part}" for n in names for part in parts}
    missing, unexpected = sorted(expected - tensors.keys()), sorted(tensors.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"The adapter's tensors do not match this model's target layers "
                         f"(target_modules={lora_config.target_modules!r}): {len(missing)} missing "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
                         "Was it saved for another model architecture?")
    r = lora_config.r
    for name in names:
        base = model.get_submodule(name)
        in_f, out_f = getattr(base, "in_features", None), getattr(base, "out_features", None)
        shapes = {"lora_A.weight": (r, in_f), "lora_B.weight": (out_f, r), "lora_magnitude_vector": (out_f,)}
        for part in parts:
            got, shape = tuple(tensors[f"{name}.{part}"].shape), shapes[part]
            if got != shape:
                raise ValueError(f"Shape mismatch at {name}.{part}: the adapter has {got}, this model "
                                 f"with r={r} needs {shape}. The adapter was made for another base model, or "
                                 "its config's r disagrees with its tensors.")
    return names


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a PEFT-format LoRA adapter into a plain base model (in place); return the model.

    Everything is checked before the model is touched: the config, that every tensor has a layer and every
    layer a tensor, and the shapes (A (r, in), B (out, r), DoRA's m (out,)). The adapters come back
    trainable, as after ``inject_lora``.
    """
    path = Path(path)
    existing = [n for n, m in model.named_modules() if hasattr(m, "lora_A")]
    if existing:
        raise ValueError(f"The model already has LoRA layers (e.g. {existing[0]!r}); load an adapter into a "
                         "plain base model. Call unload(model) first, or reload the base model.")
    config = read_adapter_config(path)
    tensors = read_adapter_weights(path)
    lora_config = lora_config_of(config, path / CONFIG_NAME)
    check_adapter_tensors(model, lora_config, tensors)
    inject_lora(model, lora_config)
    with torch.no_grad():
        for name, layer in lora_layers(model):
            for key, tensor in _adapter_tensors(name, layer).items():
                tensor.copy_(tensors[key])  # into the adapter's own tensor, in its dtype
    return model
