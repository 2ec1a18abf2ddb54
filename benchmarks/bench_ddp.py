"""Does data parallelism pay on this machine? One process x T threads against N processes x T/N threads.

Runs the same ``lora-edu finetune`` (SmolLM2-135M-Instruct, fp32, the format task, no evaluation) as

- one process with ``OMP_NUM_THREADS=T`` (``python -m lora_edu.cli finetune ...``), and
- ``torchrun --standalone --nproc_per_node=N`` with ``OMP_NUM_THREADS=T/N`` per rank (gloo, DDP),

taking turns for ``--rounds`` rounds (who goes first alternates), and prints each run's training time (the
optimizer steps only, from metrics.json), the whole command's wall time (start-up and model load included),
real tokens per second, and the ratio of the medians (> 1: DDP is faster). It also checks that both give the
same loss curve, so the timing compares the same work. Measurements, not tests: run by hand.

    .venv/bin/python benchmarks/bench_ddp.py                     # 2 threads vs 2 x 1, 6 steps of batch 8
    .venv/bin/python benchmarks/bench_ddp.py --steps 10 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import machine_info  # benchmarks/timing.py (python puts the script's folder on the path)

REPO = Path(__file__).resolve().parent.parent


def run_once(kind: str, args, out: Path) -> dict:
    """One run; returns metrics.json's "train" part with the command's wall time added."""
    ft = ["finetune", "--task", "format", "--steps", str(args.steps), "--batch-size", str(args.batch_size),
          "--warmup-steps", "0", "--eval-examples", "0", "--output-dir", str(out)]
    threads = args.threads if kind == "single" else args.threads // args.nproc
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if kind == "single":
        cmd = [sys.executable, "-m", "lora_edu.cli", *ft]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               "-m", "lora_edu.cli", "--", *ft]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    train = json.loads((out / "metrics.json").read_text())["train"]
    return {**train, "command_wall_s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all (default: %(default)s)")
    p.add_argument("--nproc", type=int, default=2, help="DDP processes (default: %(default)s)")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="global batch (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each kind, taking turns (default: %(default)s)")
    args = p.parse_args()
    if args.threads % args.nproc or args.batch_size % args.nproc:
        p.error("--threads and --batch-size must be multiples of --nproc")
    import transformers

    print(machine_info(args.threads, {"transformers": transformers.__version__}))
    print(f"SmolLM2-135M-Instruct fp32, LoRA r=8 all-linear, {args.steps} steps of global batch {args.batch_size}; "
          f"1 process x {args.threads} threads vs {args.nproc} processes x {args.threads // args.nproc} "
          f"thread(s), gloo; {args.rounds} rounds")
    runs: dict[str, list[dict]] = {"single": [], "ddp": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for kind in (["single", "ddp"] if i % 2 == 0 else ["ddp", "single"]):
                r = run_once(kind, args, Path(tmp) / f"{kind}-{i}")
                runs[kind].append(r)
                print(f"  round {i} {kind:>6}: train {r['train_time_s']:6.1f} s ({r['tokens_per_s']:6.0f} tokens/s),"
                      f" whole command {r['command_wall_s']:6.1f} s, final loss {r['final_loss']:.4f}", flush=True)
    gap = max(abs(a - b) for a, b in zip(runs["single"][0]["loss"], runs["ddp"][0]["loss"], strict=True))
    print(f"loss curves: largest difference {gap:.2e} over {args.steps} steps (same work on both sides)")
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("train_time_s", "command_wall_s")}
           for k, v in runs.items()}
    for what, key in (("training steps", "train_time_s"), ("whole command", "command_wall_s")):
        print(f"{what:>15}: single {med['single'][key]:6.1f} s, DDP {med['ddp'][key]:6.1f} s -> speed-up "
              f"single / DDP = {med['single'][key] / med['ddp'][key]:.2f} (> 1: DDP faster; median of "
              f"{args.rounds})")
    print(f"torch {torch.__version__}; load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
