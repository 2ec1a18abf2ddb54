"""lora_edu.experiments: one run end to end and the rank sweep on a tiny Llama, the CUDA dtype path with a faked
GPU capability, and a clear error for each bad input (out of GPU memory, no GPU, no model source).

The base model is a tiny random Llama with SmolLM2's real tokenizer, so a run of 2 steps takes about a second.
"""

import pytest
import torch

from lora_edu import cli, experiments, load_adapter, pretrained, runtime
from lora_edu.experiments import OutOfGPUMemory, RunConfig
from lora_edu.pretrained import DEFAULT_MODEL, tiny_llama
from lora_edu.qlora import NF4Linear

TINY = dict(steps=2, batch_size=4, warmup_steps=0, eval_examples=2, max_new_tokens=3, r=2, lora_alpha=4.0)


def test_run_config_row_and_saved_adapter(loader, tok, tmp_path):
    res = experiments.run_config(RunConfig(**{**TINY, "lr": 1e-2, "steps": 4}), loader=loader,
                                 save_to=tmp_path / "adapter", keep_model=True, log=lambda *a: None)
    row = res.row
    assert loader.calls == [DEFAULT_MODEL]
    assert row["steps_done"] == 4 and row["n_eval"] == 2 and row["peak_memory_bytes"] is None  # no GPU here
    assert row["tokens_per_s"] > 0 and row["wall_time_s"] >= row["train_time_s"] > 0
    assert 0 <= row["exact_match_before"] <= 1 and 0 <= row["field_accuracy_after"] <= 1
    assert row["answer_loss_after"] < row["answer_loss_before"]  # 4 steps at lr 1e-2 move even a random model
    assert row["label"] == "format · LoRA r=2, alpha=4" and row["method"] == "lora" and row["diverged"] is None
    assert len(res.before["predictions"]) == 2 and res.train.history[-1]["step"] == 3
    # the saved adapter is the trained one: same logits in a fresh base
    fresh = load_adapter(tiny_llama(seed=0, vocab_size=len(tok)), tmp_path / "adapter")
    ids = torch.tensor([[1, 5, 9, 200]])
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, res.model(ids).logits)


def test_trainable_count_is_r_times_in_plus_out(loader):
    res = experiments.run_config(RunConfig(**{**TINY, "eval_examples": 0}), loader=loader, log=lambda *a: None)
    shapes = [(32, 32), (32, 16), (32, 16), (32, 32), (32, 72), (32, 72), (72, 32)]  # tiny_llama's 7 types
    assert res.row["trainable_params"] == 2 * 2 * sum(i + o for i, o in shapes)  # 2 layers, r = 2
    assert res.model is None and res.before is None and res.row["exact_match_after"] is None


def test_qlora_run_quantizes_the_base(loader):
    res = experiments.run_config(RunConfig(**{**TINY, "method": "qlora", "task": "knowledge"}), loader=loader,
                                 keep_model=True, log=lambda *a: None)
    assert sum(isinstance(m, NF4Linear) for m in res.model.modules()) == 14
    lora = experiments.run_config(RunConfig(**{**TINY, "task": "knowledge", "eval_examples": 0}), loader=loader,
                                  log=lambda *a: None)
    assert res.row["total_params"] == lora.row["total_params"]  # the 4-bit weights count, as in PEFT
    assert res.row["trainable_params"] == lora.row["trainable_params"]
    assert res.row["label"] == "knowledge · QLoRA r=2, alpha=4" and res.row["answer_loss_after"] is not None
    assert res.row["field_accuracy_after"] is None  # the knowledge task has no fields


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16)])
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_cuda_precision_path_gives_16_bit_base_and_fp32_adapters(capability, dtype, method, loader):
    """What build_model does on a T4 (fp16 + GradScaler) or an A100 (bf16), checked on the CPU."""
    precision = runtime.precision_policy("cuda", capability=capability)
    model, _ = experiments.build_model(RunConfig(**{**TINY, "method": method}), device="cpu", precision=precision,
                                       loader=loader)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)  # GradScaler needs fp32 gradients
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert all(p.dtype == dtype for p in frozen)  # embeddings, norms (and the LoRA base weights)
    if method == "qlora":
        assert {m.compute_dtype for m in model.modules() if isinstance(m, NF4Linear)} == {dtype}


def test_rank_sweep_rows_alpha_2r_rslora_and_one_base_measurement(loader, monkeypatch):
    import lora_edu.evaluation

    calls = []
    real = lora_edu.evaluation.evaluate
    monkeypatch.setattr(lora_edu.evaluation, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    templates = {"knowledge": RunConfig(**{**TINY, "steps": 1, "task": "format"})}  # the key names the task
    lines = []
    rows = experiments.rank_sweep(templates, ranks=[1, 2], seeds=[0, 1], rslora_ranks=[2], log=lines.append,
                                  loader=loader)
    assert len(rows) == 2 * 3 and len(lines) == len(rows)
    assert [(r["task"], r["seed"], r["r"], r["lora_alpha"], r["use_rslora"]) for r in rows] == [
        ("knowledge", s, r, 2.0 * r, rs) for s in (0, 1) for r, rs in ((1, False), (2, False), (2, True))]
    assert len(calls) == 1 + 6  # the base once, then every run after training
    before = {r["answer_loss_before"] for r in rows}
    assert len(before) == 1 and None not in before  # measured once, copied into every row
    means = experiments.sweep_means(rows, "knowledge", "answer_loss_after")
    assert list(means) == [1, 2]
    with pytest.raises(ValueError, match="at least one"):
        experiments.rank_sweep(templates, ranks=[], loader=loader)


def test_sweep_reading_helpers():
    rows = [{"task": "format", "r": r, "use_rslora": False, "exact_match_after": v, "seed": s}
            for r, vs in ((1, (0.5, 0.7)), (8, (0.95, 0.97)), (64, (1.0, 0.98))) for s, v in enumerate(vs)]
    rows.append({"task": "format", "r": 64, "use_rslora": True, "exact_match_after": 0.2, "seed": 0})
    assert experiments.sweep_means(rows, "format", "exact_match_after") == pytest.approx({1: 0.6, 8: 0.96, 64: 0.99})
    assert experiments.sweep_means(rows, "format", "exact_match_after", use_rslora=True) == {64: 0.2}
    assert experiments.smallest_sufficient_rank(rows, "format", "exact_match_after", 0.05) == (8, 64, 0.99)
    assert experiments.smallest_sufficient_rank(rows, "format", "exact_match_after", 0.0)[0] == 64
    assert experiments.smallest_sufficient_rank(rows, "knowledge", "exact_match_after", 0.05) is None
    loss_rows = [dict(r, answer_loss_after=1 - r["exact_match_after"]) for r in rows]
    assert experiments.smallest_sufficient_rank(loss_rows, "format", "answer_loss_after", 0.05,
                                                higher_is_better=False)[:2] == (8, 64)


def test_n_facts_keeps_the_same_first_facts_in_train_and_test():
    cfg = RunConfig(task="knowledge", n_facts=10)
    train, test = experiments.task_split(cfg, "train"), experiments.task_split(cfg, "test")
    facts = {ex["fact_id"] for ex in train}
    assert len(facts) == 10 and facts == {ex["fact_id"] for ex in test}
    assert len(train) == 30 and len(test) == 10  # 3 training phrasings and 1 held-out phrasing per fact
    assert facts == set(sorted({ex["fact_id"] for ex in experiments.task_split(RunConfig(task="knowledge"),
                                                                               "train")})[:10])
    assert cfg.label.startswith("knowledge (10 facts)")


def test_full_fine_tuning_trains_every_weight_through_the_same_run(loader, tok, tmp_path):
    cfg = RunConfig(**{**TINY, "method": "full", "task": "knowledge", "n_facts": 4, "lr": 1e-3})
    res = experiments.run_config(cfg, loader=loader, keep_model=True, log=lambda *a: None)
    base = tiny_llama(seed=0, vocab_size=len(tok))
    assert res.row["trainable_params"] == res.row["total_params"] == sum(p.numel() for p in base.parameters())
    assert res.row["label"] == "knowledge (4 facts) · full fine-tuning" and res.row["n_eval"] == 2
    changed = [n for n, p in res.model.named_parameters()
               if not torch.equal(p, base.get_parameter(n))]
    assert "model.layers.0.mlp.down_proj.weight" in changed and "model.embed_tokens.weight" in changed
    with pytest.raises(ValueError, match="trains no adapter"):
        experiments.run_config(cfg, loader=loader, save_to=tmp_path / "a", log=lambda *a: None)


# --- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"task": "poetry"}, "task must be one of"),
    ({"method": "prefix"}, "method must be one of"),
    ({"n_facts": 5}, "n_facts applies to the knowledge task only"),
    ({"task": "knowledge", "n_facts": -1}, "n_facts must be an int >= 0"),
    ({"task": "knowledge", "n_facts": 2, "eval_examples": 3}, "eval_examples must be in [0, 2]"),
    ({"method": "qlora", "use_dora": True}, "use_dora=True is not supported"),
    ({"eval_examples": 10_000}, "eval_examples must be in [0, 240]"),
    ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
    ({"r": 0}, "r must be"),
    ({"steps": 0}, "steps must be an int >= 1"),  # train's own check, before any evaluation
    ({"warmup_steps": 2}, "warmup_steps must be in [0, steps)"),
])
def test_bad_config_is_refused_before_any_work(change, message, loader, monkeypatch):
    import lora_edu.evaluation

    monkeypatch.setattr(lora_edu.evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated a bad config"))
    with pytest.raises(ValueError) as e:
        experiments.run_config(RunConfig(**{**TINY, **change}), loader=loader, log=lambda *a: None)
    assert message in str(e.value)


def oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize("batch_size, advice", [(4, "batch_size=2"), (1, "batch_size is already 1")])
def test_out_of_memory_says_to_halve_the_batch(batch_size, advice, loader, monkeypatch):
    monkeypatch.setattr("lora_edu.training.training_step", oom)
    with pytest.raises(OutOfGPUMemory) as e:
        experiments.run_config(RunConfig(**{**TINY, "batch_size": batch_size}), loader=loader, log=lambda *a: None)
    assert advice in str(e.value) and f"at batch_size={batch_size}" in str(e.value)
    assert e.value.__context__ is None and e.value.__cause__ is None  # no frames holding the model alive


def test_cli_out_of_memory_exits_1_without_traceback_or_output(loader, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "load_base_model", loader)
    monkeypatch.setattr("lora_edu.training.training_step", oom)
    code = cli.main(["finetune", "--task", "format", "--output-dir", str(tmp_path / "run"), "--steps", "2",
                     "--batch-size", "8", "--warmup-steps", "0", "--eval-examples", "0", "--r", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "ran out of memory" in err and "batch_size=4" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_model_choice_offline_and_without_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LORA_EDU_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(pretrained.ModelSourceError, match="HF_HUB_OFFLINE=1 is set"):
        experiments.check_model_available(experiments.LARGER_MODEL, "cuda")
    with pytest.raises(ValueError, match="owner/name"):
        experiments.check_model_available("SmolLM2", "cpu")
    monkeypatch.setattr(pretrained, "hub_reachable", lambda: True)  # as on Colab: the hub can serve it
    with pytest.raises(runtime.NoGPUError, match="Runtime > Change runtime type > T4 GPU"):
        experiments.check_model_available(experiments.LARGER_MODEL, "cpu")
    experiments.check_model_available(experiments.LARGER_MODEL, "cuda")  # a GPU and a source: fine
    experiments.check_model_available(DEFAULT_MODEL, "cpu")  # the default runs anywhere


def test_an_interrupted_rank_sweep_keeps_its_finished_rows_and_resumes(loader, monkeypatch):
    templates = {"format": RunConfig(**{**TINY, "steps": 1})}
    real, started = experiments.run_config, []

    def stop_at_the_third(cfg, **kw):
        started.append((cfg.r, cfg.seed))
        if len(started) == 3:
            raise KeyboardInterrupt  # the learner presses stop during the third run
        return real(cfg, **kw)

    monkeypatch.setattr(experiments, "run_config", stop_at_the_third)
    rows, lines = [], []
    with pytest.raises(KeyboardInterrupt):
        experiments.rank_sweep(templates, ranks=[1, 2], seeds=[0, 1], rows=rows, log=lines.append, loader=loader)
    assert [(r["r"], r["seed"]) for r in rows] == [(1, 0), (2, 0)]  # the two finished runs survive
    assert "stopped after 2 of 4 runs" in lines[-1] and "rows=" in lines[-1]
    monkeypatch.setattr(experiments, "run_config", real)
    again = experiments.rank_sweep(templates, ranks=[1, 2], seeds=[0, 1], rows=rows, log=lines.append, loader=loader)
    assert again is rows and [(r["r"], r["seed"]) for r in rows] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    assert len({r["answer_loss_before"] for r in rows}) == 1  # the base measured once, before the stop
