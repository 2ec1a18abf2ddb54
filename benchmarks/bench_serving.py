"""Serving several adapters in one batch: throughput and latency against the number of distinct adapters.

Run from the repository root:  python benchmarks/bench_serving.py --quick   (3 samples, 8 new tokens; a few
minutes on a 2-core CPU). The default, 5 samples and 16 new tokens, takes about twice as long.

On SmolLM2-135M-Instruct (``load_model()``, fp32) with 8 LoRA adapters of mixed ranks (4, 8, 16) and targets
(q_proj+v_proj, or all seven linear types), a batch of ``--batch-size`` prompts of 32 tokens generates
``--new-tokens`` tokens greedily (``min_new_tokens`` = ``max_new_tokens``, so every method does the same
work). Row i uses adapter i mod k, for k distinct adapters in the batch, k = 1, 2, 4, 8. It times, interleaved:

  merged         the batch through one merged copy of the model (k = 1 only: a merged model has one adapter)
  merge-swap     for each adapter of the batch: merge it into the base weights, generate its rows, restore
                 W0 (S-LoRA section 7.5's baseline: the rows of different adapters cannot share a forward)
  peft           PEFT's mixed batch: ``PeftModel.generate(..., adapter_names=...)`` (``_mixed_batch_forward``)
  grouped        lora_edu's ``MultiLoraModel(mode="grouped")`` (PEFT's loop over the distinct adapters)
  gathered       lora_edu's ``MultiLoraModel(mode="gathered")`` (BGMV: per-row gathered A, B; one bmm)

Before timing it checks that peft, grouped and gathered generate the same tokens for k = 8. It prints
generated tokens per second (throughput) and seconds per batch (latency: every row of a batch finishes
together), medians of the samples, the ratios against PEFT in the same run, and the memory of N adapters
against N merged copies of the model. ``--json PATH`` also writes the numbers. Speed is measured here,
never asserted in the tests (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import tempfile
from pathlib import Path

import torch
import transformers
from timing import interleaved, machine_info  # benchmarks/timing.py

from lora_edu import LoraConfig, inject_lora, load_adapter, merge_and_unload, save_adapter
from lora_edu.serving import MultiLoraModel, merged

for _noisy in ("bitsandbytes", "kernels"):  # optional-kernel notes logged when bitsandbytes is imported
    logging.getLogger(_noisy).setLevel(logging.ERROR)
import peft  # noqa: E402  (after the line above)

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# 8 adapters: ranks 4/8/16, attention-only or all-linear, one with rsLoRA
SETTINGS = [dict(r=r, lora_alpha=2 * r, target_modules=t, use_rslora=(i == 5))
            for i, (r, t) in enumerate([(8, ["q_proj", "v_proj"]), (16, ALL), (4, ["q_proj", "v_proj"]), (8, ALL),
                                        (16, ["q_proj", "v_proj"]), (4, ALL), (8, ["q_proj", "v_proj"]), (8, ALL)])]
MIXES = (1, 2, 4, 8)


def load(tiny: bool):
    if tiny:  # a random 2-layer Llama: for developing this script, not for numbers
        from lora_edu.pretrained import tiny_llama

        return tiny_llama(vocab_size=256, hidden_size=64), 256
    from lora_edu import load_model

    model, tokenizer = load_model(verbose=False)
    return model, model.config.vocab_size


def write_adapters(base, root: Path) -> list[Path]:
    paths = []
    for i, setting in enumerate(SETTINGS):
        torch.manual_seed(i)
        model = inject_lora(copy.deepcopy(base), LoraConfig(**setting))
        with torch.no_grad():  # B = 0 at init; a trained adapter's B is not, and zeros could be special-cased
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.02)
        paths.append(save_adapter(model, root / f"adapter{i}"))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 samples, 8 new tokens")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a tiny random model (develop the script)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    samples = args.samples or (3 if args.quick else 5)
    new_tokens = args.new_tokens or (8 if args.quick else 16)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    print(machine_info(args.threads, {"transformers": transformers.__version__, "peft": peft.__version__}))

    base, vocab = load(args.tiny)
    tmp = Path(tempfile.mkdtemp(prefix="bench_serving-"))
    paths = write_adapters(base, tmp)
    names = [f"adapter{i}" for i in range(len(paths))]
    ours = {mode: MultiLoraModel(copy.deepcopy(base), mode=mode) for mode in ("grouped", "gathered")}
    for model in ours.values():
        for name, path in zip(names, paths, strict=True):
            model.add_adapter(name, path)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), paths[0], adapter_name=names[0])
    for name, path in zip(names[1:], paths[1:], strict=True):
        theirs.load_adapter(path, adapter_name=name)
    theirs.eval()
    merged_one = merge_and_unload(load_adapter(copy.deepcopy(base), paths[0]))
    swap = ours["grouped"]  # merge-and-swap works on this model's base weights, restored after each group

    ids = torch.randint(1, vocab, (args.batch_size, 32), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)

    def rows_of(k):
        return [names[i % k] for i in range(args.batch_size)]

    def run_merge_swap(k):
        for name in dict.fromkeys(rows_of(k)):
            rows = [i for i, n in enumerate(rows_of(k)) if n == name]
            with merged(swap, name) as model, torch.no_grad():
                model.generate(input_ids=ids[rows], attention_mask=mask[rows], **gen)

    def calls(k):
        funcs = {
            "merge-swap": lambda: run_merge_swap(k),
            "peft": lambda: theirs.generate(input_ids=ids, attention_mask=mask, adapter_names=rows_of(k), **gen),
            "grouped": lambda: ours["grouped"].generate(ids, mask, adapter_names=rows_of(k), **gen),
            "gathered": lambda: ours["gathered"].generate(ids, mask, adapter_names=rows_of(k), **gen),
        }
        if k == 1:
            funcs["merged"] = lambda: merged_one.generate(input_ids=ids, attention_mask=mask, **gen)
        return funcs

    with torch.no_grad():  # the timings compare the same work: same tokens from every batched method
        outs = {name: fn() for name, fn in calls(8).items() if name != "merge-swap"}
    same = {name: int((out == outs["peft"]).all(dim=1).sum()) for name, out in outs.items()}
    print("check, k=8: rows with the same tokens as peft: "
          + ", ".join(f"{name} {n} of {args.batch_size}" for name, n in same.items()))

    print(f"\nbatch {args.batch_size} x 32 prompt tokens, {new_tokens} new tokens, {samples} samples; "
          "median tok/s (median s per batch)")
    results = {}
    for k in MIXES:
        with torch.no_grad():
            times = interleaved(calls(k), samples)
        results[k] = {name: statistics.median(t) for name, t in times.items()}
        cells = "  ".join(f"{name} {args.batch_size * new_tokens / s:7.1f} ({s:.2f} s)"
                          for name, s in results[k].items())
        ratios = "  ".join(f"{name}/peft {results[k]['peft'] / results[k][name]:.2f}"
                           for name in ("grouped", "gathered", "merge-swap", "merged") if name in results[k])
        print(f"k={k}: {cells}\n     throughput ratio {ratios}")

    lora_bytes = [sum(t.numel() * t.element_size() for a in ours["grouped"].adapters.values()
                      for pair in a["layers"].values() for t in pair[:2])]
    per_adapter = lora_bytes[0] / len(names)
    model_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    print(f"\nmemory: base model {model_bytes / 2**20:.1f} MiB, 8 adapters {lora_bytes[0] / 2**20:.2f} MiB "
          f"(mean {per_adapter / 2**20:.2f} MiB each)")
    for n in MIXES:
        print(f"  N={n}: base + {n} adapters {(model_bytes + n * per_adapter) / 2**20:7.1f} MiB   "
              f"{n} merged copies {n * model_bytes / 2**20:7.1f} MiB")
    if args.json:
        payload = {"batch_size": args.batch_size, "new_tokens": new_tokens, "samples": samples,
                   "seconds_per_batch": {str(k): v for k, v in results.items()}, "model_bytes": model_bytes,
                   "adapter_bytes_mean": per_adapter}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
