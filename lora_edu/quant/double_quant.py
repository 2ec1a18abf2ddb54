"""Double quantization: the fp32 block constants of NF4 quantized again, and the bits-per-parameter sums.

Explained in notebooks/06_quantization.ipynb (section "Double quantization"); used by ``lora_edu.quant.nf4``.
QLoRA (Dettmers et al. 2023, arXiv 2305.14314), section 3 "Double Quantization": with blocksize 64, one
fp32 absmax per block costs 32/64 = 0.5 bits per weight. Quantizing those constants once more, in blocks of
256 with an 8-bit code, after subtracting their mean (they are all positive, so centring them uses the
negative codes too), costs 8/64 + 32/(64*256) ~= 0.127 bits per weight.

The 8-bit code is bitsandbytes' signed *dynamic* map (``create_dynamic_map``: one sign, a run of zeros
that picks the power of ten, then a linear fraction; Dettmers 2015, arXiv 1511.04561), not FP8: the
paper's "8-bit Floats" means this map. ``double_quantize`` mirrors ``bitsandbytes.functional.quantize_4bit(...,
compress_statistics=True)`` on the CPU (0.50.2) bit for bit: the offset, the nested absmax, every code
(``bnb_cpu_search`` ports bitsandbytes' lookup table) and so the dequantized weights (tests/test_quant_nf4.py).
``match_bitsandbytes=False`` takes the exactly nearest map value instead (``nearest_index``), the teaching
version: it differs in about 1 code in 600 and its error is never larger. bitsandbytes' CUDA kernel picks the
nearest value too: on an H200 (0.50.2, benchmarks/nf4_devices.py) its constants equalled ``match_bitsandbytes=False``'s
in all 470,016 of three SmolLM2-shaped random weights, and differed from its own CPU kernel's (ours) in 765.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .intquant import check_blocksize, constant_table, to_blocks

NESTED_BLOCKSIZE = 256


def dynamic_map() -> torch.Tensor:
    """bitsandbytes' signed dynamic 8-bit map: 256 sorted fp32 values in [-0.993, 1] (0 and 1 included).

    Decade ``i`` (i = 0..6) covers magnitudes 10^(i-6) * [0.1, 1] with 2^i evenly spaced values, each sign:
    fine steps near 0 where small constants live, coarse steps near 1. Equals ``create_dynamic_map()``.
    """
    values = [0.0, 1.0]
    for i in range(7):
        edges = torch.linspace(0.1, 1, 2**i + 1)  # fp32, as bitsandbytes builds it
        means = (edges[:-1] + edges[1:]) / 2  # 2^i bin centres
        values += (10 ** (i - 6) * means).tolist() + (-(10 ** (i - 6)) * means).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)


def nearest_index(values: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """The index of the exactly nearest entry of the sorted ``code`` for each value (a tie goes left).

    Find the left neighbour by binary search, move right only if that is strictly closer. A NaN (0/0 in a
    block of zeros) gets code 0; its scale is 0, so any code decodes to 0.
    """
    left = (torch.searchsorted(code, values, right=True) - 1).clamp(0, code.numel() - 2)
    closer_right = (values - code[left + 1]).abs() < (values - code[left]).abs()
    index = left + closer_right.long()
    return torch.where(values.isnan(), 0, index).to(torch.uint8)


LUT_SIZE = 65536  # bitsandbytes' kLUTSize: the grid points over [-1, 1]


def bnb_cpu_search(code: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The code index bitsandbytes' CPU kernel picks for each ``x`` in [-1, 1]: a lookup table, not a search.

    A port of ``build_quantize_lut`` / ``norm_to_lut_index`` in bitsandbytes' csrc/cpu_ops.cpp (0.50.2;
    earlier releases searched with BinSearch's "Direct2" in csrc/common.cpp instead), in fp32 as there:
      1. table: 65536 evenly spaced grid points g_i = -1 + 2i/65535; each gets the index of the nearest
         code value (the number of midpoints between neighbouring codes that lie below g_i);
      2. lookup: round x to its grid point, i = trunc(((x + 1) * 0.5) * 65535 + 0.5), and read the table.
    So x is first moved by up to half a grid step (2/65535 / 2 ~ 1.5e-5). Two ways that misses the nearest
    code: x within that distance of a midpoint can land on the far side of it, and near 0, where the
    dynamic map's values are closer together than one grid step, some codes can never be chosen at all
    (the 7 within 7.75e-6 of 0, 0 itself included: 0.0 is stored as 2.125e-5). ``x`` must be finite.
    """
    code = code.to(x.device)
    midpoints = (code[:-1] + code[1:]) * 0.5  # (255,) fp32
    grid = -1.0 + torch.arange(LUT_SIZE, dtype=torch.float32, device=x.device) * 2 / (LUT_SIZE - 1)  # fp32
    table = torch.searchsorted(midpoints, grid)  # count of midpoints < g_i (strictly below)
    i = (x.float().clamp(-1, 1) + 1) * 0.5 * (LUT_SIZE - 1) + 0.5  # fp32, as in the C code
    return table[i.long()].to(torch.uint8)  # .long() truncates toward zero, like the C cast


@dataclass
class NestedAbsmax:
    """The double-quantized block constants (bitsandbytes' names in brackets).

    ``codes``   (n_blocks,) uint8: one 8-bit dynamic-map code per first-level absmax   [state.absmax]
    ``absmax``  (n_nested,) fp32: the absmax of each block of ``blocksize`` codes      [state.state2.absmax]
    ``offset``  () fp32: the mean subtracted before quantizing                          [state.offset]
    """

    codes: torch.Tensor
    absmax: torch.Tensor
    offset: torch.Tensor
    blocksize: int = NESTED_BLOCKSIZE

    def nbytes(self) -> int:
        return self.codes.numel() + 4 * self.absmax.numel() + 4  # uint8 codes, fp32 absmax, fp32 offset


def double_quantize(absmax: torch.Tensor, blocksize: int = NESTED_BLOCKSIZE,
                    match_bitsandbytes: bool = True) -> NestedAbsmax:
    """Quantize the fp32 block constants ``absmax`` (n_blocks,): subtract the mean, then 8-bit blockwise.

    ``match_bitsandbytes=True`` picks each code as bitsandbytes' CPU kernel does (``bnb_cpu_search``), so
    the result equals its ``quantize_4bit(..., compress_statistics=True)``; ``False`` picks the exactly
    nearest map value (``nearest_index``), which differs in about 1 code in 600 and is never farther off.
    """
    check_blocksize(blocksize)
    if not torch.is_tensor(absmax) or absmax.dtype != torch.float32 or absmax.ndim != 1:
        raise TypeError(f"absmax must be a 1-D float32 tensor (one constant per block), got "
                        f"{getattr(absmax, 'dtype', type(absmax).__name__)} "
                        f"{tuple(getattr(absmax, 'shape', ()))}. Fix: pass quantize_nf4(w).absmax.")
    offset = absmax.mean()  # every absmax is > 0: centring lets the codes use both signs
    blocks = to_blocks(absmax - offset, blocksize)  # (n_nested, blocksize), zero padded
    scale = blocks.abs().amax(dim=1)  # (n_nested,)
    normed = blocks * (1.0 / scale)[:, None]  # in [-1, 1]; bitsandbytes multiplies by the reciprocal too
    normed = normed.nan_to_num(0.0)  # 0 * inf = NaN in a block of zeros: fixed below
    code = constant_table(dynamic_map, normed.device)  # (256,), built once per device
    codes = bnb_cpu_search(code, normed) if match_bitsandbytes else nearest_index(normed, code)
    codes[scale == 0] = 0  # a block of zeros (e.g. a single block: absmax - mean = 0): code 0, as bnb
    return NestedAbsmax(codes.reshape(-1)[: absmax.numel()], scale, offset, blocksize)


def double_dequantize(nested: NestedAbsmax) -> torch.Tensor:
    """The fp32 block constants back: ``dynamic_map()[codes] * absmax_of_their_block + offset``."""
    n = nested.codes.numel()
    n_nested = -(-n // nested.blocksize)
    if nested.codes.dtype != torch.uint8 or nested.codes.ndim != 1:
        raise TypeError(f"nested codes must be 1-D uint8, got {nested.codes.dtype} "
                        f"{tuple(nested.codes.shape)}. Fix: pass the NestedAbsmax double_quantize returned.")
    if tuple(nested.absmax.shape) != (n_nested,):
        raise ValueError(f"nested absmax must have shape {(n_nested,)} (one per {nested.blocksize} codes), "
                         f"got {tuple(nested.absmax.shape)}. Fix: pass the NestedAbsmax unchanged.")
    # (n,) in [-1, 1]: the map is cached per device (no copy per call), int32 indices (not int64)
    values = constant_table(dynamic_map, nested.codes.device).index_select(0, nested.codes.int())
    # each code times its block's scale, in place: the whole blocks as one (n_whole, blocksize) view, then the
    # short last block, if any. Same products as values * absmax.repeat_interleave(blocksize)[:n], without
    # building that (n,) tensor. Then + offset as a separate step (a multiply and an add, not an fma).
    whole = n // nested.blocksize
    values[: whole * nested.blocksize].view(whole, nested.blocksize).mul_(nested.absmax[:whole, None])
    values[whole * nested.blocksize:].mul_(nested.absmax[whole:])  # (n % blocksize,) * (1,), or nothing
    return values.add_(nested.offset)


def bits_per_parameter(blocksize: int = 64, nested_blocksize: int = NESTED_BLOCKSIZE,
                       code_bits: int = 4) -> dict:
    """Storage per weight, in bits, without and with double quantization (QLoRA section 3).

    Returns ``{"code", "constants", "constants_dq", "total", "total_dq", "saving"}``; for the defaults:
    4, 32/64 = 0.5, 8/64 + 32/(64*256) ~= 0.127, 4.5, ~4.127 and ~0.373. The single fp32 offset per
    tensor is left out (it is 32 bits for millions of weights).
    """
    check_blocksize(blocksize)
    check_blocksize(nested_blocksize, name="nested_blocksize")
    constants = 32 / blocksize  # one fp32 absmax per block
    constants_dq = 8 / blocksize + 32 / (blocksize * nested_blocksize)  # 8-bit codes + fp32 per 256 of them
    return {"code": code_bits, "constants": constants, "constants_dq": constants_dq,
            "total": code_bits + constants, "total_dq": code_bits + constants_dq,
            "saving": constants - constants_dq}
