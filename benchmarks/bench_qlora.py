"""QLoRA training-step time and forward latency: lora_edu against PEFT + bitsandbytes, on SmolLM2-135M.

Run from the repository root:  python benchmarks/bench_qlora.py --quick   (3 samples; a few minutes on a
2-core CPU). The default, 7 samples, takes about twice as long. ``--profile`` adds where the time of one
lora_edu QLoRA step goes (NF4 dequantize, matmuls, the rest), the numbers notebook 07 explains.

On SmolLM2-135M-Instruct (``load_model()``, fp32) and one batch of format-task training examples (as
bench_lora.py builds it), every linear layer but ``lm_head`` stored as NF4 with double quantization
(blocksize 64, nested blocks of 256), fp32 compute, and LoRA r=8, lora_alpha=16 on q_proj .. down_proj:

  lora_edu       ``prepare_qlora`` (``NF4Linear`` + ``QLoRALinear``)
  PEFT + bnb     every such layer replaced by ``bitsandbytes.nn.Linear4bit`` (quant_type "nf4",
                 compress_statistics=True, compute_dtype fp32: what transformers' ``load_in_4bit`` builds),
                 then ``peft.get_peft_model`` (its ``lora.bnb.Linear4bit`` layers)
  LoRA fp32      lora_edu's ``inject_lora`` on the unquantized model: the price of the 4 bits, for reference

Before timing it checks that both QLoRA models store the same packed codes and constants in every layer,
copies lora_edu's A and B (B made non-zero) into PEFT's layers, and checks that both give the same logits
and loss: the timings compare the same work. The training step is ``lora_edu.training.training_step``
(forward, backward, clip to norm 1, AdamW lr 1e-3) for all three; then a no-grad forward of each. Samples
are interleaved as in the other benchmarks (benchmarks/timing.py). Speed is measured here, never asserted
in the tests (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import warnings
from collections import defaultdict

import torch
from bench_lora import ALPHA, LR, MAX_GRAD_NORM, TARGETS, R, load_model_and_batch  # benchmarks/bench_lora.py
from timing import interleaved, machine_info  # benchmarks/timing.py
from torch import nn

from lora_edu import LoraConfig, inject_lora, lora_layers, prepare_qlora
from lora_edu.qlora import NF4Linear
from lora_edu.runtime import Precision
from lora_edu.training import training_step

with warnings.catch_warnings():  # bnb warns that its optional CPU gemm kernel package is missing
    warnings.simplefilter("ignore")
    import bitsandbytes
    import peft
    import transformers

BLOCKSIZE = 64


def bnb_quantized(base: nn.Module) -> nn.Module:
    """A deepcopy of ``base`` with every ``nn.Linear`` but ``lm_head`` a bnb ``Linear4bit`` (NF4 + DQ, fp32)."""
    model = copy.deepcopy(base)
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or name == "lm_head":
            continue
        layer = bitsandbytes.nn.Linear4bit(module.in_features, module.out_features, module.bias is not None,
                                           compute_dtype=torch.float32, compress_statistics=True,
                                           quant_type="nf4")
        layer.weight = bitsandbytes.nn.Params4bit(module.weight.data.clone(), requires_grad=False,
                                                  quant_type="nf4", compress_statistics=True,
                                                  blocksize=BLOCKSIZE)
        if module.bias is not None:
            layer.bias = nn.Parameter(module.bias.data.clone(), requires_grad=False)
        # In eval mode without grad, on a CPU with AVX512-BF16 (this one), bnb 0.50 repacks the weight in
        # place into another layout for its own CPU gemm, whose outputs differ (by up to 0.07 on a tiny
        # model): another computation. Off, so both sides dequantize and multiply in fp32 in every mode.
        layer.support_avx512bf16_for_cpu = False
        model.set_submodule(name, layer.to("cpu"))  # .to() quantizes the weight
    return model


def qlora_models(base: nn.Module):
    """lora_edu's and PEFT + bnb's QLoRA on deepcopies of ``base``: same codes, same (non-zero) A and B."""
    config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS)
    ours = prepare_qlora(copy.deepcopy(base), config, blocksize=BLOCKSIZE, double_quant=True,
                         compute_dtype=torch.float32)
    with warnings.catch_warnings():  # transformers' FutureWarning about a name PEFT calls
        warnings.simplefilter("ignore", FutureWarning)
        theirs = peft.get_peft_model(bnb_quantized(base), peft.LoraConfig(r=R, lora_alpha=ALPHA,
                                                                          lora_dropout=0.0,
                                                                          target_modules=TARGETS))
    generator = torch.Generator().manual_seed(0)
    n_layers = 0
    with torch.no_grad():
        for name, module in ours.named_modules():
            if isinstance(module, NF4Linear):  # same stored bits, layer by layer
                twin = theirs.base_model.model.get_submodule(name.removesuffix(".base_layer"))
                twin = getattr(twin, "base_layer", twin)
                state = twin.weight.quant_state
                if not (torch.equal(module.codes, twin.weight.data.view(-1))
                        and torch.equal(module.nested_codes, state.absmax)
                        and torch.equal(module.nested_absmax, state.state2.absmax)
                        and torch.equal(module.nested_offset, state.offset)):
                    raise RuntimeError(f"{name}: lora_edu and bitsandbytes store different NF4 bits; fix "
                                       "that before timing (tests/test_qlora.py).")
                n_layers += 1
        for name, layer in lora_layers(ours):  # B = 0 at init would make the logits check trivial
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=generator) * 0.01)
            twin = theirs.base_model.model.get_submodule(name)
            twin.lora_A["default"].weight.copy_(layer.lora_A.weight)
            twin.lora_B["default"].weight.copy_(layer.lora_B.weight)
    return ours, theirs, n_layers


def check_same_work(ours, theirs, batch) -> tuple[float, bool]:
    """Same logits and loss from both QLoRA models (on two examples); returns the loss and whether the
    logits are equal to the bit."""
    batch = {k: v[:2] for k, v in batch.items()}
    with torch.no_grad():
        out_ours, out_theirs = ours(**batch), theirs(**batch)
    torch.testing.assert_close(out_ours.logits, out_theirs.logits)
    torch.testing.assert_close(out_ours.loss, out_theirs.loss)
    return out_ours.loss.item(), torch.equal(out_ours.logits, out_theirs.logits)


def step_fn(model, batch, device):
    """One training step of ``model`` (its trainable parameters: A and B), as lora_edu.training.train takes it."""
    fp32 = Precision(device.type, torch.float32, None, False, "fp32")
    scaler = fp32.grad_scaler()  # disabled: a no-op in fp32
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    return lambda: training_step(model, batch, optimizer, scaler, fp32, MAX_GRAD_NORM)


def profile_step(model, step, device) -> None:
    """Where one lora_edu QLoRA step's time goes: NF4 dequantize (forward and backward), matmuls, the rest."""
    original = NF4Linear.dequantize

    def labelled(self, dtype=None):
        with torch.profiler.record_function("nf4 dequantize"):
            return original(self, dtype)

    NF4Linear.dequantize = labelled
    try:
        step()  # warm-up outside the profile
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    finally:
        NF4Linear.dequantize = original
    events = prof.key_averages()
    groups = defaultdict(float)
    calls = 0
    for e in events:
        if e.key == "nf4 dequantize":
            groups["NF4 dequantize (forward + backward)"] += e.cpu_time_total
            calls = e.count
        elif e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
            groups["matmuls (aten::mm / addmm / bmm)"] += e.self_cpu_time_total
        elif "scaled_dot_product" in e.key or "flash_attention" in e.key:
            groups["attention (scaled_dot_product)"] += e.self_cpu_time_total
    wall = sum(e.self_cpu_time_total for e in events)  # every op's own time once: the step's CPU time
    print(f"\nprofile of one lora_edu QLoRA training step ({calls} NF4 dequantize calls, "
          f"{wall / 1e6:.2f} s of op time; torch.profiler, CPU self times):")
    for label, us in groups.items():
        print(f"  {label:<40} {us / 1e6:>6.2f} s  {100 * us / wall:>5.1f}% of {wall / 1e6:.2f} s")
    rest = wall - sum(groups.values())
    print(f"  {'everything else (norms, activations, ...)':<40} {rest / 1e6:>6.2f} s  {100 * rest / wall:>5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, help="timed samples per function (default 7; --quick: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples in the batch (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="3 samples per function")
    parser.add_argument("--profile", action="store_true", help="also profile one lora_edu QLoRA step")
    args = parser.parse_args()
    samples = args.samples or (3 if args.quick else 7)
    if samples < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error("--samples, --batch-size and --threads must be >= 1.")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA GPU. Run on the CPU (the default) instead.")
    torch.set_num_threads(args.threads)
    print(machine_info(args.threads, {"transformers": transformers.__version__, "peft": peft.__version__,
                                      "bitsandbytes": bitsandbytes.__version__}, device))

    # no tiny-model mode: bnb 0.50's AVX-512 CPU dequantize returns other values than its own format for rows
    # of some widths (32, 48, 96: tiny_llama's), while SmolLM2's 576 and 1536 agree to the bit
    base, batch = load_model_and_batch(False, args.batch_size)
    ours, theirs, n_layers = qlora_models(base)  # quantized on the CPU: the same bits on every device
    lora = inject_lora(copy.deepcopy(base), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS))
    ours, theirs, lora = ours.to(device), theirs.to(device), lora.to(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    loss, bit_equal = check_same_work(ours, theirs, batch)
    seq = batch["input_ids"].shape[1]
    print(f"{base.config.name_or_path}: {n_layers} linear layers in NF4 + double quantization "
          f"(blocksize {BLOCKSIZE}), fp32 compute; batch {args.batch_size} x {seq} tokens; LoRA r={R}, "
          f"alpha={ALPHA} on {', '.join(TARGETS)}\n"
          f"check passed: the same NF4 bits in all {n_layers} layers; the same loss ({loss:.6f}) and logits "
          f"({'equal to the bit' if bit_equal else 'equal within float tolerance'})\n")
    del base

    for model in (ours, theirs, lora):
        model.train()
    step = interleaved({"lora_edu": step_fn(ours, batch, device), "PEFT+bnb": step_fn(theirs, batch, device),
                        "LoRA": step_fn(lora, batch, device)}, samples, device)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    for model in (ours, theirs, lora):
        model.eval()

    def forward(model):
        return torch.no_grad()(lambda: model(**inputs).logits)

    fwd = interleaved({"lora_edu": forward(ours), "PEFT+bnb": forward(theirs), "LoRA": forward(lora)},
                      samples, device)

    header = f"{'ms per call':<46} {'median':>8} {'best':>8}"
    print(f"{header}\n{'-' * len(header)}")
    for what, times in (("training step", step), ("forward, no grad", fwd)):
        for name, label in (("lora_edu", "lora_edu QLoRA"), ("PEFT+bnb", "PEFT + bitsandbytes QLoRA"),
                            ("LoRA", "lora_edu LoRA, fp32 base (reference)")):
            t = times[name]
            print(f"{what + ': ' + label:<46} {1e3 * statistics.median(t):>8.1f} {1e3 * min(t):>8.1f}")
    header = f"\n{'ratio (time / time)':<36} {'median':>8} {'best':>8}   goal"
    print(f"{header}\n{'-' * (len(header) - 1)}")
    for label, a, b, goal in (("lora_edu / PEFT+bnb step", step["lora_edu"], step["PEFT+bnb"], "<= 1.0"),
                              ("lora_edu / PEFT+bnb forward", fwd["lora_edu"], fwd["PEFT+bnb"], "<= 1.0"),
                              ("QLoRA / LoRA step (lora_edu)", step["lora_edu"], step["LoRA"], ""),
                              ("QLoRA / LoRA forward (lora_edu)", fwd["lora_edu"], fwd["LoRA"], "")):
        ratio, best = statistics.median(a) / statistics.median(b), min(a) / min(b)
        print(f"{label:<36} {ratio:>8.3f} {best:>8.3f}   {goal}".rstrip())
    print(f"\nmedian and best of {samples} samples per function, after one warm-up call; "
          "the functions take turns")
    if args.profile:
        ours.train()
        profile_step(ours, step_fn(ours, batch, device), device)


if __name__ == "__main__":
    main()
