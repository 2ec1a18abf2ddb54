"""lora_edu.cli: `lora-edu finetune` end to end on a tiny model, and a clear exit-2 error for each bad input.

The CLI's model loader is replaced by a tiny random Llama with SmolLM2's real tokenizer, so a 2-step run with
2 evaluation examples takes seconds. The real run (SmolLM2, 40 steps) is measured in notebook 04.
"""

import json
import subprocess
import sys

import pytest
import torch

from lora_edu import cli, load_adapter, lora_layers
from lora_edu.pretrained import DEFAULT_MODEL, load_model, tiny_llama


@pytest.fixture(scope="module")
def tok():
    return load_model(verbose=False)[1]


@pytest.fixture
def tiny(monkeypatch, tok):
    """Make the CLI load a tiny Llama (fresh each call, seed 0) instead of SmolLM2."""
    loaded = []

    def fake_loader(name):
        loaded.append(name)
        return tiny_llama(seed=0, vocab_size=len(tok)), tok

    monkeypatch.setattr(cli, "load_base_model", fake_loader)
    return loaded


FAST = ["--steps", "2", "--batch-size", "2", "--warmup-steps", "0", "--eval-examples", "2",
        "--max-new-tokens", "3", "--r", "2", "--alpha", "4"]


def run(args, capsys):
    """main(args) -> (exit code, stdout, stderr); argparse errors exit through SystemExit."""
    try:
        code = cli.main(args)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_finetune_writes_adapter_and_metrics(tiny, tok, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, _ = run(["finetune", "--task", "format", "--output-dir", str(out_dir), *FAST], capsys)
    assert code == 0 and tiny == [DEFAULT_MODEL]
    assert sorted(p.name for p in out_dir.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                       "metrics.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    config = json.loads((out_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == DEFAULT_MODEL and config["r"] == 2 and config["lora_alpha"] == 4
    assert config["target_modules"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"])  # all-linear, the default
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["train"]["steps_done"] == 2 and len(metrics["train"]["loss"]) == 2
    assert metrics["before"]["n"] == metrics["after"]["n"] == 2 and metrics["diverged"] is None
    assert set(metrics["before"]["field_accuracy"]) == {"name", "age", "job", "city"}
    assert "predictions" not in metrics["after"] and len(metrics["examples"]) == 2
    assert "exact match" in out and "held-out phrasings" in out and "field accuracy (mean of 4)" in out
    # the adapter loads into a fresh base and changes its output (B was trained away from zero)
    model = load_adapter(tiny_llama(seed=0, vocab_size=len(tok)), out_dir)
    assert len(list(lora_layers(model))) == 2 * 7
    assert any(layer.lora_B.weight.abs().sum() > 0 for _, layer in lora_layers(model))


def test_target_list_knowledge_task_merge_and_overwrite(tiny, tok, tmp_path, capsys):
    out_dir = tmp_path / "run"
    args = ["finetune", "--task", "knowledge", "--output-dir", str(out_dir), "--target-modules", "q_proj, v_proj",
            "--rslora", "--merge", *FAST]
    assert run(args, capsys)[0] == 0
    config = json.loads((out_dir / "adapter_config.json").read_text())
    assert config["target_modules"] == ["q_proj", "v_proj"] and config["use_rslora"] is True
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert "field_accuracy" not in metrics["after"]  # the knowledge task has no fields
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(out_dir / "merged")
    reference = load_adapter(tiny_llama(seed=0, vocab_size=len(tok)), out_dir)
    ids = torch.tensor([[1, 5, 9, 200]])
    torch.testing.assert_close(merged(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)
    # a second run into the same folder needs --overwrite, and then replaces it whole
    code, _, err = run(args, capsys)
    assert code == 2 and "--overwrite" in err
    assert run([*args[:-len(FAST)], "--overwrite", *FAST[:-4], "--r", "4", "--alpha", "4"], capsys)[0] == 0
    assert json.loads((out_dir / "adapter_config.json").read_text())["r"] == 4


@pytest.mark.parametrize("extra, message", [
    (["--r", "0"], "--r must be >= 1"),
    (["--alpha", "0"], "--alpha must be > 0"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--batch-size", "-1"], "--batch-size must be >= 1"),
    (["--lr=-1e-3"], "--lr must be > 0"),
    (["--steps", "4", "--warmup-steps", "4"], "--warmup-steps must be in [0, --steps)"),
    (["--eval-examples", "100000"], "--eval-examples must be in [0, 240]"),
    (["--eval-examples", "-1"], "--eval-examples must be in [0, 240]"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--target-modules", "q_proj,,v_proj"], "has an empty name"),
    (["--target-modules", "query"], "matched no module"),  # found after loading: the names differ by model
    (["--target-modules", "model.layers.0.mlp"], "not an nn.Linear"),
    (["--r", "100"], "larger than min(in, out)"),  # the tiny model's layers are 32 wide
    (["--model", "SmolLM2"], "not of the form 'owner/name'"),
])
def test_bad_input_exits_2_with_a_message(extra, message, tiny, tmp_path, capsys, monkeypatch):
    if "--model" in extra:  # the real loader checks the name before looking anywhere
        monkeypatch.setattr(cli, "load_base_model", lambda name: load_model(name, verbose=False))
    out_dir = tmp_path / "run"
    code, out, err = run(["finetune", "--task", "format", "--output-dir", str(out_dir), *FAST, *extra], capsys)
    assert code == 2 and message in err and "usage: lora-edu finetune" in err, err
    assert "Traceback" not in err and not out_dir.exists()


def test_unknown_task_and_missing_arguments_exit_2(tmp_path, capsys):
    code, _, err = run(["finetune", "--task", "poetry", "--output-dir", str(tmp_path / "x")], capsys)
    assert code == 2 and "invalid choice: 'poetry'" in err
    code, _, err = run(["finetune", "--task", "format"], capsys)
    assert code == 2 and "--output-dir" in err
    code, _, err = run([], capsys)
    assert code == 2 and "COMMAND" in err


def test_output_dir_checks(tmp_path, capsys):
    base = ["finetune", "--task", "format", *FAST]
    (tmp_path / "file").write_text("x")
    code, _, err = run([*base, "--output-dir", str(tmp_path / "file")], capsys)
    assert code == 2 and "is a file, not a folder" in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    code, _, err = run([*base, "--output-dir", str(tmp_path / "notes")], capsys)
    assert code == 2 and "exists and is not empty" in err
    code, _, err = run([*base, "--output-dir", str(tmp_path / "notes"), "--overwrite"], capsys)
    assert code == 2 and "holds no adapter_config.json" in err  # --overwrite never deletes a stranger's folder
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_diverged_training_exits_1_and_keeps_the_last_good_adapter(tiny, tok, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, _, err = run(["finetune", "--task", "format", "--output-dir", str(out_dir), *FAST, "--lr", "1e30"],
                       capsys)
    assert code == 1 and "training diverged" in err and "Traceback" not in err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert "lower lr" in metrics["diverged"] and metrics["after"] is None
    assert (out_dir / "adapter_model.safetensors").is_file()
    # issue 13: the "last good" adapter used to hold the blown-up values (~1e30) and give NaN logits
    from safetensors.torch import load_file

    assert max(t.abs().max() for t in load_file(out_dir / "adapter_model.safetensors").values()) < 10
    model = load_adapter(tiny_llama(seed=0, vocab_size=len(tok)), out_dir)
    assert torch.isfinite(model(torch.tensor([[1, 5, 9]])).logits).all()


def test_module_and_console_script_entry_points():
    for cmd in ([sys.executable, "-m", "lora_edu.cli", "finetune", "--help"],):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "--target-modules" in done.stdout and "metrics.json" in done.stdout
    done = subprocess.run([sys.executable, "-m", "lora_edu.cli", "finetune", "--task", "format"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_ctrl_c_exits_130_and_writes_nothing(tiny, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lora_edu.training.train", interrupted)
    out_dir = tmp_path / "run"
    code, _, err = run(["finetune", "--task", "format", "--output-dir", str(out_dir), *FAST], capsys)
    assert code == 130 and "was not written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# --- issue 13: checked before the model loads; the output folder resolved first ---------------------------
@pytest.mark.parametrize("extra, message", [
    (["--alpha", "inf"], "--alpha must be finite"),
    (["--alpha", "nan"], "--alpha must be > 0"),
    (["--alpha", "1e308"], "65504"),
    (["--lr", "inf"], "--lr must be > 0 and finite"),
    (["--lr", "nan"], "--lr must be > 0 and finite"),
    (["--seed", "-1"], "--seed must be in [0, 4294967295]"),
    (["--seed", str(2 ** 32)], "--seed must be in [0, 4294967295]"),
])
def test_bad_numbers_exit_2_before_the_model_is_loaded(extra, message, tiny, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, _, err = run(["finetune", "--task", "format", "--output-dir", str(out_dir), *FAST, *extra], capsys)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert tiny == [] and not out_dir.exists()  # refused before loading anything


@pytest.mark.parametrize("name", [".", "", "sub/.."])
def test_the_current_folder_as_output_dir_is_refused_before_training(name, tiny, tmp_path, capsys, monkeypatch):
    """--output-dir . --overwrite used to train fully, then fail with EBUSY, lose the adapter and leave
    ..old-* folders."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")  # an earlier run's output, so --overwrite applies
    (tmp_path / "sub").mkdir()
    code, _, err = run(["finetune", "--task", "format", "--output-dir", name, "--overwrite", *FAST], capsys)
    assert code == 2 and "current folder" in err and tiny == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "sub"]


def test_dot_dot_paths_make_no_stray_folder(tiny, tmp_path, capsys):
    code, _, _ = run(["finetune", "--task", "format", "--output-dir", str(tmp_path / "x" / "sub" / ".."), *FAST],
                     capsys)
    assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["x"]
    assert (tmp_path / "x" / "adapter_config.json").is_file() and not (tmp_path / "x" / "sub").exists()


def test_output_dir_inside_a_file_is_refused_before_the_model_loads(tiny, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run(["finetune", "--task", "format", "--output-dir", str(tmp_path / "file" / "run"), *FAST],
                       capsys)
    assert code == 2 and "is a file" in err and tiny == []


def test_overwrite_through_a_symlink_keeps_the_link(tiny, tmp_path, capsys):
    real = tmp_path / "real"
    assert run(["finetune", "--task", "format", "--output-dir", str(real), *FAST], capsys)[0] == 0
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert run(["finetune", "--task", "format", "--output-dir", str(tmp_path / "link"), "--overwrite", *FAST],
               capsys)[0] == 0
    assert (tmp_path / "link").is_symlink() and (real / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_merge_of_a_tied_head_is_refused_before_training(tiny, tmp_path, capsys):
    """--merge with lm_head among the targets used to fail after training (SmolLM2 ties it to embed_tokens)."""
    out_dir = tmp_path / "run"
    code, out, err = run(["finetune", "--task", "format", "--output-dir", str(out_dir), "--merge",
                          "--target-modules", "q_proj,lm_head", *FAST], capsys)
    assert code == 2 and "tied" in err and "Traceback" not in err
    assert "Evaluating" not in out and not out_dir.exists()


def test_metrics_table_prints_the_n_of_every_group():
    before = {"n": 40, "exact_match": 0.0, "exact_match_seen": 0.0, "n_seen": 34, "exact_match_held_out": 0.0,
              "n_held_out": 6}
    after = {**before, "exact_match": 1.0, "exact_match_seen": 1.0, "exact_match_held_out": 1.0}
    table = cli.metrics_table(before, after)
    assert "metric (n=40)" in table and "seen phrasings (n=34)" in table and "held-out phrasings (n=6)" in table
    assert table.splitlines()[-1].split()[-2:] == ["0.0%", "100.0%"]


def test_metrics_table_says_the_field_accuracy_is_a_mean_over_the_four_fields():
    fields = {"name": 0.5, "age": 0.5, "job": 0.0, "city": 0.0}
    before = cli.scores({"n": 40, "exact_match": 0.0, "field_accuracy": fields, "valid_json": 0.5})
    after = cli.scores({"n": 40, "exact_match": 1.0, "field_accuracy": dict.fromkeys(fields, 1.0), "valid_json": 1.0})
    row = next(line for line in cli.metrics_table(before, after).splitlines() if line.startswith("field accuracy"))
    assert row.split()[:5] == ["field", "accuracy", "(mean", "of", "4)"] and row.split()[-2:] == ["25.0%", "100.0%"]
