"""lora_edu.sweeps: the run cache reuses a stored run, recomputes a changed one, writes atomically, survives a
corrupt file with a warning, refuses a file it did not write, and round-trips tensors without pickle.

Real runs use a tiny random Llama with SmolLM2's tokenizer (about a second each), as tests/test_experiments.py.
"""

import json
import os

import pytest
import torch

from lora_edu import sweeps
from lora_edu.experiments import RunConfig

TINY = dict(steps=2, batch_size=4, warmup_steps=0, eval_examples=2, max_new_tokens=3, r=2, lora_alpha=4.0)


def quiet(path):
    return sweeps.RunCache(path, log=lambda *a: None)


def test_tensors_round_trip_exactly_through_json():
    value = {"A": torch.randn(3, 5), "nested": [torch.arange(4.0), 2.5, "x"], "n": 3}
    back = sweeps.decode(json.loads(json.dumps(sweeps.encode(value))))
    torch.testing.assert_close(back["A"], value["A"], rtol=0, atol=0)
    torch.testing.assert_close(back["nested"][0], value["nested"][0], rtol=0, atol=0)
    assert back["nested"][1:] == [2.5, "x"] and back["n"] == 3


def test_key_changes_with_any_field_and_with_extra():
    base = RunConfig(**TINY)
    key = sweeps.run_key(base)
    assert key == sweeps.run_key(RunConfig(**TINY))  # deterministic
    assert key != sweeps.run_key(RunConfig(**{**TINY, "lr": 2e-3}))
    assert key != sweeps.run_key(RunConfig(**{**TINY, "seed": 1}))
    assert key != sweeps.run_key(base, {"extract": "A"})
    with pytest.raises(TypeError, match="JSON-able"):
        sweeps.run_key({"model": object()})


def test_a_run_is_reused_and_a_changed_config_runs_again(loader, tmp_path):
    path = tmp_path / "runs.json"
    extract_calls = []

    def extract(model):
        extract_calls.append(1)
        return {"A": model.model.layers[0].self_attn.q_proj.lora_A.weight.detach().clone()}

    cache = quiet(path)
    first = cache.run(RunConfig(**TINY), extract=extract, extract_name="A of layer 0 q", loader=loader)
    assert len(loader.calls) == 1 and cache.computed == 1 and first["row"]["steps_done"] == 2
    assert first["extract"]["A"].shape == (2, 32)

    again = quiet(path)  # a new session reads the file: nothing is trained
    second = again.run(RunConfig(**TINY), extract=extract, extract_name="A of layer 0 q", loader=loader)
    assert len(loader.calls) == 1 and again.reused == 1 and again.computed == 0 and len(extract_calls) == 1
    assert second["row"] == first["row"]
    torch.testing.assert_close(second["extract"]["A"], first["extract"]["A"], rtol=0, atol=0)

    again.run(RunConfig(**{**TINY, "seed": 1}), extract=extract, extract_name="A of layer 0 q", loader=loader)
    again.run(RunConfig(**TINY), extract=extract, extract_name="A of layer 0 k", loader=loader)  # new extraction
    assert len(loader.calls) == 3 and again.computed == 2 and len(quiet(path)) == 3


def test_get_or_compute_stores_once_and_a_failure_changes_nothing(tmp_path):
    path = tmp_path / "runs.json"
    cache = quiet(path)
    assert cache.get_or_compute({"what": "x"}, lambda: {"value": 1}) == {"value": 1}
    before = path.read_bytes()

    def boom():
        raise RuntimeError("training failed")

    with pytest.raises(RuntimeError, match="training failed"):
        cache.get_or_compute({"what": "y"}, boom)
    assert path.read_bytes() == before and len(cache) == 1
    assert cache.get_or_compute({"what": "x"}, boom) == {"value": 1}  # served from the cache, boom not called
    with pytest.raises(TypeError, match="must return a dict"):
        cache.get_or_compute({"what": "z"}, lambda: 3)


def test_the_write_is_atomic_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "runs.json"
    cache = quiet(path)
    cache.get_or_compute({"what": "x"}, lambda: {"value": 1})
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(sweeps.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.get_or_compute({"what": "y"}, lambda: {"value": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file, whole
    assert sorted(os.listdir(tmp_path)) == ["runs.json"]  # no temporary file left behind
    assert len(cache) == 1 and {"what": "y"} not in [e["fields"] for e in cache.entries.values()]


def test_a_corrupt_file_is_moved_aside_with_a_warning(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text('{"format": "lora_edu.sweeps", "entries": {')  # cut off mid-write by something else
    with pytest.warns(UserWarning, match="could not be read.*moved to"):
        cache = quiet(path)
    assert len(cache) == 0 and (tmp_path / "runs.json.corrupt").read_text().endswith("{")
    cache.get_or_compute({"what": "x"}, lambda: {"value": 1})
    assert json.loads(path.read_text())["format"] == sweeps.FORMAT


def test_a_file_that_is_not_a_cache_is_left_alone(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"accuracy": 0.9}')
    with pytest.raises(ValueError, match="not a lora_edu run cache.*another path"):
        quiet(path)
    assert path.read_text() == '{"accuracy": 0.9}'


def test_bad_arguments(tmp_path):
    cache = quiet(tmp_path / "runs.json")
    with pytest.raises(TypeError, match="RunConfig"):
        cache.run({"r": 8})
    with pytest.raises(ValueError, match="extract_name"):
        cache.run(RunConfig(**TINY), extract=lambda m: {})
