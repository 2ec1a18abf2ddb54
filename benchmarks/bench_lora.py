"""LoRA training-step time and forward latency: lora_edu against PEFT and the frozen model, on SmolLM2-135M.

Run from the repository root:  python benchmarks/bench_lora.py --quick   (3 samples; under 2 minutes on an idle
2-core CPU, 7 on a shared one). The default, 7 samples, takes about twice as long.

On SmolLM2-135M-Instruct (``load_model()``, fp32), one batch of format-task training examples (the first
``--batch-size`` of ``load_task("format", "train")`` through ``build_example`` + ``collate``) and LoRA with
r=8, lora_alpha=16 on the seven linear types q_proj .. down_proj, it times, interleaved:

  training step   lora_edu.training.training_step (forward, backward, clip to norm 1, AdamW lr 1e-3) on
                  lora_edu's LoRA and on PEFT's (``peft.get_peft_model``, same LoraConfig values), and the
                  floor: forward + backward through the frozen model with no weight gradients at all (the
                  input embeddings require grad, so backward still runs through every layer);
  forward         no-grad forward of the base model, of lora_edu's unmerged LoRA and of the merged model
                  (``merge_and_unload`` on a deepcopy).

Before timing it copies lora_edu's A and B (B made non-zero) into PEFT's layers and checks that both give the
same logits and loss on (two examples of) the batch, and that merged and unmerged logits agree: the timings
compare the same work. Each function gets one untimed warm-up call, then ``--samples`` timed samples; in each
round every function gives one sample, and who goes first rotates from round to round, so a burst of load
from elsewhere hits all alike. It prints the medians, the best samples and the ratios. Speed is measured
here, never asserted in the tests (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import warnings

import torch
import transformers
from timing import interleaved, machine_info  # benchmarks/timing.py

from lora_edu import LoraConfig, inject_lora, lora_layers, merge_and_unload
from lora_edu.chat import build_example, collate, pad_token_id
from lora_edu.runtime import Precision
from lora_edu.training import training_step

# peft imports bitsandbytes, which logs that an optional CPU kernel package is missing: not in our table
for _noisy in ("bitsandbytes", "kernels"):  # optional-kernel notes logged when bitsandbytes is imported
    logging.getLogger(_noisy).setLevel(logging.ERROR)
import peft  # noqa: E402  (after the line above)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
R, ALPHA, LR, MAX_GRAD_NORM = 8, 16, 1e-3, 1.0  # the settings notebook 04 trains the format task with


def load_model_and_batch(tiny: bool, batch_size: int):
    """The base model (frozen) and one right-padded batch: input_ids, attention_mask, labels (batch, seq)."""
    if tiny:  # a random 2-layer Llama and random tokens: for developing this script, not for numbers
        from lora_edu.pretrained import tiny_llama

        model = tiny_llama()
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, model.config.vocab_size, (batch_size, 32), generator=generator)  # (batch, seq)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    else:
        from lora_edu import load_model
        from lora_edu.data import load_task

        model, tokenizer = load_model()
        examples = load_task("format", "train")[:batch_size]
        batch = collate([build_example(tokenizer, ex["prompt"], ex["target"]) for ex in examples],
                        pad_token_id(tokenizer))
    return model.requires_grad_(False), batch


def lora_models(base, device):
    """lora_edu's and PEFT's LoRA on deepcopies of ``base``, with the same (non-zero) A and B."""
    ours = inject_lora(copy.deepcopy(base), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS))
    with warnings.catch_warnings():  # transformers' FutureWarning about a name PEFT calls
        warnings.simplefilter("ignore", FutureWarning)
        config = peft.LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS)
        theirs = peft.get_peft_model(copy.deepcopy(base), config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, layer in lora_layers(ours):  # B = 0 at init would make the equality check below trivial
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=generator) * 0.01)
            twin = theirs.base_model.model.get_submodule(name)
            twin.lora_A["default"].weight.copy_(layer.lora_A.weight)
            twin.lora_B["default"].weight.copy_(layer.lora_B.weight)
    return ours.to(device), theirs.to(device)


def check_same_work(base, ours, theirs, merged, batch) -> float:
    """Same logits and loss from both LoRA models, merged == unmerged, and the adapter changes the output."""
    batch = {k: v[:2] for k, v in batch.items()}  # two examples prove the same arithmetic, at 1/4 of the cost
    with torch.no_grad():
        out_ours, out_theirs = ours(**batch), theirs(**batch)
        torch.testing.assert_close(out_ours.logits, out_theirs.logits)
        torch.testing.assert_close(out_ours.loss, out_theirs.loss)
        # merging rounds W0 + s B A to fp32: logits move by ~1e-4 over 30 layers
        torch.testing.assert_close(merged(**batch).logits, out_ours.logits, rtol=1e-4, atol=1e-3)
        if torch.allclose(base(**batch).logits, out_ours.logits, atol=1e-3):
            raise RuntimeError("The adapter does not change the logits, so the check above proves nothing.")
    return out_ours.loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, help="timed samples per function (default 7; --quick: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples in the batch (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true",
                        help="3 samples per function (the fewest that let each one go first once)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny random model: dev only
    args = parser.parse_args()
    samples = args.samples or (3 if args.quick else 7)
    if samples < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error("--samples, --batch-size and --threads must be >= 1.")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA GPU. Run on the CPU (the default) instead.")
    torch.set_num_threads(args.threads)
    print(machine_info(args.threads, {"transformers": transformers.__version__, "peft": peft.__version__}, device))

    base, batch = load_model_and_batch(args.tiny, args.batch_size)
    ours, theirs = lora_models(base, device)
    base, batch = base.to(device), {k: v.to(device) for k, v in batch.items()}
    merged = merge_and_unload(copy.deepcopy(ours))
    loss = check_same_work(base, ours, theirs, merged, batch)
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    seq, real = batch["input_ids"].shape[1], int(batch["attention_mask"].sum())
    labelled = int((batch["labels"] != -100).sum())
    print(f"{base.config.name_or_path or 'tiny_llama'}, fp32; batch {args.batch_size} x {seq} tokens "
          f"({real} real, {labelled} with a label); "
          f"LoRA r={R}, alpha={ALPHA} on {', '.join(TARGETS)}: {n_ours:,} trainable (PEFT: {n_theirs:,})\n"
          f"check passed: lora_edu and PEFT give the same logits and loss ({loss:.4f}); merged == unmerged\n")

    # 1. training step: the same step function and optimizer settings for both LoRA models
    fp32 = Precision(device.type, torch.float32, None, False, "fp32")
    scaler = fp32.grad_scaler()  # disabled: a no-op in fp32

    def lora_step(model):
        params = [p for p in model.parameters() if p.requires_grad]  # A and B only
        optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)  # as lora_edu.training.train
        return lambda: training_step(model, batch, optimizer, scaler, fp32, MAX_GRAD_NORM)

    def floor_step():  # no trainable weight: the embeddings (batch, seq, hidden) are the only grad leaf
        embeds = base.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_()
        loss = base(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()

    for model in (base, ours, theirs):
        model.train()
    step = interleaved({"floor": floor_step, "lora_edu": lora_step(ours), "PEFT": lora_step(theirs)},
                       samples, device)
    del theirs

    # 2. forward latency, no grad
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    for model in (base, ours, merged):
        model.eval()

    def forward(model):
        return torch.no_grad()(lambda: model(**inputs).logits)

    fwd = interleaved({"base": forward(base), "unmerged": forward(ours), "merged": forward(merged)},
                      samples, device)

    header = f"{'ms per call':<50} {'median':>8} {'best':>8}"
    print(f"{header}\n{'-' * len(header)}")
    rows = [("training step: floor (frozen forward + backward)", step["floor"]),
            ("training step: lora_edu LoRA", step["lora_edu"]), ("training step: PEFT LoRA", step["PEFT"]),
            ("forward, no grad: base", fwd["base"]), ("forward, no grad: lora_edu unmerged", fwd["unmerged"]),
            ("forward, no grad: lora_edu merged", fwd["merged"])]
    for label, t in rows:
        print(f"{label:<50} {1e3 * statistics.median(t):>8.1f} {1e3 * min(t):>8.1f}")
    header = f"\n{'ratio (time / time)':<30} {'median':>8} {'best':>8}   goal"
    print(f"{header}\n{'-' * (len(header) - 1)}")
    for label, a, b, goal in (("lora_edu / PEFT step", step["lora_edu"], step["PEFT"], "<= 1.0"),
                              ("lora_edu / floor step", step["lora_edu"], step["floor"], ""),
                              ("PEFT / floor step", step["PEFT"], step["floor"], ""),
                              ("unmerged / base forward", fwd["unmerged"], fwd["base"], ""),
                              ("merged / base forward", fwd["merged"], fwd["base"], "1.0 within noise")):
        ratio, best = statistics.median(a) / statistics.median(b), min(a) / min(b)
        print(f"{label:<30} {ratio:>8.3f} {best:>8.3f}   {goal}".rstrip())
    print(f"\nmedian and best of {samples} samples per function, after one warm-up call; "
          "the functions take turns")


if __name__ == "__main__":
    main()
