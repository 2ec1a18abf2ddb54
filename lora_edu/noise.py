"""Label noise for notebook 12: realistic, deterministic corruptions of the format task's targets.

Three kinds, each one a real annotation pipeline produces:

- ``"wrong_value"``: one field holds a wrong value (another city, job or name; an age off by 1 to 20);
- ``"broken_json"``: the line is no longer JSON (a missing closing brace, single quotes, a trailing comma);
- ``"truncated"``: the answer stops early (a strict prefix of the target).

``add_noise(examples, fraction, seed)`` corrupts ``round(fraction * n)`` of the targets. Which examples, and
which kind each gets, depend only on ``seed`` and ``n``: the examples corrupted at 20% are among those
corrupted at 50% with the same seed, so a sweep over the noise rate changes one thing at a time.
"""

from __future__ import annotations

import json
import math
import random

from .data import AGE_RANGE, CITIES, FIRST_NAMES, FORMAT_KEYS, JOBS, LAST_NAMES, format_target

KINDS = ("wrong_value", "broken_json", "truncated")
_BREAKS = ("no closing brace", "single quotes", "trailing comma")
_NAMES = tuple(f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES)  # built once, not per example


def _wrong_value(fields: dict, rng: random.Random) -> str:
    key = rng.choice(FORMAT_KEYS)
    wrong = dict(fields)
    if key == "age":
        low, high = AGE_RANGE
        choices = [a for a in range(max(low, fields["age"] - 20), min(high, fields["age"] + 20) + 1)
                   if a != fields["age"]]
        wrong["age"] = rng.choice(choices)
    else:
        pool = {"city": CITIES, "job": JOBS, "name": _NAMES}[key]
        wrong[key] = rng.choice([value for value in pool if value != fields[key]])
    return format_target(wrong)


def _broken_json(target: str, rng: random.Random) -> str:
    how = rng.choice(_BREAKS)
    if how == "no closing brace":
        return target[:-1]
    if how == "single quotes":
        return target.replace('"', "'")
    return target[:-1] + ",}"


def corrupt_target(example: dict, kind: str, rng: random.Random) -> str:
    """One corrupted copy of ``example["target"]`` (a format-task example with ``fields``), of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if not isinstance(example, dict) or "fields" not in example or "target" not in example:
        raise ValueError("example must be a format-task example with 'fields' and 'target' "
                         "(from load_task('format', ...)).")
    target = example["target"]
    if target != format_target(example["fields"]):
        raise ValueError(f"example {example.get('id', '?')!r} is already corrupted or not a format-task target; "
                         "corrupt the clean examples.")
    if kind == "wrong_value":
        return _wrong_value(example["fields"], rng)
    if kind == "broken_json":
        return _broken_json(target, rng)
    return target[:rng.randint(1, len(target) - 2)]  # a strict prefix: never valid JSON, never empty


def add_noise(examples: list[dict], fraction: float, seed: int = 0, kinds: tuple[str, ...] = KINDS) -> list[dict]:
    """A copy of ``examples`` with ``round(fraction * len(examples))`` targets corrupted.

    Each returned example carries ``"noise"`` (its kind, or None) and ``"clean_target"``; the input list and its
    dicts are not changed. The corrupted examples take the kinds in turn, so each kind gets a third of them
    (with the default ``kinds``), and the sets are nested across fractions for the same ``seed``.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1 \
            or not math.isfinite(fraction):
        raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}. Fix: e.g. 0.2 for 20% noise.")
    kinds = tuple(kinds)
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"kinds must be a non-empty selection of {KINDS}, got {kinds!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}.")
    for example in examples:  # check them all first: a bad example found halfway would leave nothing done
        if not isinstance(example, dict) or not isinstance(example.get("fields"), dict) or "target" not in example:
            raise ValueError("every example must be a format-task example with 'fields' and 'target' "
                             "(from load_task('format', ...)).")
    n = len(examples)
    order = list(range(n))
    random.Random(f"noise-order:{seed}:{n}").shuffle(order)
    chosen = {index: kinds[rank % len(kinds)] for rank, index in enumerate(order[:round(fraction * n)])}
    out = []
    for i, example in enumerate(examples):
        copy = {**example, "fields": dict(example["fields"]), "clean_target": example["target"],
                "noise": chosen.get(i)}
        if i in chosen:  # each example's corruption has its own generator: independent of the others
            rng = random.Random(f"noise:{seed}:{example.get('id', i)}:{chosen[i]}")
            copy["target"] = corrupt_target(example, chosen[i], rng)
        out.append(copy)
    return out


def is_valid_record(text: str) -> bool:
    """Does ``text`` parse as one JSON object with exactly the format task's keys (the well-formed part)?"""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and tuple(record) == FORMAT_KEYS

