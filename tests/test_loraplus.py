"""LoRA+: the same parameter groups, learning rates and weight decays as PEFT's create_loraplus_optimizer."""

import math
import re

import peft
import pytest
import torch
from peft.optimizers import create_loraplus_optimizer as peft_create_loraplus_optimizer
from torch import nn

from lora_edu import LoraConfig, create_loraplus_optimizer, inject_lora, lora_layers
from lora_edu.loraplus import loraplus_parameter_groups
from lora_edu.pretrained import tiny_llama

PEFT_PREFIX = "base_model.model."


def our_name(peft_name):
    """PEFT's in-memory parameter name -> ours: no wrapper prefix, no adapter name."""
    return peft_name.removeprefix(PEFT_PREFIX).replace(".default.", ".")


def described(optimizer, model, rename=lambda n: n):
    """Each group as (parameter names, lr, weight_decay), so two optimizers can be compared."""
    names = {id(p): rename(n) for n, p in model.named_parameters()}
    return [([names[id(p)] for p in g["params"]], g["lr"], g["weight_decay"]) for g in optimizer.param_groups]


def tiny_mlp():
    """A model with biases and an nn.LayerNorm, the two things PEFT exempts from weight decay."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))


def both(make, train_norms=False, **config):
    torch.manual_seed(1)
    ours = inject_lora(make(), LoraConfig(**config))
    torch.manual_seed(1)
    theirs = peft.get_peft_model(make(), peft.LoraConfig(**config))
    if train_norms:  # 1-D parameters that are not biases: RMSNorm / LayerNorm weights
        for model in (ours, theirs):
            for name, param in model.named_parameters():
                if "norm" in name or re.search(r"(^|\.)1\.weight$", name):
                    param.requires_grad_(True)
    return ours, theirs


CASES = {
    "q_v": (tiny_llama, False, {"r": 4, "target_modules": ["q_proj", "v_proj"]}),
    "all-linear-dora": (tiny_llama, False, {"r": 2, "target_modules": "all-linear", "use_dora": True}),
    "rms-norms-trained": (tiny_llama, True, {"r": 2, "target_modules": ["o_proj"]}),
    "biases-layernorm": (tiny_mlp, True, {"r": 2, "target_modules": ["0", "2"], "bias": "all"}),
}


@pytest.mark.parametrize("case", CASES)
def test_groups_match_peft(case):
    make, train_norms, config = CASES[case]
    ours, theirs = both(make, train_norms, **config)
    kwargs = {"lr": 2e-4, "loraplus_lr_ratio": 8.0, "loraplus_lr_embedding": 3e-6,
              "loraplus_weight_decay": 0.01}
    opt_ours = create_loraplus_optimizer(ours, torch.optim.AdamW, **kwargs)
    opt_theirs = peft_create_loraplus_optimizer(theirs, torch.optim.AdamW, **kwargs)
    groups = described(opt_ours, ours)
    assert groups == described(opt_theirs, theirs, our_name)  # same parameters, order, lr, weight decay
    every = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert sorted(n for g in groups for n in g[0]) == sorted(every)  # each trainable parameter exactly once
    for ours_group, theirs_group in zip(opt_ours.param_groups, opt_theirs.param_groups, strict=True):
        assert {k: v for k, v in ours_group.items() if k != "params"} == \
               {k: v for k, v in theirs_group.items() if k != "params"}  # betas, eps, ... too


def test_which_parameter_goes_where():
    ours, _ = both(tiny_mlp, True, r=2, target_modules=["0", "2"], bias="all", use_dora=True)
    (a, _, wd_a), (emb, _, _), (b, lr_b, wd_b), (b_no_decay, lr_nd, wd_nd) = described(
        create_loraplus_optimizer(ours, lr=1e-4, loraplus_weight_decay=0.1), ours)
    assert a == ["0.lora_A.weight", "2.lora_A.weight"] and wd_a == 0.1
    assert emb == []  # lora_edu adapts linear layers only
    # B, and every 1-D parameter that is not exempt from decay: DoRA's magnitude, LayerNorm is exempt
    assert b == ["0.lora_B.weight", "0.lora_magnitude_vector.weight", "2.lora_B.weight",
                 "2.lora_magnitude_vector.weight"]
    assert b_no_decay == ["0.base_layer.bias", "1.weight", "1.bias", "2.base_layer.bias"]
    assert lr_b == lr_nd == 1e-4 * 16 and wd_b == 0.1 and wd_nd == 0.0  # the default ratio is 16


@pytest.mark.parametrize("ratio", [1.0, 4.0, 16.0])
def test_one_sgd_step_moves_b_ratio_times_faster(ratio):
    torch.manual_seed(0)
    model = inject_lora(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    layer = next(layer for _, layer in lora_layers(model))
    before = layer.lora_A.weight.detach().clone(), layer.lora_B.weight.detach().clone()
    opt = create_loraplus_optimizer(model, torch.optim.SGD, lr=0.01, loraplus_lr_ratio=ratio)
    model(input_ids=torch.randint(0, 128, (2, 7))).logits.square().mean().backward()
    grads = layer.lora_A.weight.grad.clone(), layer.lora_B.weight.grad.clone()
    opt.step()
    torch.testing.assert_close(layer.lora_A.weight, before[0] - 0.01 * grads[0])
    torch.testing.assert_close(layer.lora_B.weight, before[1] - 0.01 * ratio * grads[1])


def test_extra_keyword_arguments_reach_the_optimizer():
    model = inject_lora(tiny_llama(), LoraConfig(r=2))
    opt = create_loraplus_optimizer(model, torch.optim.Adam, lr=1e-3, betas=(0.8, 0.9), eps=1e-6)
    assert type(opt) is torch.optim.Adam
    assert all(g["betas"] == (0.8, 0.9) and g["eps"] == 1e-6 for g in opt.param_groups)
    assert opt.defaults["lr"] == 1e-3


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio, error, words", [
    (0.5, ValueError, "must be >= 1"),
    (0.0, ValueError, "finite number > 0"),
    (-16, ValueError, "finite number > 0"),
    (math.nan, ValueError, "finite number > 0"),
    (math.inf, ValueError, "finite number > 0"),
    ("16", TypeError, "must be a number"),
    (True, TypeError, "must be a number"),
])
def test_bad_ratio(ratio, error, words):
    model = inject_lora(tiny_llama(), LoraConfig(r=2))
    with pytest.raises(error, match=re.escape(words)):
        create_loraplus_optimizer(model, lr=1e-4, loraplus_lr_ratio=ratio)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"lr": 0.0}, ValueError, "lr must be a finite number > 0"),
    ({"lr": math.inf}, ValueError, "lr must be a finite number > 0"),
    ({"lr": 1e-4, "loraplus_lr_embedding": -1.0}, ValueError, "loraplus_lr_embedding"),
    ({"lr": 1e-4, "loraplus_weight_decay": -0.1}, ValueError, "loraplus_weight_decay must be"),
    ({"lr": 1e-4, "weight_decay": 0.1}, TypeError, "Pass loraplus_weight_decay=0.1 instead"),
])
def test_other_bad_arguments(kwargs, error, words):
    model = inject_lora(tiny_llama(), LoraConfig(r=2))
    with pytest.raises(error, match=re.escape(words)):
        create_loraplus_optimizer(model, **kwargs)


def test_a_model_with_nothing_to_train():
    with pytest.raises(ValueError, match="no trainable parameters.*inject_lora"):
        loraplus_parameter_groups(tiny_llama().requires_grad_(False), lr=1e-4)
