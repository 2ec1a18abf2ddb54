"""NF4 quantize / dequantize speed: lora_edu against bitsandbytes (and torchao), on the CPU, on SmolLM2 shapes.

Run from the repository root:  python benchmarks/bench_nf4.py   (about a minute on 2 cores; --quick: seconds)

For each weight shape and with / without double quantization it times five calls, each on the same fp32
weight (blocksize 64, quant_type "nf4"):
  ours quantize     lora_edu.quant.quantize_nf4(w, 64, double_quant)
  bnb quantize      bitsandbytes.functional.quantize_4bit(w, 64, quant_type="nf4", compress_statistics=...)
  ours reference    lora_edu.quant.dequantize_4bit_reference(q): unpack, look up, scale (the readable one)
  ours dequantize   lora_edu.quant.dequantize_nf4(q): the fast path, the same bits
  bnb dequantize    bitsandbytes.functional.dequantize_4bit(packed, state)
and prints M parameters per second (the median over ``--repeats`` samples) and ours / bnb as a speed
ratio (1.0 = as fast, > 1 ours faster): of the medians, and of the best samples (the fastest run is the
one least disturbed by other processes on a shared machine). Each sample times enough back-to-back calls
to last ~50 ms, after one untimed warm-up call, and the calls take turns within every repeat, so a
burst of load from elsewhere hits both libraries alike. It first checks that both give the same bytes and
the same dequantized weights, so the two sides do the same work. Speed is measured here, never asserted
in the tests (see benchmarks/README.md).

If torchao is importable, its pure-PyTorch NF4 (``to_nf4`` / ``get_original_weight``, eager) is a second
peer: not the same bits (its block constants are double-quantized to int8 with its own rule), so only its
speed and its error are printed. ``--profile`` times the steps of our dequantize one by one beside bnb's
whole call, on the (1536, 576) weight: where the time goes, and why PyTorch cannot reach bnb's kernel.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch
from timing import interleaved, machine_info  # benchmarks/timing.py

from lora_edu.quant import dequantize_4bit_reference, dequantize_nf4, quantize_nf4
from lora_edu.quant.nf4 import _byte_pairs, code_table

with warnings.catch_warnings():  # bnb warns that its optional CPU gemm kernel package is missing
    warnings.simplefilter("ignore")
    import bitsandbytes
    import bitsandbytes.functional as bnbF
    try:  # optional second peer; pip install torchao (it must not replace the installed torch)
        from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4
    except ImportError:
        to_nf4 = None

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
    """``{name: (median, best)}`` M params/s of the five calls on weight ``w``."""
    q = quantize_nf4(w, BLOCKSIZE, double_quant)
    packed, state = bnbF.quantize_4bit(w, blocksize=BLOCKSIZE, quant_type="nf4",
                                       compress_statistics=double_quant)
    calls = {
        "ours_q": lambda: quantize_nf4(w, BLOCKSIZE, double_quant),
        "bnb_q": lambda: bnbF.quantize_4bit(w, blocksize=BLOCKSIZE, quant_type="nf4",
                                            compress_statistics=double_quant),
        "ours_ref": lambda: dequantize_4bit_reference(q),
        "ours_dq": lambda: dequantize_nf4(q),
        "bnb_dq": lambda: bnbF.dequantize_4bit(packed, state),
    }
    times = interleaved(calls, repeats)
    return {name: (w.numel() / statistics.median(t) / 1e6, w.numel() / min(t) / 1e6)
            for name, t in times.items()}


def bench_torchao(w: torch.Tensor, repeats: int) -> None:
    """torchao's NF4 (double-quantized constants, its format) beside ours with double quantization."""
    q, nf = quantize_nf4(w, BLOCKSIZE, True), to_nf4(w, BLOCKSIZE, 256)
    err = {"ours": (dequantize_nf4(q) - w).norm() / w.norm(), "torchao": (nf.get_original_weight() - w).norm() / w.norm()}
    times = interleaved({"ours_q": lambda: quantize_nf4(w, BLOCKSIZE, True),
                         "ao_q": lambda: to_nf4(w, BLOCKSIZE, 256),
                         "ours_dq": lambda: dequantize_nf4(q), "ao_dq": nf.get_original_weight}, repeats)
    speed = {name: w.numel() / statistics.median(t) / 1e6 for name, t in times.items()}
    print(f"{tuple(w.shape)!s:<16} | quantize: ours {speed['ours_q']:>6.1f} torchao {speed['ao_q']:>6.1f} "
          f"ratio {speed['ours_q'] / speed['ao_q']:>5.2f} | dequantize: ours {speed['ours_dq']:>7.1f} "
          f"torchao {speed['ao_dq']:>6.1f} ratio {speed['ours_dq'] / speed['ao_dq']:>5.2f} | relative error: "
          f"ours {err['ours']:.4%}, torchao {err['torchao']:.4%}")


def profile_dequantize(w: torch.Tensor, repeats: int) -> None:
    """Each step of our fast dequantize timed alone (interleaved), beside bnb's whole dequantize call."""
    q = quantize_nf4(w, BLOCKSIZE, False)
    packed, state = bnbF.quantize_4bit(w, blocksize=BLOCKSIZE, quant_type="nf4", compress_statistics=False)
    pairs = _byte_pairs(code_table("nf4", w.device))  # (256,) int64: the cached table the fast path reads
    index = q.codes.int()
    values = pairs.index_select(0, index)  # (n/2,) int64 = (n,) fp32 pairs
    out = torch.empty_like(values)
    scaled = torch.empty(w.numel())
    blocks, absmax = values.view(torch.float32).view(-1, BLOCKSIZE), q.absmax[:, None]
    calls = {
        "1. uint8 codes -> int32 indices (n/2)": lambda: q.codes.int(),
        "2. gather byte pairs, new tensor": lambda: pairs.index_select(0, index),
        "2'. the same gather into a reused tensor": lambda: torch.index_select(pairs, 0, index, out=out),
        "3. times the block constants": lambda: torch.mul(blocks, absmax, out=scaled.view(-1, BLOCKSIZE)),
        "our whole dequantize_nf4": lambda: dequantize_nf4(q),
        "bnb's whole dequantize_4bit (AVX-512 C++)": lambda: bnbF.dequantize_4bit(packed, state),
    }
    times = interleaved(calls, repeats)
    print(f"\nprofile, weight {tuple(w.shape)}, no double quantization: microseconds per call (median)")
    for name, t in times.items():
        print(f"  {name:<44} {1e6 * statistics.median(t):>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed samples per call (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="skip the embedding-sized weight")
    parser.add_argument("--profile", action="store_true", help="time the steps of our dequantize one by one")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    versions = {"bitsandbytes": bitsandbytes.__version__}
    if to_nf4 is not None:
        import torchao

        versions["torchao"] = torchao.__version__
    print(machine_info(args.threads, versions))
    print(f"NF4, blocksize {BLOCKSIZE}, fp32 weights. M params/s: median of {args.repeats} samples. "
          "ratio = ours / bnb speed (> 1: ours faster), of the medians and of the best samples; "
          "dequantize: ref = our readable reference, ours = the fast path (same bits).\n")
    header = f"{'weight':<24} {'dq':<3} | {'quantize: ours':>14} {'bnb':>6} {'ratio':>6} {'best':>5} | " \
             f"{'dequantize: ref':>15} {'ours':>6} {'bnb':>6} {'ratio':>6} {'best':>5}"
    print(header)
    print("-" * len(header))
    weights = {}
    for label, shape in SHAPES.items():
        if args.quick and shape[0] > 10_000:
            continue
        w = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.02  # SmolLM2's init std
        weights[label] = w
        for double_quant in (False, True):
            check_same_result(w, double_quant)
            r = bench_one(w, double_quant, args.repeats)
            (oq, oq_best), (bq, bq_best) = r["ours_q"], r["bnb_q"]
            (od, od_best), (bd, bd_best), (ref, _) = r["ours_dq"], r["bnb_dq"], r["ours_ref"]
            print(f"{label:<24} {'yes' if double_quant else 'no':<3} | {oq:>14.1f} {bq:>6.1f} {oq / bq:>6.2f} "
                  f"{oq_best / bq_best:>5.2f} | {ref:>15.0f} {od:>6.0f} {bd:>6.0f} {od / bd:>6.2f} "
                  f"{od_best / bd_best:>5.2f}")
    if to_nf4 is not None:
        print("\ntorchao's NF4 (eager, double-quantized constants in its own int8 format: not the same bits), "
              "M params/s, median; ratio = ours / torchao speed")
        for w in weights.values():
            bench_torchao(w, args.repeats)
    if args.profile:
        profile_dequantize(weights["up_proj (1536, 576)"], args.repeats)


if __name__ == "__main__":
    main()
