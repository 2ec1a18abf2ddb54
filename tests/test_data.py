"""lora_edu.data: deterministic task generators, the committed data/ files, loaders, scoring helpers."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lora_edu import data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generated():
    return {task: data.generate_task(task) for task in data.TASKS}


def _texts(examples, key):
    return {ex[key] for ex in examples}


# --- determinism and the committed files ---------------------------------------------------------------
def test_two_runs_give_identical_text_and_a_new_seed_changes_it(generated):
    for task in data.TASKS:
        again = data.generate_task(task)
        for split in data.SPLITS:
            assert data.dumps_jsonl(again[split]) == data.dumps_jsonl(generated[task][split])
        other = data.generate_task(task, seed=1)
        assert data.dumps_jsonl(other["train"]) != data.dumps_jsonl(generated[task]["train"])


def test_committed_files_equal_the_generator_byte_for_byte(generated):
    for task in data.TASKS:
        for split in data.SPLITS:
            committed = (ROOT / "data" / task / f"{split}.jsonl").read_bytes()
            assert committed == data.dumps_jsonl(generated[task][split]).encode("utf-8"), (
                f"data/{task}/{split}.jsonl is stale: run `python -m lora_edu.data`")
            assert committed.isascii() and b"\r" not in committed and committed.endswith(b"\n")


def test_readme_example_lines_are_lines_of_the_committed_files():
    blocks = re.findall(r"```json\n(.*?)\n```", (ROOT / "data" / "README.md").read_text(), re.S)
    assert len(blocks) == 2
    for block in blocks:
        ex = json.loads(block)
        assert block in (ROOT / "data" / ex["task"] / f"{ex['split']}.jsonl").read_text().split("\n")


def test_regeneration_ignores_hash_randomisation(tmp_path):
    # A fresh interpreter with another hash seed, loading data.py alone (no torch import, so it is quick).
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('d', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); m.write_task_data(sys.argv[2])")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-c", code, str(ROOT / "lora_edu" / "data.py"), str(tmp_path)],
                   check=True, env=env)
    for task in data.TASKS:
        for split in data.SPLITS:
            assert (tmp_path / task / f"{split}.jsonl").read_bytes() == \
                (ROOT / "data" / task / f"{split}.jsonl").read_bytes()


def test_load_task_reads_the_checkout_and_regenerates_without_data(tmp_path, generated):
    assert data.load_task("format", "test") == generated["format"]["test"]
    # A pip install has no data/ folder next to the package: load_task falls back to the generator.
    original = data.DATA_ROOT
    try:
        data.DATA_ROOT = tmp_path / "absent"
        assert data.load_task("knowledge", "validation") == generated["knowledge"]["validation"]
    finally:
        data.DATA_ROOT = original


def test_write_task_data_writes_all_files_and_main_check_agrees(tmp_path, capsys):
    paths = data.write_task_data(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == sorted(
        f"{t}/{s}.jsonl" for t in data.TASKS for s in data.SPLITS)
    assert not list(tmp_path.rglob("*.tmp")), "the atomic writer left a temporary file"
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in paths), "data files must be readable by all"
    assert data.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / "format" / "test.jsonl").write_text("{}\n")
    assert data.main(["--root", str(tmp_path), "--check"]) == 1
    assert "format/test" in capsys.readouterr().out


# --- the format task ---------------------------------------------------------------------------------
def test_format_sizes_and_held_out_templates(generated):
    fmt = generated["format"]
    assert {s: len(fmt[s]) for s in data.SPLITS} == data.FORMAT_SIZES
    assert 300 <= len(fmt["train"]) <= 2000 and all(100 <= len(fmt[s]) <= 250 for s in ("validation", "test"))
    assert not any(ex["held_out_template"] for ex in fmt["train"])
    assert not _texts(fmt["train"], "template") & set(data.FORMAT_HELD_OUT)
    for split in ("validation", "test"):
        held = [ex for ex in fmt[split] if ex["held_out_template"]]
        assert len(held) >= 20 and {ex["template"] for ex in held} == set(data.FORMAT_HELD_OUT)
        assert all(ex["held_out_template"] == (ex["template"] in data.FORMAT_HELD_OUT) for ex in fmt[split])


def test_format_splits_share_no_person_and_no_sentence(generated):
    fmt = generated["format"]
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not _texts(fmt[a], "prompt") & _texts(fmt[b], "prompt")
        assert not _texts(fmt[a], "target") & _texts(fmt[b], "target")
    ids = [ex["id"] for s in data.SPLITS for ex in fmt[s]]
    assert len(ids) == len(set(ids))


def test_format_targets_are_exact_one_line_json_consistent_with_the_sentence(generated):
    for ex in (ex for s in data.SPLITS for ex in generated["format"][s]):
        record = json.loads(ex["target"])
        assert list(record) == list(data.FORMAT_KEYS) and record == ex["fields"]
        assert json.dumps(record, separators=(", ", ": ")) == ex["target"] == data.format_target(ex["fields"])
        assert "\n" not in ex["target"] and isinstance(record["age"], int)
        for value in record.values():
            assert str(value) in ex["sentence"], (value, ex["sentence"])
        assert ex["prompt"] == f"{data.FORMAT_INSTRUCTION}\n\n{ex['sentence']}"
        assert ex["sentence"] == data.FORMAT_TEMPLATES[ex["template"]].format(
            **ex["fields"], a_job=data._article(ex["fields"]["job"]),
            A_job=data._article(ex["fields"]["job"]).capitalize())


def test_format_target_rejects_missing_keys_and_a_string_age():
    assert data.format_target({"city": "Oslo", "job": "chef", "age": 30, "name": "A B"}) == \
        '{"name": "A B", "age": 30, "job": "chef", "city": "Oslo"}'
    with pytest.raises(ValueError, match="city"):
        data.format_target({"name": "A B", "age": 30, "job": "chef"})
    with pytest.raises(TypeError, match="age must be an int"):
        data.format_target({"name": "A B", "age": "30", "job": "chef", "city": "Oslo"})


# --- the knowledge task ------------------------------------------------------------------------------
def test_knowledge_sizes_phrasings_and_facts(generated):
    kn = generated["knowledge"]
    n_facts = data.N_COUNTRIES * len(data.RELATIONS)
    assert [len(kn[s]) for s in data.SPLITS] == [3 * n_facts, n_facts, n_facts]
    assert {ex["template"] for ex in kn["train"]} == {0, 1, 2}
    assert {ex["template"] for ex in kn["validation"]} == {3} and {ex["template"] for ex in kn["test"]} == {4}
    assert all(ex["held_out_template"] == (ex["split"] != "train") for s in data.SPLITS for ex in kn[s])
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not _texts(kn[a], "question") & _texts(kn[b], "question")
    # Every fact asked in validation/test was taught in training, in other words.
    assert _texts(kn["validation"], "fact_id") == _texts(kn["test"], "fact_id") == _texts(kn["train"], "fact_id")


def test_knowledge_answers_agree_across_phrasings(generated):
    answers = {}
    for ex in (ex for s in data.SPLITS for ex in generated["knowledge"][s]):
        answers.setdefault(ex["fact_id"], set()).add(ex["target"])
        assert ex["country"] in ex["question"] and ex["fact_id"].endswith(ex["relation"])
    assert len(answers) == data.N_COUNTRIES * len(data.RELATIONS)
    assert all(len(v) == 1 for v in answers.values()), "one fact, two answers"


def test_invented_names_are_unique_and_not_real():
    world = data.invented_world()
    names = [e[k] for e in world for k in ("country", "capital", "river")]
    names += [part for e in world for part in e["founder"].split()]
    assert len(names) == len(set(names))
    assert not {n.lower() for n in names} & data.STOPLIST
    assert not set(names) & set(data.FIRST_NAMES + data.LAST_NAMES + data.CITIES)
    assert all(412 <= int(e["founding_year"]) <= 1687 and e["export"] in data.EXPORTS for e in world)


# --- bad input ---------------------------------------------------------------------------------------
def test_unknown_task_or_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown task 'math'.*'format', 'knowledge'"):
        data.load_task("math", "train")
    with pytest.raises(ValueError, match=r"unknown split 'dev'.*'train', 'validation', 'test'"):
        data.load_task("format", "dev")
    with pytest.raises(ValueError, match="unknown task"):
        data.generate_task("Format")


def test_corrupt_file_names_the_file_and_line(tmp_path):
    data.write_task_data(tmp_path)
    path = tmp_path / "format" / "train.jsonl"
    lines = path.read_text().split("\n")
    lines[6] = lines[6][:-5]  # a truncated record on line 7
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"train\.jsonl, line 7: not valid JSON"):
        data.load_task("format", "train", root=tmp_path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"line 2: expected a JSON object, got list"):
        data.read_jsonl(path)


def test_missing_file_under_an_explicit_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="write_task_data"):
        data.load_task("format", "train", root=tmp_path)


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.jsonl"
    path.write_text("old\n")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(data.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        data._write_atomic(path, "new\n")
    assert path.read_text() == "old\n" and list(tmp_path.iterdir()) == [path]


# --- scoring helpers ---------------------------------------------------------------------------------
FIELDS = {"name": "Ada Park", "age": 34, "job": "nurse", "city": "Lisbon"}
TARGET = '{"name": "Ada Park", "age": 34, "job": "nurse", "city": "Lisbon"}'


def test_exact_match_strips_only_surrounding_whitespace():
    assert data.exact_match(TARGET + "\n", TARGET)
    assert not data.exact_match(json.dumps(FIELDS, indent=2), TARGET)
    assert not data.exact_match(TARGET.replace(", ", ","), TARGET)
    assert not data.exact_match(TARGET.replace(": ", ":  "), TARGET)


@pytest.mark.parametrize("text, expected", [
    (TARGET, FIELDS),
    ("Sure! Here it is:\n```json\n" + json.dumps(FIELDS, indent=2) + "\n```", FIELDS),
    ("{broken {\"name\": \"Ada Park\"} and more", {"name": "Ada Park"}),
    ("no json here", None),
    ('{"name": "Ada Park", "age": 34', None),
    ("", None),
])
def test_parse_record_is_tolerant(text, expected):
    assert data.parse_record(text) == expected


def test_field_accuracy_scores_each_key():
    assert data.field_accuracy(TARGET, FIELDS) == dict.fromkeys(FIELDS, True)
    pred = 'Output: {"name": "Ada Park", "age": "34", "city": "Porto"}'
    assert data.field_accuracy(pred, FIELDS) == {"name": True, "age": False, "job": False, "city": False}
    assert data.field_accuracy("I cannot help", FIELDS) == dict.fromkeys(FIELDS, False)


def test_read_jsonl_names_the_file_and_line_of_bad_utf8_and_deep_nesting(tmp_path):
    """Issue 13: bad UTF-8 raised a bare UnicodeDecodeError (no file, no line); deep nesting a RecursionError."""
    from lora_edu.data import read_jsonl

    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"prompt": "a", "target": "b"}\n{"prompt": "caf\xe9", "target": "b"}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl, line 2: not UTF-8"):
        read_jsonl(path)
    path.write_text('{"prompt": "a", "target": "b"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl, line 2: nested too deeply"):
        read_jsonl(path)
    path.write_text('{"prompt": "a", "target": "b"}\r\n\n{"prompt": "c", "target": "d"}\n')  # CRLF is fine
    assert [ex["prompt"] for ex in read_jsonl(path)] == ["a", "c"]


def test_dates_task_targets_are_iso_dates_unique_across_splits_with_a_held_out_phrasing():
    import datetime

    splits = data.generate_task("dates")
    assert {s: len(v) for s, v in splits.items()} == data.DATES_SIZES
    seen = set()
    for split, examples in splits.items():
        targets = {ex["target"] for ex in examples}
        assert len(targets) == len(examples) and not targets & seen  # no date twice, nor in two splits
        seen |= targets
        held_out = {ex["template"] for ex in examples if ex["held_out_template"]}
        assert held_out == (set() if split == "train" else set(data.DATES_HELD_OUT))
        for ex in examples[:50]:
            date = datetime.date.fromisoformat(ex["target"])
            assert data.MONTHS[date.month - 1][:3] in ex["text"] and str(date.year) in ex["text"]
    assert [data._nth(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 28)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "28th"]
