"""lora_edu.qlora: NF4 base + LoRA = LoRA on the dequantized weight; gradients, merging, bytes, bad input."""

import copy
import re
import warnings

import peft
import pytest
import torch
from torch import nn

from lora_edu import quant
from lora_edu.config import LoraConfig
from lora_edu.layers import LoraLinear
from lora_edu.model import inject_lora, lora_layers, merge_and_unload, trainable_parameters, unload
from lora_edu.pretrained import tiny_llama
from lora_edu.qlora import (
    MERGE_WARNING,
    UNMERGE_WARNING,
    NF4Linear,
    QLoRALinear,
    dequantize_model,
    model_nbytes,
    prepare_qlora,
    quantize_model,
)

MAX_HALF_GAP = quant.nf4_code().diff().max().item() / 2  # 0.152 (-1 .. -0.696): the worst rounding per weight


def make_linear(in_f=64, out_f=48, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(in_f, out_f, bias=bias)


def make_pair(lin, double_quant=True, r=4, alpha=8, seed=1, blocksize=64):
    """A QLoRALinear, and a LoraLinear around an nn.Linear holding its dequantized weight (same A, B != 0)."""
    torch.manual_seed(seed)
    ours = QLoRALinear.from_linear(lin, r, alpha, blocksize=blocksize, double_quant=double_quant)
    base = copy.deepcopy(lin)
    base.weight.data.copy_(ours.base_layer.weight)
    torch.manual_seed(seed)
    ref = LoraLinear(base, r, alpha)
    assert torch.equal(ours.lora_A.weight, ref.lora_A.weight)  # same seed, same construction order, same A
    with torch.no_grad():
        ours.lora_B.weight.normal_(std=0.1)
        ref.lora_B.weight.copy_(ours.lora_B.weight)
    return ours, ref


def nf4_buffers(layer):
    return {k: v.clone() for k, v in layer.state_dict().items() if k != "bias"}


# --- the frozen 4-bit base ---------------------------------------------------------------------------------

@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("shape", [(64, 48), (40, 24), (7, 5)])  # (40, 24): 960 = 15 blocks; (7, 5): short
def test_nf4linear_stores_quantize_nf4(shape, double_quant):
    lin = make_linear(*shape)
    layer = NF4Linear.from_linear(lin, double_quant=double_quant)
    q = quant.quantize_nf4(lin.weight.detach(), 64, double_quant)
    assert torch.equal(layer.codes, q.codes)
    assert torch.equal(layer.weight, quant.dequantize_nf4(q))  # the byte-table fast path, bit for bit
    assert torch.equal(layer.bias, lin.bias) and not layer.bias.requires_grad
    assert list(layer.parameters()) == [layer.bias]  # codes and constants are buffers: never trained
    keys = layer.state_dict().keys()
    assert "codes" in keys and ("nested_codes" if double_quant else "absmax") in keys


@pytest.mark.parametrize("double_quant", [False, True])
def test_nf4linear_matches_bitsandbytes_linear4bit(double_quant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bnb = pytest.importorskip("bitsandbytes")
    lin = make_linear(64, 48)
    theirs = bnb.nn.Linear4bit(64, 48, compute_dtype=torch.float32, compress_statistics=double_quant,
                               quant_type="nf4")
    theirs.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, quant_type="nf4",
                                      compress_statistics=double_quant, blocksize=64)
    theirs.bias = nn.Parameter(lin.bias.data.clone())
    theirs = theirs.to("cpu")  # quantizes
    ours = NF4Linear.from_linear(lin, double_quant=double_quant)
    assert torch.equal(ours.codes, theirs.weight.data.view(-1))
    state = theirs.weight.quant_state
    assert torch.equal(ours.weight, bnb.functional.dequantize_4bit(theirs.weight.data, state))
    x = torch.randn(3, 5, 64)
    assert torch.equal(ours(x), theirs(x))


def test_trainable_parameters_counts_4bit_weights_as_peft_counts_bitsandbytes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bnb = pytest.importorskip("bitsandbytes")
    lin = make_linear(64, 48)
    theirs = bnb.nn.Linear4bit(64, 48, compute_dtype=torch.float32, quant_type="nf4")
    theirs.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, quant_type="nf4", blocksize=64)
    theirs = theirs.to("cpu").requires_grad_(False)  # quantizes: the packed weight holds 64 * 48 / 2 bytes
    assert theirs.weight.numel() == 64 * 48 // 2
    ours = NF4Linear.from_linear(lin)
    assert trainable_parameters(ours) == peft.PeftModel.get_nb_trainable_parameters(theirs) == (0, 64 * 48 + 48)
    # a QLoRA model reports the counts of its fp32 twin (notebook 07 against notebook 04/08)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    fp32 = inject_lora(tiny_llama(seed=0), config)
    four_bit = prepare_qlora(tiny_llama(seed=0), config)
    assert trainable_parameters(four_bit) == trainable_parameters(fp32)


# --- the layer: forward and backward -----------------------------------------------------------------------

@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_equals_lora_on_the_dequantized_weight(double_quant, bias):
    ours, ref = make_pair(make_linear(bias=bias), double_quant)
    x = torch.randn(2, 7, 64)
    assert torch.equal(ours(x), ref(x))  # the same nn.Linear arithmetic: bit for bit
    assert torch.equal(ours.get_delta_weight(), ref.get_delta_weight())
    assert ours.scaling == ref.scaling == 2.0


def test_at_init_the_layer_is_its_dequantized_base():
    lin = make_linear()
    layer = QLoRALinear.from_linear(lin, r=4, lora_alpha=16)
    x = torch.randn(3, 64)
    expected = torch.nn.functional.linear(x, layer.base_layer.weight, lin.bias)
    assert torch.equal(layer(x), expected) and torch.equal(layer.base_layer(x), expected)
    assert not torch.equal(layer(x), lin(x))  # ...which is not the fp32 layer: NF4 rounds


def test_backward_reaches_the_input_and_only_lora_gets_gradients():
    ours, ref = make_pair(make_linear(), double_quant=True)
    x = torch.randn(4, 64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    grad_y = torch.randn(4, 48)
    ours(x).backward(grad_y)
    ref(x_ref).backward(grad_y)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-6)  # fp32 reference on the same weight
    with_grad = [n for n, p in ours.named_parameters() if p.grad is not None]
    assert with_grad == ["lora_A.weight", "lora_B.weight"]
    torch.testing.assert_close(ours.lora_A.weight.grad, ref.lora_A.weight.grad)
    assert ours.base_layer.bias.grad is None and not ours.base_layer.bias.requires_grad


def test_a_trained_bias_gets_its_gradient():  # LoraConfig(bias="lora_only") unfreezes the base bias
    ours, ref = make_pair(make_linear(), double_quant=False)
    ours.base_layer.bias.requires_grad_(True)
    ref.base_layer.bias.requires_grad_(True)
    x = torch.randn(2, 3, 64)
    ours(x).sum().backward()
    ref(x).sum().backward()
    torch.testing.assert_close(ours.base_layer.bias.grad, ref.base_layer.bias.grad)


def test_backward_saves_no_dequantized_weight():
    layer = QLoRALinear.from_linear(make_linear(64, 48), r=4, lora_alpha=8)
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    x = torch.randn(5, 64, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer.base_layer(x).sum().backward()
    assert (48, 64) not in saved and (64, 48) not in saved  # backward dequantizes again instead
    assert x.grad is not None


def test_optimizer_step_leaves_the_4bit_base_unchanged():
    layer = QLoRALinear.from_linear(make_linear(), r=4, lora_alpha=8)
    before = nf4_buffers(layer.base_layer)
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 64)).pow(2).mean().backward()
        opt.step()
    after = nf4_buffers(layer.base_layer)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert layer.lora_B.weight.abs().sum() > 0  # ...while the adapter did train


# --- whole models ------------------------------------------------------------------------------------------

def test_prepare_qlora_quantizes_all_but_the_head_and_names_like_peft():
    torch.manual_seed(0)
    ours = prepare_qlora(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    theirs = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=4, lora_alpha=8,
                                                               target_modules=["q_proj", "v_proj"]))
    kinds = {n: type(m).__name__ for n, m in ours.named_modules()}
    assert kinds["lm_head"] == "Linear" and kinds["model.layers.0.mlp.up_proj"] == "NF4Linear"
    assert kinds["model.layers.1.self_attn.v_proj"] == "QLoRALinear"
    plain = [n for n, m in ours.named_modules() if type(m) is nn.Linear and "lora_" not in n]
    assert plain == ["lm_head"]
    lora = {k: v for k, v in ours.state_dict().items() if ".lora_" in k}
    peft_state = peft.get_peft_model_state_dict(theirs)
    assert {"base_model.model." + k for k in lora} == set(peft_state)  # ...q_proj.lora_A.weight etc.
    assert all(torch.equal(v, peft_state["base_model.model." + k]) for k, v in lora.items())  # same seed
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == set(lora)


def test_qlora_model_starts_as_its_dequantized_self_and_trains():
    torch.manual_seed(0)
    model = prepare_qlora(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    reference = tiny_llama()
    for name, module in model.named_modules():  # the same model in fp32, holding the dequantized weights
        if isinstance(module, NF4Linear):
            reference.get_submodule(name.removesuffix(".base_layer")).weight.data.copy_(module.weight)
    ids = (torch.arange(16) * 3).repeat(2, 1)  # a fixed, predictable sequence
    torch.testing.assert_close(model(ids).logits, reference(ids).logits, rtol=1e-5, atol=1e-5)
    base = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2, losses  # measured: 4.88 -> 4.53 (a random tiny model learns slowly)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in base.items())  # the base never moved


def test_qlora_layer_learns_a_low_rank_change_of_its_base():
    torch.manual_seed(0)
    layer = QLoRALinear.from_linear(make_linear(32, 32, bias=False), r=2, lora_alpha=2)
    u, v = torch.randn(32, 2), torch.randn(2, 32)
    target = layer.base_layer.weight + 0.05 * u @ v  # exactly reachable: a rank-2 update of the 4-bit base
    x = torch.randn(256, 32)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    losses = []
    for _ in range(200):
        loss = (layer(x) - x @ target.T).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0], (losses[0], losses[-1])


def test_state_dict_round_trip():
    torch.manual_seed(0)
    model = prepare_qlora(tiny_llama(), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    fresh = prepare_qlora(tiny_llama(seed=1), LoraConfig(r=4, target_modules="all-linear"))
    fresh.load_state_dict(model.state_dict())
    ids = torch.arange(12)[None]
    assert torch.equal(fresh(ids).logits, model(ids).logits)


def test_quantize_model_alone_and_lora_on_an_unquantized_layer():
    model = quantize_model(tiny_llama(), target_modules=["up_proj"], double_quant=False)
    assert isinstance(model.model.layers[0].mlp.up_proj, NF4Linear)
    assert type(model.model.layers[0].mlp.down_proj) is nn.Linear
    config = LoraConfig(r=2, target_modules=["up_proj", "down_proj"])
    prepare_qlora(model, config, quantize_modules=["gate_proj"])
    assert isinstance(model.model.layers[0].mlp.up_proj, QLoRALinear)  # quantized before: wrapped as QLoRA
    assert type(model.model.layers[0].mlp.down_proj) is LoraLinear  # left in fp32: plain LoRA
    assert isinstance(model.model.layers[0].mlp.gate_proj, NF4Linear)


# --- merging into 4 bits -----------------------------------------------------------------------------------

@pytest.mark.parametrize("double_quant", [False, True])
def test_merge_rounds_warns_and_unmerge_does_not_restore_the_codes(double_quant):
    layer, _ = make_pair(make_linear(), double_quant)
    layer.lora_B.weight.data *= 0.1  # a trained-size update: |delta_W| ~ 4% of |W0|
    original = nf4_buffers(layer.base_layer)
    w0, delta = layer.base_layer.weight, layer.get_delta_weight().detach()
    x = torch.randn(16, 64)
    y = layer(x)
    with pytest.warns(UserWarning, match=re.escape(MERGE_WARNING)):
        layer.merge()
    assert layer.merged and not torch.equal(layer.base_layer.codes, original["codes"])
    merged = layer.base_layer.weight
    error = (merged - (w0 + delta)).abs()  # one more rounding to NF4: at most half a gap per weight...
    blocks_absmax = merged.abs().view(-1, 64).amax(1).repeat_interleave(64).view(48, 64)
    assert (error <= MAX_HALF_GAP * blocks_absmax * 1.001 + 1e-7).all()
    # ...which is as large as the update itself: measured |merged - (W0 + delta_W)| = 1.2 |delta_W| here
    assert error.norm() > 0.5 * delta.norm()
    relative = ((layer(x) - y).norm() / y.norm()).item()  # measured: 0.054
    assert 0.01 < relative < 0.1, relative
    with pytest.warns(UserWarning, match=re.escape(UNMERGE_WARNING)):
        layer.unmerge()
    changed = (quant.unpack_4bit(layer.base_layer.codes, 48 * 64) !=
               quant.unpack_4bit(original["codes"], 48 * 64)).float().mean().item()
    assert not layer.merged and 0.01 < changed < 0.2, changed  # measured: 6.5% of the codes moved
    drift = ((layer.base_layer.weight - w0).norm() / w0.norm()).item()  # measured: 0.079
    assert 0.01 < drift < 0.15, drift


@pytest.mark.parametrize("double_quant", [False, True])
def test_merging_a_zero_update_keeps_the_codes(double_quant):
    layer = QLoRALinear.from_linear(make_linear(), r=4, lora_alpha=8, double_quant=double_quant)  # B = 0
    original = nf4_buffers(layer.base_layer)
    with pytest.warns(UserWarning):
        layer.merge()
    assert torch.equal(layer.base_layer.codes, original["codes"])  # re-quantizing NF4 is idempotent...
    if not double_quant:
        assert torch.equal(layer.base_layer.absmax, original["absmax"])
    # ...but with DQ the constants are double-quantized again around a new mean, so they may move a little


def test_merge_and_unload_puts_the_4bit_layer_back():
    model = prepare_qlora(tiny_llama(), LoraConfig(r=4, init_lora_weights=False))
    with pytest.warns(UserWarning, match=re.escape(MERGE_WARNING)):
        merge_and_unload(model)
    assert isinstance(model.model.layers[0].self_attn.q_proj, NF4Linear)
    model = prepare_qlora(tiny_llama(), LoraConfig(r=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unload of an unmerged model must not round anything
        unload(model)
    assert isinstance(model.model.layers[0].self_attn.v_proj, NF4Linear)


# --- memory ------------------------------------------------------------------------------------------------

def test_nbytes_is_4_5_or_about_4_127_bits_per_weight():
    lin = make_linear(576, 1536, bias=False)  # a SmolLM2 MLP shape
    n = 576 * 1536
    assert NF4Linear.from_linear(lin, double_quant=False).nbytes() == n * 4.5 / 8
    bits = quant.bits_per_parameter()["total_dq"]  # 4 + 8/64 + 32/(64*256) ~= 4.127
    dq = NF4Linear.from_linear(lin, double_quant=True).nbytes()
    assert 0 <= dq - n * bits / 8 <= 8  # + the fp32 offset and the padding of the last nested block


def test_model_nbytes_counts_codes_constants_lora_and_the_rest():
    model = tiny_llama()
    fp32 = model_nbytes(model)
    assert fp32["total"] == fp32["other"] == 4 * sum(p.numel() for p in model.parameters())  # tied once
    linear = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"}
    prepare_qlora(model, LoraConfig(r=4, target_modules=["q_proj"]), double_quant=False)
    sizes = model_nbytes(model)
    n_quantized = sum(m.weight.numel() for m in linear.values())
    assert sizes["codes"] == n_quantized / 2 and sizes["constants"] == 4 * n_quantized / 64
    assert sizes["lora"] == 2 * 4 * 4 * (32 + 32)  # 2 layers x 4 bytes x r * (in + out)
    assert sizes["other"] == fp32["total"] - 4 * n_quantized
    assert sizes["total"] == sum(v for k, v in sizes.items() if k != "total")


def test_real_smollm2_layer0_in_nf4_stays_close():
    from lora_edu.pretrained import load_model

    model, tok = load_model(verbose=False)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        before = model(ids).logits
        prepare_qlora(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]),
                      quantize_modules=r"model\.layers\.0\..*_proj")
        after = model(ids).logits
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, QLoRALinear) and isinstance(model.model.layers[1].self_attn.q_proj, LoraLinear)
    assert layer.base_layer.nbytes() == pytest.approx(576 * 576 * 4.127 / 8, rel=1e-3)
    kl = torch.nn.functional.kl_div(after[0].log_softmax(-1), before[0].log_softmax(-1), log_target=True,
                                    reduction="batchmean").item()  # one of 30 layers in 4 bits
    assert 0 < kl < 0.2, kl  # measured: 0.049 nats per position
    assert tok.decode(after[0, -1].argmax()) == tok.decode(before[0, -1].argmax()) == " Paris"


# --- bad input ---------------------------------------------------------------------------------------------

def test_bad_layers_and_targets():
    with pytest.raises(TypeError, match="wraps an NF4Linear"):
        QLoRALinear(nn.Linear(8, 8), r=2, lora_alpha=4)
    with pytest.raises(TypeError, match="quantizes an nn.Linear"):
        NF4Linear.from_linear(nn.Conv1d(8, 8, 1))
    with pytest.raises(TypeError, match="quantizes an nn.Linear"):
        NF4Linear.from_linear(LoraLinear(nn.Linear(8, 8), r=2, lora_alpha=4))
    model = tiny_llama()
    with pytest.raises(TypeError, match="LlamaAttention, not a linear layer"):
        prepare_qlora(model, LoraConfig(target_modules=["self_attn"]))
    with pytest.raises(ValueError, match="matched no module"):
        prepare_qlora(model, LoraConfig(target_modules=["qkv"]))
    with pytest.raises(ValueError, match="r=64 is larger"):
        prepare_qlora(model, LoraConfig(r=64))
    with pytest.raises(ValueError, match="r=40 is larger"):
        QLoRALinear.from_linear(nn.Linear(32, 32), r=40, lora_alpha=8)
    assert not any(isinstance(m, NF4Linear) for m in model.modules())  # every failure changed nothing
    inject_lora(model, LoraConfig(r=2))
    with pytest.raises(ValueError, match="already has 4 LoRA layers"):
        prepare_qlora(model, LoraConfig(r=2))
    with pytest.raises(TypeError, match="already has LoRA; quantize before"):
        quantize_model(model, ["q_proj"])


def test_non_finite_weights_are_refused_and_change_nothing():
    lin = make_linear()
    lin.weight.data[3, 5] = float("nan")
    with pytest.raises(ValueError, match="1 NaN and 0 Inf"):
        NF4Linear.from_linear(lin)
    model = tiny_llama()
    model.model.layers[1].mlp.down_proj.weight.data[0, 0] = float("inf")
    with pytest.raises(ValueError, match="0 NaN and 1 Inf"):
        prepare_qlora(model, LoraConfig(r=2))
    assert not any(isinstance(m, (NF4Linear, LoraLinear)) for m in model.modules())


@pytest.mark.parametrize("blocksize, match", [(63, "odd"), (0, "positive"), (-64, "positive")])
def test_bad_blocksize(blocksize, match):
    with pytest.raises(ValueError, match=match):
        QLoRALinear.from_linear(make_linear(), r=2, lora_alpha=4, blocksize=blocksize)
    with pytest.raises(ValueError, match=match):
        quantize_model(tiny_llama(), blocksize=blocksize)


def test_bad_merges():
    layer = QLoRALinear.from_linear(make_linear(), r=2, lora_alpha=4)
    with pytest.raises(ValueError, match="not merged"):
        layer.unmerge()
    with pytest.warns(UserWarning):
        layer.merge()
    with pytest.raises(ValueError, match="already merged"):
        layer.merge()
    layer = QLoRALinear.from_linear(make_linear(), r=2, lora_alpha=4)
    layer.lora_B.weight.data[0, 0] = float("nan")
    codes = layer.base_layer.codes.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before the rounding warning
        with pytest.raises(ValueError, match="NaN/Inf"):
            layer.merge()
    assert not layer.merged and torch.equal(layer.base_layer.codes, codes)
    with pytest.raises(ValueError, match="must have shape"):
        layer.base_layer.quantize_(torch.zeros(64, 48))


def test_dora_on_a_4bit_base_is_refused_not_silently_dropped():
    with pytest.raises(ValueError, match="DoRA on a 4-bit base"):
        QLoRALinear(NF4Linear.from_linear(nn.Linear(8, 8)), r=2, lora_alpha=4, use_dora=True)
    with pytest.raises(ValueError, match="does not do DoRA"):
        prepare_qlora(tiny_llama(), LoraConfig(r=2, use_dora=True))


# --- issue 13: modes, all-or-nothing merges, saving a merged QLoRA model ----------------------------------

def test_prepare_qlora_keeps_an_eval_model_in_eval_mode():
    model = prepare_qlora(tiny_llama().eval(), LoraConfig(r=4, lora_dropout=0.5, init_lora_weights=False))
    assert not any(m.training for m in model.modules())
    ids = torch.arange(8).view(1, -1)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model(ids).logits)


def test_qlora_merge_and_unload_checks_every_layer_before_merging_any():
    model = prepare_qlora(tiny_llama(), LoraConfig(r=4, init_lora_weights=False))
    layers = list(lora_layers(model))
    with torch.no_grad():
        layers[-1][1].lora_B.weight[0, 0] = float("inf")
    codes = [layer.base_layer.codes.clone() for _, layer in layers]
    with pytest.raises(ValueError, match="NaN/Inf"):
        merge_and_unload(model)
    assert len(list(lora_layers(model))) == len(layers)
    assert all(torch.equal(layer.base_layer.codes, c) for (_, layer), c in zip(layers, codes, strict=True))


def test_a_merged_qlora_model_saves_and_reloads_with_the_same_logits(tmp_path):
    """save_pretrained of NF4 buffers reloaded as random weights (0.34 logits off); dequantize_model first."""
    from transformers import LlamaForCausalLM

    model = prepare_qlora(tiny_llama(), LoraConfig(r=4, init_lora_weights=False))
    with pytest.raises(ValueError, match="merge_and_unload"):
        dequantize_model(model)
    with pytest.warns(UserWarning):
        merge_and_unload(model)
    ids = torch.arange(8).view(1, -1)
    with torch.no_grad():
        expected = model(ids).logits
    with pytest.raises(ValueError, match="dequantize_model"):  # the obvious call refuses instead of a bad file
        model.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    assert isinstance(model, LlamaForCausalLM) and type(model).__name__ == "LlamaForCausalLM"
    dequantize_model(model).save_pretrained(tmp_path / "merged")
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no NF4Linear"):
        dequantize_model(model)


# --- device discipline: no per-call host-to-device copy ----------------------------------------------------

@pytest.mark.parametrize("double_quant", [False, True])
def test_training_steps_copy_nothing_from_the_cpu(double_quant):
    """Forward + backward of QLoRA (and of LoRA, plain and DoRA) on the meta device, which stands in for a
    GPU: after a first step (which may fill the table caches), no operator reads a CPU tensor. Before the
    code tables were cached, every NF4 dequantize copied one (2 per step; 4 with double quantization)."""
    from device_copies import CrossDeviceCopies  # tests/device_copies.py

    torch.manual_seed(0)
    layers = [QLoRALinear.from_linear(make_linear(), 4, 8, double_quant=double_quant),
              LoraLinear(make_linear(), 4, 8), LoraLinear(make_linear(), 4, 8, use_dora=True)]
    for layer in layers:
        layer.to("meta")
        x = torch.randn(3, 64, device="meta", requires_grad=True)
        layer(x).sum().backward()
        with CrossDeviceCopies() as moves:
            for _ in range(3):
                layer(x).sum().backward()
                with torch.no_grad():
                    layer(x)
        assert moves.ops == [], f"{type(layer).__name__} moved data from the CPU: {moves.ops}"
