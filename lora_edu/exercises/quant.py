"""Self-checks of notebooks/06_quantization.ipynb and 07_qlora.ipynb (absmax codes, NF4, bits per
parameter, packing, Q4_1, QLoRA memory, merging into 4 bits)."""

from __future__ import annotations

import torch

from .core import Check, _unanswered, check_function, check_value, report

# --- notebook 06 ---
# Checkers for notebooks/06_quantization.ipynb. Each problem's data is stated in the notebook and here.

EX06_BLOCK = (0.5, -1.27, 0.02, 0.9)  # exercise 06.1: a block to quantize by hand with absmax int8
EX06_NF4_ABSMAX, EX06_NF4_WEIGHT = 2.0, 0.6  # exercise 06.3: a weight and its block's absmax
EX06_PACK = (3, 12)  # exercise 06.5: two 4-bit codes, in order


def check_absmax_codes(answer) -> Check:
    """Exercise 06.1: the int8 codes of ``EX06_BLOCK`` with one absmax scale (scale = absmax / 127)."""
    from ..quant import quantize_absmax

    codes, _ = quantize_absmax(torch.tensor(EX06_BLOCK))
    return check_value("06.1 absmax int8 codes", answer, codes.float(),
                       hint="scale = max |x| / 127; each code is round(x / scale). Answer the 4 codes as a "
                            "tuple of ints, in order.")


def _fake_quant_int8(x: torch.Tensor) -> torch.Tensor:
    from ..quant import dequantize_absmax, quantize_absmax

    return dequantize_absmax(*quantize_absmax(x))


def check_fake_quant_int8(fn) -> Check:
    """Exercise 06.2: ``fn(x)`` = x quantized to int8 with one absmax scale, then dequantized (fp32)."""
    g = torch.Generator().manual_seed(6)
    inputs = [(torch.randn(8, 16, generator=g),), (torch.randn(100, generator=g) * 0.02,),
              (torch.tensor([0.5, -1.27, 0.02, 0.9]),), (torch.tensor([[3.0, -0.001], [0.25, 0.0]]),)]
    return check_function("06.2 absmax int8 round trip", fn, _fake_quant_int8, inputs, atol=1e-6,
                          hint="scale = x.abs().max() / 127; return torch.round(x / scale) * scale.",
                          placeholder_hint="write section 2's three lines in plain torch (no quant.* call): "
                                           "one scale, rounded codes, the codes times the scale.")


def check_nf4_index(answer) -> Check:
    """Exercise 06.3: the NF4 code (0..15) of ``EX06_NF4_WEIGHT`` in a block whose absmax is ``EX06_NF4_ABSMAX``."""
    from ..quant import nf4_code
    from ..quant.nf4 import nearest_code

    expected = int(nearest_code(torch.tensor([EX06_NF4_WEIGHT / EX06_NF4_ABSMAX]), nf4_code())[0])
    return check_value("06.3 NF4 code index", answer, expected,
                       hint="divide by the block's absmax, then find the nearest of the 16 values in "
                            "quant.nf4_code(); the code is its index (0 is -1.0, 7 is 0.0, 15 is 1.0).")


def check_bits_per_parameter(answer) -> Check:
    """Exercise 06.4: (bits per weight without, with double quantization) for NF4 with blocks of 128."""
    from ..quant import bits_per_parameter

    bits = bits_per_parameter(blocksize=128)
    # rtol 1.5e-4: 4.063 (three decimals, as the notebook rounds 4.127) passes; 4.0625, which forgets the fp32
    # absmax of each 256 blocks (32 / (128 * 256) = 0.001 bits, 2.4e-4 of the answer), does not
    return check_value("06.4 bits per parameter", answer, (bits["total"], bits["total_dq"]), rtol=1.5e-4,
                       hint="4 bits of code, plus 32 bits of fp32 absmax per 128 weights; with double "
                            "quantization, 8 bits per 128 weights plus 32 bits per 128 * 256 weights. "
                            "Answer a tuple (without, with).")


def check_packed_byte(answer) -> Check:
    """Exercise 06.5: the byte (0..255) holding the codes ``EX06_PACK`` in bitsandbytes' order."""
    from ..quant import pack_4bit

    expected = int(pack_4bit(torch.tensor(EX06_PACK, dtype=torch.uint8))[0])
    return check_value("06.5 packed byte", answer, expected,
                       hint="bitsandbytes puts the first code in the high nibble: first * 16 + second.")


EX06_Q8_0 = (32, 2 + 32)  # exercise 06.6: llama.cpp's Q8_0, (weights, bytes) per block: fp16 d, 32 int8 codes


def check_q8_0_bits(answer) -> Check:
    """Exercise 06.6: the bits per weight of llama.cpp's Q8_0 (the format of the GGUF file's token embedding)."""
    weights, nbytes = EX06_Q8_0
    return check_value("06.6 Q8_0 bits per weight", answer, nbytes * 8 / weights,
                       hint="a block of 32 weights stores one fp16 scale and 32 8-bit codes; count its bytes, "
                            "times 8, divided by 32.")


EX06_BLOCKS = (256, 64, 16)  # exercise 06.7: the three block sizes


def check_blocksize_experiment(prediction, weight, errors) -> Check:
    """Exercise 06.7, an experiment: NF4's relative error on one weight at blocks of 256, 64 and 16, and whether
    going from 64 to 16 more or less than halves it. The errors are recomputed from ``weight``, so any honest
    measurement passes and a mistyped one is caught; a second line says if the prediction held."""
    name = "06.7 experiment: NF4 error against the block size"
    parts = {'your prediction ("more" or "less" than half)': prediction, "the weight you quantize": weight,
             "{256: error, 64: error, 16: error} measured on W_mlp": errors}
    missing = [what for what, answer in parts.items() if _unanswered(answer)]  # name only what is still `...`
    if missing:
        listed = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
        return report(name, False, f"replace the {len(missing)} placeholder{'s' * (len(missing) > 1)} `...`: "
                      f"{listed}, then re-run.")
    pick, measured, problems = _recomputed_errors(prediction, weight, errors, EX06_BLOCKS,
                                                  lambda w, b: dict(blocksize=b))
    if problems:
        return report(name, False, "; ".join(problems) + ".")
    ratio = measured[16] / measured[64]
    outcome = "more" if ratio < 0.5 else "less"
    check = report(name, True, "")
    print(f"  measured: {measured[256]:.2%} (blocks of 256), {measured[64]:.2%} (64), {measured[16]:.2%} (16); "
          f"64 -> 16 multiplied the error by {ratio:.2f} ({outcome} than halving it); you predicted {pick}: " + ("it held." if pick == outcome else "it did not. Which weights set a "
                                               "block's absmax, and how often does a block of 16 hold one?"))
    return check


def _close_rel(value, expected: float) -> bool:
    try:
        return abs(float(value) - expected) <= 1e-4 * expected
    except (TypeError, ValueError):
        return False


# --- notebook 07 ---
# Checkers for notebooks/07_qlora.ipynb. NF4 codes are 4 bits; double quantization stores one 8-bit code per
# block and one fp32 absmax per 256 blocks (QLoRA section 3). GB = 1e9 bytes, as in lora_edu.memory.


def check_qlora_bits(answer) -> Check:
    """Exercise 07.1: bits per weight of NF4 with blocks of 32, as a tuple (without DQ, with DQ)."""
    from ..memory import nf4_bits_per_weight

    expected = (nf4_bits_per_weight(False, 32), nf4_bits_per_weight(True, 32))
    # rtol 5e-4: 4.254 (as the notebook rounds, 4.127 for blocks of 64) passes; 4.25, which forgets the fp32
    # absmax of each 256 blocks (32 / (32 * 256) = 0.004 bits), does not
    return check_value("07.1 bits per weight, blocks of 32", answer, expected,
                       hint="4 bits of code plus the constants: one fp32 absmax per block (32 / 32), or with "
                            "double quantization one 8-bit code per block plus one fp32 per 256 blocks "
                            "(8/32 + 32/(32*256)); give at least three decimals.", rtol=5e-4)


def check_nf4_7b_gb(answer) -> Check:
    """Exercise 07.2: GB (1e9 bytes) of a 7e9-weight model stored in NF4 + DQ with blocks of 64."""
    from ..memory import GB, nf4_bits_per_weight

    return check_value("07.2 a 7B model in NF4 + DQ", answer, 7e9 * nf4_bits_per_weight(True, 64) / 8 / GB,
                       hint="bits per weight (4 + 8/64 + 32/(64*256)) times 7e9, divided by 8 bits per byte "
                            "and by 1e9 bytes per GB; to three decimals (3.6, as notebook 06's table rounds it, "
                            "is too rounded).", rtol=2e-3)


EX07_CONFIGS = (  # exercise 07.3: (n_params, method, keyword arguments of training_memory)
    (7e9, "full", {"weight_bits": 16}),
    (13e9, "lora", {"weight_bits": 16, "trainable_fraction": 0.01}),
    (33e9, "qlora", {"trainable_fraction": 0.005}),
)


def check_fits_24gb(answer) -> Check:
    """Exercise 07.3: which of EX07_CONFIGS fit a 24 GB GPU (activations not counted)? A tuple of 3 bools."""
    from ..memory import fits_on_gpu, training_memory

    expected = tuple(bool(fits_on_gpu(training_memory(n, method, **kw), 24)) for n, method, kw in EX07_CONFIGS)
    ok_type = isinstance(answer, (tuple, list)) and all(isinstance(a, bool) for a in answer)
    if not _unanswered(answer) and not ok_type:
        return report("07.3 fits a 24 GB GPU", False, "answer a tuple of three True/False values.")
    return check_value("07.3 fits a 24 GB GPU", answer, expected,
                       hint="bytes per parameter: full bf16 with AdamW 2 + 2 + 8; a bf16 LoRA base 2 per base "
                            "weight plus 2 + 2 + 8 per trained one; NF4 + DQ about 0.516 per base weight "
                            "plus 2 + 2 + 8 per (bf16) LoRA weight.")


def check_merge_threshold(answer) -> Check:
    """Exercise 07.4: the smallest update that moves a weight stored as NF4's 0.0 (absmax 1) to another code."""
    from ..quant.nf4 import nf4_code

    code = nf4_code()
    return check_value("07.4 smallest update that changes the code", answer, float(code[8] / 2), rtol=1e-4,
                       hint="re-quantizing picks the nearest of the 16 values; the nearest positive one is "
                            "0.0796, and the boundary between two codes lies halfway between them.")


def check_double_quant_experiment(prediction, weight, errors) -> Check:
    """Exercise 07.5, an experiment: NF4's relative error on one weight without and with double quantization,
    and whether DQ (8-bit block constants) raises it by more than 1% of itself. The errors are recomputed from
    ``weight``; a second line says if the prediction held."""
    name = "07.5 experiment: what double quantization costs in accuracy"
    if any(_unanswered(a) for a in (prediction, weight, errors)):
        return report(name, False, 'replace each placeholder `...`: your prediction ("more" or "less" than 1%), the '
                      "weight you quantized, and {False: error, True: error} (double_quant off, on), then re-run.")
    pick, measured, problems = _recomputed_errors(prediction, weight, errors, (False, True),
                                                  lambda w, dq: dict(blocksize=64, double_quant=dq))
    if problems:
        return report(name, False, "; ".join(problems) + ".")
    rise = measured[True] / measured[False] - 1
    outcome = "more" if rise > 0.01 else "less"
    check = report(name, True, "")
    print(f"  measured: {measured[False]:.4%} without double quantization, {measured[True]:.4%} with it: "
          f"{rise:+.2%} of the error ({outcome} than 1%), for 0.373 fewer bits per weight; you predicted {pick}: "
          + ("it held." if pick == outcome else "it did not. How precisely does an 8-bit code store a block's "
                                                "absmax, next to how precisely 4 bits store a weight?"))
    return check


def _recomputed_errors(prediction, weight, errors, settings, nf4_kwargs):
    """The shared part of 06.7 and 07.5: read a "more" / "less" prediction, check that ``errors`` has one entry
    per setting, and recompute NF4's relative error on ``weight`` for each (``nf4_kwargs(weight, setting)`` gives
    quantize_nf4's arguments). Returns (prediction, measured errors, problems)."""
    from ..quant import dequantize_nf4, quantization_error, quantize_nf4

    pick = str(prediction).strip().lower()
    problems = [] if pick in ("more", "less") else [f'the prediction should be "more" or "less", not {prediction!r}']
    measured = {}
    if not (torch.is_tensor(weight) and weight.ndim == 2 and weight.is_floating_point()):
        problems.append("pass the 2-D weight tensor you quantized")
    elif not (isinstance(errors, dict) and set(errors) == set(settings)):
        problems.append(f"pass a dict with one error for each of {tuple(settings)}")
    else:
        w = weight.detach().float().cpu()
        measured = {k: quantization_error(w, dequantize_nf4(quantize_nf4(w, **nf4_kwargs(w, k))))["rel_frobenius"]
                    for k in settings}
        wrong = [k for k in settings if not _close_rel(errors[k], measured[k])]
        if wrong:
            problems.append(f"with {wrong[0]!r} the error on this weight is {measured[wrong[0]]:.5f}, not "
                            f"{errors[wrong[0]]!r}: quantization_error(W, dequantize_nf4(quantize_nf4(W, ...)))"
                            "['rel_frobenius']")
    return pick, measured, problems
