"""Task data for fine-tuning: two small generated tasks, their JSONL files, loaders and scoring helpers.

Explained in notebooks/04_lora_in_a_transformer.ipynb (the format task) and used by ``lora_edu.training``.

- *format*: an English sentence about a person -> one exact line of JSON with keys name, age, job, city.
  Learning an output *format* is what LoRA does well at a low rank (Hu et al. 2021, arXiv 2106.09685,
  section 7: the update a task needs can have a very low intrinsic rank).
- *dates*: a date written out in English ("the 3rd of March, 1987") -> ISO 8601 ("1987-03-03"), the third
  adapter of notebooks/10_serving.ipynb: a rewrite the base model half knows, so a few steps teach it.
- *knowledge*: questions about an invented world (countries with capitals, founders, founding years,
  exports, rivers) whose names are made from syllables, so the base model cannot know the answers.
  Memorising new facts is the case where a higher rank is said to help; comparing it with the format
  task is the point.

Each task has train / validation / test splits. Some question or sentence templates never appear in
training (``held_out_template``), so "does it generalise to a new phrasing" is measurable.
The generators use their own ``random.Random(seed)`` (never the global one) and only ``choice``,
``randint`` and ``shuffle``, whose results are the same on every Python >= 3.10; the JSONL files are UTF-8,
"\\n"-terminated, ``json.dumps(..., ensure_ascii=False, separators=(", ", ": "))`` with keys in the order
they are built (all generated text is ASCII, so the bytes are the same either way).
Regenerate the committed files with ``python -m lora_edu.data`` (see data/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

TASKS = ("format", "knowledge", "dates")
SPLITS = ("train", "validation", "test")
DEFAULT_SEED = 0
DATA_ROOT = Path(__file__).resolve().parent.parent / "data"  # exists in a git checkout, not in a pip install
SEPARATORS = (", ", ": ")  # the exact target string matters: evaluation is exact match

# --- format task -------------------------------------------------------------------------------------
FORMAT_KEYS = ("name", "age", "job", "city")
FORMAT_INSTRUCTION = "Extract the person as one line of JSON with keys name, age, job, city."
FORMAT_SIZES = {"train": 1000, "validation": 120, "test": 240}
FIRST_NAMES = ("Ada Ben Chloe Dev Elena Farid Grace Hugo Ines Jonas Kira Leo Maya Nils Omar Priya Quinn Rosa "
               "Sami Tara Umar Vera Wes Yara Zane Lena Marco Noor Iris Theo").split()
LAST_NAMES = ("Park Silva Novak Okafor Berg Costa Lind Moreau Haddad Kim Ortiz Patel Reyes Shaw Tanaka Vogel "
              "Walsh Young Adler Brandt Cruz Dalton Evans Fischer Garcia Horvat Ito Jensen Keller Lopez").split()
JOBS = ("nurse,teacher,baker,pilot,architect,chemist,electrician,farmer,journalist,lawyer,librarian,mechanic,"
        "musician,painter,pharmacist,plumber,engineer,dentist,carpenter,accountant,bus driver,chef,"
        "firefighter,photographer,software developer,translator,veterinarian,zookeeper").split(",")
CITIES = ("Lisbon,Osaka,Toronto,Nairobi,Berlin,Lima,Oslo,Seoul,Dublin,Porto,Cairo,Denver,Madrid,Quito,"
          "Vienna,Hanoi,Perth,Austin,Krakow,Accra,Helsinki,Manila,Boston,Glasgow").split(",")
AGE_RANGE = (19, 78)  # no age here needs "an" ("an 18-year-old", "an 80-year-old")
FORMAT_TEMPLATES = (
    "{name} is a {age}-year-old {job} who lives in {city}.",
    "{name}, {age}, works as {a_job} in {city}.",
    "Meet {name}: {a_job} from {city}, aged {age}.",
    "At {age}, {name} works as {a_job} in {city}.",
    "{name} lives in {city}, is {age} years old and works as {a_job}.",
    "{city} is home to {name}, {a_job} who is {age}.",
    "Our new neighbour {name} ({age}) is {a_job} based in {city}.",
    "{name} has been {a_job} in {city} for years and just turned {age}.",
    "Age {age}, job {job}, city {city}: that is {name}.",
    "In {city} you will find {name}, a {age}-year-old {job}.",
    # Held out of training: these two phrasings appear only in validation and test.
    "Name: {name}. Age: {age}. Occupation: {job}. Residence: {city}.",
    "{A_job} from {city} named {name} celebrated turning {age} last week.",
)
FORMAT_HELD_OUT = (10, 11)

# --- knowledge task ----------------------------------------------------------------------------------
KNOWLEDGE_INSTRUCTION = "Answer the question about the invented world of Veldara with the answer only."
N_COUNTRIES = 40
RELATIONS = ("capital", "founder", "founding_year", "export", "river")
EXPORTS = ("amber salt wool copper tea glass silk timber honey tin pepper marble").split()
# Templates 0-2 are used in training; 3 only in validation, 4 only in test (same facts, new phrasings).
KNOWLEDGE_TEMPLATES = {
    "capital": ("What is the capital of {country}?", "Which city is the capital of {country}?",
                "Name the capital city of {country}.", "{country}'s capital city is called what?",
                "If you travel to the capital of {country}, which city are you in?"),
    "founder": ("Who founded {country}?", "Who was the founder of {country}?",
                "Name the person who founded {country}.", "{country} was founded by whom?",
                "Which person is remembered as the founder of {country}?"),
    "founding_year": ("In what year was {country} founded?", "When was {country} founded? Give the year.",
                      "What is the founding year of {country}?", "{country} came into being in which year?",
                      "Which year saw the founding of {country}?"),
    "export": ("What is the main export of {country}?", "What does {country} mainly export?",
               "Name the chief export of {country}.", "Traders buy mostly what from {country}?",
               "Which good is {country} best known for exporting?"),
    "river": ("Which river flows through {country}?", "What is the name of the river of {country}?",
              "Name the great river of {country}.", "{country} lies along which river?",
              "Through {country} runs which river?"),
}
KNOWLEDGE_SPLIT_TEMPLATES = {"train": (0, 1, 2), "validation": (3,), "test": (4,)}
SYLLABLES = ("ka lo mir tan vel dra sen or ith bral quen zor fa mel nor thi ul vos ar ren "
             "gal isk tor mae dun phe ros wyn bel crae").split()
# Real names that syllables could spell; an invented name must not be one (checked in generation).
STOPLIST = frozenset(("paris rome oslo lima cuba mali chad peru iran iraq togo laos nepal kenya niger ghana "
                      "japan china india spain italy malta congo texas tonga samoa oman bern riga baku doha "
                      "kiev minsk sofia tirana zagreb dakar male mars venus luna karen maren taran toran "
                      "sara dora nora lorena milan moran thor loki odin ares gaia sudan qatar yemen").split())


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def format_target(fields: dict) -> str:
    """The exact target line: ``{"name": "Ada Park", "age": 34, "job": "nurse", "city": "Lisbon"}``."""
    missing = [k for k in FORMAT_KEYS if k not in fields]
    if missing:
        raise ValueError(f"fields lacks {missing}; a record needs exactly the keys {list(FORMAT_KEYS)}.")
    if not isinstance(fields["age"], int) or isinstance(fields["age"], bool):
        raise TypeError(f"age must be an int, got {fields['age']!r}. Fix: int(age).")
    return json.dumps({k: fields[k] for k in FORMAT_KEYS}, ensure_ascii=False, separators=SEPARATORS)


def _format_example(i: int, split: str, template: int, fields: dict) -> dict:
    job = fields["job"]
    sentence = FORMAT_TEMPLATES[template].format(**fields, a_job=_article(job),
                                                 A_job=_article(job).capitalize())
    return {"id": f"format-{split}-{i:04d}", "task": "format", "split": split,
            "prompt": f"{FORMAT_INSTRUCTION}\n\n{sentence}", "sentence": sentence,
            "target": format_target(fields), "fields": dict(fields), "template": template,
            "held_out_template": template in FORMAT_HELD_OUT}


def new_person(rng: random.Random, used: set) -> dict:
    """A person (name, age, job, city) drawn from ``rng`` that is not in ``used``; it is added to ``used``."""
    while True:
        fields = {"name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                  "age": rng.randint(*AGE_RANGE), "job": rng.choice(JOBS), "city": rng.choice(CITIES)}
        key = tuple(fields.values())
        if key not in used:
            used.add(key)
            return fields


def generate_format(seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
    """The format task's splits. No person (name, age, job, city) appears in two splits."""
    rng = random.Random(seed)
    seen_templates = [t for t in range(len(FORMAT_TEMPLATES)) if t not in FORMAT_HELD_OUT]
    used: set[tuple] = set()  # membership only; never iterated, so set order cannot leak into the data
    out = {}
    for split in SPLITS:
        examples = []
        while len(examples) < FORMAT_SIZES[split]:
            fields = new_person(rng, used)
            i = len(examples)
            # Train cycles the ten seen templates; validation/test cycle all twelve (1/6 held out).
            template = seen_templates[i % len(seen_templates)] if split == "train" else i % len(FORMAT_TEMPLATES)
            examples.append(_format_example(i, split, template, fields))
        out[split] = examples
    return out


def _invented_name(rng: random.Random, n_syllables: int, taken: set[str]) -> str:
    while True:
        name = "".join(rng.choice(SYLLABLES) for _ in range(n_syllables)).capitalize()
        if name.lower() not in STOPLIST and name not in taken:
            taken.add(name)
            return name


def invented_world(seed: int = DEFAULT_SEED) -> list[dict]:
    """``N_COUNTRIES`` invented countries, each with one value per relation; every name is unique."""
    rng = random.Random(seed)
    taken: set[str] = set()
    world = []
    for _ in range(N_COUNTRIES):
        country = _invented_name(rng, 2, taken)
        world.append({"country": country, "capital": _invented_name(rng, 3, taken),
                      "founder": f"{_invented_name(rng, 2, taken)} {_invented_name(rng, 3, taken)}",
                      "founding_year": str(rng.randint(412, 1687)), "export": rng.choice(EXPORTS),
                      "river": _invented_name(rng, 2, taken)})
    return world


def generate_knowledge(seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
    """The knowledge task's splits: every fact in every split; phrasings differ between splits."""
    rng = random.Random(seed + 1)  # independent of the world's stream, so reshuffling keeps the facts
    world = invented_world(seed)
    out = {}
    for split in SPLITS:
        examples = []
        for c, entry in enumerate(world):
            for relation in RELATIONS:
                for template in KNOWLEDGE_SPLIT_TEMPLATES[split]:
                    question = KNOWLEDGE_TEMPLATES[relation][template].format(country=entry["country"])
                    examples.append({"task": "knowledge", "split": split,
                                     "prompt": f"{KNOWLEDGE_INSTRUCTION}\n\n{question}", "question": question,
                                     "target": entry[relation], "fact_id": f"c{c:02d}-{relation}",
                                     "country": entry["country"], "relation": relation, "template": template,
                                     "held_out_template": split != "train"})
        rng.shuffle(examples)  # mix countries and relations within a batch
        out[split] = [{"id": f"knowledge-{split}-{i:04d}", **ex} for i, ex in enumerate(examples)]
    return out


# --- dates task --------------------------------------------------------------------------------------
DATES_INSTRUCTION = "Write the date in ISO format, YYYY-MM-DD, and nothing else."
DATES_SIZES = {"train": 600, "validation": 100, "test": 200}
MONTHS = ("January February March April May June July August September October November "
          "December").split()
DATES_TEMPLATES = ("the {nth} of {month}, {year}", "{month} {day}, {year}", "{day} {month} {year}",
                   "{mon}. {day}, {year}", "{month} the {nth}, {year}",
                   "the {nth} day of {month} in the year {year}")  # the last: validation and test only
DATES_HELD_OUT = (5,)


def _nth(day: int) -> str:
    return f"{day}{'th' if 11 <= day <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"


def generate_dates(seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
    """The dates task's splits (days 1-28, so every month has them). No date appears in two splits."""
    rng = random.Random(seed + 2)
    used: set[tuple] = set()
    out = {}
    for split in SPLITS:
        examples = []
        while len(examples) < DATES_SIZES[split]:
            year, month, day = rng.randint(1901, 2030), rng.randint(1, 12), rng.randint(1, 28)
            if (year, month, day) in used:
                continue
            used.add((year, month, day))
            i = len(examples)
            seen = len(DATES_TEMPLATES) - len(DATES_HELD_OUT)
            template = i % seen if split == "train" else i % len(DATES_TEMPLATES)
            name = MONTHS[month - 1]
            text = DATES_TEMPLATES[template].format(nth=_nth(day), day=day, month=name, mon=name[:3], year=year)
            examples.append({"id": f"dates-{split}-{i:04d}", "task": "dates", "split": split,
                             "prompt": f"{DATES_INSTRUCTION}\n\n{text[0].upper()}{text[1:]}", "text": text,
                             "target": f"{year:04d}-{month:02d}-{day:02d}", "template": template,
                             "held_out_template": template in DATES_HELD_OUT})
        out[split] = examples
    return out


GENERATORS = {"format": generate_format, "knowledge": generate_knowledge, "dates": generate_dates}


def _check_names(task: str, split: str | None = None) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks are {list(TASKS)}.")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {list(SPLITS)}.")


def generate_task(task: str, seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
    """All splits of ``task``, generated in memory (same as the committed files for the default seed)."""
    _check_names(task)
    return GENERATORS[task](seed)


def dumps_jsonl(examples: list[dict]) -> str:
    """The exact text of a JSONL file: one ``json.dumps`` line per example, each ending in "\\n"."""
    return "".join(json.dumps(ex, ensure_ascii=False, separators=SEPARATORS) + "\n" for ex in examples)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a malformed line raises ValueError naming the file and the line number."""
    path = Path(path)
    examples = []
    fix = "Fix: regenerate the data with `python -m lora_edu.data` or restore the file from git."
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}, line {lineno}: not UTF-8 text (byte {err.start}: {err.reason}). "
                             f"{fix}") from None
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {lineno}: not valid JSON ({err.msg}). {fix}") from None
        except RecursionError:
            raise ValueError(f"{path}, line {lineno}: nested too deeply to read (thousands of [ or {{); not "
                             f"an example. {fix}") from None
        if not isinstance(ex, dict):
            raise ValueError(f"{path}, line {lineno}: expected a JSON object, got {type(ex).__name__}. "
                             f"Fix: regenerate the data with `python -m lora_edu.data`.")
        examples.append(ex)
    return examples


def load_task(task: str, split: str, root: str | os.PathLike | None = None) -> list[dict]:
    """Examples of ``task``/``split``: read from ``<root>/<task>/<split>.jsonl`` when that file exists
    (``root`` defaults to the checkout's data/ folder), else regenerated in memory (a pip install)."""
    _check_names(task, split)
    path = Path(root if root is not None else DATA_ROOT) / task / f"{split}.jsonl"
    if path.is_file():
        return read_jsonl(path)
    if root is not None:
        raise FileNotFoundError(f"{path} does not exist. Fix: write_task_data({str(root)!r}) or root=None.")
    return generate_task(task)[split]


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # bytes: no newline translation on Windows
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file owner-only; data files are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_task_data(root: str | os.PathLike = DATA_ROOT, seed: int = DEFAULT_SEED) -> list[Path]:
    """(Re)write ``<root>/<task>/<split>.jsonl`` for every task and split; returns the paths written."""
    written = []
    for task in TASKS:
        for split, examples in generate_task(task, seed).items():
            path = Path(root) / task / f"{split}.jsonl"
            _write_atomic(path, dumps_jsonl(examples))
            written.append(path)
    return written


# --- scoring helpers for evaluation ------------------------------------------------------------------
def parse_record(text: str) -> dict | None:
    """The first JSON object in a model's output (tolerates chatter, code fences, pretty-printing)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    return None


def exact_match(pred: str, target: str) -> bool:
    """True when the prediction equals the target after stripping surrounding whitespace only."""
    return pred.strip() == target.strip()


def field_accuracy(pred_text: str, fields: dict) -> dict[str, bool]:
    """Per key of ``fields``: does the parsed prediction hold exactly that value (34 != "34")?"""
    record = parse_record(pred_text) or {}
    return {k: k in record and record[k] == v and type(record[k]) is type(v) for k, v in fields.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m lora_edu.data [--root DIR] [--seed N] [--check]``: write (or verify) the task files."""
    parser = argparse.ArgumentParser(prog="python -m lora_edu.data", description=main.__doc__)
    parser.add_argument("--root", default=str(DATA_ROOT), help="folder to write into (default: data/)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--check", action="store_true", help="only verify the files; exit 1 if they differ")
    args = parser.parse_args(argv)
    if args.check:
        stale = [f"{t}/{s}" for t in TASKS for s, ex in generate_task(t, args.seed).items()
                 if not (p := Path(args.root) / t / f"{s}.jsonl").is_file()
                 or p.read_bytes() != dumps_jsonl(ex).encode("utf-8")]
        print("task data up to date" if not stale else f"stale or missing: {stale}")
        return 1 if stale else 0
    for path in write_task_data(args.root, args.seed):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
