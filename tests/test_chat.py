"""lora_edu.chat: the chat template, label masking, the end token, padding, on SmolLM2's real tokenizer."""

import types

import pytest

from lora_edu.chat import IGNORE_INDEX, build_example, collate, end_token_id, pad_batch, pad_token_id


# --- chat formatting and label masking --------------------------------------------------------------------
def test_end_and_pad_tokens_of_smollm2(tok):
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_token_id(tok) == im_end
    assert pad_token_id(tok) == (tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)


def test_unmasked_labels_decode_to_target_plus_end_token(tok, fmt, knowledge):
    for ex in fmt[:20] + knowledge[:20]:
        f = build_example(tok, ex["prompt"], ex["target"])
        answer = [t for t in f["labels"] if t != IGNORE_INDEX]
        assert tok.decode(answer) == ex["target"] + "<|im_end|>"
        n_prompt = len(f["labels"]) - len(answer)
        assert f["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt  # masked part is one prefix
        assert f["input_ids"][n_prompt:] == answer
        assert "<|im_start|>assistant\n" in tok.decode(f["input_ids"][:n_prompt])


def test_concatenation_equals_the_template_tokenization_for_every_training_example(tok, fmt, knowledge):
    # The documented choice: prompt (add_generation_prompt=True) + answer + end token tokenizes exactly like
    # the whole conversation, which the template ends with one more "\n" after <|im_end|>.
    for ex in fmt + knowledge:
        f = build_example(tok, ex["prompt"], ex["target"])
        text = tok.apply_chat_template([{"role": "user", "content": ex["prompt"]},
                                        {"role": "assistant", "content": ex["target"]}], tokenize=False)
        full = tok(text, add_special_tokens=False)["input_ids"]
        assert full[:len(f["input_ids"])] == f["input_ids"]
        assert tok.decode(full[len(f["input_ids"]):]) == "\n"


def test_a_tokenizer_without_chat_template_is_refused():
    bare = types.SimpleNamespace(chat_template=None)
    with pytest.raises(ValueError, match="no chat template"):
        build_example(bare, "q", "a")


# --- padding ----------------------------------------------------------------------------------------------
def test_collate_pads_on_the_right_and_masks_padding_even_though_pad_equals_the_end_token(tok, fmt):
    feats = [build_example(tok, ex["prompt"], ex["target"]) for ex in fmt[:4]]
    pad = pad_token_id(tok)
    assert pad == end_token_id(tok)  # SmolLM2: pad = <|im_end|>, so labels cannot be masked by id
    batch = collate(feats, pad)
    lengths = [len(f["input_ids"]) for f in feats]
    assert len(set(lengths)) > 1, "need different lengths to see padding"
    assert batch["input_ids"].shape == batch["labels"].shape == (4, max(lengths))
    for row, n in enumerate(lengths):
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert batch["input_ids"][row, n:].eq(pad).all()
        assert batch["labels"][row, n:].eq(IGNORE_INDEX).all()
        assert batch["labels"][row, n - 1] == end_token_id(tok)  # the real end token is learned


def test_pad_batch_left_and_bad_side():
    assert pad_batch([[1, 2, 3], [4]], 0, side="left").tolist() == [[1, 2, 3], [0, 0, 4]]
    assert pad_batch([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]
    with pytest.raises(ValueError, match="'right' or 'left'"):
        pad_batch([[1]], 0, side="middle")
