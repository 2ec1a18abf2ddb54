"""Self-checks for the exercises at the end of each notebook.

Each ``check_*`` prints a clear pass / not-yet line with a hint, and returns True or False. It never raises
on an unanswered placeholder (``...`` or ``None``), so a notebook with open exercises still runs top to
bottom. One module per pair of notebooks (``intro``: 00-01, ``lora``: 02-03, ``transformer``: 04-05, ``quant``:
06-07, ``finetune``: 08, ``variants``: 09, ``serving``: 10, ``updates``: 11, ``advice``: 12) on the machinery in ``core``. Reference solutions live apart, in
``notebooks/solutions/``; tests/test_exercises_NN.py (with tests/exercise_checks.py) runs every
checker against them and against a wrong answer.
"""

from __future__ import annotations

from .advice import check_embedding_bytes, check_noise_kind_experiment
from .core import (
    Check,
    check_function,
    check_paired_runs,
    check_value,
    format_task_runs,
    read_prediction,
    report,
)
from .finetune import (
    check_adapter_ratio,
    check_precision_choice,
    check_rank64_trainable,
    check_rslora_scale,
    check_sweep_rank_experiment,
)
from .intro import (
    EX01_ENERGY_VALUES,
    EX01_SINGULAR_VALUES,
    check_break_even_rank,
    check_eckart_young_errors,
    check_embedding_share,
    check_energy_rank,
    check_factor_params,
    check_mlp_parameters,
    check_subspace_phi,
)
from .lora_layer import (
    EX03_ALPHA_FACTOR,
    EX03_EXPERIMENT,
    EX03_SINGULAR_VALUES,
    EX03_WIDE_START,
    check_alpha_equivalence,
    check_compression,
    check_lora_forward,
    check_rank_rule_experiment,
    check_scaling,
    check_toy_lora_parameters,
    check_toy_loss_floor,
    check_toy_scaling,
    check_trainable_parameters,
    lora_forward_reference,
)
from .quant import (
    EX06_BLOCK,
    EX06_BLOCKS,
    EX06_PACK,
    EX06_Q8_0,
    EX07_CONFIGS,
    check_absmax_codes,
    check_bits_per_parameter,
    check_blocksize_experiment,
    check_double_quant_experiment,
    check_fake_quant_int8,
    check_fits_24gb,
    check_merge_threshold,
    check_nf4_7b_gb,
    check_nf4_index,
    check_packed_byte,
    check_q8_0_bits,
    check_qlora_bits,
)
from .serving import (
    EX10_RANKS,
    check_adapter_numbers,
    check_gathered_delta,
    check_max_lora_rank,
    check_merge_swap_batch_experiment,
    gathered_delta_reference,
)
from .transformer import (
    EX04_REGEX,
    EX05_BF16_SUMS,
    EX05_GAP_RATIO,
    EX05_SEQUENCES,
    EX05_SHAPES,
    EX05_SHARE_RANK,
    SMOLLM2_LAYERS,
    SMOLLM2_LINEAR_SHAPES,
    check_adam_state_bytes,
    check_bf16_rounding,
    check_merge_dtype_experiment,
    check_merge_sequences,
    check_qv_trainable,
    check_regex_count,
    check_string_vs_list,
    check_targets_experiment,
    check_unmerged_flops,
    check_unmerged_share,
    smollm2_linear_names,
    smollm2_lora_params,
)
from .updates import (
    EX11_I,
    EX11_J,
    EX11_K,
    check_amplification,
    check_amplification_lr_experiment,
    check_budget_rank,
    check_random_phi,
)
from .variants import (
    EX09_BOTTLENECK,
    EX09_RANK,
    check_adapter_flops,
    check_dora_magnitude_count,
    check_dora_weight,
    check_loraplus_lrs,
    check_rslora_equivalent_alpha,
    check_rslora_rank64_experiment,
    dora_weight_reference,
)

__all__ = ["check_embedding_bytes", "check_noise_kind_experiment", "Check", "EX01_ENERGY_VALUES", "EX01_SINGULAR_VALUES", "EX03_ALPHA_FACTOR", "EX03_EXPERIMENT", "EX03_SINGULAR_VALUES", "EX03_WIDE_START", "EX04_REGEX", "EX05_BF16_SUMS", "EX05_GAP_RATIO", "EX05_SEQUENCES", "EX05_SHAPES", "EX05_SHARE_RANK", "EX06_BLOCK", "EX06_BLOCKS", "EX06_PACK", "EX06_Q8_0", "EX07_CONFIGS", "EX09_BOTTLENECK", "EX09_RANK", "EX10_RANKS", "EX11_I", "EX11_J", "EX11_K", "SMOLLM2_LAYERS", "SMOLLM2_LINEAR_SHAPES", "check_absmax_codes", "check_adam_state_bytes", "check_adapter_flops", "check_adapter_numbers", "check_adapter_ratio", "check_alpha_equivalence", "check_amplification", "check_amplification_lr_experiment", "check_bf16_rounding", "check_bits_per_parameter", "check_blocksize_experiment", "check_double_quant_experiment", "check_break_even_rank", "check_budget_rank", "check_compression", "check_dora_magnitude_count", "check_dora_weight", "check_eckart_young_errors", "check_embedding_share", "check_energy_rank", "check_factor_params", "check_fake_quant_int8", "check_fits_24gb", "check_function", "check_gathered_delta", "check_lora_forward", "check_loraplus_lrs", "check_max_lora_rank", "check_merge_dtype_experiment", "check_merge_swap_batch_experiment", "check_merge_sequences", "check_merge_threshold", "check_mlp_parameters", "check_paired_runs", "check_nf4_7b_gb", "check_nf4_index", "check_packed_byte", "check_precision_choice", "check_q8_0_bits", "check_qlora_bits", "check_qv_trainable", "check_rank_rule_experiment", "check_random_phi", "check_rank64_trainable", "check_regex_count", "check_rslora_equivalent_alpha", "check_rslora_rank64_experiment", "check_rslora_scale", "check_scaling", "check_string_vs_list", "check_subspace_phi", "check_sweep_rank_experiment", "check_targets_experiment", "check_toy_lora_parameters", "check_toy_loss_floor", "check_toy_scaling", "check_trainable_parameters", "check_unmerged_flops", "check_unmerged_share", "check_value", "format_task_runs", "read_prediction", "dora_weight_reference", "gathered_delta_reference", "lora_forward_reference", "report", "smollm2_linear_names", "smollm2_lora_params"]
