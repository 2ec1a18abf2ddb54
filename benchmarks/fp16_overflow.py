"""Does SmolLM2 overflow in fp16? A forward pass on the series' prompts, per layer, on the CPU.

Colab's T4 has no bf16 hardware, so the series runs the frozen base in fp16 there (runtime.precision_policy).
fp16 tops out at 65504; an activation past it becomes inf and then nan, which no GradScaler can fix (the scaler
only rescales gradients). This script runs SmolLM2-135M-Instruct in fp32 and in fp16 on the training and test
examples of both tasks (prompt + answer, through the chat template), and prints, per module kind, the largest
|activation| in fp32, how close that is to fp16's limit, and whether any fp16 output holds inf or nan.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/fp16_overflow.py [--examples 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from lora_edu import build_example, collate, load_model, load_task, pad_token_id
from lora_edu.training import activation_ranges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64, help="examples per task and split")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    start = time.perf_counter()
    models = {dtype: load_model(dtype=dtype, verbose=False) for dtype in (torch.float32, torch.float16)}
    tok = models[torch.float32][1]
    examples = [ex for task in ("format", "knowledge") for split in ("train", "test")
                for ex in load_task(task, split)[:args.examples]]
    worst = {torch.float32: {}, torch.float16: {}}
    for i in range(0, len(examples), args.batch):
        feats = [build_example(tok, ex["prompt"], ex["target"]) for ex in examples[i:i + args.batch]]
        batch = collate(feats, pad_token_id(tok))
        for dtype, (model, _) in models.items():
            for name, (peak, bad) in activation_ranges(model, batch).items():
                kind = name.split(".")[-1] if ".layers." in name else name
                old = worst[dtype].get(kind, (0.0, 0, ""))
                worst[dtype][kind] = (max(old[0], peak), old[1] + bad, name if peak > old[0] else old[2])
    fp16_max = torch.finfo(torch.float16).max
    print(f"{len(examples)} examples (format and knowledge, train and test), batches of {args.batch}; "
          f"fp16 max {fp16_max:.0f}")
    print(f"{'module':22s} {'max |x| fp32':>13s} {'of fp16 max':>12s} {'max |x| fp16':>13s} {'non-finite fp16':>16s}  where")
    for kind, (peak, _, where) in sorted(worst[torch.float32].items(), key=lambda kv: -kv[1][0]):
        p16, bad16, _ = worst[torch.float16][kind]
        print(f"{kind:22s} {peak:13.1f} {peak / fp16_max:12.2%} {p16:13.1f} {bad16:16d}  {where}")
    total_bad = sum(b for _, b, _ in worst[torch.float16].values())
    print(f"outputs with inf or nan in fp16: {total_bad}; took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
