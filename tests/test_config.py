"""LoraConfig: PEFT's names and defaults, and a clear error for each bad value."""

import re

import peft
import pytest
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

from lora_edu.config import DEFAULT_TARGET_MODULES, LoraConfig


def test_defaults_match_peft():
    ours, theirs = LoraConfig(), peft.LoraConfig()
    for field in ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "use_dora",
                  "init_lora_weights", "bias"):
        assert getattr(ours, field) == getattr(theirs, field), field


def test_default_target_modules_are_peft_entries():
    for model_type, targets in DEFAULT_TARGET_MODULES.items():
        assert targets == TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type], model_type
    assert DEFAULT_TARGET_MODULES["llama"] == ["q_proj", "v_proj"]


def test_accepted_values():
    cfg = LoraConfig(r=16, lora_alpha=32.0, lora_dropout=0.05, target_modules=("v_proj", "q_proj"),
                     use_rslora=True, init_lora_weights="gaussian", bias="lora_only")
    assert cfg.target_modules == ["q_proj", "v_proj"]  # a tuple or set becomes a sorted list
    assert LoraConfig(target_modules="all-linear").target_modules == "all-linear"
    assert LoraConfig(init_lora_weights=False).init_lora_weights is False
    assert LoraConfig(use_dora=True).use_dora is True  # DoRA: tests/test_dora.py


@pytest.mark.parametrize("kwargs, error, words", [
    ({"r": 0}, ValueError, "r must be >= 1"),
    ({"r": -3}, ValueError, "r must be >= 1"),
    ({"r": 2.5}, TypeError, "positive integer"),
    ({"r": True}, TypeError, "positive integer"),
    ({"lora_alpha": 0}, ValueError, "lora_alpha must be > 0"),
    ({"lora_alpha": -8}, ValueError, "lora_alpha must be > 0"),
    ({"lora_alpha": "16"}, TypeError, "lora_alpha"),
    ({"lora_dropout": -0.1}, ValueError, "[0, 1)"),
    ({"lora_dropout": 1.0}, ValueError, "[0, 1)"),
    ({"init_lora_weights": "kaiming"}, ValueError, "init_lora_weights"),
    ({"init_lora_weights": 1}, ValueError, "init_lora_weights"),
    ({"bias": "some"}, ValueError, "bias must be one of"),
    ({"target_modules": []}, ValueError, "non-empty list"),
    ({"target_modules": ["q_proj", 3]}, ValueError, "non-empty list"),
    ({"target_modules": 3}, TypeError, "target_modules"),
    ({"target_modules": ""}, TypeError, "target_modules"),
])
def test_bad_values_are_refused(kwargs, error, words):
    with pytest.raises(error, match=re.escape(words)):
        LoraConfig(**kwargs)
