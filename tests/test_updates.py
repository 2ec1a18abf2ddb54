"""lora_edu.updates: equal-budget ranks counted by hand, Table 7's row on a planted update, the A matrices and
delta W read from a LoRA model and from a full fine-tune, the base model's own answers as forgetting targets."""

import math

import pytest
import torch

from lora_edu import LoraConfig, inject_lora, updates
from lora_edu.pretrained import load_model, tiny_llama

SETS = {"q": ("q_proj",), "v": ("v_proj",), "q,v": ("q_proj", "v_proj"),
        "q,k,v,o": ("q_proj", "k_proj", "v_proj", "o_proj"),
        "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")}


def test_budget_ranks_by_hand_on_the_tiny_llama():
    # tiny Llama: hidden 32, k/v out 16, MLP 72 -> per unit of rank q 64, k 48, v 48, o 64, gate/up/down 104
    # all seven: 536 per rank, so r_all=2 is a budget of 1072 per layer
    out = updates.budget_ranks(tiny_llama(), SETS, r_all=2)
    assert {k: v["r"] for k, v in out.items()} == {"q": 17, "v": 22, "q,v": 10, "q,k,v,o": 5, "all": 2}
    assert out["all"]["params"] == 2 * 536 * 2 and out["q,v"]["params"] == 10 * 112 * 2  # two layers
    assert all(abs(v["params"] / out["all"]["params"] - 1) < 0.1 for v in out.values())  # about equal
    with pytest.raises(ValueError, match="not linear layers"):
        updates.budget_ranks(tiny_llama(), {"x": ("qkv",)})


def test_update_summary_on_a_planted_update():
    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64)).Q
    S = torch.linspace(8.0, 0.5, 16, dtype=torch.float64)
    W = (U[:, :16] * S) @ V.T  # known singular values
    delta = 3.0 * U[:, 10:11] @ V[:, 10:11].T  # rank 1, along W's 11th singular pair
    row = updates.update_summary(delta, W, r=1)
    assert math.isclose(row["delta_norm"], 3.0, rel_tol=1e-12)
    assert math.isclose(row["proj_delta"], float(S[10]), rel_tol=1e-10)
    assert math.isclose(row["proj_weight"], float(S[0]), rel_tol=1e-10)  # W's own top direction
    assert math.isclose(row["amplification"], 3.0 / float(S[10]), rel_tol=1e-10)
    assert row["rank_90"] == 1 and row["singular_values"].shape == (16,)
    assert row["proj_random"] < row["proj_weight"]


def test_extract_updates_from_lora_and_from_a_full_fine_tune():
    model = inject_lora(tiny_llama(), LoraConfig(r=3, lora_alpha=6, target_modules=["q_proj", "v_proj"]))
    name = "model.layers.1.self_attn.q_proj"
    layer = model.get_submodule(name)
    with torch.no_grad():
        layer.lora_B.weight.normal_()  # a trained-looking update
    out = updates.extract_updates(model, [name])
    torch.testing.assert_close(out["A"][name], layer.lora_A.weight)
    assert out["updates"][name]["r"] == 3 and out["updates"][name]["rank_90"] <= 3
    expected = torch.linalg.matrix_norm(layer.get_delta_weight().detach().double())
    assert math.isclose(out["updates"][name]["delta_norm"], float(expected), rel_tol=1e-6)

    base, tuned = tiny_llama(), tiny_llama()
    name = "model.layers.0.mlp.down_proj"
    with torch.no_grad():
        tuned.get_submodule(name).weight.add_(0.1)  # rank 1: every entry moved by the same amount
    full = updates.extract_updates(tuned, [name], {name: base.get_submodule(name).weight}, r=2)
    assert full["A"] == {} and full["updates"][name]["rank_90"] == 1
    assert math.isclose(full["updates"][name]["delta_norm"], 0.1 * math.sqrt(32 * 72), rel_tol=1e-5)
    with pytest.raises(ValueError, match="no base weight"):
        updates.extract_updates(tuned, [name])
    with pytest.raises(ValueError, match="projection rank"):
        updates.extract_updates(tuned, [name], {name: base.get_submodule(name).weight})


def test_general_examples_are_the_base_models_own_finished_answers(monkeypatch):
    answers = {"Hello?": ("Hi there.", True), "Name a color.": ("  ", True), "Tell a story.": ("Once upon a", False)}
    asked = {}

    def fake(model, tok, prompts, max_new_tokens, return_finished):
        asked.update(max_new_tokens=max_new_tokens, return_finished=return_finished)
        return [answers[p][0] for p in prompts], [answers[p][1] for p in prompts]

    monkeypatch.setattr(updates, "generate_answers", fake)
    prompts = tuple(answers)
    examples = updates.general_examples(None, None, prompts=prompts)
    # an empty answer has nothing to score; a cut one would end in a forced end-of-turn token mid-sentence
    assert examples == [{"prompt": "Hello?", "target": "Hi there."}]
    assert asked == {"max_new_tokens": 96, "return_finished": True}
    answers["Hello?"] = ("Hi there, and", False)
    with pytest.raises(ValueError, match="finished within max_new_tokens=96"):
        updates.general_examples(None, None, prompts=prompts)
    assert len(updates.GENERAL_PROMPTS) == 16


def test_general_examples_generate_with_a_real_tokenizer():
    _, tok = load_model(verbose=False)
    model = tiny_llama(vocab_size=len(tok))
    try:
        examples = updates.general_examples(model, tok, prompts=("Hello?", "Name a color."), max_new_tokens=4)
    except ValueError as e:  # a random tiny model may end or cut every answer: then the error must say so
        assert "finished within max_new_tokens=4" in str(e)
    else:
        assert all(ex["target"].strip() and ex["prompt"] in ("Hello?", "Name a color.") for ex in examples)


def test_make_extract_reads_lora_layers_or_every_named_layer_of_a_full_fine_tune():
    _, tok = load_model(verbose=False)
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"]
    base = tiny_llama(vocab_size=len(tok))
    weights = {n: base.get_submodule(n).weight.detach().clone() for n in names}
    general = [{"prompt": "Hello?", "target": "Hi there."}]
    extract, name = updates.make_extract(names, weights, tok, general, r_full=2)
    lora = inject_lora(tiny_llama(vocab_size=len(tok)), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    with torch.no_grad():
        lora.get_submodule(names[0]).lora_B.weight.normal_()
    out = extract(lora)
    assert list(out["updates"]) == [names[0]] and list(out["A"]) == [names[0]] and out["general_loss"] > 0
    tuned = tiny_llama(vocab_size=len(tok))
    with torch.no_grad():
        tuned.get_submodule(names[1]).weight.mul_(1.5)  # delta W = 0.5 W for k_proj, 0 for q_proj
    with pytest.raises(ValueError, match="did not change"):  # q_proj did not move: it has no directions
        extract(tuned)
    _, other = updates.make_extract(names, weights, tok, general + general, r_full=2)
    _, other_r = updates.make_extract(names, weights, tok, general, r_full=3)
    assert len({name, other, other_r}) == 3  # any change of what is measured changes the cache key


def test_exact_counts_name_each_runs_count_not_a_mean_no_run_scored():
    def res(em, n=20):
        return {"row": {"exact_match_after": em, "n_eval": n}}

    assert updates.exact_counts([res(0.05), res(0.10)]) == "1 and 2 of 20"  # the mean would say 1.5 questions
    assert updates.exact_counts([res(0.65)]) == "13 of 20"
    assert updates.exact_counts([res(0.0), res(0.05), res(0.1)]) == "0, 1 and 2 of 20"
    with pytest.raises(ValueError, match="different numbers of questions"):
        updates.exact_counts([res(0.1, 20), res(0.1, 10)])
    with pytest.raises(ValueError, match="no runs"):
        updates.exact_counts([])
