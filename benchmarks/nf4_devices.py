"""NF4 bits on a device: lora_edu's quantize against bitsandbytes' kernels there, counted, not asserted.

    python benchmarks/nf4_devices.py                 # on a CUDA GPU: bitsandbytes' CUDA kernels
    python benchmarks/nf4_devices.py --device cpu    # its CPU kernels (which ours match byte for byte)

lora_edu.quant ports bitsandbytes' CPU kernels, so on the CPU every code and constant is equal (tests/test_quant_nf4.py
asserts it). Its CUDA kernels round a few values differently; this script counts them on SmolLM2-shaped random
weights (N(0, 0.02), seed 0, blocksize 64), all on ``--device``:
  4-bit codes        ours != bitsandbytes', and where they differ, how far the value is from the midpoint between
                     the two code values (a tie, or a real disagreement?)
  8-bit constants    with double quantization: ours (bitsandbytes' CPU lookup table) != its kernel's, and in how
                     many of those each side chose the exactly nearest code; then ours with
                     ``match_bitsandbytes=False`` (the exactly nearest code) against its kernel
Exit status 2 if ``--device cuda`` and there is no GPU.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch

from lora_edu.quant import nf4_code, quantize_nf4, unpack_4bit
from lora_edu.quant.double_quant import double_quantize, dynamic_map

SHAPES = [(1536, 576), (576, 1536), (49152, 576)]  # up_proj, down_proj, the embedding


def compare(w: torch.Tensor, bnbF) -> dict:
    """Counts of 4-bit codes and 8-bit constants where ours and bitsandbytes' differ, for one weight."""
    q = quantize_nf4(w, 64, double_quant=False)
    packed, _ = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
    ours, theirs = unpack_4bit(q.codes, w.numel()), unpack_4bit(packed.reshape(-1), w.numel())
    where = (ours != theirs).nonzero().flatten()
    code = nf4_code().to(w.device)
    low = torch.minimum(ours[where], theirs[where]).long()
    scaled = w.reshape(-1)[where] * (1.0 / q.absmax[where // 64])  # the value each code stands for
    tie = (scaled - (code[low] + code[low + 1]) / 2).abs()  # distance to the midpoint between the two choices

    _, state = bnbF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    mine, nearest = double_quantize(q.absmax), double_quantize(q.absmax, match_bitsandbytes=False)
    table = dynamic_map().to(w.device)
    target = ((q.absmax - mine.offset).reshape(-1, 256) / mine.absmax[:, None]).reshape(-1)  # per constant
    differ = (mine.codes != state.absmax).nonzero().flatten()
    best = (table[None, :] - target[differ, None]).abs().argmin(dim=1)
    return {"codes": w.numel(), "codes_differ": len(where), "max_midpoint_distance": float(tie.max()) if len(where) else 0.0,
            "constants": q.absmax.numel(), "constants_differ": len(differ),
            "ours_nearest": int((mine.codes[differ] == best).sum()), "bnb_nearest": int((state.absmax[differ] == best).sum()),
            "nearest_vs_bnb": int((nearest.codes != state.absmax).sum())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    device = torch.device(parser.parse_args().device)
    if device.type == "cuda" and not torch.cuda.is_available():
        from lora_edu.runtime import gpu_message

        print(gpu_message("benchmarks/nf4_devices.py --device cuda"), file=sys.stderr)
        return 2
    with warnings.catch_warnings():  # bnb warns that its optional CPU gemm kernel package is missing
        warnings.simplefilter("ignore")
        import bitsandbytes
        import bitsandbytes.functional as bnbF
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}; torch {torch.__version__}, bitsandbytes {bitsandbytes.__version__}")
    generator = torch.Generator(device).manual_seed(0)
    for shape in SHAPES:
        r = compare(torch.randn(shape, device=device, generator=generator) * 0.02, bnbF)
        print(f"{str(shape):13s} 4-bit codes: {r['codes_differ']} of {r['codes']:,} differ"
              + (f" (each within {r['max_midpoint_distance']:.1e} of a midpoint)" if r["codes_differ"] else "")
              + f" | 8-bit constants: {r['constants_differ']} of {r['constants']:,} differ (the nearest code: ours "
              f"{r['ours_nearest']}, bitsandbytes' {r['bnb_nearest']}); exactly-nearest codes against bitsandbytes': "
              f"{r['nearest_vs_bnb']} differ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
