"""4-bit lookup-table quantization: packing, NF4 (QLoRA's NormalFloat), FP4, as bitsandbytes stores them.

Explained in notebooks/06_quantization.ipynb (sections "NF4" and "int4 vs FP4 vs NF4"); the QLoRA layer
of notebook 07 stores its frozen base this way. Import the names from ``lora_edu.quant``.

Blockwise 4-bit quantization in three steps (QLoRA, Dettmers et al. 2023, arXiv 2305.14314, section 3):
  1. flatten the weight, cut it into blocks of ``blocksize`` (64), and divide each block by its absmax,
     so every number lands in [-1, 1];
  2. replace each number by the index (0..15) of the nearest of 16 values, the *code*;
  3. pack two indices per byte. Keep one fp32 absmax per block (or double-quantize them).
NF4 and FP4 differ only in the 16 values: NF4 is a lookup table of normal quantiles, not a float format.

Matches ``bitsandbytes.functional.quantize_4bit`` / ``dequantize_4bit`` on the CPU (0.50.2) byte for byte:
the first of two codes goes in the *high* nibble, a weight whose size is not a multiple of the block size
gets a shorter last block, and an odd count is padded with the code of 0.0 (tests/test_quant_nf4.py). One
exception, on processors with AVX512-FP16 (seen on an Intel Xeon): there bitsandbytes' CPU kernel rounds an
fp16 result exactly halfway between two fp16 values away from zero, where ours rounds half to even (IEEE).
bitsandbytes' CUDA kernels round a few values differently from its CPU ones (and so from ours): measured on an
H200 (0.50.2, 28.3 M random weights), 4 codes, each of a value on a midpoint between two code values to within
one fp32 rounding step, and with double quantization some 8-bit constants (``double_quant``'s docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .double_quant import NestedAbsmax, double_dequantize, double_quantize
from .intquant import TINY, check_blocksize, check_finite, check_weight, constant_table, to_blocks

NF4_OFFSET = 0.9677083  # bitsandbytes' outermost quantile; see nf4_code_from_quantiles


# --- the 16 values ---------------------------------------------------------------------------------------

def nf4_code() -> torch.Tensor:
    """The 16 NF4 values, sorted, in [-1, 1], with an exact 0 (bitsandbytes' ``get_4bit_type("nf4")``)."""
    return torch.tensor([
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
        0.7229568362236023, 1.0], dtype=torch.float32)


def nf4_eq4_values(k: int = 4) -> torch.Tensor:
    """QLoRA's Eq. 4 as printed: q_i = (Q(i / (2^k + 1)) + Q((i + 1) / (2^k + 1))) / 2, i = 0 .. 2^k - 1.

    Q is the standard normal quantile function (fp64). The idea is right: each value is the middle of a
    slice of equal probability, so a normal weight uses all 2^k codes about equally often. The formula as
    printed is not usable: Q(0) = -inf makes q_0 = -inf (it cannot be scaled into [-1, 1]), while the top
    value (from Q(15/17) and Q(16/17)) stays finite, so the table is lopsided: 8 values below 0 (one infinite), q_8 = 0,
    7 above. Hence the practical construction below.
    """
    edges = torch.arange(2**k + 1, dtype=torch.float64) / (2**k + 1)  # 0, 1/17, ..., 16/17
    quantiles = torch.special.ndtri(edges)  # ndtri(0) = -inf
    return (quantiles[:-1] + quantiles[1:]) / 2


def nf4_code_from_quantiles(offset: float = NF4_OFFSET) -> torch.Tensor:
    """bitsandbytes' construction (``create_normal_map``): asymmetric halves that share an exact zero.

    8 positive values: quantiles at 8 evenly spaced probabilities from ``offset`` down to (not incl.) 0.5;
    7 negative values: the mirror of 7 such quantiles; plus 0. Then divide by the largest, so the ends are
    -1 and 1. ``offset`` < 1 keeps the ends finite (0.9677083 ~ the mean of 1 - 1/32 and 1 - 1/30; its
    origin is undocumented). Probabilities in fp32 and the quantiles in fp64, as bitsandbytes computes them.
    """
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())  # 8 values
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())  # 7 values
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).float().sort().values
    return values / values.max()


def fp4_code() -> torch.Tensor:
    """bitsandbytes' FP4 values, indexed by the 4-bit code: 1 sign bit (8), 2 exponent bits, 1 mantissa bit.

    Codes 0..7 are 0, 0.0625, 8, 12, 4, 6, 2, 3 (divided by 12); codes 8..15 their negatives. The exponent
    fields 01, 10, 11 give 8, 4, 2 (12, 6, 3 with the mantissa bit): the power of two falls as the field
    rises, so no single exponent bias maps them (bitsandbytes' comment says "bias 2", and its
    ``create_fp8_map(exponent_bits=2, precision_bits=1, total_bits=4)`` gives another subnormal, 1/48). The
    subnormal is 0.0625, so the smallest nonzero magnitude is 1/192 instead of the textbook E2M1's 1/12 (see
    ``e2m1_values``); the 6 other magnitudes are the same once both are scaled to [-1, 1]. Code 8 is -0.
    This is what QLoRA's "FP4" and bnb's quant_type="fp4" use.
    """
    magnitudes = torch.tensor([0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0])
    return torch.cat([magnitudes, -magnitudes]) / 12


def e2m1_values() -> torch.Tensor:
    """Textbook (OCP MX) FP4 E2M1 magnitudes, sorted: 0, 0.5, 1, 1.5, 2, 3, 4, 6 (for comparison only)."""
    return torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


# --- packing: two 4-bit codes per byte -------------------------------------------------------------------

def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """(n,) uint8 codes in 0..15, n even -> (n/2,) bytes; code 2j in the high nibble, 2j+1 in the low one."""
    if not torch.is_tensor(codes) or codes.dtype != torch.uint8:
        raise TypeError(f"codes must be a uint8 tensor, got {getattr(codes, 'dtype', type(codes).__name__)}. "
                        "Fix: codes.to(torch.uint8).")
    if codes.ndim != 1 or codes.numel() % 2 or (codes.numel() and codes.max() > 15):
        raise ValueError(f"codes must be a 1-D tensor of an even number of values in 0..15, got shape "
                         f"{tuple(codes.shape)}, max {int(codes.max()) if codes.numel() else None}. "
                         "Fix: flatten, and append the code of 0.0 if the count is odd.")
    return (codes[0::2] << 4) | codes[1::2]


def _check_packed(packed, n: int) -> None:
    if not torch.is_tensor(packed) or packed.dtype != torch.uint8:
        raise TypeError(f"packed codes must be a uint8 tensor, got "
                        f"{getattr(packed, 'dtype', type(packed).__name__)}. Fix: pass q.codes unchanged.")
    if packed.numel() != -(-n // 2):
        raise ValueError(f"{n} codes need {-(-n // 2)} bytes, got {packed.numel()}. "
                         "Fix: pass the codes that were quantized with this shape.")


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """(ceil(n/2),) bytes -> the first ``n`` codes (n,) uint8, in the order ``pack_4bit`` took them."""
    _check_packed(packed, n)
    return torch.stack([packed.reshape(-1) >> 4, packed.reshape(-1) & 0x0F], dim=1).reshape(-1)[:n]


def byte_table(code: torch.Tensor) -> torch.Tensor:
    """(256, 2): the two values each byte stands for, ``code[byte >> 4]`` and ``code[byte & 15]``.

    One lookup decodes two codes: ``byte_table(code)[packed.long()].reshape(-1)[:n]`` equals
    ``code[unpack_4bit(packed, n).long()]``.
    """
    return torch.stack([code.repeat_interleave(16), code.repeat(16)], dim=1)  # row b: code[b//16], code[b%16]


def _nf4_pairs() -> torch.Tensor:
    return byte_table(nf4_code()).view(torch.int64).view(-1)  # (256,): row b's two fp32 values as one int64


def _fp4_pairs() -> torch.Tensor:
    return byte_table(fp4_code()).view(torch.int64).view(-1)


def code_table(quant_type: str, device: torch.device) -> torch.Tensor:
    """The shared (16,) ``nf4_code()`` / ``fp4_code()`` on ``device``, made once (``constant_table``)."""
    if quant_type not in ("nf4", "fp4"):
        raise ValueError(f"code_table knows 'nf4' and 'fp4', got {quant_type!r}. Fix: pass your own 16-value "
                         "code to quantize_4bit instead.")
    return constant_table(nf4_code if quant_type == "nf4" else fp4_code, device)


def _byte_pairs(code: torch.Tensor) -> torch.Tensor:
    """(256,) int64 ``byte_table(code)``, each row's two fp32 values read as one int64 (one 8-byte load).

    For the shared NF4 / FP4 tables (``code_table``) the cached one; for any other code, built from it on
    its own device (16 values in, 512 out, no host-to-device copy).
    """
    for quant_type, pairs in (("nf4", _nf4_pairs), ("fp4", _fp4_pairs)):
        if code is code_table(quant_type, code.device):
            return constant_table(pairs, code.device)
    return byte_table(code).view(torch.int64).view(-1)


# --- quantize / dequantize with any 16-value code --------------------------------------------------------

@dataclass
class Quant4bit:
    """A 4-bit blockwise-quantized weight (bitsandbytes' ``QuantState`` plus the packed codes).

    ``codes``  (ceil(n/2),) uint8: two codes per byte (bitsandbytes keeps them as a column, (n/2, 1))
    ``absmax`` (n_blocks,) fp32: one constant per block; None when double-quantized (see ``nested``)
    ``code``   (16,) fp32: the value of each 4-bit code (``nf4_code()`` or ``fp4_code()``; shared and
               read-only when it comes from ``code_table``, as quantize_nf4 / quantize_fp4 give it)
    """

    codes: torch.Tensor
    absmax: torch.Tensor | None
    shape: torch.Size
    dtype: torch.dtype
    blocksize: int
    quant_type: str
    code: torch.Tensor = field(repr=False)
    nested: NestedAbsmax | None = None

    @property
    def double_quant(self) -> bool:
        return self.nested is not None

    def block_absmax(self) -> torch.Tensor:
        """The fp32 constant of each block, double-dequantized first if needed."""
        return double_dequantize(self.nested) if self.double_quant else self.absmax

    def nbytes(self) -> int:
        """Bytes stored: packed codes plus constants (fp32 absmax, or the double-quantized parts)."""
        constants = self.nested.nbytes() if self.double_quant else 4 * self.absmax.numel()
        return self.codes.numel() + constants


def nearest_code(values: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """The index (uint8) of the nearest of the 16 ``code`` values: the number of midpoints below the value.

    Sorted, the 16 values have 15 midpoints between neighbours; a value above k of them is nearest to the
    k-th smallest code value. A value exactly on a midpoint goes to the smaller code value, as in
    bitsandbytes. ``code`` need not be sorted (FP4's is in bit order): count on the sorted one, map back.
    """
    ordered, order = code.sort(stable=True)
    midpoints = (ordered[:-1] + ordered[1:]) / 2  # 15 boundaries
    index = torch.zeros(values.shape, dtype=torch.uint8, device=values.device)
    for midpoint in midpoints:  # 15 passes of `>`: same as torch.bucketize(values, midpoints), 3x faster
        index += values > midpoint
    if torch.equal(order, torch.arange(16, device=order.device)):  # already sorted (NF4): nothing to map
        return index
    return order.to(torch.uint8)[index.long()]


def quantize_4bit(weight: torch.Tensor, code: torch.Tensor, blocksize: int = 64,
                  quant_type: str = "custom", double_quant: bool = False) -> Quant4bit:
    """Blockwise absmax into [-1, 1], nearest of the 16 ``code`` values, packed; constants in fp32."""
    check_weight(weight, finite=False)  # NaN / Inf: checked on the absmax below, which is faster
    check_blocksize(blocksize, even=True)
    if not torch.is_tensor(code) or code.shape != (16,) or code.dtype != torch.float32:
        raise ValueError(f"code must be 16 float32 values, got {getattr(code, 'dtype', type(code))} "
                         f"{tuple(getattr(code, 'shape', ()))}. Fix: nf4_code() or fp4_code().")
    n = weight.numel()
    blocks = to_blocks(weight, blocksize)  # (n_blocks, blocksize) fp32, the last one zero padded
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    check_finite(weight, absmax=absmax)  # amax propagates NaN and Inf: the weight is finite iff absmax is
    scaled = blocks * (1.0 / absmax.clamp(min=TINY))[:, None]  # in [-1, 1]
    if n % blocksize:  # bitsandbytes treats a short last block apart (clamps, then divides): same bits here
        absmax[-1] = absmax[-1].clamp(min=TINY)
        scaled[-1] = blocks[-1] / absmax[-1]
    # keep n codes, plus one padding 0.0 if n is odd (bitsandbytes pads the same way)
    codes = nearest_code(scaled.reshape(-1)[: n + n % 2], code)
    q = Quant4bit(pack_4bit(codes), absmax, weight.shape, weight.dtype, blocksize, quant_type, code)
    if double_quant:
        q.nested, q.absmax = double_quantize(absmax), None
    return q


def _check_quant4bit(q) -> None:
    if not isinstance(q, Quant4bit):
        raise TypeError(f"expected a Quant4bit (from quantize_nf4 / quantize_fp4), got {type(q).__name__}.")
    _check_packed(q.codes, q.shape.numel())
    n_blocks = -(-q.shape.numel() // q.blocksize)
    if q.double_quant:
        if q.nested.codes.shape != (n_blocks,):
            raise ValueError(f"the double-quantized constants must be {n_blocks} codes (one per block of "
                             f"{q.blocksize}), got shape {tuple(q.nested.codes.shape)}. "
                             "Fix: dequantize with the constants quantized with these codes.")
    elif q.absmax is None or q.absmax.shape != (n_blocks,) or q.absmax.dtype != torch.float32:
        got = None if q.absmax is None else f"{q.absmax.dtype} {tuple(q.absmax.shape)}"
        raise ValueError(f"absmax must be float32 of shape {(n_blocks,)} (one per block of {q.blocksize} "
                         f"for a weight of shape {tuple(q.shape)}), got {got}. "
                         "Fix: dequantize with the constants quantized with these codes.")


def dequantize_4bit_reference(q: Quant4bit) -> torch.Tensor:
    """The weight back, written to be read: unpack the codes, look each up, times its block's constant.

    ``dequantize_4bit`` computes the same bits faster (tests/test_quant_nf4.py checks every bit).
    """
    _check_quant4bit(q)
    n = q.shape.numel()
    values = q.code[unpack_4bit(q.codes, n).long()]  # (n,) fp32 in [-1, 1]: the table lookup
    scale = q.block_absmax().repeat_interleave(q.blocksize)[:n]  # (n,) the constant of each value's block
    return (values * scale).view(q.shape).to(q.dtype)


def dequantize_4bit(q: Quant4bit) -> torch.Tensor:
    """The weight back, in its original shape and dtype: ``code[codes] * absmax_of_its_block``.

    The same bits as ``dequantize_4bit_reference``, in fewer passes over memory: one lookup per *byte*
    (``byte_table``: two fp32 values read as one int64) with int32 indices, the block constants applied in
    place on a (n_blocks, blocksize) view (no (n,) scale tensor, no padded copy), and the tables cached per
    device. ``NF4Linear`` runs this twice per training step (forward and backward).
    """
    _check_quant4bit(q)
    n, bs = q.shape.numel(), q.blocksize
    values = _byte_pairs(q.code).index_select(0, q.codes.int()).view(torch.float32)  # (2 * n_bytes,)
    absmax, whole = q.block_absmax(), n // bs  # whole: the number of full blocks
    values[: whole * bs].view(whole, bs).mul_(absmax[:whole, None])  # (whole, bs) * (whole, 1), in place
    values[whole * bs:].mul_(absmax[whole:])  # a short last block (and the pad code if n is odd), or nothing
    return values[:n].view(q.shape).to(q.dtype)


# --- the public NF4 / FP4 entry points -------------------------------------------------------------------

def quantize_nf4(weight: torch.Tensor, blocksize: int = 64, double_quant: bool = False) -> Quant4bit:
    """NF4: ``quantize_4bit`` with ``nf4_code()`` (= bnb ``quantize_4bit(w, blocksize, quant_type="nf4",
    compress_statistics=double_quant)``)."""
    check_weight(weight, finite=False)  # a clear error before weight.device is read
    return quantize_4bit(weight, code_table("nf4", weight.device), blocksize, "nf4", double_quant)


def dequantize_nf4(q: Quant4bit) -> torch.Tensor:
    """The weight back from ``quantize_nf4`` (= bnb ``dequantize_4bit``)."""
    _check_quant4bit(q)
    if q.quant_type != "nf4":
        raise ValueError(f"dequantize_nf4 got a {q.quant_type!r} weight. Fix: use dequantize_4bit(q).")
    return dequantize_4bit(q)


def quantize_fp4(weight: torch.Tensor, blocksize: int = 64, double_quant: bool = False) -> Quant4bit:
    """FP4 as bitsandbytes stores it (``fp4_code()``); dequantize with ``dequantize_4bit``."""
    check_weight(weight, finite=False)  # a clear error before weight.device is read
    return quantize_4bit(weight, code_table("fp4", weight.device), blocksize, "fp4", double_quant)
