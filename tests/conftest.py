"""Fixtures shared by the test modules that use SmolLM2's real tokenizer and the course tasks."""

import pytest

from lora_edu.data import load_task
from lora_edu.pretrained import load_model


@pytest.fixture(scope="module")
def tok():
    """SmolLM2-135M-Instruct's tokenizer (the model loads from the offline cache)."""
    return load_model(verbose=False)[1]


@pytest.fixture(scope="module")
def fmt():
    return load_task("format", "train")


@pytest.fixture(scope="module")
def knowledge():
    return load_task("knowledge", "train")
