"""Data for notebook 12: an invented language, Veldaran, and a larger training pool for the format task.

**Veldaran** is a task that needs a large change of behaviour: English sentences to translate into a language
that SmolLM2 has never seen. Every word is new (built from invented syllables, none of them an English word),
and the grammar differs from English in two regular ways:

- word order is subject, object, verb (SOV), and an adjective follows its noun: "the old sailor sees the river"
  becomes "ka SAILOR OLD ka RIVER SEES" (each capital word standing for its Veldaran word, ``ka`` for "the");
- a plural subject adds ``-ar`` to its noun and to the verb: "the sailors see" becomes "ka SAILORar SEEar".

``generate_veldaran(seed)`` gives train / validation / test splits of translation examples (prompt, target),
no sentence in two splits, and ``veldaran_corpus(n, seed)`` raw Veldaran text (sentences only, no English) for
continued pre-training. The same seed always gives the same words and sentences.

``format_pool(n, seed)`` is the format task's training data grown to ``n`` examples for the quality-against-
quantity runs: the committed 1,000 training examples first, then new people, none of them in the validation or
test split, in the ten training phrasings.
"""

from __future__ import annotations

import random

from .data import FORMAT_HELD_OUT, FORMAT_TEMPLATES, SYLLABLES, _format_example, load_task, new_person

VELDARAN_INSTRUCTION = "Translate the English sentence into Veldaran."
VELDARAN_SIZES = {"train": 800, "validation": 100, "test": 200}
NOUNS = "sailor river child king bird stone tree horse woman farmer ship mountain".split()
ADJECTIVES = "old young red small tall quiet".split()
VERBS = "sees carries finds follows builds loves".split()  # third person singular
NOUN_PLURALS = {"child": "children", "woman": "women"}  # English's irregular plurals; the other nouns add -s
VERB_PLURALS = {"carries": "carry"}  # "the sailors carry"; the other verbs drop the -s ("the sailors see")
PLURAL = "ar"
ARTICLE = "ka"  # "the"
ENGLISH_WORDS = frozenset(NOUNS + ADJECTIVES + VERBS + ["the"] + [NOUN_PLURALS.get(n, n + "s") for n in NOUNS]
                          + [VERB_PLURALS.get(v, v[:-1]) for v in VERBS])


def veldaran_lexicon(seed: int = 0) -> dict[str, str]:
    """English word -> Veldaran word (two syllables each, all distinct, none an English word of the task)."""
    rng = random.Random(seed)
    words, taken = {}, {ARTICLE}
    for english in NOUNS + ADJECTIVES + VERBS:
        while True:
            word = rng.choice(SYLLABLES) + rng.choice(SYLLABLES)
            if word not in taken and word not in ENGLISH_WORDS and not word.endswith(PLURAL):
                taken.add(word)
                words[english] = word
                break
    return words


def _phrase(noun: str, adjective: str | None, plural: bool, lexicon: dict) -> tuple[str, str]:
    english = " ".join(["the", *([adjective] if adjective else []),
                        NOUN_PLURALS.get(noun, noun + "s") if plural else noun])
    veldaran = " ".join([ARTICLE, lexicon[noun] + (PLURAL if plural else ""), *([lexicon[adjective]] if adjective else [])])
    return english, veldaran


def _sentence(rng: random.Random, lexicon: dict) -> tuple[str, str]:
    subject, obj = rng.sample(NOUNS, 2)
    plural = rng.random() < 0.3
    adj_s = rng.choice(ADJECTIVES) if rng.random() < 0.5 else None
    adj_o = rng.choice(ADJECTIVES) if rng.random() < 0.5 else None
    verb = rng.choice(VERBS)
    s_en, s_vd = _phrase(subject, adj_s, plural, lexicon)
    o_en, o_vd = _phrase(obj, adj_o, False, lexicon)
    v_en = VERB_PLURALS.get(verb, verb[:-1]) if plural else verb  # "the sailors see", "the sailor sees"
    verb_vd = lexicon[verb] + (PLURAL if plural else "")  # the verb agrees with a plural subject
    return f"{s_en} {v_en} {o_en}".capitalize() + ".", f"{s_vd} {o_vd} {verb_vd}".capitalize() + "."


def generate_veldaran(seed: int = 0) -> dict[str, list[dict]]:
    """Translation examples per split; every English sentence appears in one split only."""
    lexicon, rng = veldaran_lexicon(seed), random.Random(seed + 1)
    used: set[str] = set()
    out = {}
    for split, size in VELDARAN_SIZES.items():
        examples = []
        while len(examples) < size:
            english, veldaran = _sentence(rng, lexicon)
            if english in used:
                continue
            used.add(english)
            examples.append({"id": f"veldaran-{split}-{len(examples):04d}", "task": "veldaran", "split": split,
                             "prompt": f"{VELDARAN_INSTRUCTION}\n\n{english}", "sentence": english,
                             "target": veldaran})
        out[split] = examples
    return out


def veldaran_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` Veldaran sentences with no English beside them (raw text for continued pre-training). They are
    drawn afresh from the grammar, so some coincide with the translation targets; none is a test target."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}.")
    lexicon, rng = veldaran_lexicon(seed), random.Random(seed + 2)
    test_targets = {ex["target"] for ex in generate_veldaran(seed)["test"]}
    corpus = []
    while len(corpus) < n:
        _, veldaran = _sentence(rng, lexicon)
        if veldaran not in test_targets:
            corpus.append(veldaran)
    return corpus


def format_pool(n: int, seed: int = 0) -> list[dict]:
    """The format task's training examples grown to ``n``: the committed training split first, then new people
    (a person = name, age, job and city) in the ten training phrasings, none of them in any committed split."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}.")
    train = load_task("format", "train")
    pool = train[:n]
    used = {tuple(ex["fields"].values()) for split in ("train", "validation", "test")
            for ex in load_task("format", split)}
    seen_templates = [t for t in range(len(FORMAT_TEMPLATES)) if t not in FORMAT_HELD_OUT]
    rng = random.Random(1_000_003 + seed)
    while len(pool) < n:
        fields = new_person(rng, used)
        i = len(pool)
        example = _format_example(i, "train", seen_templates[i % len(seen_templates)], fields)
        example["id"] = f"format-pool-{i:04d}"
        pool.append(example)
    return pool
