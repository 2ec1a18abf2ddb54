"""lora_edu.distributed: `lora-edu finetune` under torchrun with 2 gloo processes, against one process.

A tiny random Llama and SmolLM2's tokenizer are saved to a folder, which `--model` loads. The 2-process runs go
through `python -m torch.distributed.run` (what the `torchrun` script runs) with a small launcher script that
records each rank's pid and every `save_adapter` call, and can make one rank raise or hang on purpose. The
bad launches (too many ranks, an uneven batch, a missing backend, a locked output folder) are checked in this
process: they fail before any other process is needed.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lora_edu import cli, distributed
from lora_edu.pretrained import load_model, tiny_llama

REPO = Path(__file__).resolve().parent.parent  # the ranks import this checkout's lora_edu

RUN = ["finetune", "--task", "format", "--steps", "4", "--batch-size", "4", "--warmup-steps", "0",
       "--eval-examples", "2", "--max-new-tokens", "3", "--r", "2", "--alpha", "4", "--lr", "1e-2"]
# Measured: losses 1e-6 apart, adapters 4e-8 apart relative to their norm (the sums run in another order).
# Relative, not per element: Adam divides by sqrt(v), so an element whose gradient is near 0 can move by up to
# 2 lr on rounding alone (2e-4 on SmolLM2 in notebook 08). Averaging per-rank means instead gives 5e-3.
LOSS_TOL, ADAPTER_TOL = 1e-5, 1e-5

LAUNCHER = textwrap.dedent('''
    import os, sys, time
    from lora_edu import cli, io, training

    rank, log = os.environ["RANK"], os.environ["TEST_LOG"]
    with open(os.path.join(log, "pid." + rank), "w") as f:
        f.write(str(os.getpid()))
    real_save = io.save_adapter

    def logged_save(*args, **kwargs):  # who writes: each call leaves a file named after its rank
        open(os.path.join(log, "wrote." + rank), "a").write("x")
        return real_save(*args, **kwargs)

    io.save_adapter = logged_save
    if os.environ.get("FAIL_RANK") == rank:
        real_step = training.training_step

        def failing_step(*args, **kwargs):
            if os.environ["FAIL_HOW"] == "hang":
                time.sleep(600)
            raise RuntimeError("rank " + rank + " fails on purpose")

        training.training_step = failing_step
    sys.exit(cli.main())
''')


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A folder holding a tiny Llama and SmolLM2's tokenizer: what `--model PATH` loads."""
    tok = load_model(verbose=False)[1]
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_llama(seed=0, vocab_size=len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


LAUNCHERS = {  # the same launcher underneath: accelerate's --multi_gpu starts torch.distributed.run's agent
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2",
                   "--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no"],
}


def torchrun(tmp_path, args, launcher="torchrun", timeout=150, **env):
    """Run `torchrun --standalone --nproc_per_node=2 launcher.py -- args` (or accelerate launch); returns
    (result, log folder, seconds)."""
    log = tmp_path / "log"
    log.mkdir()
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TEST_LOG": str(log), **env,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [*LAUNCHERS[launcher], str(script), "--", *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)
    return done, log, time.perf_counter() - start


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_all_ranks_gone(log, nproc=2):
    pids = [int((log / f"pid.{r}").read_text()) for r in range(nproc)]
    deadline = time.time() + 10  # torchrun has returned; its workers' exits may still be in flight
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids), f"rank processes {pids} still running"


@pytest.fixture(scope="module")
def one_process(tiny_folder, tmp_path_factory):
    """The reference: the same run on one process, no launcher."""
    one = tmp_path_factory.mktemp("one-process") / "one"
    assert cli.main([*RUN, "--model", str(tiny_folder), "--output-dir", str(one)]) == 0
    return one


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_give_the_loss_curve_and_adapter_of_one(launcher, one_process, tiny_folder, tmp_path):
    one, two = one_process, tmp_path / "two"
    done, log, _ = torchrun(tmp_path, [*RUN, "--model", str(tiny_folder), "--output-dir", str(two)], launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2 (gloo, cpu): global batch 4 = 2 x 2" in done.stdout
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m1["world_size"] == 1 and m2["world_size"] == 2
    torch.testing.assert_close(torch.tensor(m2["train"]["loss"]), torch.tensor(m1["train"]["loss"]),
                               atol=LOSS_TOL, rtol=0)
    assert m1["train"]["loss"][0] != m1["train"]["loss"][-1]  # it trained: the comparison is not of constants
    a1, a2 = (load_file(d / "adapter_model.safetensors") for d in (one, two))
    assert sorted(a1) == sorted(a2) and len(a1) == 2 * 7 * 2  # 2 layers x 7 linears x (A, B)
    gap = sum(((a1[k] - a2[k]) ** 2).sum() for k in a1).sqrt() / sum((a1[k] ** 2).sum() for k in a1).sqrt()
    assert gap < ADAPTER_TOL, gap
    assert max(a1[k].abs().max() for k in a1 if "lora_B" in k) > 1e-3  # B moved away from 0: it trained
    assert m2["after"]["n"] == 2 and m2["before"]["n"] == 2  # rank 0 evaluated
    # only rank 0 wrote, once; nothing else was left beside the output folder (no lock, no staging)
    assert sorted(p.name for p in log.iterdir() if p.name.startswith("wrote")) == ["wrote.0"]
    assert (log / "wrote.0").read_text() == "x"
    assert sorted(p.name for p in two.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                   "metrics.json"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert_all_ranks_gone(log)


@pytest.mark.parametrize("how, message", [
    ("raise", "rank 1 of 2 failed: RuntimeError: rank 1 fails on purpose"),
    ("hang", "Another rank did not answer within 3 s (--dist-timeout)"),  # rank 0 times out, names why
])
def test_a_failing_or_stuck_rank_ends_the_whole_run_and_writes_nothing(how, message, tiny_folder, tmp_path):
    out = tmp_path / "run"
    args = [*RUN, "--eval-examples", "0", "--model", str(tiny_folder), "--output-dir", str(out),
            "--dist-timeout", "3"]
    done, log, seconds = torchrun(tmp_path, args, FAIL_RANK="1", FAIL_HOW=how)
    assert done.returncode != 0 and message in done.stderr, done.stderr[-3000:]
    assert not out.exists() and not list(log.glob("wrote.*"))  # no output folder, not even a partial one
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder, no lock
    assert_all_ranks_gone(log)
    assert seconds < 120  # it ended by itself: the hung rank was stopped, not waited for


# --- bad launches, seen before any other process is needed --------------------------------------------------
def launched_as(monkeypatch, rank=0, world_size=2):
    for name, value in {"RANK": rank, "WORLD_SIZE": world_size, "LOCAL_RANK": rank,
                        "LOCAL_WORLD_SIZE": world_size, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29512"}.items():
        monkeypatch.setenv(name, str(value))


def run_cli(args, capsys):
    try:
        code = cli.main(args)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Unable to enable fault handler")  # torchrun's @record, under pytest's capture
@pytest.mark.parametrize("world_size, batch, extra, message", [
    (4, 2, [], "--batch-size 2 is the global batch, split across 4 processes, so 2 of them would get no"),
    (2, 3, [], "must split evenly over the 2 processes (3 / 2 is not a whole number). To fix: --batch-size 2 or 4"),
    (2, 2, ["--backend", "nccl"], "The nccl backend needs CUDA GPUs, and this machine has none"),
    (2, 2, ["--dist-timeout", "0"], "the distributed timeout must be > 0 seconds"),
])
def test_bad_launch_exits_2_with_the_fix(world_size, batch, extra, message, tiny_folder, tmp_path, capsys,
                                          monkeypatch):
    launched_as(monkeypatch, world_size=world_size)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    out = tmp_path / "run"
    code, err = run_cli([*RUN, "--batch-size", str(batch), "--model", str(tiny_folder), "--output-dir", str(out),
                         *extra], capsys)
    assert code == 2 and message in err and "usage: lora-edu finetune" in err, err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []
    assert not torch.distributed.is_initialized()


def test_a_second_run_into_the_same_output_folder_is_refused(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a live "first run"
    try:
        (tmp_path / ".run.lock").write_text(f"{distributed.socket.gethostname()} {other.pid}")
        code, err = run_cli([*RUN, "--model", str(tiny_folder), "--output-dir", str(out)], capsys)
        assert code == 2 and f"Another run (process {other.pid}" in err and "pick another --output-dir" in err
        assert not out.exists() and (tmp_path / ".run.lock").is_file()  # its lock is left alone
    finally:
        other.kill()
        other.wait()
    # once that process is dead its lock is stale: the next run takes it over, finishes and removes it
    code, _ = run_cli([*RUN, "--eval-examples", "0", "--model", str(tiny_folder), "--output-dir", str(out)], capsys)
    assert code == 0 and (out / "adapter_config.json").is_file() and not (tmp_path / ".run.lock").exists()


def test_claim_output_dir_is_exclusive_and_cleans_up(tmp_path):
    with distributed.claim_output_dir(tmp_path / "out"):
        with pytest.raises(ValueError, match="Another run"), distributed.claim_output_dir(tmp_path / "out"):
            pass
        assert (tmp_path / ".out.lock").is_file()
    assert list(tmp_path.iterdir()) == []


def test_model_folder_without_a_tokenizer_exits_2(tmp_path, capsys):
    tiny_llama().save_pretrained(tmp_path / "model-only")
    code, err = run_cli([*RUN, "--model", str(tmp_path / "model-only"), "--output-dir", str(tmp_path / "o")],
                        capsys)
    assert code == 2 and "lacks ['tokenizer_config.json']" in err and "tokenizer.save_pretrained" in err


# --- the pieces -------------------------------------------------------------------------------------------
def test_shard_gives_each_rank_its_contiguous_slice():
    world = [distributed.World(r, 2, r, "gloo", torch.device("cpu")) for r in range(2)]
    assert [distributed.shard([5, 1, 7, 3], w) for w in world] == [[5, 1], [7, 3]]
    assert distributed.shard([5, 1, 7], None) == [5, 1, 7]  # one process: the whole batch
    with pytest.raises(ValueError, match="split evenly"):
        distributed.shard([5, 1, 7], world[0])


def test_single_process_needs_no_launcher(monkeypatch):
    for name in distributed.LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_world() is None and distributed.world_size_from_env() == 1
    distributed.barrier(None, "nowhere")  # a no-op
    with pytest.raises(ValueError, match="backend must be one of"):
        distributed.resolve_backend("mpi")
    assert distributed.resolve_backend("auto") in ("gloo", "nccl")


# --- the road further (README "Scaling out"): TRL's SFTTrainer takes our adapter through PEFT -------------------
def test_our_adapter_continues_training_in_peft(one_process, tiny_folder, tmp_path):
    """What SFTTrainer(model=PeftModel.from_pretrained(base, ours, is_trainable=True)) relies on: PEFT loads our
    adapter as trainable, gives our loss, trains only A and B, and what it saves loads back into lora_edu."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lora_edu import load_adapter, lora_layers
    from lora_edu.chat import build_example, collate, pad_token_id
    from lora_edu.data import load_task

    tok = load_model(verbose=False)[1]
    batch = collate([build_example(tok, ex["prompt"], ex["target"]) for ex in load_task("format", "train")[:2]],
                    pad_token_id(tok))
    theirs = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_folder), one_process,
                                       is_trainable=True)
    ours = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_folder), one_process).eval()
    loss = theirs(**batch).loss
    torch.testing.assert_close(loss, ours(**batch).loss, atol=1e-6, rtol=1e-6)
    trainable = [n for n, p in theirs.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 7 * 2 and all("lora_A" in n or "lora_B" in n for n in trainable)
    loss.backward()
    torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=1e-2).step()
    theirs.save_pretrained(tmp_path / "continued")
    again = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_folder), tmp_path / "continued").eval()
    assert len(list(lora_layers(again))) == 14
    assert again(**batch).loss < ours(**batch).loss  # one more step on these two examples lowered their loss
