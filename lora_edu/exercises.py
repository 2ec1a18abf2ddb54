"""Self-checks for the exercises at the end of each notebook.

Each ``check_*`` prints a clear pass / not-yet line with a hint, and returns True or False. It never raises
on an unanswered placeholder (``...`` or ``None``), so a notebook with open exercises still runs top to
bottom. Reference solutions live apart, in ``notebooks/solutions/``; tests/test_exercises.py runs every
checker against them and against a wrong answer.
"""

from __future__ import annotations

import torch


def _unanswered(answer) -> bool:
    return answer is None or answer is Ellipsis


class Check:
    """The result of a self-check: true when correct. Jupyter shows nothing more (the line is printed)."""

    def __init__(self, name: str, ok: bool):
        self.name, self.ok = name, bool(ok)

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"Check({self.name!r}, ok={self.ok})"

    def _ipython_display_(self) -> None:  # the printed line already says it; no "False" echo below it
        pass


def report(name: str, ok: bool, hint: str) -> Check:
    """Print one line: a pass, or 'not yet' with a hint. The result is true when ``ok``."""
    print(f"[{name}] " + ("correct!" if ok else f"not yet. Hint: {hint}"))
    return Check(name, ok)


def check_value(name: str, answer, expected, hint: str, rtol: float = 1e-6) -> Check:
    """Compare a number, a tensor, or a tuple/list of them with the expected answer."""
    if _unanswered(answer):
        return report(name, False, "replace the placeholder `...` with your answer, then re-run. " + hint)
    try:
        if isinstance(expected, (tuple, list)):
            ok = len(answer) == len(expected) and all(
                _close(a, e, rtol) for a, e in zip(answer, expected, strict=True))
        else:
            ok = _close(answer, expected, rtol)
    except (TypeError, ValueError, RuntimeError):
        ok = False
    return report(name, ok, hint)


def _close(a, e, rtol: float) -> bool:
    if torch.is_tensor(e):
        a = torch.as_tensor(a, dtype=e.dtype)
        return a.shape == e.shape and torch.allclose(a, e, rtol=rtol, atol=rtol)
    if isinstance(e, str):
        return a == e
    return abs(float(a) - float(e)) <= rtol * max(1.0, abs(float(e)))


def check_function(name: str, fn, reference, inputs: list[tuple], hint: str, atol: float = 1e-5) -> Check:
    """Call the learner's ``fn`` and ``reference`` on each input tuple and compare the results."""
    if _unanswered(fn):
        return report(name, False, "write the function first. " + hint)
    try:
        ok = all(torch.allclose(torch.as_tensor(fn(*args)), torch.as_tensor(reference(*args)), atol=atol)
                 for args in inputs)
    except Exception as e:  # a learner's bug is a hint, not a crash
        return report(name, False, f"calling it raised {type(e).__name__}: {e}. " + hint)
    return report(name, ok, hint)


# Checkers for each notebook follow, one section per notebook, in notebook order.

# --- notebook 00 ---
# SmolLM2-135M's shapes: hidden 576, MLP 1536, vocabulary 49,152, 30 layers, 134,515,008 parameters.

def check_mlp_parameters(answer) -> Check:
    """Exercise 00.1: the parameters in one decoder layer's MLP (gate_proj, up_proj, down_proj)."""
    return check_value("00.1 MLP parameters", answer, 3 * 576 * 1536,
                       "three linear layers, each 576 x 1536 (down_proj is 1536 x 576), with no biases.")


def check_embedding_share(answer) -> Check:
    """Exercise 00.2: the embedding matrix's share of all parameters, as a fraction between 0 and 1."""
    return check_value("00.2 embedding share", answer, 49_152 * 576 / 134_515_008,
                       "vocabulary x hidden size, divided by the total; lm_head shares the embedding's "
                       "weights, so it adds nothing.", rtol=1e-3)

# --- notebook 01 ---
# Checkers for notebooks/01_low_rank_math.ipynb. Each problem's data is stated in the notebook and here.

EX01_SINGULAR_VALUES = (10.0, 6.0, 3.0, 1.0)  # exercise 01.1: a 4 x 4 matrix with these singular values
EX01_ENERGY_VALUES = (4.0, 3.0, 2.0, 1.0, 1.0)  # exercise 01.4


def check_eckart_young_errors(answer) -> Check:
    """Exercise 01.1: (Frobenius error, spectral error) of the best rank-2 approximation, from S alone."""
    from .lowrank import eckart_young_error

    S = torch.tensor(EX01_SINGULAR_VALUES)
    expected = (eckart_young_error(S, 2, "fro"), eckart_young_error(S, 2, "spectral"))
    return check_value("01.1 Eckart-Young errors", answer, expected, rtol=1e-4,
                       hint="drop the top 2 singular values; Frobenius: sqrt of the sum of the squares "
                            "of the rest; spectral: the largest of the rest. Answer a tuple (fro, spectral).")


def _factor_params(m: int, n: int, k: int) -> int:
    return k * (m + n)  # B (m x k) plus A (k x n)


def check_factor_params(fn) -> Check:
    """Exercise 01.2: ``fn(m, n, k)`` = numbers stored by a rank-k factorization B @ A of an m x n matrix."""
    return check_function("01.2 factor parameters", fn, _factor_params,
                          [(576, 576, 8), (1536, 576, 4), (4096, 4096, 8), (3, 5, 1), (10, 2, 2)],
                          hint="B is (m x k) and A is (k x n); count the entries of both.", atol=0)


def check_break_even_rank(answer) -> Check:
    """Exercise 01.3: the largest k for which rank-k factors of a 1536 x 576 matrix store fewer numbers."""
    m, n = 1536, 576
    expected = max(k for k in range(1, min(m, n) + 1) if _factor_params(m, n, k) < m * n)
    return check_value("01.3 break-even rank", answer, expected,
                       hint="solve k * (m + n) < m * n for the largest whole k.")


def check_energy_rank(answer) -> Check:
    """Exercise 01.4: the smallest k whose top-k singular values hold at least 90% of the energy."""
    from .lowrank import effective_rank

    expected = effective_rank(torch.tensor(EX01_ENERGY_VALUES), 0.9)
    return check_value("01.4 energy rank", answer, expected,
                       hint="square the singular values, add them up from the top, stop at 90% of the total.")


def check_subspace_phi(answer) -> Check:
    """Exercise 01.5: phi between span(e1, e2) and span(e2, e3, e4) in R^5."""
    from .lowrank import subspace_similarity

    E = torch.eye(5, dtype=torch.float64)
    expected = subspace_similarity(E[[0, 1]], E[[1, 2, 3]], 2, 3)
    return check_value("01.5 subspace similarity", answer, expected,
                       hint="||V_1^T V_2||_F^2 counts the shared directions (each contributes 1); "
                            "divide by min(i, j).")

# --- notebook 02 ---
# Checkers for notebooks/02_lora_layer.ipynb. SmolLM2-135M: hidden size 576, MLP 1536, 30 decoder layers;
# q_proj is 576 -> 576 and v_proj 576 -> 192 (grouped-query attention: 3 key/value heads of 64).

def lora_forward_reference(x, W0, A, B, scaling):
    """h = x W0^T + scaling * (x A^T) B^T, with A (r, in) and B (out, r) as PEFT stores them."""
    return x @ W0.T + (x @ A.T @ B.T) * scaling  # (..., in) -> (..., r) -> (..., out)


def _lora_forward_inputs() -> list[tuple]:
    """Fixed-seed (x, W0, A, B, scaling) cases: odd shapes, a 3-d batch, and scalings other than 1."""
    g = torch.Generator().manual_seed(2)
    cases = []
    shapes = [((4, 6), 5, 2, 2.0), ((2, 3, 7), 4, 3, 0.5), ((1, 9), 9, 1, 16.0)]  # (x, out, r, scaling)
    for x_shape, out_features, r, scaling in shapes:
        in_features = x_shape[-1]
        cases.append((torch.randn(*x_shape, generator=g), torch.randn(out_features, in_features, generator=g),
                      torch.randn(r, in_features, generator=g), torch.randn(out_features, r, generator=g),
                      scaling))
    return cases


def check_lora_forward(fn) -> Check:
    """Exercise 02.1: ``fn(x, W0, A, B, scaling)`` computes a LoRA layer's output (no bias, no dropout)."""
    return check_function("02.1 LoRA forward", fn, lora_forward_reference, _lora_forward_inputs(),
                          hint="the frozen path x @ W0.T plus the LoRA path x @ A.T @ B.T times scaling; "
                               "A is (r, in) and B is (out, r), so both need a transpose.", atol=1e-4)


def check_trainable_parameters(answer) -> Check:
    """Exercise 02.2: trainable numbers of r=16 on q_proj and v_proj in all 30 SmolLM2-135M layers."""
    r, layers = 16, 30
    expected = layers * r * ((576 + 576) + (576 + 192))  # q_proj (576 -> 576), v_proj (576 -> 192)
    return check_value("02.2 trainable parameters", answer, expected,
                       hint="each adapted matrix trains r * (in + out); v_proj is 576 -> 192, "
                            "not 576 -> 576; add q_proj and v_proj, then multiply by the 30 layers.")


def check_scaling(answer) -> Check:
    """Exercise 02.3: (standard, rsLoRA) scaling for r = 64 and lora_alpha = 16."""
    return check_value("02.3 scaling", answer, (16 / 64, 16 / 8),
                       hint="standard: lora_alpha / r; rsLoRA: lora_alpha / sqrt(r). "
                            "Answer a tuple (standard, rslora).")


def check_compression(answer) -> Check:
    """Exercise 02.4: how many times fewer numbers r=16 trains than full fine-tuning of gate_proj."""
    in_features, out_features, r = 576, 1536, 16
    expected = in_features * out_features / (r * (in_features + out_features))
    return check_value("02.4 compression ratio", answer, expected, rtol=1e-3,
                       hint="full fine-tuning trains in * out numbers; LoRA trains r * (in + out); "
                            "divide the first by the second.")


# --- notebook 03 ---
# Checkers for notebooks/03_lora_toy_task.ipynb. Each problem's data is stated in the notebook and here.

EX03_SINGULAR_VALUES = (5.0, 3.0, 2.0, 1.0)  # exercise 03.1: the planted update's singular values


def check_toy_loss_floor(answer) -> Check:
    """Exercise 03.1: the lowest expected loss of LoRA with r = 2 when delta_W* has EX03_SINGULAR_VALUES."""
    expected = sum(s**2 for s in EX03_SINGULAR_VALUES[2:])
    return check_value("03.1 loss floor", answer, expected, rtol=1e-4,
                       hint="the expected loss is the squared distance ||delta_W* - delta_W||_F^2; the best "
                            "rank-2 update keeps the 2 largest singular values; add the squares of the rest.")


def check_toy_scaling(answer) -> Check:
    """Exercise 03.2: (standard, rsLoRA) scaling for r = 16 and lora_alpha = 32."""
    return check_value("03.2 scaling", answer, (32 / 16, 32 / 4),
                       hint="standard: lora_alpha / r; rsLoRA: lora_alpha / sqrt(r). "
                            "Answer a tuple (standard, rslora).")


def check_toy_lora_parameters(answer) -> Check:
    """Exercise 03.3: trainable numbers of LoRA with r = 8 on the toy's 64 -> 64 layer."""
    return check_value("03.3 trainable parameters", answer, 8 * (64 + 64),
                       hint="A is (r, in) and B is (out, r); W0 is frozen and does not count.")


def check_alpha_equivalence(answer) -> Check:
    """Exercise 03.4: lora_alpha is multiplied by 4. By what (lr factor, A-init factor) does a run with the
    old alpha have to be changed to follow exactly the same loss curve under Adam?"""
    return check_value("03.4 alpha as a learning rate", answer, (2.0, 2.0),
                       hint="write B A * c*s as (sqrt(c) B)(sqrt(c) A) * s; Adam moves every entry by about "
                            "lr whatever the gradient's size, so each factor's steps must grow by sqrt(c).")

# --- notebook 06 ---
# Checkers for notebooks/06_quantization.ipynb. Each problem's data is stated in the notebook and here.

EX06_BLOCK = (0.5, -1.27, 0.02, 0.9)  # exercise 06.1: a block to quantize by hand with absmax int8
EX06_NF4_ABSMAX, EX06_NF4_WEIGHT = 2.0, 0.6  # exercise 06.3: a weight and its block's absmax
EX06_PACK = (3, 12)  # exercise 06.5: two 4-bit codes, in order


def check_absmax_codes(answer) -> Check:
    """Exercise 06.1: the int8 codes of ``EX06_BLOCK`` with one absmax scale (scale = absmax / 127)."""
    from .quant import quantize_absmax

    codes, _ = quantize_absmax(torch.tensor(EX06_BLOCK))
    return check_value("06.1 absmax int8 codes", answer, codes.float(),
                       hint="scale = max |x| / 127; each code is round(x / scale). Answer the 4 codes as a "
                            "tuple of ints, in order.")


def _fake_quant_int8(x: torch.Tensor) -> torch.Tensor:
    from .quant import dequantize_absmax, quantize_absmax

    return dequantize_absmax(*quantize_absmax(x))


def check_fake_quant_int8(fn) -> Check:
    """Exercise 06.2: ``fn(x)`` = x quantized to int8 with one absmax scale, then dequantized (fp32)."""
    g = torch.Generator().manual_seed(6)
    inputs = [(torch.randn(8, 16, generator=g),), (torch.randn(100, generator=g) * 0.02,),
              (torch.tensor([0.5, -1.27, 0.02, 0.9]),), (torch.tensor([[3.0, -0.001], [0.25, 0.0]]),)]
    return check_function("06.2 absmax int8 round trip", fn, _fake_quant_int8, inputs, atol=1e-6,
                          hint="scale = x.abs().max() / 127; return torch.round(x / scale) * scale.")


def check_nf4_index(answer) -> Check:
    """Exercise 06.3: the NF4 code (0..15) of ``EX06_NF4_WEIGHT`` in a block whose absmax is ``EX06_NF4_ABSMAX``."""
    from .nf4 import nearest_code
    from .quant import nf4_code

    expected = int(nearest_code(torch.tensor([EX06_NF4_WEIGHT / EX06_NF4_ABSMAX]), nf4_code())[0])
    return check_value("06.3 NF4 code index", answer, expected,
                       hint="divide by the block's absmax, then find the nearest of the 16 values in "
                            "quant.nf4_code(); the code is its index (0 is -1.0, 7 is 0.0, 15 is 1.0).")


def check_bits_per_parameter(answer) -> Check:
    """Exercise 06.4: (bits per weight without, with double quantization) for NF4 with blocks of 128."""
    from .quant import bits_per_parameter

    bits = bits_per_parameter(blocksize=128)
    return check_value("06.4 bits per parameter", answer, (bits["total"], bits["total_dq"]), rtol=1e-4,
                       hint="4 bits of code, plus 32 bits of fp32 absmax per 128 weights; with double "
                            "quantization, 8 bits per 128 weights plus 32 bits per 128 * 256 weights. "
                            "Answer a tuple (without, with).")


def check_packed_byte(answer) -> Check:
    """Exercise 06.5: the byte (0..255) holding the codes ``EX06_PACK`` in bitsandbytes' order."""
    from .quant import pack_4bit

    expected = int(pack_4bit(torch.tensor(EX06_PACK, dtype=torch.uint8))[0])
    return check_value("06.5 packed byte", answer, expected,
                       hint="bitsandbytes puts the first code in the high nibble: first * 16 + second.")


def check_q4_1_bits(answer) -> Check:
    """Exercise 06.6: the bits per weight of llama.cpp's Q4_1 (the format of the GGUF file)."""
    from .quant import BLOCK_BYTES, QK4_1

    return check_value("06.6 Q4_1 bits per weight", answer, BLOCK_BYTES * 8 / QK4_1,
                       hint="a block of 32 weights stores an fp16 scale, an fp16 minimum and 32 4-bit codes; "
                            "count its bytes, times 8, divided by 32.")

# --- notebook 04 ---
# Checkers for notebooks/04_lora_in_a_transformer.ipynb. SmolLM2-135M: hidden 576, MLP 1536, 30 decoder
# layers, 9 query heads and 3 key/value heads of 64 dims, so k_proj and v_proj map 576 -> 192.
SMOLLM2_LINEAR_SHAPES = {"q_proj": (576, 576), "k_proj": (576, 192), "v_proj": (576, 192), "o_proj": (576, 576),
                         "gate_proj": (576, 1536), "up_proj": (576, 1536), "down_proj": (1536, 576)}  # (in, out)
SMOLLM2_LAYERS = 30


def smollm2_linear_names() -> list[str]:
    """The 210 linear layer names inside SmolLM2's decoder blocks, in named_modules() order."""
    parts = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
             "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
    return [f"model.layers.{i}.{parts[n]}.{n}" for i in range(SMOLLM2_LAYERS) for n in SMOLLM2_LINEAR_SHAPES]


def smollm2_lora_params(target_modules, r: int) -> int:
    """LoRA parameters on SmolLM2 for a list of linear layer types: r * (in + out) each, in every layer."""
    return SMOLLM2_LAYERS * sum(r * sum(SMOLLM2_LINEAR_SHAPES[n]) for n in target_modules)


def check_qv_trainable(answer) -> Check:
    """Exercise 04.1: trainable parameters of LoRA with r = 16 on q_proj and v_proj of SmolLM2."""
    return check_value("04.1 q_proj + v_proj at r=16", answer, smollm2_lora_params(["q_proj", "v_proj"], 16),
                       hint="r * (in + out) per layer: q_proj is 576 -> 576, v_proj is 576 -> 192 (3 key/value "
                            "heads of 64); add them and multiply by the 30 decoder layers.")


def check_string_vs_list(answer) -> Check:
    """Exercise 04.2: modules selected by target_modules="q_proj" (a string) and by ["q_proj"] (a list)."""
    return check_value("04.2 string or list", answer, (0, SMOLLM2_LAYERS),
                       hint="a list entry matches a name that ends in '.q_proj'; a string is a regular "
                            "expression that must match the WHOLE name (re.fullmatch). Answer (string, list).")


EX04_REGEX = r".*\.1\d\.mlp\.(up|down)_proj"


def check_regex_count(answer) -> Check:
    """Exercise 04.3: how many modules the regex ``EX04_REGEX`` selects in SmolLM2."""
    import re

    expected = sum(bool(re.fullmatch(EX04_REGEX, n)) for n in smollm2_linear_names())
    return check_value("04.3 regex targets", answer, expected,
                       hint=r"'\.1\d\.' is a layer index from 10 to 19; each of those layers has one up_proj "
                            "and one down_proj. Check with len(find_target_modules(model, regex)).")


def check_adam_state_bytes(answer) -> Check:
    """Exercise 04.4: bytes of AdamW state for LoRA r = 8 on all seven linear types of SmolLM2 (fp32)."""
    return check_value("04.4 AdamW state bytes", answer, 8 * smollm2_lora_params(SMOLLM2_LINEAR_SHAPES, 8),
                       rtol=1e-3, hint="AdamW keeps two fp32 numbers (exp_avg and exp_avg_sq, 4 bytes each) per "
                                       "trainable parameter; count the trainable parameters first (r * (in + out) "
                                       "per layer, 7 types, 30 layers).")

# --- notebook 05 ---
# Checkers for notebooks/05_merging.ipynb. SmolLM2-135M: hidden 576, MLP 1536, q_proj/o_proj 576 x 576,
# k_proj/v_proj 576 -> 192, gate_proj/up_proj 576 -> 1536, down_proj 1536 -> 576.

EX05_BF16_SUMS = (0.5 + 1e-3, 0.5 + 3e-3)  # exercise 05.1: what bf16 stores for each sum
EX05_SHAPES = ((576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576))  # (in, out)


def check_bf16_rounding(answer) -> Check:
    """Exercise 05.1: the bf16 numbers stored for 0.5 + 1e-3 and 0.5 + 3e-3 (a tuple of two floats)."""
    expected = tuple(float(torch.tensor(s).to(torch.bfloat16)) for s in EX05_BF16_SUMS)
    return check_value("05.1 bf16 rounding", answer, expected, rtol=1e-9,
                       hint="bf16 keeps 8 significant bits, so numbers in [0.5, 1) are 2^-8 = 0.00390625 apart; "
                            "each sum rounds to the nearest multiple of that. Answer a tuple of two floats.")


def _unmerged_extra_flops(in_features: int, out_features: int, r: int) -> int:
    return 2 * r * (in_features + out_features)  # x A^T: r * in multiply-adds, then B: out * r; 2 FLOPs each


def check_unmerged_flops(fn) -> Check:
    """Exercise 05.2: ``fn(in_features, out_features, r)`` = extra FLOPs per token of the unmerged LoRA path."""
    return check_function("05.2 unmerged FLOPs", fn, _unmerged_extra_flops,
                          [(576, 576, 8), (576, 1536, 8), (1536, 576, 16), (4096, 4096, 1), (3, 5, 2)],
                          hint="the side path is two skinny matmuls, x -> A x (r x in) -> B (A x) (out x r); "
                               "count a multiply-add as 2 FLOPs.", atol=0)


def check_unmerged_share(answer) -> Check:
    """Exercise 05.3: the unmerged path's extra FLOPs as a fraction of the seven linear layers' own FLOPs
    (r = 8 on all seven types of a SmolLM2 decoder layer)."""
    r = 8
    extra = sum(_unmerged_extra_flops(i, o, r) for i, o in EX05_SHAPES)
    base = sum(2 * i * o for i, o in EX05_SHAPES)
    return check_value("05.3 unmerged share", answer, extra / base, rtol=1e-3,
                       hint="per token a linear layer costs 2 * in * out FLOPs and its LoRA path 2 * r * (in + out); "
                            "add both over the seven shapes, then divide. Answer a fraction (0.05 is 5%).")


EX05_SEQUENCES = {"a": "merge, unmerge", "b": "merge, merge, unmerge, unmerge", "c": "unmerge, merge",
                  "d": "merge, unmerge, merge, unmerge", "e": "merge"}


def check_merge_sequences(answer) -> Check:
    """Exercise 05.4: which sequences (letters of EX05_SEQUENCES) run without an error on a fresh LoraLinear
    and leave its weight at W0 (up to rounding)? Answer the letters as a string, e.g. "ab"."""
    if _unanswered(answer):
        return report("05.4 merge and unmerge order", False, "replace the placeholder `...` with a string of "
                      "letters, then re-run.")
    letters = "".join(sorted(c for c in str(answer).lower() if c.isalpha()))
    return report("05.4 merge and unmerge order", letters == "ad",
                  "a fresh layer is unmerged; merge() on a merged layer and unmerge() on an unmerged one raise "
                  "ValueError; the weight is W0 exactly when merges and unmerges pair up.")

# --- notebook 07 ---
# Checkers for notebooks/07_qlora.ipynb. NF4 codes are 4 bits; double quantization stores one 8-bit code per
# block and one fp32 absmax per 256 blocks (QLoRA section 3). GB = 1e9 bytes, as in lora_edu.memory.


def check_qlora_bits(answer) -> Check:
    """Exercise 07.1: bits per weight of NF4 with blocks of 32, as a tuple (without DQ, with DQ)."""
    from .memory import nf4_bits_per_weight

    expected = (nf4_bits_per_weight(False, 32), nf4_bits_per_weight(True, 32))
    return check_value("07.1 bits per weight, blocks of 32", answer, expected,
                       hint="4 bits of code plus the constants: one fp32 absmax per block (32 / 32), or with "
                            "double quantization one 8-bit code per block plus one fp32 per 256 blocks.")


def check_nf4_7b_gb(answer) -> Check:
    """Exercise 07.2: GB (1e9 bytes) of a 7e9-weight model stored in NF4 + DQ with blocks of 64."""
    from .memory import GB, nf4_bits_per_weight

    return check_value("07.2 a 7B model in NF4 + DQ", answer, 7e9 * nf4_bits_per_weight(True, 64) / 8 / GB,
                       hint="bits per weight (4 + 8/64 + 32/(64*256)) times 7e9, divided by 8 bits per byte "
                            "and by 1e9 bytes per GB.", rtol=2e-3)


EX07_CONFIGS = (  # exercise 07.3: (n_params, method, keyword arguments of training_memory)
    (7e9, "full", {"weight_bits": 16}),
    (13e9, "lora", {"weight_bits": 16, "trainable_fraction": 0.01}),
    (33e9, "qlora", {"trainable_fraction": 0.005}),
)


def check_fits_24gb(answer) -> Check:
    """Exercise 07.3: which of EX07_CONFIGS fit a 24 GB GPU (activations not counted)? A tuple of 3 bools."""
    from .memory import fits_on_gpu, training_memory

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
    from .nf4 import nf4_code

    code = nf4_code()
    return check_value("07.4 smallest update that changes the code", answer, float(code[8] / 2), rtol=1e-4,
                       hint="re-quantizing picks the nearest of the 16 values; the nearest positive one is "
                            "0.0796, and the boundary between two codes lies halfway between them.")

# --- notebook 09 ---
# Checkers for notebooks/09_variants.ipynb. SmolLM2-135M: hidden 576, MLP 1536, 30 decoder layers; q_proj is
# 576 -> 576, v_proj 576 -> 192. Each problem's data is stated in the notebook and here.

EX09_LR, EX09_RATIO = 2e-4, 16  # exercise 09.3: LoRA+ with this lr (A's) and loraplus_lr_ratio
EX09_BOTTLENECK = 64  # exercise 09.5: a Houlsby adapter's bottleneck width on SmolLM2


def check_dora_magnitude_count(answer) -> Check:
    """Exercise 09.1: DoRA's extra trainable numbers (magnitudes) with q_proj and v_proj in all 30 layers."""
    return check_value("09.1 DoRA magnitudes", answer, 30 * (576 + 192),
                       hint="one magnitude per output feature (per row of the (out, in) weight): q_proj has "
                            "576 outputs, v_proj 192; add them, then multiply by the 30 layers.")


def dora_weight_reference(W0, A, B, m, scaling):
    """W' = m * (W0 + scaling * B @ A) / ||W0 + scaling * B @ A||, one norm per row (output feature)."""
    W = W0 + scaling * B @ A  # (out, in)
    return m[:, None] * W / torch.linalg.norm(W, dim=1, keepdim=True)


def _dora_inputs() -> list[tuple]:
    """Fixed-seed (W0, A, B, m, scaling) cases, all non-square so a norm over the wrong dim is caught."""
    g = torch.Generator().manual_seed(9)
    cases = []
    for out_f, in_f, r, scaling in ((3, 5, 2, 2.0), (6, 4, 1, 0.5), (5, 7, 3, 1.0)):
        cases.append((torch.randn(out_f, in_f, generator=g), torch.randn(r, in_f, generator=g),
                      torch.randn(out_f, r, generator=g), torch.rand(out_f, generator=g) + 0.5, scaling))
    return cases


def check_dora_weight(fn) -> Check:
    """Exercise 09.2: ``fn(W0, A, B, m, scaling)`` returns DoRA's merged weight W' (out, in)."""
    return check_function("09.2 DoRA weight", fn, dora_weight_reference, _dora_inputs(), atol=1e-5,
                          hint="form W = W0 + scaling * B @ A; take the norm of each ROW "
                               "(torch.linalg.norm(W, dim=1, keepdim=True)); then m[:, None] * W / norm.")


def check_loraplus_lrs(answer) -> Check:
    """Exercise 09.3: (lr of lora_A, lr of lora_B, lr of DoRA's magnitude) for LoRA+ with EX09_LR, EX09_RATIO."""
    return check_value("09.3 LoRA+ learning rates", answer, (EX09_LR, EX09_LR * EX09_RATIO, EX09_LR * EX09_RATIO),
                       hint="A keeps lr; B gets lr * ratio; PEFT's grouping also sends every 1-D parameter "
                            "(such as lora_magnitude_vector) to B's group. Answer a tuple of three.")


def check_rslora_equivalent_alpha(answer) -> Check:
    """Exercise 09.4: at r = 64, the lora_alpha that gives standard scaling the scale of rsLoRA with alpha 16."""
    return check_value("09.4 rsLoRA's equivalent alpha", answer, 16 * 64 ** 0.5,
                       hint="rsLoRA's scaling is 16 / sqrt(64); solve alpha / 64 = that for alpha.")


def check_adapter_flops(answer) -> Check:
    """Exercise 09.5: extra FLOPs per token of Houlsby adapters (bottleneck EX09_BOTTLENECK) on SmolLM2."""
    d, m, layers = 576, EX09_BOTTLENECK, 30
    return check_value("09.5 adapter FLOPs per token", answer, layers * 2 * (2 * d * m + 2 * m * d),
                       hint="two adapters per layer, each a down (576 -> 64) and an up (64 -> 576) matmul; "
                            "a matmul of an (in -> out) layer costs 2 * in * out FLOPs per token.")
