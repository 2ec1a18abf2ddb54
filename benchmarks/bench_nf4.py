"""NF4 quantize / dequantize speed: lora_edu against bitsandbytes, on the CPU, on SmolLM2-shaped weights.

Run from the repository root:  python benchmarks/bench_nf4.py   (about a minute on 2 cores; --quick: seconds)

For each weight shape and with / without double quantization it times four calls, each on the same fp32
weight (blocksize 64, quant_type "nf4"):
  ours quantize     lora_edu.quant.quantize_nf4(w, 64, double_quant)
  bnb quantize      bitsandbytes.functional.quantize_4bit(w, 64, quant_type="nf4", compress_statistics=...)
  ours dequantize   lora_edu.quant.dequantize_nf4(q)
  bnb dequantize    bitsandbytes.functional.dequantize_4bit(packed, state)
and prints M parameters per second (the median over ``--repeats`` samples) and ours / bnb as a speed
ratio (1.0 = as fast, > 1 ours faster): of the medians, and of the best samples (the fastest run is the
one least disturbed by other processes on a shared machine). Each sample times enough back-to-back calls
to last ~50 ms, after one untimed warm-up call, and the four calls take turns within every repeat, so a
burst of load from elsewhere hits both libraries alike. It first checks that both give the same bytes and
the same dequantized weights, so the two sides do the same work. Speed is measured here, never asserted
in the tests (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch
from timing import interleaved, machine_info  # benchmarks/timing.py

from lora_edu.quant import dequantize_nf4, quantize_nf4

with warnings.catch_warnings():  # bnb warns that its optional CPU gemm kernel package is missing
    warnings.simplefilter("ignore")
    import bitsandbytes
    import bitsandbytes.functional as bnbF

# SmolLM2-135M: hidden 576, MLP 1536, vocabulary 49152
SHAPES = {"up_proj (1536, 576)": (1536, 576), "down_proj (576, 1536)": (576, 1536),
          "embedding (49152, 576)": (49152, 576)}
BLOCKSIZE = 64




def check_same_result(w: torch.Tensor, double_quant: bool) -> None:
    """Both libraries must produce the same codes, constants and weights, or the timing compares nothing."""
    q = quantize_nf4(w, BLOCKSIZE, double_quant)
    packed, state = bnbF.quantize_4bit(w, blocksize=BLOCKSIZE, quant_type="nf4",
                                       compress_statistics=double_quant)
    constants = q.nested.codes if double_quant else q.absmax
    same = (torch.equal(q.codes, packed.reshape(-1)) and torch.equal(constants, state.absmax)
            and torch.equal(dequantize_nf4(q), bnbF.dequantize_4bit(packed, state)))
    if not same:
        raise RuntimeError(f"lora_edu and bitsandbytes disagree on shape {tuple(w.shape)}, "
                           f"double_quant={double_quant}: fix that before timing (tests/test_quant_nf4.py).")


def bench_one(w: torch.Tensor, double_quant: bool, repeats: int) -> dict:
    """``{name: (median, best)}`` M params/s of the four calls on weight ``w``."""
    q = quantize_nf4(w, BLOCKSIZE, double_quant)
    packed, state = bnbF.quantize_4bit(w, blocksize=BLOCKSIZE, quant_type="nf4",
                                       compress_statistics=double_quant)
    calls = {
        "ours_q": lambda: quantize_nf4(w, BLOCKSIZE, double_quant),
        "bnb_q": lambda: bnbF.quantize_4bit(w, blocksize=BLOCKSIZE, quant_type="nf4",
                                            compress_statistics=double_quant),
        "ours_dq": lambda: dequantize_nf4(q),
        "bnb_dq": lambda: bnbF.dequantize_4bit(packed, state),
    }
    times = interleaved(calls, repeats)
    return {name: (w.numel() / statistics.median(t) / 1e6, w.numel() / min(t) / 1e6)
            for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed samples per call (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="skip the embedding-sized weight")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_info(args.threads, {"bitsandbytes": bitsandbytes.__version__}))
    print(f"NF4, blocksize {BLOCKSIZE}, fp32 weights. M params/s: median of {args.repeats} samples. "
          "ratio = ours / bnb speed (> 1: ours faster), of the medians and of the best samples.\n")
    header = f"{'weight':<24} {'dq':<3} | {'quantize: ours':>14} {'bnb':>6} {'ratio':>6} {'best':>5} | " \
             f"{'dequantize: ours':>16} {'bnb':>6} {'ratio':>6} {'best':>5}"
    print(header)
    print("-" * len(header))
    for label, shape in SHAPES.items():
        if args.quick and shape[0] > 10_000:
            continue
        w = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.02  # SmolLM2's init std
        for double_quant in (False, True):
            check_same_result(w, double_quant)
            r = bench_one(w, double_quant, args.repeats)
            (oq, oq_best), (bq, bq_best) = r["ours_q"], r["bnb_q"]
            (od, od_best), (bd, bd_best) = r["ours_dq"], r["bnb_dq"]
            print(f"{label:<24} {'yes' if double_quant else 'no':<3} | {oq:>14.1f} {bq:>6.1f} {oq / bq:>6.2f} "
                  f"{oq_best / bq_best:>5.2f} | {od:>16.1f} {bd:>6.0f} {od / bd:>6.2f} {od_best / bd_best:>5.2f}")


if __name__ == "__main__":
    main()
