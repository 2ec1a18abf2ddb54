"""lora_edu.training and lora_edu.evaluation: the loop, batched generation, scoring, precision paths, errors.

The chat-template examples they train on are tested in tests/test_chat.py.

A tiny random Llama (lora_edu.pretrained.tiny_llama) with SmolLM2's real tokenizer keeps every test fast; the CUDA
code paths (fp16 autocast + GradScaler, bf16 autocast) are run on the CPU with hand-made Precision objects.
"""

import types

import pytest
import torch
from torch import nn

from lora_edu import LoraConfig, inject_lora
from lora_edu import evaluation as evaluate_module
from lora_edu.chat import build_example, collate, pad_token_id
from lora_edu.data import load_task
from lora_edu.evaluation import evaluate, generate_answers
from lora_edu.pretrained import tiny_llama
from lora_edu.runtime import Precision
from lora_edu.training import (
    TrainingDiverged,
    activation_ranges,
    batch_order,
    lr_factor,
    train,
    training_step,
    validation_loss,
)

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FP32 = Precision("cpu", torch.float32, None, False, "cpu: fp32")


SHORT = [{"prompt": f"Say {w}.", "target": w} for w in ("yes", "no", "maybe", "never")]  # ~30 tokens each
COLOUR = [{"prompt": "Name a colour.", "target": "light blue"}]


def tiny_lora(tok, seed=0, r=8):
    """A 2-layer Llama with SmolLM2's vocabulary, LoRA on every linear layer.

    The embedding (tied to the frozen output head) is scaled from std 0.02 to 0.4: with std 0.02 the frozen head
    can only produce logits within about +-1, so no adapter could make the loss small.
    """
    model = tiny_llama(seed=seed, vocab_size=len(tok))
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20)
    torch.manual_seed(seed)
    return inject_lora(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=ALL_LINEAR))


def lora_state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_batched_generation_with_left_padding_equals_one_by_one(tok, fmt):
    model = tiny_lora(tok)
    prompts = [fmt[0]["prompt"], fmt[1]["prompt"] + " And one more sentence to make it longer."]
    batched = generate_answers(model, tok, prompts, max_new_tokens=6, batch_size=2)
    single = [generate_answers(model, tok, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single and len(batched) == 2
    answers, finished = generate_answers(model, tok, prompts, max_new_tokens=6, batch_size=2, return_finished=True)
    assert answers == batched and len(finished) == 2 and all(isinstance(f, bool) for f in finished)


def test_generate_answers_says_which_answers_finished(tok):
    from lora_edu.chat import end_token_id

    end, word = end_token_id(tok), tok("yes", add_special_tokens=False).input_ids[0]

    class Scripted(torch.nn.Module):  # row 0 ends after one word; row 1 is cut at the cap
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, **kw):
            new = torch.tensor([[word, end, end], [word, word, word]])
            return torch.cat([input_ids, new], dim=1)

    answers, finished = generate_answers(Scripted(), tok, ["a", "b"], max_new_tokens=3, return_finished=True)
    assert finished == [True, False]
    assert answers[0] == tok.decode([word]) and answers[1] == tok.decode([word] * 3)


# --- the schedule -----------------------------------------------------------------------------------------
def test_lr_factor_linear_and_cosine_with_warmup():
    steps, warm = 10, 4
    assert [lr_factor(s, steps, warm) for s in range(warm)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(warm, steps, warm) == 1.0
    assert lr_factor(steps - 1, steps, warm) == pytest.approx(1 / 6)  # last step keeps a positive lr
    assert lr_factor(warm + 3, steps, warm, "cosine") == pytest.approx(0.5)  # half way down the cosine
    assert lr_factor(steps - 1, steps, 0, "cosine") == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(
        torch.pi * 0.9)).item()))
    assert lr_factor(7, steps, warm, "constant") == 1.0


@pytest.fixture(scope="module")
def trained(tok):
    """One short run memorising one answer, shared by the loop tests below (the CPU is slow and shared)."""
    model = tiny_lora(tok)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    start = lora_state(model)
    before = validation_loss(model, tok, COLOUR, precision=FP32)
    answer_before = generate_answers(model, tok, [COLOUR[0]["prompt"]], max_new_tokens=4)[0]
    result = train(model, tok, COLOUR, steps=30, batch_size=1, lr=1e-2, warmup_steps=5, eval_examples=COLOUR,
                   eval_every=15, eval_generate=1, seed=0, device="cpu", progress=False)
    return types.SimpleNamespace(model=model, frozen=frozen, start=start, before=before,
                                 answer_before=answer_before, result=result)


def test_history_follows_the_schedule(trained):
    lrs = [h["lr"] for h in trained.result.history]
    assert len(lrs) == 30 and [h["step"] for h in trained.result.history] == list(range(30))
    assert lrs[0] == pytest.approx(1e-2 / 5) and lrs[4] == pytest.approx(1e-2) and lrs[5] == pytest.approx(1e-2)
    assert lrs[-1] == pytest.approx(1e-2 / 25)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))


def test_the_loop_overfits_a_tiny_set_and_generates_the_targets(trained, tok):
    losses = [h["loss"] for h in trained.result.history]
    assert losses[-1] < 0.2 * losses[0]
    assert [e["step"] for e in trained.result.eval_history] == [15, 30]
    assert trained.result.eval_history[-1]["val_loss"] < 0.2 * trained.before
    assert trained.result.eval_history[-1]["exact_match"] == 1.0  # eval_generate=1: generation in the loop
    # Greedy generation gives the memorised answer and stops at <|im_end|> (nothing after it).
    assert trained.answer_before != "light blue"
    metrics = evaluate(trained.model, tok, COLOUR, max_new_tokens=8)
    assert metrics["exact_match"] == 1.0, metrics["predictions"]


def test_only_the_trainable_parameters_change(trained):
    for name, value in trained.frozen.items():
        assert torch.equal(dict(trained.model.named_parameters())[name], value), name  # bit-identical
    after = lora_state(trained.model)
    assert all(not torch.equal(after[n], trained.start[n]) for n in after if ".lora_B." in n)


def test_result_fields_on_the_cpu(trained):
    r = trained.result
    assert r.peak_memory_bytes is None and r.device == "cpu" and r.precision == "cpu: fp32"
    assert r.tokens_per_s > 0 and r.wall_time_s >= r.train_time_s > 0
    assert not trained.model.training


def test_same_seed_same_losses(tok, knowledge):
    runs = [train(tiny_lora(tok), tok, SHORT, steps=3, batch_size=2, lr=1e-3, device="cpu",
                  progress=False, seed=3) for _ in range(2)]
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]


def test_batch_order_is_a_seeded_shuffle_per_epoch():
    batches = batch_order(5, steps=4, batch_size=2, seed=7)  # 8 indices: all 5 of epoch 1, 3 of epoch 2
    generator = torch.Generator().manual_seed(7)
    epoch1, epoch2 = (torch.randperm(5, generator=generator).tolist() for _ in range(2))
    assert batches == [epoch1[0:2], epoch1[2:4], [epoch1[4], epoch2[0]], epoch2[1:3]]  # batch 3 straddles
    assert batch_order(5, 4, 2, seed=7) == batches and batch_order(5, 4, 2, seed=8) != batches


def test_train_trains_on_the_batches_of_batch_order(tok, monkeypatch):
    import lora_edu.training as training_module

    examples = [{"prompt": f"Say {w}.", "target": w} for w in ("yes", "no", "maybe", "never", "soon")]
    wanted = [[build_example(tok, examples[i]["prompt"], examples[i]["target"])["input_ids"] for i in b]
              for b in batch_order(len(examples), 4, 2, seed=3)]
    seen = []
    monkeypatch.setattr(training_module, "collate",
                        lambda feats, pad: seen.append([f["input_ids"] for f in feats]) or collate(feats, pad))
    train(tiny_lora(tok), tok, examples, steps=4, batch_size=2, lr=1e-3, device="cpu", progress=False, seed=3)
    assert seen == wanted


# --- one step: clipping, GradScaler, autocast -------------------------------------------------------------
def one_batch(tok, examples):
    return collate([build_example(tok, ex["prompt"], ex["target"]) for ex in examples], pad_token_id(tok))


def test_clipping_caps_the_gradient_norm(tok, knowledge):
    model = tiny_lora(tok, r=4)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    batch = one_batch(tok, knowledge[:4])
    _, norm = training_step(model, batch, opt, FP32.grad_scaler(), FP32, max_grad_norm=1e-3)
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    assert norm > 1e-2 and clipped.item() == pytest.approx(1e-3, rel=1e-3)


def test_fp16_autocast_with_gradscaler_on_the_cpu(tok, knowledge):
    # The T4 path: fp16 autocast, fp32 adapters, loss scaled by a GradScaler (torch >= 2.3 has one for "cpu").
    t4 = Precision("cpu", torch.float16, torch.float16, True, "faked T4")
    model = tiny_lora(tok)
    start = lora_state(model)
    result = train(model, tok, SHORT, steps=4, batch_size=2, lr=1e-3, device="cpu", precision=t4,
                   progress=False)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert any(not torch.equal(p, start[n]) for n, p in lora_state(model).items())


def test_gradscaler_skips_a_step_with_inf_gradients_and_lowers_the_scale():
    class Huge(nn.Module):  # finite loss, but loss * 65536 overflows fp32, so the scaled gradient is inf
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, **batch):
            return types.SimpleNamespace(loss=(self.w * 3e34).sum())

    model = Huge()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    t4 = Precision("cpu", torch.float16, torch.float16, True, "faked T4")
    scaler = t4.grad_scaler()
    loss, norm = training_step(model, {}, opt, scaler, t4, max_grad_norm=1.0)
    assert loss == pytest.approx(9e34, rel=1e-3) and norm == float("inf")
    assert torch.equal(model.w, torch.ones(3)) and scaler.get_scale() == 65536.0 / 2


def test_bf16_autocast_on_the_cpu_is_really_applied(tok, knowledge):
    bf16 = Precision("cpu", torch.float32, torch.bfloat16, False, "bf16 autocast")
    model = tiny_lora(tok)
    fp32_loss = validation_loss(model, tok, knowledge[:4], precision=FP32)
    bf16_loss = validation_loss(model, tok, knowledge[:4], precision=bf16)
    assert bf16_loss != fp32_loss and bf16_loss == pytest.approx(fp32_loss, rel=2e-2)
    result = train(model, tok, SHORT, steps=3, batch_size=2, lr=1e-3, device="cpu", precision=bf16,
                   progress=False)
    assert len(result.history) == 3 and result.precision == "bf16 autocast"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_reports_peak_memory(tok, knowledge):
    result = train(tiny_lora(tok), tok, SHORT, steps=3, batch_size=4, lr=1e-3, device="cuda",
                   progress=False)
    assert result.peak_memory_bytes > 0 and result.device.startswith("cuda")


# --- divergence -------------------------------------------------------------------------------------------
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_adapter(tok, knowledge):
    """The adapter goes back to the values the last finite loss (step 1) was measured with: the update of
    step 1 is the one that may have blown it up (issue 13: with lr 1e30 the old 'last good' held 1e30s)."""
    model = tiny_lora(tok)
    calls, snapshot = [0], {}

    def poison(module, args, output):  # the 3rd forward (step 2) returns NaN logits
        calls[0] += 1
        if calls[0] == 2:  # step 1's forward: these values gave its finite loss
            snapshot.update(lora_state(model))
        if calls[0] == 3:
            return output * float("nan")
        return output

    model.lm_head.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged, match="step 2: loss nan.*lower lr") as err:
        train(model, tok, SHORT, steps=5, batch_size=1, lr=1e-3, device="cpu", progress=False)
    assert len(err.value.result.history) == 2
    assert all(torch.equal(p, snapshot[n]) for n, p in lora_state(model).items())


def test_a_huge_lr_leaves_the_adapter_it_started_from_not_the_blown_up_one(tok):
    model = tiny_lora(tok)
    start = lora_state(model)
    with pytest.raises(TrainingDiverged, match="step 1"):
        train(model, tok, SHORT, steps=5, batch_size=2, lr=1e30, device="cpu", progress=False)
    # step 0's loss was finite, its update made A and B ~1e30 and step 1's loss NaN: back to step 0's values
    assert all(torch.equal(p, start[n]) for n, p in lora_state(model).items())


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 1e308 * 10])
def test_an_infinite_lr_is_refused(tok, lr):
    with pytest.raises(ValueError, match="lr must be"):
        train(tiny_lora(tok), tok, SHORT, steps=2, lr=lr, device="cpu", progress=False)


def test_training_a_merged_model_is_a_clear_error(tok):
    """Merged layers skip the LoRA path, so A and B got no gradient: 'element 0 of tensors does not require
    grad' (all merged) or silently untrained layers (some merged)."""
    model = tiny_lora(tok)
    model.model.layers[0].self_attn.q_proj.merge()
    with pytest.raises(ValueError, match="merged.*unmerge"):
        train(model, tok, SHORT, steps=2, device="cpu", progress=False)


# --- evaluation scoring -----------------------------------------------------------------------------------
def test_evaluate_scores_exact_match_fields_and_held_out_split(monkeypatch):
    examples = [ex for ex in load_task("format", "test") if ex["held_out_template"]][:2]
    examples += [ex for ex in load_task("format", "test") if not ex["held_out_template"]][:2]
    answers = [examples[0]["target"],  # held out, right
               examples[1]["target"].replace(", ", ",", 1),  # held out, same record, not the exact line
               "Sure! " + examples[2]["target"],  # seen, chatter: fields right, not exact
               examples[3]["target"]]  # seen, right
    monkeypatch.setattr(evaluate_module, "generate_answers", lambda *a, **k: (answers, [True, True, False, True]))
    m = evaluate(None, None, examples)
    assert m["task"] == "format" and m["n"] == 4 and m["exact_match"] == 0.5
    assert m["exact_match_held_out"] == 0.5 and m["exact_match_seen"] == 0.5
    assert (m["n_seen"], m["n_held_out"]) == (2, 2)
    assert m["field_accuracy"] == {"name": 1.0, "age": 1.0, "job": 1.0, "city": 1.0}
    assert m["valid_json"] == 1.0 and m["predictions"] == answers
    assert m["n_cut_off"] == 1  # the third answer hit the cap (generate_answers' finished flags)


def test_evaluate_knowledge_has_no_field_accuracy(monkeypatch):
    examples = load_task("knowledge", "test")[:3]
    monkeypatch.setattr(evaluate_module, "generate_answers", lambda *a, **k: (["x", "y", examples[2]["target"]], [True] * 3))
    m = evaluate(None, None, examples)
    assert m["exact_match"] == pytest.approx(1 / 3) and "field_accuracy" not in m
    assert m["exact_match_seen"] is None and m["exact_match_held_out"] == pytest.approx(1 / 3)


# --- bad input --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tok):
    return tiny_lora(tok, r=2)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": 0}, "steps must be an int >= 1"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"warmup_steps": 5}, "warmup_steps must be in"),
    ({"schedule": "step"}, "schedule must be one of"),
    ({"max_grad_norm": 0.0}, "max_grad_norm must be > 0"),
    ({"eval_every": 0}, "eval_every must be"),
])
def test_bad_arguments(small, tok, knowledge, kwargs, match):
    args = {"steps": 5, "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        train(small, tok, knowledge[:4], progress=False, device="cpu", **args)


@pytest.mark.parametrize(("examples", "match"), [
    ([], "train_examples is empty"),
    ([{"target": "x"}], r"train_examples\[0\] lacks .*'prompt'"),
    ([{"prompt": "q", "target": "a"}, {"prompt": "q"}], r"train_examples\[1\] lacks .*'target'"),
])
def test_bad_examples(small, tok, examples, match):
    with pytest.raises(ValueError, match=match):
        train(small, tok, examples, steps=1, progress=False, device="cpu")


def test_bad_eval_examples(small, tok, knowledge):
    with pytest.raises(ValueError, match="eval_examples is empty"):
        train(small, tok, knowledge[:2], steps=1, eval_examples=[], progress=False, device="cpu")


def test_no_trainable_parameters(tok, knowledge):
    model = tiny_llama(vocab_size=len(tok)).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters.*inject_lora"):
        train(model, tok, knowledge[:2], steps=1, progress=False, device="cpu")


def test_gradscaler_with_fp16_adapters_is_refused(tok, knowledge):
    model = tiny_lora(tok, r=2).half()
    t4 = Precision("cpu", torch.float16, torch.float16, True, "faked T4")
    with pytest.raises(ValueError, match="GradScaler needs fp32 trainable parameters"):
        train(model, tok, knowledge[:2], steps=1, precision=t4, progress=False, device="cpu")


def test_evaluate_bad_input(tok, monkeypatch):
    with pytest.raises(TypeError, match="list of strings"):
        generate_answers(None, tok, "one prompt")
    with pytest.raises(ValueError, match="examples is empty"):
        evaluate(None, tok, [])
    monkeypatch.setattr(evaluate_module, "generate_answers", lambda *a, **k: (["x"], [True]))
    with pytest.raises(ValueError, match="no 'fields' dict"):
        evaluate(None, tok, [{"prompt": "p", "target": "t", "task": "format"}])


def test_training_in_bf16_on_a_t4_is_refused_before_anything_moves(tok, fmt, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4, faked
    model = inject_lora(tiny_llama(vocab_size=len(tok)), LoraConfig(r=2, target_modules=ALL_LINEAR))
    bf16 = Precision("cuda", torch.bfloat16, torch.bfloat16, False, "asked for bf16")
    with pytest.raises(ValueError, match="without bf16 hardware"):
        train(model, tok, fmt[:4], steps=1, batch_size=2, precision=bf16, device="cuda", progress=False)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_activation_ranges_finds_an_fp16_overflow_and_where_it_starts(tok):
    # The tool behind benchmarks/fp16_overflow.py: the largest |output| and the inf/nan count of every module.
    model = tiny_llama(vocab_size=len(tok)).half()
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    ranges = activation_ranges(model, batch)
    assert ranges and all(bad == 0 for _, bad in ranges.values())
    with torch.no_grad():
        # RMSNorm's output has RMS 1, so a gain of 6e4 pushes some of its entries past fp16's 65504
        model.model.layers[1].post_attention_layernorm.weight.fill_(6e4)
    ranges = activation_ranges(model, batch)
    assert ranges["model.layers.1.post_attention_layernorm"][1] > 0  # inf where it overflowed
    assert ranges["model.layers.0"][1] == 0 and ranges["model.layers.1.self_attn"][1] == 0  # clean before it
