"""Figures and sliders shared by the notebooks.

Pattern (notebooks/02_lora_layer.ipynb shows it first): a plain function draws a figure from a few
numbers; ``sliders(fn, ...)`` wires ipywidgets sliders to it with ``interactive_output``; the same cell
also calls the function once, so GitHub, nbconvert and CI show a static figure. Inline backend only:
ipympl is unreliable on Colab, and Colab's ipywidgets 7.x works with this code.

One module per topic, each naming its notebooks: ``lowrank`` (01), ``lora`` (02-03), ``training`` (04, and
the memory calculator of 07), ``merging`` (05), ``quant`` (06-07), ``finetune`` (08), ``variants`` (09), ``serving`` (10), ``updates`` (11), ``advice`` (12); the
style and the slider helper are in ``core``. Notebooks use them through this package: ``viz.plot_latency``.
"""

from __future__ import annotations

from .advice import plot_quality_quantity, plot_routes, plot_run_detail
from .core import STYLE, sliders, style
from .finetune import format_memory, plot_rank_sweep, plot_run_summary, runs_table
from .lora_layer import (
    plot_init_distributions,
    plot_lora_diagram,
    plot_loss_curves,
    plot_output_change,
    plot_scaling,
    plot_singular_values,
    plot_toy_run,
)
from .lowrank import plot_energy, plot_error_vs_rank, plot_rank_k, plot_similarity_grids, plot_spectra
from .merging import plot_latency, plot_merge_rounding
from .quant import (
    MODEL_BYTES_PARTS,
    plot_code_values,
    plot_error_vs_memory,
    plot_format_errors,
    plot_model_bytes,
    plot_weight_histogram,
)
from .serving import plot_serving_throughput
from .training import (
    MEMORY_COLORS,
    generations_table,
    plot_adapter_strength,
    plot_memory_comparison,
    plot_trainable_by_target,
    plot_training_loss,
    plot_training_memory,
)
from .updates import plot_phi, plot_rank_run, plot_target_sets
from .variants import plot_against_rank, plot_first_adam_step, plot_variant_comparison

__all__ = ["MEMORY_COLORS", "MODEL_BYTES_PARTS", "STYLE", "format_memory", "generations_table", "plot_adapter_strength", "plot_against_rank", "plot_code_values", "plot_energy", "plot_error_vs_memory", "plot_error_vs_rank", "plot_first_adam_step", "plot_format_errors", "plot_init_distributions", "plot_latency", "plot_lora_diagram", "plot_loss_curves", "plot_memory_comparison", "plot_merge_rounding", "plot_model_bytes", "plot_output_change", "plot_phi", "plot_quality_quantity", "plot_rank_k", "plot_rank_run", "plot_rank_sweep", "plot_routes", "plot_run_detail", "plot_run_summary", "plot_scaling", "plot_serving_throughput", "plot_similarity_grids", "plot_singular_values", "plot_spectra", "plot_target_sets", "plot_toy_run", "plot_trainable_by_target", "plot_training_loss", "plot_training_memory", "plot_variant_comparison", "plot_weight_histogram", "runs_table", "sliders", "style"]
