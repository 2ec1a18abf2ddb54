"""Training memory by arithmetic: what full fine-tuning, LoRA and QLoRA hold on the GPU, in bytes.

A calculator, not a measurement: it counts weights, gradients, optimizer states and fp32 master copies;
activations are an input (they depend on batch, sequence length and gradient checkpointing). Sources: the
QLoRA paper (Dettmers et al. 2023, arXiv 2305.14314) sections 1-4, and ZeRO (arXiv 1910.02054) section 3.1
for the 16 bytes per parameter of mixed-precision Adam. Explained in notebooks/07_qlora.ipynb.

Units: GB = 1e9 bytes everywhere, as in the seed's "28 GB" and the paper's "48GB"; ``GiB`` (2**30) is only
for converting (28 GB = 26.1 GiB). GPU sizes are compared as gpu_gb * 1e9 bytes.

Bytes per parameter counted (n = base parameters, t = trainable parameters):
    base weights       n * bits / 8; QLoRA: NF4 codes 4 bits + block constants, 4.5 bits per weight
                       (fp32 absmax per 64) or about 4.127 with double quantization (QLoRA section 3)
    LoRA weights       t * trainable_bits / 8 (QLoRA keeps them in bf16: 16 bits)
    gradients          one per trainable parameter, in its dtype (PyTorch stores p.grad in p's dtype)
    master weights     4 * t when 16-bit trainable weights keep fp32 copies (mixed precision)
    optimizer states   AdamW 8 * t (m and v in fp32), 8-bit AdamW 2 * t + absmax per 256, SGD 0
Left out, so totals are lower bounds: activations unless given, the CUDA context, allocator slack,
temporary buffers (QLoRA's dequantized weight of the layer being computed). QLoRA section 2 gives 5,048 MB
for LLaMA-7B's 4-bit base, above this count (3.9 GB).

Numbers checked in tests/test_memory.py:
- the seed, 7B full fine-tuning in fp32 with Adam: weights 28 + gradients 28 + Adam 56 = 112 GB, activations
  excluded;
- QLoRA abstract, 65B regular 16-bit fine-tuning needs "more than 780GB": 16-bit weights + 16-bit gradients
  + fp32 Adam states = 12 B/param * 65e9 = 780 GB before activations (our reading; the paper shows no sum;
  with fp32 master copies it is 16 B/param, 1040 GB);
- QLoRA: "finetune a 65B parameter model on a single 48GB GPU", and 33B on a 24 GB GPU (section 4), under
  the Guanaco setup (artidoro/qlora: r=64 on all linear layers, NF4 + double quantization, bf16 LoRA, paged
  32-bit AdamW, gradient checkpointing) and embeddings/head left in 16 bits: 65B needs 43.9 GB before
  activations, 33B 23.5 GB, leaving 0.5 GB for activations unless paging moves the 3.9 GB of Adam state
  out. The seed's "65B on a single 24 GB GPU" is wrong: 65B's 4-bit base alone is 65e9 * 4.127 / 8 = 33.5 GB.

Paged optimizers (QLoRA section 3; bitsandbytes ``PagedAdamW32bit``, ``PagedAdamW8bit``): optimizer states
live in NVIDIA unified memory; when the GPU runs out of memory their pages are evicted to CPU RAM, and paged
back when the optimizer step updates them. They matter for spikes: a mini-batch with a long sequence raises
the activation peak (even with gradient checkpointing) above what fits, and the optimizer state moves out
instead of the run crashing. Nothing moves while everything fits (zero overhead, bitsandbytes docs); pages
that move cross PCIe, which costs time at each step that needs them. QLoRA section 4: "critical" for
33B/65B on one 24/48 GB GPU, and at 65B, batch 16, as fast as regular optimizers. See ``fits_on_gpu``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .model import lora_parameter_count

GB = 1e9  # bytes in a (decimal) gigabyte: the unit of every number here
GiB = 2**30  # bytes in a gibibyte, for conversions only

METHODS = ("full", "lora", "qlora")
WEIGHT_BITS = {"full": (32, 16), "lora": (32, 16), "qlora": (4,)}  # supported base precisions
TRAINABLE_BITS = (32, 16)  # fp32, or bf16/fp16
# Optimizer state bytes per trainable parameter. AdamW: m and v in fp32 (PyTorch mixed precision and
# bitsandbytes' 32-bit AdamW keep fp32 states even for 16-bit weights). 8-bit AdamW (bitsandbytes): two
# uint8 states plus one fp32 absmax per 256 values for each. SGD: plain, no momentum buffer.
OPTIMIZER_BYTES = {"adamw": 8.0, "adamw-8bit": 2 + 2 * 4 / 256, "sgd": 0.0, "sgd-momentum": 4.0}
NESTED_BLOCKSIZE = 256  # double quantization: 8-bit constants, one fp32 scale per 256 of them

# LLaMA shapes (hidden size, MLP size, layers) from the released configs; vocabulary 32,000 tokens.
LLAMA_SHAPES = {"7B": (4096, 11008, 32), "13B": (5120, 13824, 40), "33B": (6656, 17920, 60),
                "65B": (8192, 22016, 80)}
LLAMA_VOCAB = 32_000
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def nf4_bits_per_weight(double_quant: bool = True, blocksize: int = 64) -> float:
    """4-bit codes plus block constants: 4 + 32/64 = 4.5, or 4 + 8/64 + 32/(64*256) ~= 4.127 with DQ."""
    _check_positive_int("blocksize", blocksize, "QLoRA uses 64")
    constants = 8 / blocksize + 32 / (blocksize * NESTED_BLOCKSIZE) if double_quant else 32 / blocksize
    return 4 + constants


def llama_lora_params(size: str, r: int = 64, target_modules=ALL_LINEAR) -> int:
    """LoRA parameters for a LLaMA model: r * (in + out) per adapted matrix, summed over the layers.

    The default, r=64 on all seven linear layers of every block, is the Guanaco setup of the QLoRA paper
    (``--lora_r 64 --lora_modules all``): 0.80e9 parameters at 65B (1.2%), 0.49e9 at 33B.
    ``target_modules=("q_proj", "v_proj")`` is the LoRA paper's and PEFT's default choice.
    """
    _check_positive_int("r", r, "Guanaco uses 64")
    d, d_ff, layers = _llama_shape(size)
    shapes = {"q_proj": (d, d), "k_proj": (d, d), "v_proj": (d, d), "o_proj": (d, d),
              "gate_proj": (d, d_ff), "up_proj": (d, d_ff), "down_proj": (d_ff, d)}  # (in, out)
    unknown = set(target_modules) - set(shapes)
    if unknown:
        raise ValueError(f"unknown target_modules {sorted(unknown)}; LLaMA's linear layers are {ALL_LINEAR}.")
    return layers * sum(lora_parameter_count(*shapes[name], r) for name in target_modules)


def llama_embedding_params(size: str) -> int:
    """Input embeddings plus the untied output head, 2 * 32,000 * hidden: QLoRA leaves them in 16 bits."""
    return 2 * LLAMA_VOCAB * _llama_shape(size)[0]


def _check_positive_int(name: str, value, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}; {hint}.")


def _llama_shape(size: str) -> tuple:
    if size not in LLAMA_SHAPES:
        raise ValueError(f"unknown LLaMA size {size!r}; choose one of {sorted(LLAMA_SHAPES)}.")
    return LLAMA_SHAPES[size]


@dataclass(frozen=True)
class MemoryBreakdown:
    """Training memory in bytes, one field per kind of tensor; ``total`` is their sum."""

    method: str
    weights: float  # the base model: trained (full) or frozen (LoRA, QLoRA)
    lora: float  # LoRA's A and B; 0 for full fine-tuning
    gradients: float
    master_weights: float  # fp32 copies of 16-bit trainable weights (mixed precision)
    optimizer_states: float
    activations: float  # an input, not estimated
    notes: tuple = ()

    PARTS = ("weights", "lora", "gradients", "master_weights", "optimizer_states", "activations")
    LABELS = ("weights", "LoRA weights", "gradients", "master weights", "optimizer states", "activations")

    @property
    def total(self) -> float:
        return sum(getattr(self, part) for part in self.PARTS)

    def gb(self) -> dict:
        """Every part and the total in GB (1e9 bytes)."""
        return {part: getattr(self, part) / GB for part in (*self.PARTS, "total")}

    def __str__(self) -> str:
        lines = [f"{self.method} training memory (GB = 1e9 bytes)"]
        values = self.gb().values()
        lines += [f"  {lab:<17}{v:9.2f} GB" for lab, v in zip((*self.LABELS, "total"), values, strict=True)]
        lines[-1] += f"  ({self.total / GiB:.2f} GiB)"
        return "\n".join(lines + [f"  - {note}" for note in self.notes])


def _check_count(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}; e.g. {name}=7e9.")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {need}, got {value!r}.")
    return float(value)


def _pick(name: str, value, allowed, hint: str):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(allowed)}. {hint}")
    return value


def training_memory(n_params, method: str = "full", *, weight_bits: int | None = None,
                    lora_params=None, trainable_fraction: float | None = None,
                    trainable_bits: int | None = None, optimizer: str = "adamw",
                    master_weights: bool = False, activations_bytes=0, double_quant: bool = True,
                    blocksize: int = 64, unquantized_params=0) -> MemoryBreakdown:
    """Bytes needed to fine-tune a model of ``n_params`` parameters (see the module docstring for sources).

    - ``method``: "full" trains every weight; "lora" freezes a 16/32-bit base and trains LoRA; "qlora"
      freezes an NF4 base (QLoRA) and trains LoRA.
    - ``weight_bits``: base precision. Default 32 for "full" and "lora" (fp32, the seed's count), 4 for
      "qlora"; 16 means bf16/fp16.
    - ``lora_params`` (a count, e.g. ``llama_lora_params("65B")``) or ``trainable_fraction`` (LoRA
      parameters / n_params, e.g. 0.002 as in QLoRA section 2): exactly one, for "lora" and "qlora" only.
    - ``trainable_bits``: dtype of the trained weights and so of their gradients. Default: ``weight_bits``,
      and 16 for "qlora" (bf16 LoRA, QLoRA Eq. 5). PEFT casts 16-bit adapters to fp32 by default
      (``autocast_adapter_dtype``): pass 32 to count that.
    - ``optimizer``: "adamw" (2 fp32 states), "adamw-8bit" (bitsandbytes), "sgd" (no state), "sgd-momentum".
    - ``master_weights``: fp32 copies of 16-bit trainable weights (mixed precision, ZeRO's 16 B/param).
    - ``activations_bytes``: saved activations, measured or estimated elsewhere; default 0.
    - ``double_quant``, ``blocksize``: NF4 constants, for "qlora" (default 4.127 bits per weight).
    - ``unquantized_params``: for "qlora", parameters kept in 16 bits (embeddings, output head, norms;
      ``llama_embedding_params``).
    """
    n = _check_count("n_params", n_params)
    _pick("method", method, METHODS, "full: train all weights; lora/qlora: train adapters.")
    bits = WEIGHT_BITS[method][0] if weight_bits is None else weight_bits
    _pick("weight_bits", bits, WEIGHT_BITS[method], "A 4-bit base is method='qlora'; others: 16, 32.")
    _pick("optimizer", optimizer, OPTIMIZER_BYTES, "'adamw' is the usual choice.")
    activations = _check_count("activations_bytes", activations_bytes, allow_zero=True)
    unquantized = _check_count("unquantized_params", unquantized_params, allow_zero=True)
    if unquantized and (method != "qlora" or unquantized > n):
        raise ValueError(f"unquantized_params={unquantized_params!r} needs method='qlora' and at most "
                         f"n_params ({n_params!r}); it counts the base parameters QLoRA keeps in 16 bits.")
    if method == "full":
        if lora_params is not None or trainable_fraction is not None:
            raise ValueError("full fine-tuning trains all n_params: drop lora_params/trainable_fraction, "
                             "or use method='lora'.")
        trainable, notes = n, []  # the base weights are the trained ones: stored in trainable_bits below
    elif (lora_params is None) == (trainable_fraction is None):
        raise ValueError(f"method={method!r} needs exactly one of lora_params (a count, e.g. "
                         "llama_lora_params('65B')) or trainable_fraction (e.g. 0.002).")
    elif lora_params is not None:
        trainable = _check_count("lora_params", lora_params)
    elif _check_count("trainable_fraction", trainable_fraction) >= 1:
        raise ValueError(f"trainable_fraction must be below 1, got {trainable_fraction!r}; 0.002 is 0.2%.")
    else:
        trainable = trainable_fraction * n
    if method == "qlora":
        per_weight = nf4_bits_per_weight(double_quant, blocksize)
        weights = ((n - unquantized) * per_weight + unquantized * 16) / 8
        notes = [f"frozen base in NF4{' + double quant' if double_quant else ''}: {per_weight:.3f} bits per "
                 f"weight; {unquantized:.3g} params in 16 bits"]
    elif method == "lora":
        weights, notes = n * bits / 8, [f"frozen base in {bits}-bit floats"]
    t_bits = trainable_bits if trainable_bits is not None else (16 if method == "qlora" else bits)
    _pick("trainable_bits", t_bits, (bits,) if method == "full" else TRAINABLE_BITS,
          "Full fine-tuning trains the base: set weight_bits only. 32 is fp32, 16 is bf16/fp16.")
    if master_weights and t_bits != 16:
        raise ValueError("master_weights=True keeps fp32 copies of 16-bit weights (fp32 weights are their "
                         "own master copy): pass weight_bits=16 or trainable_bits=16, or drop it.")
    trained = trainable * t_bits / 8  # bytes of the trained weights, and of their gradients
    weights, lora = (trained, 0.0) if method == "full" else (weights, trained)
    notes.append(f"{trainable:.3g} trainable params in {t_bits} bits, optimizer {optimizer}")
    if not activations:
        notes.append("activations not included (pass activations_bytes)")
    return MemoryBreakdown(method=method, weights=weights, lora=lora, gradients=trained,
                           master_weights=4 * trainable if master_weights else 0.0,
                           optimizer_states=OPTIMIZER_BYTES[optimizer] * trainable,
                           activations=activations, notes=tuple(notes))


@dataclass(frozen=True)
class FitReport:
    """Whether a breakdown fits a GPU (the report is truthy when it does), and the bytes paged to CPU RAM."""

    fits: bool
    needed: float  # bytes
    available: float  # bytes
    spilled: float  # optimizer state paged out to CPU RAM, bytes (0 unless paged_optimizer was needed)
    message: str

    def __bool__(self) -> bool:
        return self.fits

    def __str__(self) -> str:
        return self.message


def fits_on_gpu(breakdown: MemoryBreakdown, gpu_gb: float, paged_optimizer: bool = False) -> FitReport:
    """Compare ``breakdown.total`` with a GPU of ``gpu_gb`` GB (1e9 bytes; a card sold as "24 GB" usually
    holds 24 GiB, part of it taken by the CUDA context, so this leaves a little slack).

    With ``paged_optimizer=True`` (bitsandbytes' paged optimizers) the optimizer states may be evicted to
    CPU RAM: the run still fits when the overflow is no larger than them, at the cost of moving those pages
    over PCIe whenever the optimizer step needs them. Paging is for spikes, not for a working set that never
    fits: the weights, gradients and activations of a step must be on the GPU.
    """
    if not isinstance(breakdown, MemoryBreakdown):
        raise TypeError(f"breakdown must come from training_memory, got {type(breakdown).__name__}.")
    available = _check_count("gpu_gb", gpu_gb) * GB
    need, over, states = breakdown.total, breakdown.total - available, breakdown.optimizer_states
    if over <= 0:
        idle = "the paged optimizer has nothing to page" if paged_optimizer else "nothing paged"
        msg = f"fits: {need / GB:.1f} of {gpu_gb:g} GB, {-over / GB:.1f} GB to spare ({idle})"
        return FitReport(True, need, available, 0.0, msg)
    if paged_optimizer and over <= states:
        msg = (f"fits with paging: {need / GB:.2f} GB on a {gpu_gb:g} GB GPU; {over / GB:.2f} GB of the "
               f"{states / GB:.2f} GB optimizer state sits in CPU RAM and is paged back over PCIe for each "
               "optimizer step (slower while it does)")
        return FitReport(True, need, available, over, msg)
    hint = ("a paged optimizer could move that much optimizer state to CPU RAM" if over <= states
            else "paging out all optimizer state would not be enough")
    msg = f"does not fit: {need / GB:.2f} GB needed, {gpu_gb:g} GB available, {over / GB:.2f} GB over; {hint}"
    return FitReport(False, need, available, 0.0, msg)
