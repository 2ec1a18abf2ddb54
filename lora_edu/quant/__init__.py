"""Quantization from scratch, in one namespace: int8 absmax to NF4, double quantization and llama.cpp's Q4_1.

Explained in notebooks/06_quantization.ipynb; notebook 07 (QLoRA) stores its frozen base with
``quantize_nf4``. The code lives in four small modules; read them in this order:

- ``lora_edu.quant.intquant``: absmax int8 (per tensor, per output channel), zero-point int8, blockwise absmax,
  plain int4, and ``quantization_error`` (mean / max absolute, relative Frobenius).
- ``lora_edu.quant.nf4``: the NF4 code (QLoRA's Eq. 4 and bitsandbytes' construction), FP4, packing two codes
  per byte, blockwise 4-bit quantize / dequantize, byte for byte as bitsandbytes stores them.
- ``lora_edu.quant.double_quant``: the block constants quantized again (blocks of 256, mean subtracted,
  bitsandbytes' 8-bit dynamic map) and the bits-per-parameter sums (4.5 -> ~4.127).
- ``lora_edu.quant.q4_1``: llama.cpp's Q4_1 (blocks of 32, fp16 scale and minimum), the format of the GGUF
  file the series loads SmolLM2 from, byte for byte as ``gguf.quants`` writes it.

Paper: QLoRA (Dettmers et al. 2023, arXiv 2305.14314), sections 2-3.
"""

from .double_quant import (
    NESTED_BLOCKSIZE,
    NestedAbsmax,
    bits_per_parameter,
    double_dequantize,
    double_quantize,
    dynamic_map,
)
from .intquant import (
    BlockwiseQuant,
    check_blocksize,
    check_weight,
    dequantize_absmax,
    dequantize_blockwise,
    dequantize_zeropoint,
    quantization_error,
    quantize_absmax,
    quantize_blockwise,
    quantize_int4,
    quantize_zeropoint,
)
from .nf4 import (
    NF4_OFFSET,
    Quant4bit,
    code_table,
    dequantize_4bit,
    dequantize_4bit_reference,
    dequantize_nf4,
    e2m1_values,
    fp4_code,
    nf4_code,
    nf4_code_from_quantiles,
    nf4_eq4_values,
    pack_4bit,
    quantize_4bit,
    quantize_fp4,
    quantize_nf4,
    unpack_4bit,
)
from .q4_1 import BLOCK_BYTES, QK4_1, dequantize_q4_1, quantize_q4_1, split_q4_1

__all__ = [
    "NESTED_BLOCKSIZE", "NestedAbsmax", "bits_per_parameter", "double_dequantize", "double_quantize",
    "dynamic_map",
    "BlockwiseQuant", "check_blocksize", "check_weight", "dequantize_absmax", "dequantize_blockwise",
    "dequantize_zeropoint", "quantization_error", "quantize_absmax", "quantize_blockwise", "quantize_int4",
    "quantize_zeropoint",
    "NF4_OFFSET", "Quant4bit", "code_table", "dequantize_4bit", "dequantize_4bit_reference", "dequantize_nf4", "e2m1_values", "fp4_code", "nf4_code",
    "nf4_code_from_quantiles", "nf4_eq4_values", "pack_4bit", "quantize_4bit", "quantize_fp4",
    "quantize_nf4", "unpack_4bit",
    "BLOCK_BYTES", "QK4_1", "dequantize_q4_1", "quantize_q4_1", "split_q4_1",
]
