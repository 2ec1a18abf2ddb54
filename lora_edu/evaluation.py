"""Evaluate a chat model on a task by greedy generation: exact match, per-field accuracy, seen vs new phrasings.

``generate_answers`` formats each prompt with the chat template (``lora_edu.chat.prompt_ids``), pads the batch
on the *left* so that every prompt ends at the last position and the new tokens line up, passes an attention
mask so the padding is never attended to, and decodes greedily until the template's end-of-turn token.
``evaluate`` scores the answers with ``lora_edu.data``'s ``exact_match`` and ``field_accuracy``.
Explained in notebooks/04_lora_in_a_transformer.ipynb (generations before and after fine-tuning).
"""

from __future__ import annotations

import torch

from .chat import check_examples, end_token_id, pad_batch, pad_token_id, prompt_ids
from .data import FORMAT_KEYS, exact_match, field_accuracy, parse_record


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 48,
                     batch_size: int = 8, return_finished: bool = False):
    """Greedy answers to ``prompts`` (user messages), one string each, cut at the end-of-turn token.

    With ``return_finished=True``: ``(answers, finished)``, where ``finished[i]`` says whether answer i ended with
    the end-of-turn token within ``max_new_tokens`` (False: it was cut off at the cap)."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings; wrap a single prompt as [prompt].")
    if not prompts:
        return []
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}.")
    device = next(model.parameters()).device
    end_id, pad_id = end_token_id(tokenizer), pad_token_id(tokenizer)
    was_training = model.training
    model.eval()
    answers, finished = [], []
    for i in range(0, len(prompts), batch_size):
        ids = [prompt_ids(tokenizer, p) for p in prompts[i:i + batch_size]]
        input_ids = pad_batch(ids, pad_id, side="left").to(device)  # (batch, longest prompt)
        attention_mask = pad_batch([[1] * len(s) for s in ids], 0, side="left").to(device)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=end_id, pad_token_id=pad_id)
        for row in out[:, input_ids.shape[1]:].tolist():  # only the new tokens
            finished.append(end_id in row)
            row = row[:row.index(end_id)] if end_id in row else row  # finished rows are padded after the end
            answers.append(tokenizer.decode(row, skip_special_tokens=True))
    model.train(was_training)
    return (answers, finished) if return_finished else answers


def evaluate(model, tokenizer, examples: list[dict], task: str | None = None, max_new_tokens: int = 48,
             batch_size: int = 8) -> dict:
    """Generate for every example and score it against ``target``.

    Returns ``n``, ``exact_match`` (a fraction), ``exact_match_seen`` / ``exact_match_held_out`` (examples
    whose phrasing was or was not in training, from ``held_out_template``; None when there are none) with their
    counts ``n_seen`` / ``n_held_out``, for the
    format task ``field_accuracy`` (key -> fraction of records with that value exactly right) and
    ``valid_json`` (fraction with a parsable record), ``n_cut_off`` (answers that did not end within
    ``max_new_tokens``: cut at the cap, so a long answer may be scored on its first part only), and the
    ``predictions``.
    """
    check_examples(examples)
    task = task or examples[0].get("task")
    predictions, finished = generate_answers(model, tokenizer, [ex["prompt"] for ex in examples], max_new_tokens,
                                             batch_size, return_finished=True)
    hits = [exact_match(p, ex["target"]) for p, ex in zip(predictions, examples, strict=True)]

    def rate(flags):
        return sum(flags) / len(flags) if flags else None

    result = {"task": task, "n": len(examples), "exact_match": rate(hits)}
    for name, held_out in (("seen", False), ("held_out", True)):
        group = [h for h, ex in zip(hits, examples, strict=True) if bool(ex.get("held_out_template", False)) == held_out]
        result[f"exact_match_{name}"], result[f"n_{name}"] = rate(group), len(group)
    if task == "format":
        missing = [i for i, ex in enumerate(examples) if not isinstance(ex.get("fields"), dict)]
        if missing:
            raise ValueError(f"examples[{missing[0]}] has no 'fields' dict, which per-field accuracy of the format "
                             "task needs; use data.load_task('format', split).")
        per_example = [field_accuracy(p, ex["fields"]) for p, ex in zip(predictions, examples, strict=True)]
        result["field_accuracy"] = {k: rate([f[k] for f in per_example]) for k in FORMAT_KEYS}
        result["valid_json"] = rate([parse_record(p) is not None for p in predictions])
    result["n_cut_off"] = sum(not done for done in finished)
    result["predictions"] = predictions
    return result
