"""DoRA in LoraLinear: the paper's formula, PEFT's numbers (layer, model, adapter files), and clear errors.

Tolerances: our forward computes the weight norm from ``B @ A``; PEFT's forward forms the same product as
``lora_B(lora_A(eye)).T`` (a workaround for FSDP), which rounds differently for some shapes (measured: at
most 1 float32 ulp in the norm, 1.2e-7 in outputs of size ~1). Where only that differs, the comparison is
``assert_close`` at float32's default tolerances; where the arithmetic is the same (the magnitude at init,
``get_delta_weight``, merge and unmerge, which both compute from ``B @ A``), it is bitwise.
"""

import copy
import json
import re

import peft
import pytest
import torch
from peft.tuners.lora import Linear as PeftLoraLinear
from safetensors.torch import load_file
from torch import nn

from lora_edu import (
    LoraConfig,
    LoraLinear,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_and_unload,
    save_adapter,
    trainable_parameters,
    unload,
)
from lora_edu.io import CONFIG_NAME, WEIGHTS_NAME
from lora_edu.pretrained import tiny_llama

PEFT_PREFIX = "base_model.model."


def make_pair(in_f, out_f, r, alpha=16, use_rslora=False, bias=True, lora_dropout=0.0, dtype=torch.float32):
    """Our DoRA layer and PEFT's around copies of one base layer, with the same random A, B and m."""
    torch.manual_seed(0)
    base = nn.Linear(in_f, out_f, bias=bias).to(dtype)
    ours = LoraLinear(copy.deepcopy(base), r, alpha, lora_dropout=lora_dropout, use_rslora=use_rslora,
                      use_dora=True)
    config = peft.LoraConfig(r=r, lora_alpha=alpha, use_dora=True, use_rslora=use_rslora,
                             lora_dropout=lora_dropout)
    theirs = PeftLoraLinear(copy.deepcopy(base), "default", config=config, r=r, lora_alpha=alpha,
                            lora_dropout=lora_dropout, use_rslora=use_rslora)
    # m at init is ||W0|| per output row in both, computed the same way: bitwise equal
    assert torch.equal(ours.lora_magnitude_vector.weight, theirs.lora_magnitude_vector["default"].weight)
    with torch.no_grad():
        ours.lora_A.weight.normal_()
        ours.lora_B.weight.normal_()  # nonzero B and m != ||W0 + sBA||: every term of the formula matters
        ours.lora_magnitude_vector.weight.mul_(torch.rand(out_f) + 0.5)
        theirs.lora_A["default"].weight.copy_(ours.lora_A.weight)
        theirs.lora_B["default"].weight.copy_(ours.lora_B.weight)
        theirs.lora_magnitude_vector["default"].weight.copy_(ours.lora_magnitude_vector.weight)
    return base, ours, theirs


SHAPES = [(7, 13), (13, 7), (32, 32), (64, 5)]


@pytest.mark.parametrize("in_f, out_f", SHAPES)
@pytest.mark.parametrize("use_rslora", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_peft_forward_gradients_delta_merge(in_f, out_f, use_rslora, bias):
    _, ours, theirs = make_pair(in_f, out_f, r=3, use_rslora=use_rslora, bias=bias)
    assert ours.scaling == theirs.scaling["default"]
    x = torch.randn(3, 4, in_f)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs)  # B @ A vs lora_B(lora_A(eye)).T: see the module doc
    (out_ours ** 2).sum().backward()
    (out_theirs ** 2).sum().backward()
    for part in ("lora_A", "lora_B", "lora_magnitude_vector"):
        ours_grad, theirs_grad = getattr(ours, part).weight.grad, getattr(theirs, part)["default"].weight.grad
        torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=1e-5)
    assert ours.base_layer.weight.grad is None
    assert torch.equal(ours.get_delta_weight(), theirs.get_delta_weight("default"))
    ours.merge()
    theirs.merge()
    assert torch.equal(ours.base_layer.weight, theirs.base_layer.weight)  # same arithmetic: bitwise
    assert torch.equal(ours(x), theirs(x))  # both are the merged base layer now
    ours.unmerge()
    theirs.unmerge()
    assert torch.equal(ours.base_layer.weight, theirs.base_layer.weight)


def test_matches_peft_with_dropout_in_training():
    _, ours, theirs = make_pair(16, 12, r=4, lora_dropout=0.5)
    ours.train()
    theirs.train()
    x = torch.randn(5, 16)
    torch.manual_seed(7)
    out_ours = ours(x)
    torch.manual_seed(7)  # the same dropout mask: DoRA's correction term also sees the dropped x
    torch.testing.assert_close(out_ours, theirs(x))


def test_16bit_base_matches_peft():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 8)).to(torch.bfloat16)
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"],
                                                                     use_dora=True))
    ours = LoraLinear(copy.deepcopy(base[0]), r=4, lora_alpha=8, use_dora=True)
    layer = theirs.base_model.model[0]
    assert ours.lora_magnitude_vector.weight.dtype == torch.float32  # fp32 adapters on a 16-bit base, as PEFT
    # A deliberate difference: PEFT computes m = ||W0|| in bf16 and then upcasts it, while its forward takes
    # the norm in fp32, so its layer starts off W0 by a bf16 rounding; ours computes m in fp32 and starts
    # exactly at W0.
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    peft_m = layer.lora_magnitude_vector["default"].weight
    assert torch.equal(peft_m, torch.linalg.norm(base[0].weight, dim=1).float())  # bf16 norm, upcast
    torch.testing.assert_close(ours.lora_magnitude_vector.weight, peft_m, rtol=4e-3, atol=0)  # bf16: 8 bits
    assert torch.equal(ours(x), base(x)) and not torch.equal(layer(x), base(x))
    with torch.no_grad():
        ours.lora_B.weight.normal_()
        layer.lora_A["default"].weight.copy_(ours.lora_A.weight)
        layer.lora_B["default"].weight.copy_(ours.lora_B.weight)
        peft_m.copy_(ours.lora_magnitude_vector.weight)
    out = ours(x)
    assert out.dtype == torch.bfloat16
    # outputs ~1: the fp32 ulp of the module doc can flip the final bf16 rounding (bf16 ulp 0.0078 at 1)
    torch.testing.assert_close(out, layer(x), rtol=0, atol=0.02)
    ours.merge()
    layer.merge()
    assert torch.equal(ours.base_layer.weight, layer.base_layer.weight)


# --- the DoRA formula, from the paper -----------------------------------------------------------------


def test_starts_equal_to_the_base_layer_with_row_norms():
    torch.manual_seed(0)
    base = nn.Linear(24, 10)  # in != out, so a norm over the wrong dimension would not even fit
    layer = LoraLinear(copy.deepcopy(base), r=4, lora_alpha=8, use_dora=True)
    m = layer.lora_magnitude_vector.weight
    assert m.shape == (10,) and m.requires_grad
    assert torch.equal(m, torch.linalg.norm(base.weight, dim=1))  # one magnitude per output feature (row)
    assert torch.linalg.norm(base.weight, dim=0).shape == (24,)  # the convention trap: per input column
    x = torch.randn(6, 24)
    assert torch.equal(layer(x), base(x))  # m / ||W0|| is exactly 1 and B = 0: exactly the base output


def test_forward_is_the_papers_formula():
    base, layer, _ = make_pair(20, 12, r=3, alpha=6)
    W = base.weight + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight  # W0 + s B A, (out, in)
    m = layer.lora_magnitude_vector.weight.detach()
    W_dora = m[:, None] * W / torch.linalg.norm(W, dim=1, keepdim=True)  # each row i rescaled to length m_i
    x = torch.randn(5, 20)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, W_dora, base.bias))
    torch.testing.assert_close(torch.linalg.norm(W_dora, dim=1), m)  # the rows have the magnitudes as norms
    # Norm over the other dimension (per input column) is a different layer: same shapes here, other numbers.
    W_trap = W / torch.linalg.norm(W, dim=0, keepdim=True)
    assert not torch.allclose(nn.functional.linear(x, W_trap, base.bias), layer(x), atol=1e-3)


def test_the_norm_is_detached_in_the_backward_pass():
    base, layer, _ = make_pair(10, 8, r=2, alpha=4)
    x = torch.randn(4, 10)
    A = layer.lora_A.weight.detach().clone().requires_grad_()
    B = layer.lora_B.weight.detach().clone().requires_grad_()
    m = layer.lora_magnitude_vector.weight.detach()

    def reference(detach):
        W = base.weight + layer.scaling * B @ A
        norm = torch.linalg.norm(W, dim=1, keepdim=True)
        return nn.functional.linear(x, m[:, None] * W / (norm.detach() if detach else norm), base.bias)

    layer(x).square().sum().backward()
    grads = {}
    for detach in (True, False):
        A.grad = None
        reference(detach).square().sum().backward()
        grads[detach] = A.grad.clone()
    torch.testing.assert_close(layer.lora_A.weight.grad, grads[True])  # section 4.3: n is a constant
    assert not torch.allclose(layer.lora_A.weight.grad, grads[False], atol=1e-4)  # the full gradient differs


def test_merge_unmerge_round_trip():
    base, layer, _ = make_pair(48, 24, r=4, alpha=8)
    x = torch.randn(6, 48)
    before = layer(x)
    layer.merge()
    assert layer.merged
    # m/n * (W0 + sBA) as one matrix rounds differently from the correction form: close, not bitwise.
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.linalg.norm(layer.base_layer.weight, dim=1),
                               layer.lora_magnitude_vector.weight.detach())  # merged rows have norms m
    layer.unmerge()
    assert not layer.merged and layer.merged_weight_norm is None
    # W0 comes back up to the rounding of one multiply, one divide and one subtraction (measured 2.4e-6 here)
    torch.testing.assert_close(layer.base_layer.weight, base.weight, rtol=0, atol=1e-5)
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)


def test_reset_puts_the_magnitude_back_to_the_base_norms():
    base, layer, _ = make_pair(12, 6, r=2)
    layer.reset_lora_parameters(True)
    assert torch.equal(layer.lora_magnitude_vector.weight, torch.linalg.norm(base.weight, dim=1))
    x = torch.randn(3, 12)
    assert torch.equal(layer(x), base(x))


def test_repr_and_state_dict():
    layer = LoraLinear(nn.Linear(32, 16), r=4, lora_alpha=8, use_dora=True)
    text = repr(layer)
    assert "DoRA: W' = m * (W0 + delta_W) / ||W0 + delta_W||, m (16,)" in text
    assert "208 trainable" in text  # 4 * (32 + 16) + 16
    assert list(layer.state_dict()) == ["base_layer.weight", "base_layer.bias", "lora_A.weight",
                                        "lora_B.weight", "lora_magnitude_vector.weight"]  # no merge-time norm


# --- whole model: inject, count, merge, against get_peft_model -----------------------------------------


def to_peft_key(key):
    """Our state-dict key -> PEFT's in-memory key: the wrapper prefix plus the adapter name."""
    return PEFT_PREFIX + re.sub(r"\.(lora_[AB]|lora_magnitude_vector)\.", r".\1.default.", key)


def our_name(peft_name):
    """PEFT's in-memory parameter name -> ours: no wrapper prefix, no adapter name."""
    return peft_name.removeprefix(PEFT_PREFIX).replace(".default.", ".")


def both(**config):
    torch.manual_seed(1)
    ours = inject_lora(tiny_llama(), LoraConfig(use_dora=True, **config))
    torch.manual_seed(1)
    theirs = peft.get_peft_model(tiny_llama(), peft.LoraConfig(use_dora=True, **config))
    torch.manual_seed(2)
    with torch.no_grad():  # nonzero B and m != ||W0||, the same in both
        for name, layer in lora_layers(ours):
            peft_layer = theirs.get_submodule(PEFT_PREFIX + name)
            layer.lora_B.weight.normal_(std=0.2)
            m = layer.lora_magnitude_vector.weight
            m.mul_(1 + 0.1 * torch.randn_like(m))
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B.weight)
            peft_layer.lora_magnitude_vector["default"].weight.copy_(layer.lora_magnitude_vector.weight)
    return ours, theirs


IDS = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(0))


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_model_matches_get_peft_model():
    ours, theirs = both(r=4, lora_alpha=8, target_modules="all-linear")
    assert [to_peft_key(k) for k in ours.state_dict()] == list(theirs.state_dict())  # names and order
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    peft_trainable = {our_name(n) for n, p in theirs.named_parameters() if p.requires_grad}
    assert trainable == peft_trainable and sum("lora_magnitude_vector" in n for n in trainable) == 14
    assert trainable_parameters(ours) == theirs.get_nb_trainable_parameters()
    for name, layer in lora_layers(ours):  # same seed: the same A; m computed the same way
        peft_layer = theirs.get_submodule(PEFT_PREFIX + name)
        assert torch.equal(layer.lora_A.weight, peft_layer.lora_A["default"].weight)
    unmerged = logits(ours)
    torch.testing.assert_close(unmerged, logits(theirs))
    assert not torch.allclose(unmerged, logits(tiny_llama()), atol=1e-3)
    merged_ours, merged_theirs = merge_and_unload(ours), theirs.merge_and_unload()
    for (k1, v1), (k2, v2) in zip(merged_ours.state_dict().items(), merged_theirs.state_dict().items(),
                                  strict=True):
        assert k1 == k2 and torch.equal(v1, v2), k1  # merging is the same arithmetic: bitwise
    torch.testing.assert_close(logits(merged_ours), unmerged, rtol=1e-4, atol=1e-5)


def test_unload_gives_w0_back():
    ours, _ = both(r=2, target_modules=["q_proj", "down_proj"])
    for _, layer in lora_layers(ours):
        layer.merge()
    plain = unload(ours)
    for (k1, v1), (k2, v2) in zip(plain.state_dict().items(), tiny_llama().state_dict().items(), strict=True):
        assert k1 == k2
        torch.testing.assert_close(v1, v2, rtol=0, atol=1e-5)  # up to the rounding of merge + unmerge


# --- adapter files -----------------------------------------------------------------------------------


def test_peft_loads_our_dora_adapter(tmp_path):
    ours, _ = both(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"])
    save_adapter(ours, tmp_path / "dora")
    config = json.loads((tmp_path / "dora" / CONFIG_NAME).read_text())
    assert config["use_dora"] is True
    tensors = load_file(tmp_path / "dora" / WEIGHTS_NAME)
    magnitudes = [k for k in tensors if k.endswith(".lora_magnitude_vector")]  # PEFT's file key: no ".weight"
    assert len(magnitudes) == 6 and len(tensors) == 18
    key = PEFT_PREFIX + "model.layers.0.mlp.up_proj.lora_magnitude_vector"
    assert tensors[key].shape == (72,)  # one per output feature of up_proj (32 -> 72)
    theirs = peft.PeftModel.from_pretrained(tiny_llama(), tmp_path / "dora")
    assert theirs.peft_config["default"].use_dora
    for name, layer in lora_layers(ours):
        assert torch.equal(theirs.get_submodule(PEFT_PREFIX + name).lora_magnitude_vector["default"].weight,
                           layer.lora_magnitude_vector.weight)
    torch.testing.assert_close(logits(theirs), logits(ours))  # B @ A vs lora_B(lora_A(eye)): see module doc


def test_we_load_a_peft_dora_adapter(tmp_path):
    _, theirs = both(r=2, lora_alpha=4, use_rslora=True, target_modules=["k_proj", "o_proj"])
    theirs.save_pretrained(tmp_path / "peft")
    model = load_adapter(tiny_llama(), tmp_path / "peft")
    assert all(layer.use_dora and layer.use_rslora for _, layer in lora_layers(model))
    for name, layer in lora_layers(model):
        assert torch.equal(layer.lora_magnitude_vector.weight,
                           theirs.get_submodule(PEFT_PREFIX + name).lora_magnitude_vector["default"].weight)
    assert all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())
    torch.testing.assert_close(logits(model), logits(theirs))
    save_adapter(model, tmp_path / "again")  # and back out: the same tensors under the same keys
    again = load_file(tmp_path / "again" / WEIGHTS_NAME)
    original = load_file(tmp_path / "peft" / WEIGHTS_NAME)
    assert again.keys() == original.keys() and all(torch.equal(again[k], original[k]) for k in again)


def test_a_dora_file_without_magnitudes_is_refused(tmp_path):
    ours, _ = both(r=2, target_modules=["q_proj"])
    save_adapter(ours, tmp_path / "a")
    config = json.loads((tmp_path / "a" / CONFIG_NAME).read_text())
    (tmp_path / "a" / CONFIG_NAME).write_text(json.dumps({**config, "use_dora": False}))
    with pytest.raises(ValueError, match=r"2 unexpected .*lora_magnitude_vector"):
        load_adapter(tiny_llama(), tmp_path / "a")


# --- bad input -----------------------------------------------------------------------------------------


def test_a_zero_row_in_the_weight_is_refused():
    base = nn.Linear(8, 6)
    with torch.no_grad():
        base.weight[3] = 0.0  # a pruned output unit: ||W0|| = 0 for row 3
    with pytest.raises(ValueError, match=r"rows \[3\] \(of 6\) are all zero.*use_dora=False"):
        LoraLinear(base, r=2, lora_alpha=2, use_dora=True)
    assert LoraLinear(base, r=2, lora_alpha=2).r == 2  # plain LoRA has no norm to divide by


def test_merge_refuses_a_zero_row_and_leaves_the_base_alone():
    layer = LoraLinear(nn.Linear(8, 6), r=2, lora_alpha=2, use_dora=True)
    with torch.no_grad():  # after training, W0 + sBA could in principle lose a whole row
        layer.base_layer.weight[1] = 0.0
        layer.lora_B.weight[1] = 0.0
    weight = layer.base_layer.weight.clone()
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, weight) and not layer.merged


def test_unmerging_dora_that_was_never_merged():
    _, layer, _ = make_pair(8, 8, r=2)
    weight = layer.base_layer.weight.clone()
    with pytest.raises(ValueError, match="not merged, so there is nothing to unmerge"):
        layer.unmerge()
    layer.merged = True  # set by hand: there is no norm from a merge to undo it with
    with pytest.raises(ValueError, match="no record of the norm"):
        layer.unmerge()
    assert torch.equal(layer.base_layer.weight, weight)


def test_merging_twice_is_refused():
    _, layer, _ = make_pair(8, 8, r=2)
    layer.merge()
    weight = layer.base_layer.weight.clone()
    with pytest.raises(ValueError, match="already merged"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, weight)


def test_a_plain_file_that_claims_dora_is_refused(tmp_path):
    torch.manual_seed(0)
    save_adapter(inject_lora(tiny_llama(), LoraConfig(r=2, target_modules=["v_proj"])), tmp_path / "a")
    config = json.loads((tmp_path / "a" / CONFIG_NAME).read_text())
    (tmp_path / "a" / CONFIG_NAME).write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ValueError, match=r"2 missing .*lora_magnitude_vector"):
        load_adapter(tiny_llama(), tmp_path / "a")


def test_merge_refuses_a_non_finite_magnitude():
    _, layer, _ = make_pair(8, 6, r=2)
    with torch.no_grad():
        layer.lora_magnitude_vector.weight[2] = float("nan")
    weight = layer.base_layer.weight.clone()
    with pytest.raises(ValueError, match="lora_magnitude_vector has NaN/Inf"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, weight) and not layer.merged


def test_dora_on_a_meta_device_weight_is_refused_clearly():
    """Issue 13: DoRA's init reads ||W0||; on the meta device that used to raise a raw NotImplementedError."""
    with torch.device("meta"):
        base = nn.Linear(8, 6)
    with pytest.raises(ValueError, match="meta device"):
        LoraLinear(base, r=2, lora_alpha=4, use_dora=True)
    LoraLinear(base, r=2, lora_alpha=4)  # plain LoRA needs no values, so it still builds on meta
