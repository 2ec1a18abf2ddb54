"""LoraLinear: the same numbers as PEFT's LoRA layer, the LoRA properties, and a clear error per bad input."""

import copy
import math

import peft
import pytest
import torch
from peft.tuners.lora import Linear as PeftLoraLinear
from torch import nn

from lora_edu.layers import LoraLinear


def make_pair(in_f, out_f, r, alpha, use_rslora=False, seed=0, bias=True):
    """Our layer and PEFT's around copies of one base layer, with the same random (nonzero) A and B."""
    torch.manual_seed(seed)
    base = nn.Linear(in_f, out_f, bias=bias)
    ours = LoraLinear(copy.deepcopy(base), r, alpha, use_rslora=use_rslora)
    config = peft.LoraConfig(r=r, lora_alpha=alpha, use_rslora=use_rslora)
    theirs = PeftLoraLinear(copy.deepcopy(base), "default", config=config, r=r, lora_alpha=alpha)
    with torch.no_grad():
        ours.lora_A.weight.normal_()
        ours.lora_B.weight.normal_()  # nonzero B, so the update is not trivially zero
        theirs.lora_A["default"].weight.copy_(ours.lora_A.weight)
        theirs.lora_B["default"].weight.copy_(ours.lora_B.weight)
    return base, ours, theirs


# Same arithmetic (the same nn.Linear calls in the same order, the same float scaling), so bitwise equal.
SHAPES = [(7, 13), (13, 7), (32, 32), (5, 64)]


@pytest.mark.parametrize("in_f, out_f", SHAPES)
@pytest.mark.parametrize("r", [1, 2, 5])
@pytest.mark.parametrize("use_rslora", [False, True])
def test_matches_peft_forward_delta_and_merge(in_f, out_f, r, use_rslora):
    _, ours, theirs = make_pair(in_f, out_f, r, alpha=16, use_rslora=use_rslora)
    assert ours.scaling == theirs.scaling["default"]
    x = torch.randn(3, 4, in_f)
    assert torch.equal(ours(x), theirs(x))
    assert torch.equal(ours.get_delta_weight(), theirs.get_delta_weight("default"))
    ours.merge()
    theirs.merge()
    assert torch.equal(ours.base_layer.weight, theirs.base_layer.weight)
    assert torch.equal(ours(x), theirs(x))  # both use only the merged base layer now
    ours.unmerge()
    theirs.unmerge()
    assert torch.equal(ours.base_layer.weight, theirs.base_layer.weight)


def test_scaling_rules():
    base = nn.Linear(64, 64)
    assert LoraLinear(base, r=16, lora_alpha=32).scaling == 2.0
    assert LoraLinear(nn.Linear(64, 64), r=16, lora_alpha=32, use_rslora=True).scaling == 32 / math.sqrt(16)


@pytest.mark.parametrize("init", [True, "gaussian", False])
def test_same_seed_same_init_as_peft(init):
    base = nn.Linear(24, 40)
    torch.manual_seed(3)
    ours = LoraLinear(copy.deepcopy(base), 4, 8, init_lora_weights=init)
    torch.manual_seed(3)
    config = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=init)
    theirs = PeftLoraLinear(copy.deepcopy(base), "default", config=config, r=4, lora_alpha=8)
    assert torch.equal(ours.lora_A.weight, theirs.lora_A["default"].weight)
    assert torch.equal(ours.lora_B.weight, theirs.lora_B["default"].weight)
    assert (torch.count_nonzero(ours.lora_B.weight) == 0) == bool(init)  # B = 0 unless init is False


def test_init_kinds():
    torch.manual_seed(0)
    layer = LoraLinear(nn.Linear(256, 128), r=8, lora_alpha=8)
    bound = 1 / math.sqrt(256)  # kaiming_uniform with a = sqrt(5) is U(-1/sqrt(in), 1/sqrt(in))
    assert layer.lora_A.weight.abs().max() <= bound and layer.lora_A.weight.abs().max() > 0.9 * bound
    gauss = LoraLinear(nn.Linear(256, 128), r=8, lora_alpha=8, init_lora_weights="gaussian")
    assert abs(gauss.lora_A.weight.std().item() - 1 / 8) < 0.01
    x = torch.randn(5, 256)
    for lay in (layer, gauss):  # B = 0: the adapted layer starts exactly equal to its base layer
        assert torch.count_nonzero(lay.lora_B.weight) == 0
        assert torch.equal(lay(x), lay.base_layer(x))
    debug = LoraLinear(nn.Linear(256, 128), r=8, lora_alpha=8, init_lora_weights=False)
    assert not torch.allclose(debug(x), debug.base_layer(x))


def test_shapes_freezing_and_gradients():
    _, layer, _ = make_pair(20, 12, r=3, alpha=6)
    assert layer.lora_A.weight.shape == (3, 20) and layer.lora_B.weight.shape == (12, 3)
    assert layer.get_delta_weight().shape == (12, 20)
    torch.testing.assert_close(layer.get_delta_weight(), 2.0 * layer.lora_B.weight @ layer.lora_A.weight)
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A.weight", "lora_B.weight"}
    layer(torch.randn(4, 20)).sum().backward()
    assert layer.lora_A.weight.grad is not None and layer.lora_B.weight.grad is not None
    assert layer.base_layer.weight.grad is None
    assert set(layer.state_dict()) == {"base_layer.weight", "base_layer.bias", "lora_A.weight", "lora_B.weight"}


def test_dropout_is_on_the_lora_path_only():
    torch.manual_seed(0)
    layer = LoraLinear(nn.Linear(16, 16), r=4, lora_alpha=4, lora_dropout=0.5)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(8, 16)
    layer.train()
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)
    dropped = nn.functional.dropout(x, p=0.5, training=True)  # the same random mask as inside forward
    expected = layer.base_layer(x) + layer.lora_B(layer.lora_A(dropped)) * layer.scaling
    assert torch.equal(out, expected)
    layer.eval()  # no dropout at eval time
    assert torch.equal(layer(x), layer.base_layer(x) + layer.lora_B(layer.lora_A(x)) * layer.scaling)


def test_merge_unmerge_round_trip():
    base, layer, _ = make_pair(48, 24, r=4, alpha=8)
    x = torch.randn(6, 48)
    before = layer(x)
    layer.merge()
    assert layer.merged
    # (W0 + BA) x and W0 x + B(Ax) round differently in float32, so close, not bitwise equal.
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(x), base(x) + x @ layer.get_delta_weight().T, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    assert not layer.merged
    # W0 + d - d is W0 only up to rounding of the addition.
    torch.testing.assert_close(layer.base_layer.weight, base.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)  # same rounding slack as the weight


def test_16bit_base_keeps_fp32_adapters_like_get_peft_model():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 8)).to(torch.bfloat16)
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"]))
    ours = LoraLinear(copy.deepcopy(base[0]), r=4, lora_alpha=8)
    peft_layer = theirs.base_model.model[0]
    assert ours.lora_A.weight.dtype == peft_layer.lora_A["default"].weight.dtype == torch.float32
    with torch.no_grad():
        ours.lora_A.weight.normal_()
        ours.lora_B.weight.normal_()
        peft_layer.lora_A["default"].weight.copy_(ours.lora_A.weight)
        peft_layer.lora_B["default"].weight.copy_(ours.lora_B.weight)
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    out = ours(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, peft_layer(x))
    ours.merge()
    peft_layer.merge()
    assert torch.equal(ours.base_layer.weight, peft_layer.base_layer.weight)


def test_repr_is_readable():
    text = repr(LoraLinear(nn.Linear(32, 16), r=4, lora_alpha=8, use_rslora=True))
    for piece in ("LoraLinear(", "in_features=32", "out_features=16", "r=4", "lora_alpha=8",
                  "scaling=4 (lora_alpha/sqrt(r))", "merged=False", "(16, 4) @ (4, 32)", "192 trainable",
                  "(base_layer): Linear", "(lora_A): Linear", "(lora_B): Linear"):
        assert piece in text, piece


# --- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    ({"r": 0}, "r must be >= 1"),
    ({"r": 9}, "larger than min(in_features, out_features)"),  # 8 x 20 layer: rank at most 8
    ({"lora_alpha": 0}, "lora_alpha must be > 0"),
    ({"lora_alpha": -1.0}, "lora_alpha must be > 0"),
    ({"lora_dropout": 1.0}, "[0, 1)"),
    ({"lora_dropout": -0.5}, "[0, 1)"),
])
def test_bad_hyperparameters(kwargs, words):
    args = {"r": 4, "lora_alpha": 8} | kwargs
    with pytest.raises(ValueError) as info:
        LoraLinear(nn.Linear(20, 8), **args)
    assert words in str(info.value)


def test_r_equal_to_min_dimension_is_allowed():
    assert LoraLinear(nn.Linear(20, 8), r=8, lora_alpha=8).r == 8


def test_base_must_be_a_plain_linear():
    with pytest.raises(TypeError, match="wraps an nn.Linear, got Conv1d"):
        LoraLinear(nn.Conv1d(4, 4, 1), r=2, lora_alpha=2)
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        LoraLinear(LoraLinear(nn.Linear(8, 8), r=2, lora_alpha=2), r=2, lora_alpha=2)


def test_merge_twice_and_unmerge_unmerged_are_refused():
    _, layer, _ = make_pair(8, 8, r=2, alpha=2)
    with pytest.raises(ValueError, match="not merged"):
        layer.unmerge()
    layer.merge()
    weight = layer.base_layer.weight.clone()
    with pytest.raises(ValueError, match="already merged"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, weight) and layer.merged


@pytest.mark.parametrize("which, value", [("lora_A", float("nan")), ("lora_B", float("inf")),
                                          ("lora_B", float("-inf"))])
def test_merge_refuses_a_non_finite_update_and_leaves_the_base_alone(which, value):
    _, layer, _ = make_pair(8, 6, r=2, alpha=2)
    with torch.no_grad():
        getattr(layer, which).weight[0, 1] = value
    weight = layer.base_layer.weight.clone()
    with pytest.raises(ValueError, match="NaN/Inf entries"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, weight) and not layer.merged


def test_merge_refuses_an_overflow_in_a_16bit_base():
    base = nn.Linear(4, 4).to(torch.float16)
    with torch.no_grad():
        base.weight.fill_(60000.0)  # fp16 max is 65504
    layer = LoraLinear(base, r=2, lora_alpha=2)
    with torch.no_grad():
        layer.lora_A.weight.fill_(100.0)
        layer.lora_B.weight.fill_(100.0)  # delta = 2 * 100 * 100 = 20000 per entry: finite, but W0 + delta is not
    with pytest.raises(ValueError, match="overflows"):
        layer.merge()
    assert torch.all(layer.base_layer.weight == 60000.0) and not layer.merged
