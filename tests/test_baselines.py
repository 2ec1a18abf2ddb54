"""lora_edu.baselines: full fine-tuning, BitFit with added biases, the loop with a given optimizer, counts."""

import pytest
import torch
from torch import nn

from lora_edu import LoraConfig, create_loraplus_optimizer, inject_lora, trainable_parameters
from lora_edu.baselines import (
    add_zero_biases,
    freeze_all_but_biases,
    full_finetune_setup,
    training_state_bytes,
)
from lora_edu.pretrained import load_model, tiny_llama
from lora_edu.training import train

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SHORT = [{"prompt": f"Say {w}.", "target": w} for w in ("yes", "no", "maybe", "never")]


@pytest.fixture(scope="module")
def tok():
    return load_model(verbose=False)[1]


def linear_out_features(model):
    return sum(m.out_features for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head")


# --- BitFit with added biases ------------------------------------------------------------------------------
def test_added_zero_biases_keep_outputs_and_count():
    model = tiny_llama()
    ids = torch.randint(0, 128, (2, 5))
    before = model(input_ids=ids).logits
    added = add_zero_biases(model)
    assert added == linear_out_features(model) > 0
    assert model.lm_head.bias is None  # "all-linear" leaves the output head alone, as LoRA does
    assert torch.equal(model(input_ids=ids).logits, before)  # a zero bias changes nothing
    trained = freeze_all_but_biases(model)
    assert trained == added == trainable_parameters(model)[0]
    assert all(n.endswith(".bias") == p.requires_grad for n, p in model.named_parameters())


def test_existing_biases_are_kept():
    model = nn.Sequential(nn.Linear(4, 3, bias=True), nn.Linear(3, 2, bias=False))
    old = model[0].bias.detach().clone()
    assert add_zero_biases(model, ["1"]) == 2
    assert torch.equal(model[0].bias, old) and torch.equal(model[1].bias, torch.zeros(2))
    assert add_zero_biases(model, ["0", "1"]) == 0  # both have biases now: nothing added, no error


def test_bias_errors():
    with pytest.raises(ValueError, match="add_zero_biases"):
        freeze_all_but_biases(tiny_llama())  # Llama has no biases
    with pytest.raises(ValueError, match="selected no linear layer"):
        add_zero_biases(tiny_llama(), ["no_such_layer"])
    with pytest.raises(TypeError, match="not an nn.Linear"):
        add_zero_biases(tiny_llama(), ["input_layernorm"])


# --- full fine-tuning and memory counts ---------------------------------------------------------------------
def test_full_finetune_trains_everything_and_refuses_lora():
    model = tiny_llama()
    model.requires_grad_(False)
    n = full_finetune_setup(model)
    assert n == trainable_parameters(model)[0] == trainable_parameters(model)[1]
    with pytest.raises(ValueError, match="LoRA layers"):
        full_finetune_setup(inject_lora(tiny_llama(), LoraConfig(r=2)))


def test_training_state_bytes_counts_adam_state():
    model = inject_lora(tiny_llama(), LoraConfig(r=2, target_modules=ALL_LINEAR))
    trainable, total = trainable_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = training_state_bytes(model, optimizer)
    assert before == {"weights": 4 * total, "gradients": 4 * trainable, "optimizer": 0,
                      "total": 4 * (total + trainable)}
    model(input_ids=torch.randint(0, 128, (1, 4))).logits.sum().backward()
    optimizer.step()
    after = training_state_bytes(model, optimizer)
    assert after["optimizer"] == 2 * 4 * trainable  # m and v, fp32; the step counters are not counted
    assert training_state_bytes(model)["optimizer"] == 0


# --- the loop with a given optimizer -------------------------------------------------------------------------
def tiny_lora(tok, r=4):
    model = tiny_llama(vocab_size=len(tok))
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20)  # as tests/test_training.py: a frozen head that can fit
    torch.manual_seed(0)
    return inject_lora(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=ALL_LINEAR))


def test_a_given_adamw_equals_the_default(tok):
    ours, ref = tiny_lora(tok), tiny_lora(tok)
    optimizer = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    got = train(ours, tok, SHORT, optimizer=optimizer, steps=4, batch_size=2, warmup_steps=1, progress=False,
                device="cpu")
    want = train(ref, tok, SHORT, steps=4, batch_size=2, lr=1e-2, warmup_steps=1, progress=False, device="cpu")
    assert got.history == want.history  # same batches, same steps, same schedule: bit for bit
    for (n, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    assert got.history[0]["loss"] > got.history[-1]["loss"]


def test_loraplus_ratio_1_is_plain_lora_and_16_differs(tok):
    runs = {}
    for ratio in (1, 16):
        model = tiny_lora(tok)
        opt = create_loraplus_optimizer(model, lr=1e-2, loraplus_lr_ratio=ratio)
        runs[ratio] = train(model, tok, SHORT, optimizer=opt, steps=3, batch_size=2, progress=False,
                            device="cpu").history
        assert opt.param_groups[2]["initial_lr"] == 1e-2 * ratio  # B's peak lr, decayed by the same schedule
    plain = tiny_lora(tok)
    adamw = torch.optim.AdamW([p for p in plain.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    want = train(plain, tok, SHORT, optimizer=adamw, steps=3, batch_size=2, progress=False, device="cpu")
    got = [h["loss"] for h in runs[1]]
    assert got == pytest.approx([h["loss"] for h in want.history], rel=1e-5)
    assert abs(runs[16][-1]["loss"] - got[-1]) > 1e-3  # a faster B changes the run


def test_optimizer_errors(tok):
    model = tiny_lora(tok)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        train(model, tok, SHORT, optimizer=[optimizer], steps=1)
    other = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1e-2)
    with pytest.raises(ValueError, match="trainable parameters of this model"):
        train(model, tok, SHORT, optimizer=other, steps=1)
    frozen = torch.optim.AdamW(model.model.embed_tokens.parameters(), lr=1e-2)  # the frozen embedding
    with pytest.raises(ValueError, match="trainable parameters of this model"):
        train(model, tok, SHORT, optimizer=frozen, steps=1)
