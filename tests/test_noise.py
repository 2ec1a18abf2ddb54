"""Label noise for notebook 12: deterministic, nested across rates, each kind what it says, inputs untouched."""

import copy
import json

import pytest

from lora_edu import noise
from lora_edu.data import FORMAT_KEYS, load_task, parse_record


@pytest.fixture(scope="module")
def train():
    return load_task("format", "train")[:300]


def test_counts_kinds_and_the_clean_rest(train):
    noisy = noise.add_noise(train, 0.2, seed=0)
    corrupted = [ex for ex in noisy if ex["noise"]]
    assert len(noisy) == 300 and len(corrupted) == 60
    assert {k: sum(ex["noise"] == k for ex in corrupted) for k in noise.KINDS} == dict.fromkeys(noise.KINDS, 20)
    for ex, original in zip(noisy, train, strict=True):
        assert ex["clean_target"] == original["target"] and ex["id"] == original["id"]
        assert (ex["target"] != original["target"]) == (ex["noise"] is not None)
    assert noise.add_noise(train, 0.0) == [{**ex, "clean_target": ex["target"], "noise": None} for ex in train]
    assert all(ex["noise"] for ex in noise.add_noise(train, 1.0))


def test_each_kind_is_the_corruption_it_names(train):
    for ex in noise.add_noise(train, 1.0, seed=3):
        clean, target = ex["clean_target"], ex["target"]
        if ex["noise"] == "wrong_value":  # valid JSON, the same keys, exactly one value changed
            assert noise.is_valid_record(target)
            got, want = json.loads(target), json.loads(clean)
            assert sum(got[k] != want[k] for k in FORMAT_KEYS) == 1
            assert 19 <= got["age"] <= 78 and 0 < abs(got["age"] - want["age"]) <= 20 or got["age"] == want["age"]
        elif ex["noise"] == "broken_json":  # a model trained on it learns to write something no parser reads
            assert parse_record(target) is None and not noise.is_valid_record(target)
        else:  # truncated: a strict, non-empty prefix
            assert ex["noise"] == "truncated" and clean.startswith(target) and 0 < len(target) < len(clean)
            assert parse_record(target) is None


def test_deterministic_and_nested_across_rates(train):
    assert noise.add_noise(train, 0.5, seed=1) == noise.add_noise(train, 0.5, seed=1)
    assert noise.add_noise(train, 0.5, seed=1) != noise.add_noise(train, 0.5, seed=2)
    low, high = noise.add_noise(train, 0.2, seed=1), noise.add_noise(train, 0.5, seed=1)
    for a, b in zip(low, high, strict=True):
        if a["noise"]:  # the 20% set's corruptions are among the 50% set's, identical
            assert (b["noise"], b["target"]) == (a["noise"], a["target"])


def test_the_input_is_not_changed(train):
    before = copy.deepcopy(train)
    noisy = noise.add_noise(train, 0.5)
    noisy[0]["fields"]["age"] = -1
    assert train == before


def test_bad_input_names_the_problem(train):
    for fraction in (-0.1, 1.5, float("nan"), "20%", True):
        with pytest.raises(ValueError, match="fraction must be a number in"):
            noise.add_noise(train, fraction)
    with pytest.raises(ValueError, match="kinds must be"):
        noise.add_noise(train, 0.2, kinds=("typo",))
    with pytest.raises(ValueError, match="kinds must be"):
        noise.add_noise(train, 0.2, kinds=())
    with pytest.raises(TypeError, match="seed must be an int"):
        noise.add_noise(train, 0.2, seed=1.5)
    once = noise.add_noise(train, 1.0)
    with pytest.raises(ValueError, match="already corrupted"):
        noise.add_noise([{**once[0], "target": once[0]["target"]}], 1.0)
    with pytest.raises(ValueError, match="format-task example"):
        noise.add_noise([{"prompt": "x", "target": "y"}], 1.0)
