"""inject_lora and friends: the same modules, keys, counts and numbers as peft.get_peft_model; clear errors."""

import re

import peft
import pytest
import torch
from torch import nn

from lora_edu.config import LoraConfig
from lora_edu.layers import LoraLinear
from lora_edu.model import (
    compression_ratio,
    find_target_modules,
    inject_lora,
    lora_layers,
    lora_parameter_count,
    mark_only_lora_as_trainable,
    merge_and_unload,
    print_trainable_parameters,
    rescale_adapter_scale,
    trainable_parameters,
    unload,
)
from lora_edu.pretrained import tiny_llama

PEFT_PREFIX = "base_model.model."


def both(seed=1, **config):
    """The same tiny Llama through inject_lora and through peft.get_peft_model, adapters built from one seed."""
    torch.manual_seed(seed)
    ours = inject_lora(tiny_llama(), LoraConfig(**config))
    torch.manual_seed(seed)
    theirs = peft.get_peft_model(tiny_llama(), peft.LoraConfig(**config))
    return ours, theirs


def peft_lora_names(peft_model):
    return [n.removeprefix(PEFT_PREFIX) for n, m in peft_model.named_modules()
            if isinstance(m, peft.tuners.lora.LoraLayer)]


def to_peft_key(key):
    """Our state-dict key -> PEFT's in-memory key: PEFT's wrapper prefix plus the adapter name."""
    return PEFT_PREFIX + re.sub(r"\.(lora_[AB])\.", r".\1.default.", key)


TARGETS = [
    None,  # the Llama default: q_proj and v_proj
    ["q_proj", "v_proj"],
    ["self_attn.o_proj", "mlp.down_proj"],  # dotted suffixes
    ["v_proj", "proj", "attn.k_proj"],  # "proj" and "attn.k_proj" are substrings, not dotted suffixes: no match
    ["model.layers.1.mlp.up_proj"],  # one exact full name
    r".*\.(k|o)_proj",  # a regex over the whole name
    "all-linear",
]


@pytest.mark.parametrize("targets", TARGETS, ids=str)
def test_selects_the_same_modules_as_peft(targets):
    ours, theirs = both(target_modules=targets)
    names = [n for n, _ in lora_layers(ours)]
    assert names and names == peft_lora_names(theirs)
    assert "lm_head" not in names


def test_all_linear_is_every_linear_but_the_head():
    model = tiny_llama()
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert find_target_modules(model, "all-linear") == [n for n in linear if n != "lm_head"]
    assert find_target_modules(model, "ALL-Linear") == find_target_modules(model, "all-linear")


@pytest.mark.parametrize("config", [
    {}, {"r": 4, "lora_alpha": 16, "target_modules": "all-linear"},
    {"r": 2, "lora_alpha": 8, "use_rslora": True, "init_lora_weights": "gaussian", "target_modules": ["o_proj"]},
], ids=["default", "all-linear", "rslora-gaussian"])
def test_state_dict_keys_and_values_match_peft(config):
    ours, theirs = both(**config)
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert any(k.endswith(".lora_A.weight") for k in sd_ours) and any(k.endswith(".lora_B.weight") for k in sd_ours)
    assert [to_peft_key(k) for k in sd_ours] == list(sd_theirs)
    for key, value in sd_ours.items():  # same seed, same construction order: the same initial A as PEFT
        assert torch.equal(value, sd_theirs[to_peft_key(key)]), key


def test_forward_merge_and_unload_match_peft():
    ours, theirs = both(r=4, lora_alpha=8, target_modules="all-linear")
    torch.manual_seed(2)
    with torch.no_grad():
        for name, layer in lora_layers(ours):  # nonzero B so the adapters change the output
            layer.lora_B.weight.normal_(std=0.1)
            theirs.get_submodule(PEFT_PREFIX + name).lora_B["default"].weight.copy_(layer.lora_B.weight)
    ids = torch.randint(0, 128, (2, 9))
    logits = ours(ids).logits
    assert torch.equal(logits, theirs(ids).logits)  # same layers, same operations: bitwise
    assert not torch.allclose(logits, tiny_llama()(ids).logits)
    merged_ours = merge_and_unload(ours)
    merged_theirs = theirs.merge_and_unload()
    assert merged_ours is ours and not list(lora_layers(ours))
    assert all(type(m) is nn.Linear for n, m in ours.named_modules() if n.endswith("_proj"))
    for (k1, v1), (k2, v2) in zip(ours.state_dict().items(), merged_theirs.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2), k1
    # (W0 + BA) x rounds differently from W0 x + B(Ax) in float32, so the merged logits are only close.
    torch.testing.assert_close(ours(ids).logits, logits, rtol=1e-4, atol=1e-5)


def test_rescale_adapter_scale_matches_peft_and_restores():
    from peft.helpers import rescale_adapter_scale as peft_rescale

    ours, theirs = both(r=4, lora_alpha=8, target_modules="all-linear")
    torch.manual_seed(3)
    with torch.no_grad():
        for name, layer in lora_layers(ours):
            layer.lora_B.weight.normal_(std=0.1)
            theirs.get_submodule(PEFT_PREFIX + name).lora_B["default"].weight.copy_(layer.lora_B.weight)
    ids = torch.randint(0, 128, (2, 9))
    trained = ours(ids).logits
    for multiplier in (0.5, 2):
        with rescale_adapter_scale(ours, multiplier), peft_rescale(theirs, multiplier):
            torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, rtol=0, atol=1e-6)
    with rescale_adapter_scale(ours, 0):  # 0: the base model's outputs
        torch.testing.assert_close(ours(ids).logits, tiny_llama()(ids).logits, rtol=0, atol=1e-6)
    assert torch.equal(ours(ids).logits, trained)  # the scaling came back
    with pytest.raises(RuntimeError), rescale_adapter_scale(ours, 3):
        raise RuntimeError("a failing cell")
    assert all(layer.scaling == 2.0 for _, layer in lora_layers(ours))  # restored after an error too


def test_rescale_adapter_scale_refuses_bad_input():
    model = inject_lora(tiny_llama(), LoraConfig(r=4, lora_alpha=8))
    for bad in (float("nan"), float("inf"), "2", True, None):
        with pytest.raises(ValueError, match="finite number"), rescale_adapter_scale(model, bad):
            pass
    with pytest.raises(ValueError, match="no LoRA layers"), rescale_adapter_scale(tiny_llama(), 2):
        pass
    next(lora_layers(model))[1].merge()
    with pytest.raises(ValueError, match="merged.*unmerge"), rescale_adapter_scale(model, 2):
        pass
    assert all(layer.scaling == 2.0 for _, layer in lora_layers(model))  # a refusal changes nothing


def test_unload_gives_the_plain_model_back():
    reference = tiny_llama()
    model = inject_lora(tiny_llama(), LoraConfig(target_modules="all-linear"))
    assert unload(model) is model and not list(lora_layers(model))
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2), k1  # nothing was merged: bitwise the original
    model = inject_lora(tiny_llama(), LoraConfig())
    for _, layer in lora_layers(model):
        nn.init.normal_(layer.lora_B.weight)
        layer.merge()
    unload(model)  # unmerges first: the original weights, up to float rounding
    for (k1, v1), (_, v2) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
        torch.testing.assert_close(v1, v2, rtol=0, atol=1e-5, msg=k1)


@pytest.mark.parametrize("config", [
    {}, {"target_modules": "all-linear", "r": 16}, {"r": 2, "target_modules": ["gate_proj", "up_proj"]},
])
def test_trainable_counts_match_peft(config, capsys):
    ours, theirs = both(**config)
    assert trainable_parameters(ours) == theirs.get_nb_trainable_parameters()
    print_trainable_parameters(ours)
    theirs.print_trainable_parameters()
    mine, peft_line = capsys.readouterr().out.splitlines()
    assert mine == peft_line and mine.startswith("trainable params: ")
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in ours.named_parameters() if ".lora_A." in n or ".lora_B." in n}


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_bias_modes_match_peft_on_a_plain_module(bias):
    ours = inject_lora(mlp(), LoraConfig(r=2, target_modules=["0", "2"], bias=bias))
    theirs = peft.get_peft_model(mlp(), peft.LoraConfig(r=2, target_modules=["0", "2"], bias=bias))
    assert trainable_parameters(ours) == theirs.get_nb_trainable_parameters()
    trainable_theirs = {n.removeprefix(PEFT_PREFIX).replace(".default", "")
                        for n, p in theirs.named_parameters() if p.requires_grad}
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == trainable_theirs


def test_parameter_arithmetic():
    assert lora_parameter_count(4096, 4096, 8) == 65_536  # the seed's example
    assert compression_ratio(4096, 4096, 8) == 256.0
    # LoRA paper section 5.1: GPT-3 (d_model 12,288, 96 layers), W_q and W_v at r = 8 -> 37.7M parameters.
    assert 96 * 2 * lora_parameter_count(12_288, 12_288, 8) == 37_748_736
    assert lora_parameter_count(576, 192, 8) == 8 * (576 + 192)  # a non-square matrix (SmolLM2's k_proj)
    model = inject_lora(tiny_llama(), LoraConfig(r=4, target_modules="all-linear"))
    expected = sum(lora_parameter_count(m.in_features, m.out_features, 4) for _, m in lora_layers(model))
    assert trainable_parameters(model)[0] == expected


# --- bad input ----------------------------------------------------------------------------------------

def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    assert not list(lora_layers(model))
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_no_match_lists_the_linear_layers():
    model = tiny_llama()
    before = state(model)
    with pytest.raises(ValueError, match="matched no module") as info:
        inject_lora(model, LoraConfig(target_modules=["query", "value"]))  # BERT's names on a Llama
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="matched no module"):
        inject_lora(model, LoraConfig(target_modules="q_proj"))  # a regex must match the WHOLE name
    assert_unchanged(model, before)


def test_a_target_that_is_not_linear_is_refused():
    model = tiny_llama()
    before = state(model)
    with pytest.raises(TypeError, match="'model.layers.0.self_attn', a LlamaAttention, not an nn.Linear"):
        inject_lora(model, LoraConfig(target_modules=["self_attn"]))
    with pytest.raises(TypeError, match="not an nn.Linear"):  # the regex also catches containers
        inject_lora(model, LoraConfig(target_modules=r"model\.layers\.0\..*"))
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="is not supported"):  # PEFT refuses it too
        peft.get_peft_model(tiny_llama(), peft.LoraConfig(target_modules=["self_attn"]))


def test_injecting_twice_is_refused_and_changes_nothing():
    model = inject_lora(tiny_llama(), LoraConfig())
    before = state(model)
    for config in (LoraConfig(), LoraConfig(target_modules="all-linear")):
        with pytest.raises(ValueError, match="already has 4 LoRA layers"):
            inject_lora(model, config)
    assert state(model).keys() == before.keys() and len(list(lora_layers(model))) == 4
    peft_model = peft.get_peft_model(tiny_llama(), peft.LoraConfig())
    with pytest.raises(ValueError, match="already has"):  # PEFT's LoRA layers count too
        inject_lora(peft_model.base_model.model, LoraConfig())


def test_rank_too_large_for_a_layer_is_refused_before_any_change():
    model = tiny_llama()  # hidden 32; k_proj and v_proj map 32 -> 16
    before = state(model)
    with pytest.raises(ValueError, match=r"r=20 is larger than min\(in, out\) = 16 for 'model.layers.0.self_attn.k_proj'"):
        inject_lora(model, LoraConfig(r=20, target_modules="all-linear"))
    assert_unchanged(model, before)


def test_functions_that_need_lora_layers_say_so():
    model = tiny_llama()
    for fn in (mark_only_lora_as_trainable, merge_and_unload, unload):
        with pytest.raises(ValueError, match="no LoRA layers"):
            fn(model)
    with pytest.raises(ValueError, match="bias must be"):
        mark_only_lora_as_trainable(inject_lora(tiny_llama(), LoraConfig()), bias="some")


def test_unknown_architecture_needs_explicit_targets():
    with pytest.raises(ValueError, match="No default target_modules") as info:
        inject_lora(mlp(), LoraConfig())
    assert "['0', '2', '4']" in str(info.value)


def test_merge_and_unload_merges_layers_already_merged_once():
    model = inject_lora(tiny_llama(), LoraConfig())
    layer = next(layer for _, layer in lora_layers(model))
    nn.init.normal_(layer.lora_B.weight)
    layer.merge()
    expected = layer.base_layer.weight.clone()
    merge_and_unload(model)  # must not add the update a second time
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, expected)
    assert isinstance(layer, LoraLinear)


# --- issue 13: modes, tied weights, all-or-nothing merges ----------------------------------------------

def test_inject_lora_keeps_an_eval_model_in_eval_mode():
    """The new LoraLinear layers used to start in train mode inside an eval model: dropout stayed active."""
    model = tiny_llama().eval()
    inject_lora(model, LoraConfig(r=4, lora_dropout=0.5, target_modules="all-linear", init_lora_weights=False))
    assert not any(m.training for m in model.modules())
    ids = torch.arange(10).view(1, -1)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, model(ids).logits, rtol=0, atol=0)
    model.train()  # and a model in train mode gets layers in train mode
    assert all(m.training for _, m in lora_layers(model))


def test_merging_a_lora_on_a_tied_head_is_refused_and_changes_nothing():
    """SmolLM2 (and tiny_llama) tie lm_head to embed_tokens: merging into one would change the other."""
    model = tiny_llama()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    inject_lora(model, LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False))
    embed = model.model.embed_tokens.weight.clone()
    q_before = model.model.layers[0].self_attn.q_proj.base_layer.weight.clone()
    with pytest.raises(ValueError, match="tied"):
        merge_and_unload(model)
    assert torch.equal(model.model.embed_tokens.weight, embed)
    assert torch.equal(model.model.layers[0].self_attn.q_proj.base_layer.weight, q_before)
    assert len(list(lora_layers(model))) == 3  # nothing merged, nothing unloaded


def test_merge_and_unload_checks_every_layer_before_merging_any():
    """A NaN in the last layer used to be found after 13 of 14 layers were merged and unloaded."""
    model = tiny_llama()
    inject_lora(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    layers = list(lora_layers(model))
    with torch.no_grad():
        layers[-1][1].lora_B.weight[0, 0] = float("nan")
    weights = [layer.base_layer.weight.clone() for _, layer in layers]
    with pytest.raises(ValueError, match="NaN/Inf"):
        merge_and_unload(model)
    assert [name for name, _ in lora_layers(model)] == [name for name, _ in layers]
    for (_, layer), before in zip(layers, weights, strict=True):
        assert not layer.merged and torch.equal(layer.base_layer.weight, before)


def test_a_bad_regex_in_find_target_modules_is_a_clear_error():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        find_target_modules(tiny_llama(), r".*(q_proj")


def test_a_quantized_linear_layer_gets_an_error_that_names_prepare_qlora():
    """Loading an adapter into an NF4 base used to say 'Target the linear layers inside it'."""
    from lora_edu.qlora import quantize_model

    model = quantize_model(tiny_llama())
    with pytest.raises(TypeError, match="prepare_qlora"):
        inject_lora(model, LoraConfig(r=4, target_modules=["q_proj"]))


# --- one step further (issue 13): the same kind of raw exception elsewhere in the module ------------------

def test_model_functions_give_clear_errors_for_wrong_arguments():
    with pytest.raises(TypeError, match=r"LoraConfig\(\*\*"):
        inject_lora(tiny_llama(), {"r": 4})
    with pytest.raises(TypeError, match="nn.Module"):
        merge_and_unload("model")
    with pytest.raises(ValueError, match="no parameters"):
        print_trainable_parameters(nn.Sequential())
    with pytest.raises(ValueError, match="positive"):
        compression_ratio(0, 0, 0)
    with pytest.raises(ValueError, match="positive"):
        lora_parameter_count(4096, -1, 8)
