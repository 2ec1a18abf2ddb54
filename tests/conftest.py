"""Fixtures shared by the test modules that use SmolLM2's real tokenizer and the course tasks."""

import pytest

from lora_edu.data import load_task
from lora_edu.pretrained import load_model, tiny_llama


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


@pytest.fixture
def loader(tok):
    """A model loader for experiments / the CLI that hands out a tiny random Llama with SmolLM2's tokenizer;
    ``loader.calls`` lists the names it was asked for."""
    calls = []

    def load(name):
        calls.append(name)
        return tiny_llama(seed=0, vocab_size=len(tok)), tok

    load.calls = calls
    return load
