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


# --- issue 13: values that used to pass and give wrong numbers or unreadable files ------------------------

@pytest.mark.parametrize("kwargs, error, words", [
    ({"lora_alpha": float("inf")}, ValueError, "finite"),
    ({"lora_alpha": float("nan")}, ValueError, "lora_alpha"),
    ({"lora_alpha": 1e308}, ValueError, "65504"),  # finite, but scaling = 1.25e307 overflows fp32 and fp16
    ({"r": 1, "lora_alpha": 70000.0}, ValueError, "65504"),
    ({"lora_dropout": float("nan")}, ValueError, "[0, 1)"),
    ({"use_dora": "no"}, TypeError, "use_dora must be True or False"),
    ({"use_rslora": "false"}, TypeError, "use_rslora must be True or False"),
    ({"use_rslora": 1}, TypeError, "use_rslora must be True or False"),
    ({"target_modules": "q_proj("}, ValueError, "not a valid regular expression"),
])
def test_issue13_bad_values_are_refused(kwargs, error, words):
    with pytest.raises(error, match=re.escape(words)):
        LoraConfig(**kwargs)


def test_numpy_numbers_become_python_numbers():
    """np.int64 passed the checks, then json.dumps failed inside save_adapter (issue 13, item 13)."""
    import json

    import numpy as np

    cfg = LoraConfig(r=np.int64(4), lora_alpha=np.float32(8.0), lora_dropout=np.float64(0.1))
    assert type(cfg.r) is int and type(cfg.lora_alpha) is float and type(cfg.lora_dropout) is float
    assert LoraConfig(lora_alpha=np.int32(16)).lora_alpha == 16 and type(LoraConfig(lora_alpha=np.int32(16)).lora_alpha) is int
    json.dumps({"r": cfg.r, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout})
    with pytest.raises(TypeError, match="positive integer"):
        LoraConfig(r=np.float64(4.0))


def test_property_any_accepted_config_has_finite_scaling_and_json_fields():
    """Hypothesis: whatever LoraConfig accepts gives a finite scaling and JSON-ready numbers; everything
    else is a TypeError or ValueError (never another exception)."""
    import json
    import math

    from hypothesis import given, settings
    from hypothesis import strategies as st

    numbers = st.one_of(st.integers(-10, 10 ** 6), st.floats(allow_nan=True, allow_infinity=True),
                        st.booleans(), st.text(max_size=3), st.none())

    @settings(max_examples=300, deadline=None)
    @given(r=numbers, lora_alpha=numbers, lora_dropout=numbers, use_rslora=st.one_of(st.booleans(), numbers),
           use_dora=st.one_of(st.booleans(), numbers))
    def check(r, lora_alpha, lora_dropout, use_rslora, use_dora):
        try:
            cfg = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_rslora=use_rslora,
                             use_dora=use_dora)
        except (TypeError, ValueError):
            return
        scaling = cfg.lora_alpha / (math.sqrt(cfg.r) if cfg.use_rslora else cfg.r)
        assert math.isfinite(scaling) and 0 < scaling <= 65504
        assert cfg.use_rslora in (True, False) and cfg.use_dora in (True, False)
        json.dumps([cfg.r, cfg.lora_alpha, cfg.lora_dropout], allow_nan=False)

    check()
