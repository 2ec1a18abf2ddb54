"""Adapter files: PEFT loads ours and we load PEFT's (same logits), atomic saves, merge round trip, errors."""

import json
import re

import peft
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

import lora_edu.io
from lora_edu import LoraConfig, inject_lora, load_adapter, lora_layers, merge_and_unload, save_adapter
from lora_edu.io import CONFIG_NAME, WEIGHTS_NAME
from lora_edu.pretrained import tiny_llama

IDS = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(0))


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


def randomize_b(model):
    """B starts at zero, which would make every adapter look the same; give it random values."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    return model


def ours(seed=1, **config):
    torch.manual_seed(seed)
    return randomize_b(inject_lora(tiny_llama(), LoraConfig(**config)))


CONFIGS = [
    {"r": 4, "lora_alpha": 8, "target_modules": "all-linear"},
    {"r": 2, "lora_alpha": 16, "use_rslora": True, "target_modules": ["q_proj", "v_proj"]},
    {"r": 3, "lora_alpha": 5, "target_modules": ["model.layers.1.mlp.up_proj"]},  # one layer: full name kept
]


@pytest.mark.parametrize("config", CONFIGS, ids=["all-linear", "rslora", "one-layer"])
def test_peft_loads_our_adapter_with_the_same_logits(tmp_path, config):
    model = ours(**config)
    save_adapter(model, tmp_path / "adapter")
    theirs = peft.PeftModel.from_pretrained(tiny_llama(), tmp_path / "adapter")
    n_lora = sum(isinstance(m, peft.tuners.lora.LoraLayer) for m in theirs.modules())
    assert n_lora == len(list(lora_layers(model)))
    # Bitwise: the same weights and the same nn.Linear calls in the same order (tests/test_layers.py).
    assert torch.equal(logits(theirs), logits(model))
    assert not torch.equal(logits(model), logits(tiny_llama()))  # the adapter does change the output


def test_config_has_peft_fields_and_keys_have_peft_names(tmp_path):
    save_adapter(ours(**CONFIGS[0]), tmp_path / "a")
    config = json.loads((tmp_path / "a" / CONFIG_NAME).read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (4, 8, False)
    assert config["target_modules"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj"])
    assert config["fan_in_fan_out"] is False and config["modules_to_save"] is None
    peft.LoraConfig.from_pretrained(tmp_path / "a")  # PEFT accepts every field
    keys = load_file(tmp_path / "a" / WEIGHTS_NAME).keys()
    assert len(keys) == 2 * 7 * 2
    assert all(re.fullmatch(r"base_model\.model\.model\.layers\.\d\.\w+\.\w+_proj\.lora_[AB]\.weight", k)
               for k in keys)


def test_we_load_a_peft_adapter_with_the_same_logits(tmp_path):
    torch.manual_seed(1)
    theirs = peft.get_peft_model(tiny_llama(), peft.LoraConfig(
        r=4, lora_alpha=12, target_modules=["k_proj", "o_proj", "down_proj"], init_lora_weights=False))
    theirs.save_pretrained(tmp_path / "peft")
    model = load_adapter(tiny_llama(), tmp_path / "peft")
    assert len(list(lora_layers(model))) == 2 * 3
    assert torch.equal(logits(model), logits(theirs))
    assert all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())


def test_rslora_survives_the_round_trip(tmp_path):
    model = ours(r=4, lora_alpha=8, use_rslora=True, target_modules=["v_proj"])
    save_adapter(model, tmp_path / "a")
    assert json.loads((tmp_path / "a" / CONFIG_NAME).read_text())["use_rslora"] is True
    loaded = load_adapter(tiny_llama(), tmp_path / "a")
    assert all(layer.use_rslora and layer.scaling == 8 / 2 for _, layer in lora_layers(loaded))  # 8/sqrt(4)
    assert torch.equal(logits(loaded), logits(model))
    theirs = peft.PeftModel.from_pretrained(tiny_llama(), tmp_path / "a")
    assert theirs.peft_config["default"].use_rslora and torch.equal(logits(theirs), logits(model))


def test_saved_files_hold_no_pickle(tmp_path):
    save_adapter(ours(), tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    raw = (tmp_path / "a" / WEIGHTS_NAME).read_bytes()
    assert raw[:1] != b"\x80" and raw[:2] != b"PK"  # pickle protocol byte / torch.save's zip
    header_len = int.from_bytes(raw[:8], "little")  # safetensors: 8-byte length, then a JSON header
    assert json.loads(raw[8:8 + header_len])["__metadata__"] == {"format": "pt"}


def test_save_replaces_an_adapter(tmp_path):
    save_adapter(ours(seed=1), tmp_path / "a")
    second = ours(seed=2, r=2, lora_alpha=4)
    save_adapter(second, tmp_path / "a")
    assert torch.equal(logits(load_adapter(tiny_llama(), tmp_path / "a")), logits(second))
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temporary or backup folder left


def test_interrupted_save_keeps_the_old_adapter(tmp_path, monkeypatch):
    save_adapter(ours(seed=1), tmp_path / "a")
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}

    def half_write(tensors, filename, metadata=None):
        open(filename, "wb").write(b"\x00" * 10)  # a truncated file, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(lora_edu.io, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(ours(seed=2), tmp_path / "a")
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_merged_model_round_trips_through_transformers(tmp_path):
    model = ours(**CONFIGS[0])
    unmerged = logits(model)
    merged_model = merge_and_unload(model)
    assert type(merged_model) is LlamaForCausalLM and not list(lora_layers(merged_model))
    merged = logits(merged_model)
    # Merging changes the order of the float operations: measured max abs diff 6.6e-7 (logits up to 0.5).
    torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)
    merged_model.save_pretrained(tmp_path / "merged")
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path / "merged")
    assert torch.equal(logits(reloaded), merged)


def test_smollm2_adapter_loads_in_peft(tmp_path):
    from lora_edu.pretrained import load_model

    model, _ = load_model(verbose=False)
    torch.manual_seed(0)
    randomize_b(inject_lora(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")))
    save_adapter(model, tmp_path / "smol", base_model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct")
    base, _ = load_model(verbose=False)
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "smol")
    ids = torch.tensor([[1, 504, 3458, 282, 253, 1492]])
    assert torch.equal(logits(theirs, ids), logits(model, ids))


# --- bad input ----------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    save_adapter(ours(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), tmp_path / "a")
    return tmp_path / "a"


def edit_config(path, **changes):
    config = json.loads((path / CONFIG_NAME).read_text())
    (path / CONFIG_NAME).write_text(json.dumps({**config, **changes}))


def test_missing_folder_and_files(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="No adapter folder"):
        load_adapter(tiny_llama(), tmp_path / "nowhere")
    (saved / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="no adapter_model.safetensors"):
        load_adapter(tiny_llama(), saved)
    (saved / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        load_adapter(tiny_llama(), saved)


def test_pickled_bin_is_refused(saved):
    tensors = load_file(saved / WEIGHTS_NAME)
    (saved / WEIGHTS_NAME).unlink()
    torch.save(tensors, saved / "adapter_model.bin")
    with pytest.raises(ValueError, match="safetensors only.*convert it once"):
        load_adapter(tiny_llama(), saved)


def test_corrupt_files(saved):
    raw = (saved / WEIGHTS_NAME).read_bytes()
    (saved / WEIGHTS_NAME).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_adapter(tiny_llama(), saved)
    (saved / CONFIG_NAME).write_text('{"peft_type": "LORA", "r": ')
    with pytest.raises(ValueError, match="not valid JSON"):
        load_adapter(tiny_llama(), saved)


def test_keys_that_do_not_match(saved):
    tensors = load_file(saved / WEIGHTS_NAME)
    key = next(k for k in tensors if "layers.1.self_attn.q_proj.lora_A" in k)
    tensors[key.replace("q_proj", "qq_proj")] = tensors.pop(key)
    save_file(tensors, saved / WEIGHTS_NAME)
    with pytest.raises(ValueError, match=r"1 missing .*layers\.1\.self_attn\.q_proj\.lora_A.*1 unexpected"):
        load_adapter(tiny_llama(), saved)


def test_adapter_for_another_base_model(tmp_path):
    torch.manual_seed(0)
    bigger = inject_lora(tiny_llama(hidden_size=48), LoraConfig(r=4, target_modules=["q_proj"]))
    save_adapter(bigger, tmp_path / "a")
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight.*\(4, 48\).*"
                                         r"\(4, 32\)"):
        load_adapter(tiny_llama(), tmp_path / "a")


def test_config_r_disagrees_with_tensors(saved):
    edit_config(saved, r=8)
    with pytest.raises(ValueError, match=r"Shape mismatch .*\(4, 32\).*r=8 needs \(8, 32\).*config's r"):
        load_adapter(tiny_llama(), saved)


@pytest.mark.parametrize("change, message", [
    ({"peft_type": "IA3"}, "peft_type is 'IA3'"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"bias": "all"}, "bias='all'"),
    ({"init_lora_weights": "pissa"}, "Convert it to plain LoRA"),
])
def test_unsupported_configs(saved, change, message):
    edit_config(saved, **change)
    with pytest.raises(ValueError, match=message):
        load_adapter(tiny_llama(), saved)


def test_model_that_already_has_lora(saved):
    model = ours()
    with pytest.raises(ValueError, match="already has LoRA layers.*unload"):
        load_adapter(model, saved)
    theirs = peft.get_peft_model(tiny_llama(), peft.LoraConfig())
    with pytest.raises(ValueError, match="already has LoRA layers"):
        load_adapter(theirs, saved)


def test_save_errors(tmp_path):
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_adapter(tiny_llama(), tmp_path / "a")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an adapter folder"):
        save_adapter(ours(), tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    model = ours(target_modules=["q_proj", "v_proj"])
    model.model.layers[0].self_attn.q_proj.r = 2  # layers with different settings: one config cannot say
    with pytest.raises(ValueError, match="differ in"):
        save_adapter(model, tmp_path / "b")


def test_a_saved_adapter_is_readable_like_any_new_folder(tmp_path):
    """tempfile makes folders 0700 (and safetensors files 0600); a saved adapter gets the umask's usual modes."""
    import os
    import stat

    out = save_adapter(ours(**CONFIGS[0]), tmp_path / "adapter")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f.name
