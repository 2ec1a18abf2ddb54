"""The local cache of a converted model: one folder per model, guarded by a manifest of sizes and digests.

A model converted from its GGUF file (``lora_edu.pretrained``, ~20 s) is written here once, atomically, and
loads in about a second after that; a truncated or corrupt file is detected and rebuilt, never silently used.
The cache lives in ``$LORA_EDU_CACHE`` (default ``~/.cache/lora_edu``). Explained in notebooks/00_welcome.ipynb.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

MANIFEST = "lora_edu_manifest.json"
# Bump when the cache layout changes; an older cache is rebuilt. 2: config without GGUF's quantization_config.
CACHE_VERSION = 2



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
