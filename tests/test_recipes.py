"""lora_edu.recipes (notebook 12): every route trains what it says, a run's row holds its result and its cost,
continued pre-training runs on raw text first, and the GPU-only measurement refuses a CPU with the fix."""

import pytest
import torch

from lora_edu import newlang, recipes
from lora_edu.chat import build_text_example, check_examples
from lora_edu.data import load_task
from lora_edu.model import trainable_parameters
from lora_edu.pretrained import tiny_llama
from lora_edu.runtime import NoGPUError
from lora_edu.training import train, validation_loss


def test_each_route_trains_what_it_says():
    counts = {}
    for route in recipes.ROUTES:
        model = tiny_llama(seed=0)
        counts[route] = recipes.prepare_route(model, route, r=2, lora_alpha=4)
        embedding = model.get_input_embeddings().weight
        assert embedding.requires_grad == (route != "lora")
        assert embedding is model.get_output_embeddings().weight  # tied: training one trains the head
        assert counts[route] == trainable_parameters(model)[0]
    total = trainable_parameters(tiny_llama(seed=0))[1]
    assert counts["lora"] < counts["lora+embeddings"] < counts["full"] == total
    assert counts["lora+embeddings"] - counts["lora"] == 128 * 32  # the embedding, counted once
    with pytest.raises(ValueError, match="route must be one of"):
        recipes.prepare_route(tiny_llama(), "prefix")


def test_word_accuracy_gives_partial_credit_by_position():
    assert recipes.word_accuracy("Ka mello ka ulvel thivos.", "Ka mello ka ulvel thivos.") == 1.0
    assert recipes.word_accuracy("ka MELLO ka ulvel", "Ka mello ka ulvel thivos.") == 0.8  # case, a missing word
    assert recipes.word_accuracy("mello ka ulvel thivos ka", "Ka mello ka ulvel thivos.") == 0.0  # shifted
    assert recipes.word_accuracy("", "") == 1.0 and recipes.word_accuracy("x", "") == 0.0


def test_raw_text_examples_label_every_token_and_train(tok):
    feats = build_text_example(tok, "Ka mello ka ulvel thivos.")
    assert feats["labels"] == feats["input_ids"] and feats["input_ids"][-1] == tok.eos_token_id
    check_examples([{"text": "Ka mello."}], allow_text=True)
    with pytest.raises(ValueError, match="lacks the string field"):
        check_examples([{"text": "Ka mello."}])  # generation needs a prompt
    with pytest.raises(ValueError, match="non-empty string"):
        check_examples([{"text": ""}], allow_text=True)
    model = tiny_llama(seed=0, vocab_size=len(tok))
    recipes.prepare_route(model, "lora", r=2, lora_alpha=4)
    texts = [{"text": t} for t in newlang.veldaran_corpus(8)]
    before = validation_loss(model, tok, texts)
    result = train(model, tok, texts, steps=3, batch_size=4, lr=1e-2, progress=False)
    assert len(result.history) == 3 and validation_loss(model, tok, texts) < before
    assert not model.training


def test_run_route_row_holds_result_and_cost(loader):
    test = load_task("format", "test")[:2]
    rows = {route: recipes.run_route(newlang.format_pool(4), test, route=route, r=2, steps=2, batch_size=2,
                                     max_new_tokens=4, loader=loader) for route in recipes.ROUTES}
    for route, row in rows.items():
        assert row["route"] == route and row["diverged"] is None and len(row["losses"]) == 2
        assert row["n"] == 2 and 0 <= row["exact_match"] <= 1 and 0 <= row["word_accuracy"] <= 1
        assert set(row["field_accuracy"]) == {"name", "age", "job", "city"} and len(row["predictions"]) == 2
        assert row["file_bytes"] >= 4 * row["trainable_params"]  # fp32 tensors plus a small header
        assert row["training_state_bytes"] > 0 and row["peak_gpu_memory_bytes"] is None  # a CPU
    # full fine-tuning keeps gradients and two Adam moments for every weight: the most training state
    assert rows["full"]["training_state_bytes"] > rows["lora+embeddings"]["training_state_bytes"] \
        > rows["lora"]["training_state_bytes"]
    assert rows["lora"]["r"] == 2 and rows["full"]["r"] is None


def test_continued_pretraining_runs_first_and_is_reported(loader):
    vd = newlang.generate_veldaran(0)
    row = recipes.run_route(vd["train"][:4], vd["test"][:2], route="lora", r=2, steps=2, batch_size=2,
                            pretrain_text=newlang.veldaran_corpus(4), pretrain_steps=2, max_new_tokens=4,
                            loader=loader)
    assert row["pretrain_steps"] == 2 and row["pretrain_time_s"] > 0 and row["pretrain_final_loss"] > 0
    assert row["train_time_s"] >= row["pretrain_time_s"] and "field_accuracy" not in row
    with pytest.raises(ValueError, match="needs pretrain_text"):
        recipes.run_route(vd["train"][:4], vd["test"][:2], pretrain_steps=2, loader=loader)


def test_a_diverged_run_reports_instead_of_scoring(loader):
    row = recipes.run_route(newlang.format_pool(4), load_task("format", "test")[:2], route="lora", r=2, steps=2,
                            batch_size=2, lr=1e30, loader=loader)
    assert row["diverged"] and "exact_match" not in row


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a CPU gives")
def test_paged_optimizer_needs_a_gpu():
    with pytest.raises(NoGPUError, match="paged optimizer"):
        recipes.paged_optimizer_peak()
