"""lora_edu: the small PyTorch library behind the LoRA teaching notebooks.

Every notebook builds the key lines inline, then checks them against the version here. Each module's
docstring names the notebook that explains it. The names a notebook needs most are here at the top level;
topics with many names stay namespaces (``quant``, ``lowrank``, ``memory``, ``merging``, ``serving``, ``data``, ``viz``,
``exercises``, ...): ``from lora_edu import quant`` then ``quant.quantize_nf4``. CONTRIBUTING.md draws the
layers of the package.
"""

from .chat import build_example, collate, pad_token_id, prompt_ids
from .config import LoraConfig
from .data import load_task
from .evaluation import evaluate, generate_answers
from .io import load_adapter, save_adapter
from .layers import LoraLinear
from .loraplus import create_loraplus_optimizer
from .lowrank import (
    amplification_factor,
    eckart_young_error,
    effective_rank,
    energy,
    entropy_effective_rank,
    low_rank_approx,
    subspace_similarity,
    subspace_similarity_grid,
    truncated_svd,
)
from .model import (
    compression_ratio,
    find_target_modules,
    inject_lora,
    lora_layers,
    lora_parameter_count,
    mark_only_lora_as_trainable,
    merge_and_unload,
    print_trainable_parameters,
    rescale_adapter_scale,
    trainable_parameters,
    unload,
)
from .pretrained import DEFAULT_MODEL, ModelSourceError, load_model
from .qlora import NF4Linear, QLoRALinear, dequantize_model, model_nbytes, prepare_qlora, quantize_model
from .runtime import FAST, IN_COLAB, banner, get_device, precision_policy, seed_everything
from .serving import MultiLoraModel
from .training import TrainingDiverged, TrainResult, train, validation_loss

__version__ = "0.1.0"

__all__ = [
    "build_example",
    "collate",
    "pad_token_id",
    "prompt_ids",
    "load_task",
    "evaluate",
    "generate_answers",
    "TrainingDiverged",
    "TrainResult",
    "train",
    "validation_loss",
    "NF4Linear",
    "QLoRALinear",
    "model_nbytes",
    "prepare_qlora",
    "dequantize_model",
    "quantize_model",
    "amplification_factor",
    "eckart_young_error",
    "effective_rank",
    "energy",
    "entropy_effective_rank",
    "low_rank_approx",
    "subspace_similarity",
    "subspace_similarity_grid",
    "truncated_svd",
    "LoraConfig",
    "LoraLinear",
    "MultiLoraModel",
    "create_loraplus_optimizer",
    "load_adapter",
    "save_adapter",
    "compression_ratio",
    "find_target_modules",
    "inject_lora",
    "lora_layers",
    "lora_parameter_count",
    "mark_only_lora_as_trainable",
    "merge_and_unload",
    "print_trainable_parameters",
    "rescale_adapter_scale",
    "trainable_parameters",
    "unload",
    "DEFAULT_MODEL",
    "FAST",
    "IN_COLAB",
    "ModelSourceError",
    "banner",
    "get_device",
    "load_model",
    "precision_policy",
    "seed_everything",
]
