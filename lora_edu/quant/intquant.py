"""Integer quantization from scratch: absmax (per tensor, per output channel), zero-point, and blockwise absmax.

Explained in notebooks/06_quantization.ipynb (sections 1-3). The 4-bit formats built on the same idea
(NF4, FP4, double quantization) are in ``lora_edu.quant.nf4``, llama.cpp's Q4_1 in ``lora_edu.quant.q4_1``; import them
all from ``lora_edu.quant``.

The one idea: store ``codes`` (small integers) and ``constants`` (a few floats) such that
``weight ~= codes * scale`` (absmax, symmetric) or ``weight ~= (codes - zero_point) * scale`` (zero-point,
asymmetric). One outlier in a weight sets the scale for every number that shares it, so the others get
only a few of the levels: blockwise absmax gives every ``blocksize`` consecutive numbers their own scale
(QLoRA, Dettmers et al. 2023, arXiv 2305.14314, section 2 "Block-wise k-bit Quantization").

Every quantizer here rounds to nearest (``torch.round``, ties to even) and keeps the constants in fp32.
The input checks (``check_weight``, ``check_finite``, ``check_blocksize``) are shared by all the
quantizers of lora_edu.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LARGEST = 1e38  # the largest magnitude we quantize: leaves room below float32's 3.4e38 for rounding
TINY = 1e-38  # a block of zeros has absmax 0; dividing by max(absmax, TINY) keeps its codes at 0 (as bnb does)


@functools.cache
def constant_table(build: Callable[[], torch.Tensor], device: torch.device) -> torch.Tensor:
    """``build()`` (a constant lookup table: NF4's 16 values, the 8-bit dynamic map) on ``device``, made once.

    Rebuilding a table on the CPU and copying it to the GPU in every call costs one blocking host-to-device
    copy per layer per step; cached per (table, device), each device gets one copy, ever. The tensor is
    shared: read it, never write into it (the public ``nf4_code()`` / ``dynamic_map()`` return new ones).
    Built outside inference mode and autograd, so it works in every mode it is later used in.
    """
    with torch.inference_mode(False), torch.no_grad():
        return build().to(device)


def check_weight(weight, name: str = "weight", finite: bool = True) -> torch.Tensor:
    """``weight`` if it is a non-empty, finite fp32/fp16/bf16 tensor; otherwise a clear error.

    ``finite=False`` skips the NaN/Inf scan, for a caller that runs ``check_finite`` itself later.
    """
    if not torch.is_tensor(weight):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(weight).__name__}. "
                        f"Fix: torch.as_tensor({name}, dtype=torch.float32).")
    if weight.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {weight.dtype}; quantizers take float32, float16 or bfloat16. "
                        f"Fix: pass {name}.float().")
    if weight.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(weight.shape)}); there is nothing to quantize. "
                         "Fix: pass the layer's weight, e.g. layer.weight.data.")
    return check_finite(weight, name) if finite else weight


def check_finite(weight: torch.Tensor, name: str = "weight",
                 absmax: torch.Tensor | None = None) -> torch.Tensor:
    """``weight`` if it holds no NaN or Inf and nothing above ``LARGEST``; otherwise a ValueError.

    ``absmax``: the weight's block absmax, if already computed. ``amax`` propagates NaN and Inf, so the
    weight is finite (and small enough) exactly when its few absmax values are: checking them skips a scan.
    """
    top = weight.detach().abs().amax() if absmax is None else absmax.amax()
    if torch.isfinite(top) and top <= LARGEST:
        return weight
    finite = torch.isfinite(weight)
    if not finite.all():
        n_nan = int(torch.isnan(weight).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ValueError(f"{name} has {n_nan} NaN and {n_inf} Inf values; one of them would become the "
                         "scale of its block and wipe out every other number there. Fix: find where they "
                         f"come from (torch.isfinite({name}).all() after each step) before quantizing.")
    raise ValueError(f"{name} has values up to {float(top):.3g}, above {LARGEST:g}: a scale times a code, "
                     "rounded, could pass float32's largest number (3.4e38) and come back as Inf. Fix: quantize "
                     f"{name} / s for a power of two s and multiply the result by s.")


def check_blocksize(blocksize, *, even: bool = False, name: str = "blocksize") -> int:
    """``blocksize`` if it is a positive int (and even, where two 4-bit codes share a byte)."""
    if isinstance(blocksize, bool) or not isinstance(blocksize, int):
        raise TypeError(f"{name} must be an int, got {blocksize!r}. Fix: e.g. {name}=64.")
    if blocksize <= 0:
        raise ValueError(f"{name} must be positive, got {blocksize}. Fix: e.g. {name}=64 (QLoRA's choice).")
    if even and blocksize % 2:
        raise ValueError(f"{name}={blocksize} is odd, but two 4-bit codes share a byte, so a block must hold "
                         f"an even number of weights. Fix: use an even size, e.g. {name}=64.")
    return blocksize


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int from 2 to 8 (codes are stored in one byte), got {bits!r}. "
                         "Fix: bits=8 for int8, bits=4 for int4.")
    return bits


def qmax(bits: int) -> int:
    """The largest symmetric code: 127 for int8, 7 for int4 (the code -2^(bits-1) is never used)."""
    return 2 ** (_check_bits(bits) - 1) - 1


# --- 1. absmax: one scale for the whole tensor, or one per output channel (row) ---------------------------

def quantize_absmax(weight: torch.Tensor, bits: int = 8, per_channel: bool = False):
    """``(codes, scale)`` with ``weight ~= codes * scale``; codes are int8 in [-qmax, qmax].

    ``per_channel=False``: one scale (a 0-d tensor), absmax(weight) / qmax.
    ``per_channel=True``: one scale per output channel of a 2-D ``(out_features, in_features)`` weight,
    shape ``(out_features, 1)``, so an outlier only spoils its own row.
    """
    check_weight(weight)
    top = qmax(bits)
    x = weight.float()
    if per_channel:
        if x.ndim != 2:
            raise ValueError(f"per_channel needs a 2-D (out_features, in_features) weight, got shape "
                             f"{tuple(x.shape)}. Fix: pass a linear layer's weight, or per_channel=False.")
        absmax = x.abs().amax(dim=1, keepdim=True)  # (out_features, 1)
    else:
        absmax = x.abs().amax()  # ()
    scale = absmax / top
    codes = torch.round(x / scale.clamp(min=TINY)).to(torch.int8)
    return codes, scale


def dequantize_absmax(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 ``codes * scale`` (``scale`` broadcasts: a 0-d tensor, or ``(out_features, 1)``)."""
    if not torch.is_tensor(codes) or codes.dtype != torch.int8:
        raise TypeError(f"codes must be an int8 tensor (from quantize_absmax), got "
                        f"{getattr(codes, 'dtype', type(codes).__name__)}. Fix: pass the codes it returned.")
    return codes.float() * scale


# --- 2. zero-point (asymmetric): the codes 0..2^bits-1 span [min, max] instead of [-absmax, absmax] --------

def quantize_zeropoint(weight: torch.Tensor, bits: int = 8):
    """``(codes, scale, zero_point)`` with ``weight ~= (codes - zero_point) * scale``; codes are uint8.

    The range is widened to include 0 so that 0 is stored exactly (the code ``zero_point``). Useful when
    the values are one-sided (e.g. after a ReLU), where absmax would waste the negative half of the codes.
    """
    check_weight(weight)
    levels = 2 ** _check_bits(bits) - 1  # 255 for 8 bits
    x = weight.float()
    lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
    scale = (hi - lo) / levels
    zero_point = torch.round(-lo / scale.clamp(min=TINY))  # the code that stands for 0.0
    codes = (torch.round(x / scale.clamp(min=TINY)) + zero_point).clamp(0, levels).to(torch.uint8)
    return codes, scale, zero_point


def dequantize_zeropoint(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """fp32 ``(codes - zero_point) * scale``."""
    if not torch.is_tensor(codes) or codes.dtype != torch.uint8:
        raise TypeError(f"codes must be a uint8 tensor (from quantize_zeropoint), got "
                        f"{getattr(codes, 'dtype', type(codes).__name__)}. Fix: pass the codes it returned.")
    return (codes.float() - zero_point) * scale


# --- 3. blockwise absmax: one scale per block of `blocksize` consecutive numbers --------------------------

@dataclass
class BlockwiseQuant:
    """Blockwise absmax codes: ``codes`` (n_blocks, blocksize) int8, ``absmax`` (n_blocks,) fp32."""

    codes: torch.Tensor
    absmax: torch.Tensor
    shape: torch.Size
    blocksize: int
    bits: int


def to_blocks(weight: torch.Tensor, blocksize: int) -> torch.Tensor:
    """The weight flattened (row-major) into ``(n_blocks, blocksize)`` fp32, the last block padded with zeros.

    Zeros do not change a block's absmax, and dequantizing cuts them off again.
    """
    flat = weight.reshape(-1).float()
    n_blocks = -(-flat.numel() // blocksize)  # ceil(n / blocksize)
    pad = n_blocks * blocksize - flat.numel()
    return torch.nn.functional.pad(flat, (0, pad)).view(n_blocks, blocksize)


def quantize_blockwise(weight: torch.Tensor, blocksize: int = 64, bits: int = 8) -> BlockwiseQuant:
    """Symmetric absmax per block: ``codes = round(x / (absmax_block / qmax))``."""
    check_weight(weight)
    check_blocksize(blocksize)
    blocks = to_blocks(weight, blocksize)  # (n_blocks, blocksize)
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    scale = (absmax / qmax(bits)).clamp(min=TINY)[:, None]  # (n_blocks, 1)
    codes = torch.round(blocks / scale).to(torch.int8)
    return BlockwiseQuant(codes, absmax, weight.shape, blocksize, bits)


def dequantize_blockwise(q: BlockwiseQuant) -> torch.Tensor:
    """fp32 weight of ``q.shape`` from its codes and per-block absmax."""
    n_blocks = -(-q.shape.numel() // q.blocksize)
    if q.codes.dtype != torch.int8 or tuple(q.codes.shape) != (n_blocks, q.blocksize):
        raise ValueError(f"codes must be int8 of shape {(n_blocks, q.blocksize)} for a weight of shape "
                         f"{tuple(q.shape)}, got {q.codes.dtype} {tuple(q.codes.shape)}. "
                         "Fix: pass the BlockwiseQuant that quantize_blockwise returned, unchanged.")
    if tuple(q.absmax.shape) != (n_blocks,):
        raise ValueError(f"absmax must have shape {(n_blocks,)} (one per block), got "
                         f"{tuple(q.absmax.shape)}. Fix: pass the BlockwiseQuant unchanged.")
    blocks = q.codes.float() * (q.absmax / qmax(q.bits))[:, None]
    return blocks.reshape(-1)[: q.shape.numel()].view(q.shape)


def quantize_int4(weight: torch.Tensor, blocksize: int = 64) -> BlockwiseQuant:
    """Plain int4: blockwise absmax onto the 15 integers -7..7 (symmetric; the code -8 is never used).

    The baseline of QLoRA's Table 2 ("Int4"). Codes stay unpacked here; ``lora_edu.quant.nf4.pack_4bit`` shows
    how two 4-bit codes share a byte.
    """
    return quantize_blockwise(weight, blocksize, bits=4)


# --- 4. how wrong is it? ------------------------------------------------------------------------------

def quantization_error(weight: torch.Tensor, approx: torch.Tensor) -> dict:
    """``{"mean_abs", "max_abs", "rel_frobenius"}`` of ``approx - weight`` (floats, computed in fp32).

    ``rel_frobenius`` = ||approx - weight||_F / ||weight||_F, the error relative to the weight's size.
    """
    if not torch.is_tensor(approx) or approx.shape != weight.shape:
        raise ValueError(f"approx must be a tensor of the weight's shape {tuple(weight.shape)}, got "
                         f"{tuple(getattr(approx, 'shape', ()))}. Fix: dequantize before comparing.")
    w, err = weight.float(), approx.float() - weight.float()
    return {"mean_abs": err.abs().mean().item(),
            "max_abs": err.abs().max().item(),
            "rel_frobenius": (err.norm() / w.norm().clamp(min=TINY)).item()}
