"""MultiLoraModel: each row equals its merged model and PEFT's mixed batch, base rows are exact, errors."""

import copy

import peft
import pytest
import torch

from lora_edu import LoraConfig, inject_lora, load_adapter, merge_and_unload, save_adapter
from lora_edu.pretrained import tiny_llama
from lora_edu.serving import (
    BASE,
    MultiLoraModel,
    add_grouped_lora,
    gathered_lora_delta,
    merged,
    stack_adapters,
)

# Three adapters of different ranks and targets; "b" uses rsLoRA, "c" adapts one layer only.
CONFIGS = {
    "a": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear"},
    "b": {"r": 2, "lora_alpha": 16, "use_rslora": True, "target_modules": ["q_proj", "v_proj"]},
    "c": {"r": 3, "lora_alpha": 5, "target_modules": ["model.layers.1.mlp.up_proj"]},
}
NAMES = ["a", BASE, "b", "c", "a", "c"]  # six rows, every adapter, the base, repeats
IDS = torch.randint(0, 128, (len(NAMES), 7), generator=torch.Generator().manual_seed(0))


def adapted(name, seed=1, **extra):
    torch.manual_seed(seed + ord(name))
    model = inject_lora(tiny_llama(), LoraConfig(**CONFIGS[name], **extra))
    with torch.no_grad():  # B starts at zero, which would make every adapter look like the base
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(std=0.5)
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {name: save_adapter(adapted(name), root / name) for name in CONFIGS}


def serving(folders, mode="grouped"):
    model = MultiLoraModel(tiny_llama(), mode=mode)
    for name, path in folders.items():
        model.add_adapter(name, path)
    return model


def merged_logits(path, ids):
    with torch.no_grad():
        return merge_and_unload(load_adapter(tiny_llama(), path))(input_ids=ids).logits


@pytest.mark.parametrize("mode", ["grouped", "gathered"])
def test_each_row_equals_the_merged_model_of_its_adapter(folders, mode):
    out = serving(folders, mode)(input_ids=IDS, adapter_names=NAMES).logits
    for row, name in enumerate(NAMES):
        if name != BASE:
            expected = merged_logits(folders[name], IDS[row:row + 1])[0]
            torch.testing.assert_close(out[row], expected, rtol=1e-5, atol=1e-5)
            assert not torch.allclose(out[row], tiny_llama()(input_ids=IDS[row:row + 1]).logits[0], atol=1e-3)


@pytest.mark.parametrize("mode", ["grouped", "gathered"])
def test_base_rows_equal_the_base_model_exactly(folders, mode):
    out = serving(folders, mode)(input_ids=IDS, adapter_names=NAMES).logits
    with torch.no_grad():
        base = tiny_llama()(input_ids=IDS).logits
    assert torch.equal(out[1], base[1])
    assert torch.equal(serving(folders, mode)(input_ids=IDS).logits, base)  # no names: all base


def peft_mixed(folders):
    model = peft.PeftModel.from_pretrained(tiny_llama(), folders["a"], adapter_name="a")
    for name in ("b", "c"):
        model.load_adapter(folders[name], adapter_name=name)
    return model.eval()


@pytest.mark.parametrize("names", [NAMES, ["b"] * 6], ids=["mixed", "one-adapter"])
@pytest.mark.parametrize("mode", ["grouped", "gathered"])
def test_equals_peft_mixed_batch(folders, mode, names):
    with torch.no_grad():
        theirs = peft_mixed(folders)(input_ids=IDS, adapter_names=names).logits
    ours = serving(folders, mode)(input_ids=IDS, adapter_names=names).logits
    if mode == "grouped":  # the same nn.Linear calls on the same rows, in the same order: to the bit
        assert torch.equal(ours, theirs)
    else:  # scaling folded into B, zero-padded ranks: a different order of the same sums
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["grouped", "gathered"])
def test_greedy_generations_equal_merged_models_and_peft(folders, mode):
    ours = serving(folders, mode).generate(IDS, torch.ones_like(IDS), adapter_names=NAMES, max_new_tokens=6)
    with torch.no_grad():
        theirs = peft_mixed(folders).generate(input_ids=IDS, attention_mask=torch.ones_like(IDS),
                                              adapter_names=NAMES, max_new_tokens=6, do_sample=False)
    assert torch.equal(ours, theirs)
    for row, name in enumerate(NAMES):
        base = tiny_llama() if name == BASE else merge_and_unload(load_adapter(tiny_llama(), folders[name]))
        alone = base.generate(input_ids=IDS[row:row + 1], max_new_tokens=6, do_sample=False)
        assert torch.equal(ours[row], alone[0])


def test_peft_folder_and_adapted_model_are_sources_too(folders, tmp_path):
    torch.manual_seed(5)
    theirs = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["k_proj"],
                                                               init_lora_weights=False))
    theirs.save_pretrained(tmp_path / "peft")
    model = MultiLoraModel(tiny_llama())
    model.add_adapter("peft", tmp_path / "peft")
    model.add_adapter("live", adapted("a"))
    with torch.no_grad():
        expected = theirs.eval()(input_ids=IDS).logits
    torch.testing.assert_close(model(input_ids=IDS, adapter_names=["peft"] * 6).logits, expected)
    torch.testing.assert_close(model(input_ids=IDS, adapter_names=["live"] * 6).logits,
                               merged_logits(folders["a"], IDS), rtol=1e-5, atol=1e-5)


def test_inline_ways_agree_with_each_other():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8)
    adapters = [None, (torch.randn(2, 8), torch.randn(6, 2), 0.5), (torch.randn(4, 8), torch.randn(6, 4), 2.0)]
    slots = torch.tensor([2, 0, 1])
    grouped = add_grouped_lora(torch.zeros(3, 5, 6), x, {1: torch.tensor([2]), 2: torch.tensor([0])}, adapters)
    gathered = gathered_lora_delta(x, slots, *stack_adapters(adapters))
    torch.testing.assert_close(grouped, gathered)
    assert torch.equal(gathered[1], torch.zeros(5, 6))  # the base slot adds nothing
    all_rows = add_grouped_lora(torch.zeros(3, 5, 6), x, {2: None}, adapters)  # one adapter for every row
    torch.testing.assert_close(all_rows, gathered_lora_delta(x, torch.tensor([2, 2, 2]), *stack_adapters(adapters)))


def test_remove_adapter_and_merged_context_leave_the_base_exact(folders):
    model = serving(folders)
    before = {k: v.clone() for k, v in model.base_model.state_dict().items()}
    with merged(model, "a") as merged_model:
        changed = not torch.equal(merged_model.model.layers[0].self_attn.q_proj.weight,
                                  before["model.layers.0.self_attn.q_proj.weight"])
    assert changed
    assert all(torch.equal(v, before[k]) for k, v in model.base_model.state_dict().items())
    for name in CONFIGS:
        model.remove_adapter(name)
    assert not model._hooks
    with torch.no_grad():
        assert torch.equal(model.base_model(input_ids=IDS).logits, tiny_llama()(input_ids=IDS).logits)


# --- bad input ----------------------------------------------------------------------------------------


def test_unknown_name_and_wrong_length_are_refused(folders):
    model = serving(folders)
    with pytest.raises(ValueError, match=r"Unknown adapter name\(s\) \['z'\]"):
        model(input_ids=IDS, adapter_names=["z"] * 6)
    with pytest.raises(ValueError, match="one name per row: the batch has 6 rows, got 5 names"):
        model(input_ids=IDS, adapter_names=NAMES[:5])
    with pytest.raises(ValueError, match="one name per row"):
        model(input_ids=IDS[:1], adapter_names="a")
    with pytest.raises(ValueError, match="Unknown adapter"):
        model.remove_adapter("z")


def test_adapter_for_another_base_model_is_refused(folders, tmp_path):
    model = serving(folders)
    wider = tiny_llama(hidden_size=48)
    torch.manual_seed(0)
    save_adapter(inject_lora(wider, LoraConfig(r=2, target_modules=["q_proj"])), tmp_path / "wide")
    with pytest.raises(ValueError, match="Shape mismatch"):
        model.add_adapter("wide", tmp_path / "wide")
    with pytest.raises(ValueError, match="no matching nn.Linear"):
        model.add_adapter("wide", wider)
    other = inject_lora(tiny_llama(seed=9), LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="base weight of .* differs"):
        model.add_adapter("other", other)
    named = MultiLoraModel(tiny_llama())
    named.base_model.config.name_or_path = "someone/else"
    save_adapter(adapted("b"), tmp_path / "named", base_model_name_or_path="HuggingFaceTB/SmolLM2-135M")
    with pytest.raises(ValueError, match="made for the base model 'HuggingFaceTB/SmolLM2-135M'"):
        named.add_adapter("b", tmp_path / "named")
    assert set(model.adapters) == set(CONFIGS) and not named.adapters and not named._hooks  # nothing changed


def test_two_adapters_under_one_name_and_reserved_names_are_refused(folders):
    model = serving(folders)
    with pytest.raises(ValueError, match="already mounted"):
        model.add_adapter("a", folders["b"])
    with pytest.raises(ValueError, match="other than '__base__'"):
        model.add_adapter(BASE, folders["b"])
    torch.testing.assert_close(model(input_ids=IDS, adapter_names=["a"] * 6).logits,
                               merged_logits(folders["a"], IDS), rtol=1e-5, atol=1e-5)  # "a" is still "a"


def test_dora_is_refused_with_the_reason(tmp_path):
    torch.manual_seed(0)
    dora = inject_lora(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"], use_dora=True))
    save_adapter(dora, tmp_path / "dora")
    model = MultiLoraModel(tiny_llama())
    for source in (tmp_path / "dora", dora):
        with pytest.raises(ValueError, match="DoRA adapters cannot share a batch: .* norm of the merged weight"):
            model.add_adapter("dora", source)
    assert not model.adapters and not model._hooks


def test_changing_adapters_during_a_running_batch_is_refused(folders):
    model = serving(folders)
    errors = []

    def add_mid_batch(module, args):
        for action in (lambda: model.add_adapter("late", folders["a"]), lambda: model.remove_adapter("a")):
            try:
                action()
            except RuntimeError as e:
                errors.append(str(e))

    handle = model.base_model.model.embed_tokens.register_forward_pre_hook(add_mid_batch)
    model(input_ids=IDS, adapter_names=NAMES)
    handle.remove()
    assert len(errors) == 2 and all("while a batch is running" in e for e in errors)
    assert set(model.adapters) == set(CONFIGS)


def test_other_misuse_is_refused(folders):
    with pytest.raises(ValueError, match="already has LoRA layers"):
        MultiLoraModel(adapted("a"))
    with pytest.raises(ValueError, match="mode must be one of"):
        MultiLoraModel(tiny_llama(), mode="fast")
    model = serving(folders)
    with pytest.raises(ValueError, match="greedy"):
        model.generate(IDS, adapter_names=NAMES, num_beams=2)
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        model(input_ids=IDS, adapter_names=NAMES)
    merged_model = copy.deepcopy(adapted("a"))
    next(layer for layer in merged_model.modules() if hasattr(layer, "merge")).merge()
    with pytest.raises(ValueError, match="merged into its base weight"):
        MultiLoraModel(tiny_llama()).add_adapter("m", merged_model)
