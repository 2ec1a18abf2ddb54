"""Adapter files: PEFT loads ours and we load PEFT's (same logits), atomic saves, merge round trip, errors."""

import json
import os
import re

import peft
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

import lora_edu.files
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


# --- issue 13: configs and files that loaded wrong or lost data ------------------------------------------

def test_loaded_adapter_layers_follow_the_models_eval_mode(tmp_path):
    """A PEFT adapter with lora_dropout used to load with active dropout: a new logit on every forward."""
    save_adapter(ours(r=4, lora_dropout=0.5, target_modules="all-linear"), tmp_path / "a")
    model = load_adapter(tiny_llama().eval(), tmp_path / "a")
    assert not any(m.training for m in model.modules())
    assert torch.equal(logits(model), logits(model))


@pytest.mark.parametrize("change, message", [
    ({"alora_invocation_tokens": [1, 2]}, "alora_invocation_tokens"),  # a variant we do not implement
    ({"use_qalora": True}, "use_qalora"),
    ({"some_future_variant": {"on": True}}, "some_future_variant"),  # unknown, and not off: refused by rule
    ({"lora_alpha": float("inf")}, "lora_alpha"),
    ({"lora_alpha": 1e308}, "lora_alpha"),
    ({"use_rslora": "false"}, "use_rslora must be True or False"),
    ({"use_dora": "no"}, "use_dora must be True or False"),
    ({"r": "4"}, "r must be a positive integer"),
    ({"target_modules": "q_proj("}, "not a valid regular expression"),
])
def test_fields_we_do_not_implement_or_bad_values_are_refused(saved, change, message):
    edit_config(saved, **change)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_adapter(tiny_llama(), saved)


def test_unknown_fields_that_are_off_still_load(saved):
    """Newer PEFT versions add fields; switched off (null / false / {} / []) they change nothing."""
    edit_config(saved, some_future_variant=None, another_flag=False, some_table={}, peft_version="9.9")
    load_adapter(tiny_llama(), saved)


def test_config_without_r_or_not_an_object_is_a_clear_error(saved):
    config = json.loads((saved / CONFIG_NAME).read_text())
    del config["r"]
    (saved / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"has no 'r'"):
        load_adapter(tiny_llama(), saved)
    (saved / CONFIG_NAME).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_adapter(tiny_llama(), saved)
    (saved / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested"):
        load_adapter(tiny_llama(), saved)
    (saved / CONFIG_NAME).write_bytes(b'{"peft_type": "LORA\xff"}')
    with pytest.raises(ValueError, match="UTF-8"):
        load_adapter(tiny_llama(), saved)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_tensors_in_an_adapter_file_are_refused(saved, value):
    tensors = load_file(saved / WEIGHTS_NAME)
    key = sorted(tensors)[-1]
    tensors[key][0, 0] = value
    save_file(tensors, saved / WEIGHTS_NAME)
    model = tiny_llama()
    with pytest.raises(ValueError, match=re.escape(key.removeprefix("base_model.model.")) + ".*NaN/Inf"):
        load_adapter(model, saved)
    assert not list(lora_layers(model))  # refused before the model was touched


def test_numpy_numbers_save(tmp_path):
    import numpy as np

    model = inject_lora(tiny_llama(), LoraConfig(r=np.int64(4), lora_alpha=np.int64(8), target_modules=["q_proj"]))
    save_adapter(model, tmp_path / "a")
    assert json.loads((tmp_path / "a" / CONFIG_NAME).read_text())["r"] == 4


def test_save_over_an_adapter_folder_keeps_every_other_file(tmp_path):
    """save_adapter used to replace the whole folder: metrics.json, a README, a merged/ model were lost."""
    out = tmp_path / "a"
    save_adapter(ours(seed=1), out)
    (out / "metrics.json").write_text("{}")
    (out / "merged").mkdir()
    (out / "merged" / "config.json").write_text("{}")
    second = ours(seed=2, r=2, lora_alpha=4)
    save_adapter(second, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, "metrics.json", "merged"])
    assert (out / "merged" / "config.json").read_text() == "{}"
    assert torch.equal(logits(load_adapter(tiny_llama(), out)), logits(second))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_save_to_the_current_folder_and_dot_dot_paths(tmp_path, monkeypatch):
    """save_adapter(m, ".") used to try to rename the working directory (EBUSY) and lose the adapter."""
    monkeypatch.chdir(tmp_path)
    model = ours(seed=1)
    save_adapter(model, ".")
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    save_adapter(model, "x/sub/..")  # means x: no stray x/sub folder
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]


def test_save_through_a_symlink_keeps_the_link(tmp_path):
    target = tmp_path / "real"
    save_adapter(ours(seed=1), target)
    (tmp_path / "link").symlink_to(target, target_is_directory=True)
    second = ours(seed=2)
    save_adapter(second, tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    assert torch.equal(logits(load_adapter(tiny_llama(), target)), logits(second))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="symbolic link"):
        save_adapter(second, tmp_path / "dangling")


def test_publish_folder_restores_the_old_folder_after_ctrl_c_between_the_renames(tmp_path, monkeypatch):
    from lora_edu.files import publish_folder

    out, new = tmp_path / "out", tmp_path / "new"
    out.mkdir()
    (out / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    real_replace, calls = os.replace, []

    def interrupted(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the second rename: new -> out
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(lora_edu.files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        publish_folder(new, out)
    monkeypatch.setattr(lora_edu.files.os, "replace", real_replace)
    assert (out / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]  # no hidden backup folder left


def test_publish_folder_says_where_the_backup_is_when_the_restore_fails(tmp_path, monkeypatch):
    from lora_edu.files import publish_folder

    out, new = tmp_path / "out", tmp_path / "new"
    out.mkdir()
    new.mkdir()
    real_replace, calls = os.replace, []

    def failing(src, dst):
        calls.append(src)
        if len(calls) >= 2:
            raise OSError("device gone")
        real_replace(src, dst)

    monkeypatch.setattr(lora_edu.files.os, "replace", failing)
    with pytest.raises(OSError, match=r"previous folder is kept at .*\.out\.old-.*old"):
        publish_folder(new, out)


def test_publish_folder_refuses_a_symlink_and_leaves_no_empty_backup(tmp_path, monkeypatch):
    from lora_edu.files import publish_folder

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "new").mkdir()
    with pytest.raises(ValueError, match="symbolic link"):
        publish_folder(tmp_path / "new", tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    (tmp_path / "out").mkdir()

    def refuse(src, dst):
        raise PermissionError("read-only")

    monkeypatch.setattr(lora_edu.files.os, "replace", refuse)
    with pytest.raises(PermissionError):
        publish_folder(tmp_path / "new", tmp_path / "out")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "new", "out", "real"]


def test_property_random_adapter_configs_load_or_give_a_clear_error(tmp_path_factory):
    """Hypothesis: any JSON value in any field of adapter_config.json gives a loaded model with finite
    logits, or a ValueError/TypeError/FileNotFoundError; never a KeyError, AttributeError or NaN."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = tmp_path_factory.mktemp("prop")
    save_adapter(ours(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), base / "a")
    original = json.loads((base / "a" / CONFIG_NAME).read_text())
    json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 9),
                                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                           inner, max_size=3),
                               max_leaves=5)
    fields = st.sampled_from(sorted(original) + ["r", "lora_alpha", "use_dora", "anything_new"])

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(changes=st.dictionaries(fields, json_values, min_size=1, max_size=3), drop=st.booleans())
    def check(changes, drop):
        config = dict(original)
        for key, value in changes.items():
            if drop:
                config.pop(key, None)
            else:
                config[key] = value
        (base / "a" / CONFIG_NAME).write_text(json.dumps(config))
        try:
            model = load_adapter(tiny_llama(), base / "a")
        except (ValueError, TypeError, FileNotFoundError):
            return
        assert torch.isfinite(logits(model)).all()

    check()


def test_an_adapter_with_nan_weights_is_not_saved(tmp_path):
    """One step further: load_adapter refuses NaN tensors, so save_adapter must not write them either."""
    model = ours()
    with torch.no_grad():
        next(layer for _, layer in lora_layers(model)).lora_A.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        save_adapter(model, tmp_path / "a")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_into_an_adapter_folder_changes_neither_file(tmp_path, monkeypatch):
    """Both new files are written before either is renamed in: a failure on the second leaves the pair."""
    out = tmp_path / "a"
    save_adapter(ours(seed=1), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(self, text, *args, **kwargs):  # the config is written second
        raise OSError("disk full")

    monkeypatch.setattr(lora_edu.io.Path, "write_text", full_disk)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(ours(seed=2, r=2, lora_alpha=4), out)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
