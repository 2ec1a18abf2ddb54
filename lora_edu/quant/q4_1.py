"""llama.cpp's Q4_1: blocks of 32 weights, each stored as a 4-bit code with an fp16 scale and minimum.

Explained in notebooks/06_quantization.ipynb (section "Q4_1: the file we load"): SmolLM2's GGUF file
(``lora_edu.pretrained.gguf_path()``) stores its linear layers this way. Import from ``lora_edu.quant``.

Per block of 32 consecutive weights x (along the last dimension, one row at a time):
    d = (max(x) - min(x)) / 15,   m = min(x),   q = min(15, trunc((x - m) / d + 0.5))  in 0..15
    x ~= d * q + m          (zero-point quantization, with the minimum as the offset)
A block is 20 bytes: d as fp16 (2 bytes), m as fp16 (2 bytes), then 16 bytes of codes; byte j holds
q[j] in its *low* nibble and q[j + 16] in its high nibble (bitsandbytes puts the first code high).
So 20 * 8 / 32 = 5 bits per weight. The arithmetic mirrors ``quantize_row_q4_1_ref`` in ggml and
``gguf.quants.Q4_1`` (fp32 d and 1/d for the codes, fp16 only when stored), so the bytes are identical
(tests/test_quant_q4_1.py).
"""

from __future__ import annotations

import numpy as np
import torch

from .intquant import check_weight

QK4_1 = 32  # weights per block
BLOCK_BYTES = 20  # 2 (d) + 2 (m) + 16 (32 codes, two per byte)


def quantize_q4_1(weight: torch.Tensor) -> torch.Tensor:
    """uint8 bytes of shape ``(*weight.shape[:-1], weight.shape[-1] // 32 * 20)``, as in a GGUF file."""
    check_weight(weight)
    if weight.ndim == 0 or weight.shape[-1] % QK4_1:
        raise ValueError(f"Q4_1 cuts each row into blocks of {QK4_1}, so the last dimension must be a "
                         f"multiple of {QK4_1}; got shape {tuple(weight.shape)}. Fix: pad the rows, or use "
                         "quantize_nf4, whose blocks run across rows.")
    x = weight.float().reshape(-1, QK4_1)  # (n_blocks, 32)
    lo = x.amin(dim=1, keepdim=True)  # m, (n_blocks, 1)
    d = (x.amax(dim=1, keepdim=True) - lo) / 15  # the step between codes
    if not (torch.isfinite(d.half()).all() and torch.isfinite(lo.half()).all()):
        raise ValueError(f"Q4_1 stores each block's step d = (max - min) / 15 and minimum m as float16, whose "
                         f"largest number is 65504; this weight's blocks need up to d = {float(d.max()):.4g} and "
                         f"|m| = {float(lo.abs().max()):.4g}, which would be stored as Inf. Fix: quantize "
                         "weight / s for a power of two s (and multiply back), or use quantize_nf4 (fp32 scales).")
    inv_d = torch.where(d == 0, 0.0, 1.0 / d)  # a constant block: every code 0, decodes to m
    q = torch.trunc((x - lo) * inv_d + 0.5).clamp(0, 15).to(torch.uint8)  # round half up: (n_blocks, 32)
    packed = q[:, :16] | (q[:, 16:] << 4)  # (n_blocks, 16): first half low nibble, second half high
    d16, m16 = d.half().view(torch.uint8), lo.half().view(torch.uint8)  # (n_blocks, 2) each, little endian
    blocks = torch.cat([d16, m16, packed], dim=1)  # (n_blocks, 20)
    return blocks.reshape(*weight.shape[:-1], weight.shape[-1] // QK4_1 * BLOCK_BYTES)


def split_q4_1(raw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(d, m, q)`` of every block: fp16 ``(n_blocks, 1)``, fp16 ``(n_blocks, 1)``, uint8 ``(n_blocks, 32)``.

    ``raw`` is Q4_1 bytes (a uint8 torch tensor, or the numpy array ``gguf.GGUFReader`` gives).
    """
    if isinstance(raw, np.ndarray):
        raw = torch.from_numpy(np.array(raw, copy=True))  # GGUFReader memory-maps the file read-only
    if not torch.is_tensor(raw) or raw.dtype != torch.uint8:
        raise TypeError(f"Q4_1 data must be uint8 bytes, got {getattr(raw, 'dtype', type(raw).__name__)}. "
                        "Fix: pass quantize_q4_1's output or a GGUF tensor's .data.")
    if raw.ndim == 0 or raw.shape[-1] % BLOCK_BYTES:
        raise ValueError(f"Q4_1 rows are made of {BLOCK_BYTES}-byte blocks, so the last dimension must be a "
                         f"multiple of {BLOCK_BYTES}; got shape {tuple(raw.shape)}. Fix: pass whole rows.")
    blocks = raw.reshape(-1, BLOCK_BYTES)
    d = blocks[:, 0:2].contiguous().view(torch.float16)
    m = blocks[:, 2:4].contiguous().view(torch.float16)
    packed = blocks[:, 4:]  # (n_blocks, 16)
    q = torch.cat([packed & 0x0F, packed >> 4], dim=1)  # (n_blocks, 32): codes 0-15, then 16-31
    return d, m, q


def dequantize_q4_1(raw) -> torch.Tensor:
    """fp32 weights ``d * q + m``, shape ``(*raw.shape[:-1], raw.shape[-1] // 20 * 32)``."""
    d, m, q = split_q4_1(raw)
    bad = (~(torch.isfinite(d) & torch.isfinite(m))).flatten().nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"Q4_1 block {bad[0]} (of {d.numel()}; {len(bad)} in all) stores a NaN or Inf scale or "
                         "minimum, so all 32 of its weights would decode to NaN/Inf: the bytes are corrupt. "
                         "Fix: re-download or re-convert the GGUF file.")
    x = d.float() * q.float() + m.float()  # (n_blocks, 32)
    shape = tuple(raw.shape)
    return x.reshape(*shape[:-1], shape[-1] // BLOCK_BYTES * QK4_1)
