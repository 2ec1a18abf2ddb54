"""lora_edu.newlang: the Veldaran translation task and the format task's larger training pool (notebook 12)."""

import pytest

from lora_edu import newlang
from lora_edu.data import load_task


def test_veldaran_is_deterministic_with_disjoint_splits():
    a, b = newlang.generate_veldaran(0), newlang.generate_veldaran(0)
    assert a == b and {k: len(v) for k, v in a.items()} == newlang.VELDARAN_SIZES
    sentences = [ex["sentence"] for split in a.values() for ex in split]
    assert len(sentences) == len(set(sentences))  # no English sentence in two splits
    assert newlang.generate_veldaran(1)["train"][0] != a["train"][0]  # the seed changes the data


def test_veldaran_words_are_new_and_the_grammar_is_regular():
    lexicon = newlang.veldaran_lexicon(0)
    assert len(set(lexicon.values())) == len(lexicon) == 24
    assert not set(lexicon.values()) & newlang.ENGLISH_WORDS
    english = {v: k for k, v in lexicon.items()}
    for ex in newlang.generate_veldaran(0)["train"][:200]:
        words = ex["target"].rstrip(".").lower().split()
        assert words[0] == newlang.ARTICLE and words.count(newlang.ARTICLE) == 2
        verb = words[-1].removesuffix(newlang.PLURAL) if words[-1] not in english else words[-1]
        assert english[verb] in newlang.VERBS  # the verb comes last (SOV)
        subject_plural = words[1].endswith(newlang.PLURAL) and words[1] not in english
        verb_en = newlang.VERB_PLURALS.get(english[verb], english[verb][:-1]) if subject_plural else english[verb]
        assert f" {verb_en} the " in ex["sentence"]  # and it is the sentence's verb, in good English
        assert subject_plural == words[-1].endswith(newlang.PLURAL) and subject_plural == (words[-1] not in english)


def test_veldaran_english_uses_the_irregular_plurals():
    sentences = [ex["sentence"] for split in newlang.generate_veldaran(0).values() for ex in split]
    text = " ".join(sentences)
    assert "children" in text and "women" in text and " carry " in text
    assert not any(bad in text for bad in ("childs", "womans", "carrie "))


def test_veldaran_corpus_is_raw_text_without_test_targets():
    corpus = newlang.veldaran_corpus(300, seed=0)
    assert len(corpus) == 300 and corpus == newlang.veldaran_corpus(300, seed=0)
    test_targets = {ex["target"] for ex in newlang.generate_veldaran(0)["test"]}
    assert not set(corpus) & test_targets
    assert not any(word in newlang.ENGLISH_WORDS for line in corpus for word in line.rstrip(".").lower().split())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be"):
            newlang.veldaran_corpus(bad)


def test_format_pool_extends_the_training_split_with_new_people():
    train = load_task("format", "train")
    pool = newlang.format_pool(2000)
    assert len(pool) == 2000 and pool[:1000] == train and pool == newlang.format_pool(2000)
    assert newlang.format_pool(200) == train[:200]
    people = [tuple(ex["fields"].values()) for ex in pool]
    assert len(people) == len(set(people))
    held = {tuple(ex["fields"].values()) for split in ("validation", "test") for ex in load_task("format", split)}
    assert not set(people) & held  # no test or validation person in the pool
    assert not any(ex["held_out_template"] for ex in pool)  # the held-out phrasings stay held out
    assert len({ex["id"] for ex in pool}) == 2000
    with pytest.raises(ValueError, match="n must be"):
        newlang.format_pool(0)
