"""Cached runs: a sweep's results in one JSON file, keyed by a hash of each run's configuration.

A notebook that trains thirty adapters should draw its figures again in a second, not in twenty minutes.
``RunCache(path)`` keeps one entry per run, under ``run_key(config, extra)``: the SHA-256 of the configuration
as canonical JSON (every field of ``RunConfig``, plus ``extra``: what is extracted from the trained model and
the schema version). Change any field and the key changes, so the old entry is simply not found: it is
invalidated, and the run happens again. The same configuration finds its entry and the run is reused.

- ``RunCache.run(cfg, extract=...)``: ``experiments.run_config(cfg)``, or its stored result. ``extract(model)``
  pulls what the analysis needs from the trained model (e.g. LoRA's A matrices) before the model is dropped.
- ``RunCache.get_or_compute(key_fields, compute)``: the same for any other computation (full fine-tuning).
- Tensors are stored as base64 float32 bytes with dtype and shape (``encode`` / ``decode``), never pickled.
- The file is written atomically (a temporary file in the same folder, then ``os.replace``): a crash or a
  failed run leaves the previous file as it was. A corrupt file is moved aside with a warning that says so.

Used by notebooks/11_why_low_rank.ipynb (LoRA section 7: which weights, which rank, subspace similarity).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from . import experiments

SCHEMA = 1  # bump when the layout of an entry changes: every old entry is then invalidated
FORMAT = "lora_edu.sweeps"  # the marker that says this file is ours (we never overwrite a file without it)


# --- tensors in JSON ---------------------------------------------------------------------------------------
def encode(value):
    """``value`` as JSON-able data: tensors and arrays become {"dtype", "shape", "base64"} (float32 bytes)."""
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        array = np.ascontiguousarray(torch.as_tensor(value).detach().cpu().float().numpy())
        return {"__tensor__": True, "dtype": "float32", "shape": list(array.shape),
                "base64": base64.b64encode(array.tobytes()).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value):
    """The inverse of ``encode``: stored tensors come back as float32 ``torch.Tensor`` (no pickle involved)."""
    if isinstance(value, dict) and value.get("__tensor__"):
        array = np.frombuffer(base64.b64decode(value["base64"]), dtype=np.float32)
        return torch.from_numpy(array.copy()).reshape(value["shape"])
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


# --- keys -------------------------------------------------------------------------------------------------
def run_key(fields: dict | experiments.RunConfig, extra: dict | None = None) -> str:
    """A 16-hex-digit hash of the configuration ``fields`` (a dict or a ``RunConfig``) and ``extra``."""
    if isinstance(fields, experiments.RunConfig):
        fields = asdict(fields)
    if not isinstance(fields, dict):
        raise TypeError(f"fields must be a RunConfig or a dict, got {type(fields).__name__}.")
    try:
        text = json.dumps({"schema": SCHEMA, "fields": fields, "extra": extra or {}}, sort_keys=True)
    except TypeError as e:
        raise TypeError(f"The run configuration must be JSON-able (numbers, strings, lists, dicts) to be "
                        f"hashed: {e}. Fix: pass names and numbers, not objects.") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the cache ---------------------------------------------------------------------------------------------
class RunCache:
    """Results of runs in one JSON file at ``path``; see the module docstring."""

    def __init__(self, path: str | os.PathLike, log=print):
        self.path, self.log = Path(path), log
        self.entries: dict[str, dict] = self._read()
        self.reused, self.computed = 0, 0  # counted for the notebook's "N runs reused" line

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)  # kept, not deleted: the user may want to look at it
            warnings.warn(f"The run cache {self.path} could not be read ({e}); it was moved to {aside} and "
                          "every run will be computed again. Fix: nothing, unless you want the old file back.",
                          stacklevel=3)
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{self.path} exists but is not a lora_edu run cache (no \"format\": \"{FORMAT}\"), "
                             "so it is left alone. Fix: pass another path to RunCache.")
        return dict(data.get("entries", {}))

    def _write(self) -> None:
        """Write the whole file atomically: a temporary file beside it, flushed, then os.replace."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": FORMAT, "schema": SCHEMA, "entries": self.entries}, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644  # mkstemp's 0o600 is too tight
        try:
            os.chmod(tmp, mode)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get_or_compute(self, fields: dict, compute, extra: dict | None = None, label: str = "") -> dict:
        """The stored result for ``fields`` (and ``extra``), else ``compute()`` (a JSON-able dict, tensors
        allowed), stored first. If ``compute`` raises, the cache and its file stay as they were."""
        key = run_key(fields, extra)
        if key in self.entries:
            self.reused += 1
            self.log(f"reused  {label or key} (cached in {self.path.name})")
            return decode(self.entries[key]["result"])
        result = compute()
        if not isinstance(result, dict):
            raise TypeError(f"compute() must return a dict, got {type(result).__name__}.")
        previous = dict(self.entries)
        self.entries[key] = {"fields": fields if isinstance(fields, dict) else asdict(fields),
                             "extra": extra or {}, "result": encode(result)}
        try:
            self._write()
        except BaseException:
            self.entries = previous  # the file was not replaced; keep memory and disk in agreement
            raise
        self.computed += 1
        self.log(f"ran     {label or key}")
        return decode(self.entries[key]["result"])

    def run(self, cfg: experiments.RunConfig, extract=None, extract_name: str = "", **run_kwargs) -> dict:
        """``{"row": ..., "extract": ...}`` for ``cfg``: ``experiments.run_config`` once, then from the cache.

        ``extract(model) -> dict`` is called on the trained model (kept just for it); name what it extracts in
        ``extract_name`` (part of the key), so that changing the extraction invalidates the entry.
        """
        if not isinstance(cfg, experiments.RunConfig):
            raise TypeError(f"cfg must be an experiments.RunConfig, got {type(cfg).__name__}.")
        if extract is not None and not extract_name:
            raise ValueError("Name what extract pulls from the model in extract_name (e.g. 'A q,v layers 0,15'): "
                             "the name is part of the key, so a changed extraction is not served stale data.")
        run_kwargs.setdefault("log", lambda *a: None)

        def compute():
            res = experiments.run_config(cfg, keep_model=extract is not None, **run_kwargs)
            out = {"row": res.row, "extract": extract(res.model) if extract is not None else {}}
            res.model = None
            experiments.free_memory()
            return out

        return self.get_or_compute(asdict(cfg), compute, {"extract": extract_name}, label=cfg.label)
