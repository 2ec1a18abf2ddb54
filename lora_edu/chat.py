"""Chat-template examples: the prompt through the model's chat template, the answer, the end token, padding.

Shared by training (``lora_edu.training``) and evaluation (``lora_edu.evaluation``), which both need the
same tokens in the same places:

- ``prompt_ids``: the user's turn plus the assistant header that the answer follows.
- ``end_token_id``: the token that closes an assistant turn (``<|im_end|>`` for SmolLM2).
- ``build_example``: prompt + exact answer + end token; labels are -100 (ignored by the loss) on the prompt
  and template tokens, so the model is trained only to *answer*, and to stop: the end token is a label too.
- ``build_text_example``: raw text with every token a label, for continued pre-training (notebook 12).
- ``pad_batch`` / ``collate``: right padding for training, left for generation, with an attention mask.

Explained in notebooks/04_lora_in_a_transformer.ipynb.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index: no loss at these positions

# --- the chat template ---------------------------------------------------------------------------
def _check_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("The tokenizer has no chat template, so a prompt cannot be formatted as a chat turn. "
                         "Use an instruct model's tokenizer (load_model() gives SmolLM2-135M-Instruct's).")


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of the chat-formatted user turn plus the assistant header the answer follows."""
    _check_chat_template(tokenizer)
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]  # the template already has its specials


def end_token_id(tokenizer) -> int:
    """The token that closes an assistant turn in the chat template (``<|im_end|>`` for SmolLM2).

    Found by rendering a turn with a marker as the answer and reading the first token after the marker, so
    it is the template's own end-of-turn token, whatever the tokenizer calls its EOS.
    """
    _check_chat_template(tokenizer)
    marker = "ANSWER_MARKER_7f3a"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "q"},
                                          {"role": "assistant", "content": marker}], tokenize=False)
    after = text[text.rindex(marker) + len(marker):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    if not ids or ids[0] not in tokenizer.all_special_ids:
        raise ValueError(f"The chat template closes an answer with {after!r}, which does not start with a "
                         "special token; cannot tell where the answer ends. Use an instruct model's tokenizer.")
    return ids[0]


def pad_token_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else its EOS (padding is masked out anyway)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("The tokenizer has neither a pad nor an EOS token. Set tokenizer.pad_token first.")
    return pad


def check_examples(examples, name: str = "examples", allow_text: bool = False) -> None:
    """Refuse an empty dataset or an example without a "prompt" and a "target" string. With ``allow_text``
    (training and the loss, not generation) an example may instead be raw text: ``{"text": "..."}``."""
    if not isinstance(examples, (list, tuple)) or len(examples) == 0:
        raise ValueError(f"{name} is empty (or not a list); pass a list of dicts with 'prompt' and 'target', "
                         "e.g. data.load_task('format', 'train').")
    for i, ex in enumerate(examples):
        if allow_text and isinstance(ex, dict) and "prompt" not in ex and "text" in ex:
            if not isinstance(ex["text"], str) or not ex["text"]:
                raise ValueError(f"{name}[{i}] has a 'text' field that is not a non-empty string; a raw-text "
                                 "example (continued pre-training) is {'text': 'some sentences'}.")
            continue
        missing = [k for k in ("prompt", "target") if not isinstance(ex, dict) or not isinstance(ex.get(k), str)]
        if missing:
            raise ValueError(f"{name}[{i}] lacks the string field(s) {missing}; every example needs "
                             "'prompt' (the user message) and 'target' (the exact answer).")


def build_example(tokenizer, prompt: str, target: str) -> dict[str, list[int]]:
    """``input_ids`` = chat prompt + answer + end token; ``labels`` = -100 on the prompt, the ids on the rest.

    The answer is tokenized on its own and appended. This equals tokenizing the whole conversation as the
    template renders it (minus what the template adds after the end token, e.g. "\\n") because the prompt
    ends in a newline that BPE never merges with the answer; tests/test_chat.py checks it on both tasks.
    """
    context = prompt_ids(tokenizer, prompt)
    answer = tokenizer(target, add_special_tokens=False)["input_ids"] + [end_token_id(tokenizer)]
    return {"input_ids": context + answer, "labels": [IGNORE_INDEX] * len(context) + answer}


def build_text_example(tokenizer, text: str) -> dict[str, list[int]]:
    """Raw text for continued pre-training: no chat template, every token is a label (the plain language-model
    loss), and the tokenizer's EOS closes the document so that packed documents do not run together."""
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else end_token_id(tokenizer)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [end]
    return {"input_ids": ids, "labels": list(ids)}


def example_features(tokenizer, example: dict) -> dict[str, list[int]]:
    """``build_example`` for a prompt/target pair, ``build_text_example`` for a raw ``{"text": ...}``."""
    if "prompt" not in example and "text" in example:
        return build_text_example(tokenizer, example["text"])
    return build_example(tokenizer, example["prompt"], example["target"])


def pad_batch(sequences: list[list[int]], pad_value: int, side: str = "right") -> torch.Tensor:
    """Stack sequences into (batch, longest), padding on the right (training) or left (generation)."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}.")
    longest = max(len(s) for s in sequences)
    rows = [[pad_value] * (longest - len(s)) + s if side == "left" else s + [pad_value] * (longest - len(s))
            for s in sequences]
    return torch.tensor(rows, dtype=torch.long)


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (batch, seq) ``input_ids``, ``attention_mask`` (1 = real token) and ``labels``."""
    ids = [f["input_ids"] for f in features]
    return {"input_ids": pad_batch(ids, pad_id),
            "attention_mask": pad_batch([[1] * len(s) for s in ids], 0),
            "labels": pad_batch([f["labels"] for f in features], IGNORE_INDEX)}  # pads never count
