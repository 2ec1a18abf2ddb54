"""Self-checks of notebooks/12_advice_tested.ipynb (which noise hurts, what trained embeddings cost)."""

from __future__ import annotations

from .core import Check, _unanswered, check_value, report

# SmolLM2-135M: a vocabulary of 49,152 tokens, hidden size 576; the embedding is tied to the output head.
EX12_VOCAB, EX12_HIDDEN = 49_152, 576
EX12_BYTES_RTOL = 1e-3  # the two files of the table also differ by their safetensors headers (a few kB)
EX12_KINDS = ("truncated", "wrong_value")
EX12_SAME = ("route", "r", "steps", "n_train", "n")  # what the two runs of exercise 12.1 must share
EX12_MARGIN = 3  # test examples: notebook 12's section 5 calls a smaller gap a tie


def check_embedding_bytes(answer) -> Check:
    """Exercise 12.2: the bytes the trained embedding adds to the "lora+embeddings" file (fp32, as trained).
    The bare embedding and the difference of the two files in the notebook's table both pass."""
    name = "12.2 what a trained embedding adds to the file"
    if _unanswered(answer):  # no hint yet: the hint is the calculation itself
        return report(name, False, "replace the placeholder `...` with your answer (a number of bytes), then re-run.")
    check = check_value(name, answer, EX12_VOCAB * EX12_HIDDEN * 4, rtol=EX12_BYTES_RTOL,
                        hint="The embedding is one (vocabulary x hidden) matrix, 49,152 x 576 numbers, stored as "
                             "fp32 (4 bytes each); SmolLM2's output head is the same tensor, so it is saved once.")
    if check:
        print("  The embedding alone is 49,152 x 576 x 4 bytes. The two files in the table differ by a little "
              "more: each file's safetensors header lists every tensor's name, shape and byte offsets, and the "
              "larger file's header is longer.")
    return check


def check_noise_kind_experiment(prediction, rows: dict) -> Check:
    """Exercise 12.1, an experiment: LoRA on the large set with 50% noise of one kind only, "truncated" against
    "wrong_value" (``noise.add_noise(pool, 0.5, kinds=(kind,))``), everything else the same; which one hurts
    exact match more? Any honest pair of ``recipes.run_route`` rows passes; a second line says if the prediction
    held."""
    name = "12.1 experiment: is every kind of noise equally harmful?"
    if _unanswered(prediction) or _unanswered(rows):
        return report(name, False, 'replace each placeholder `...`: your prediction ("truncated" or "wrong_value": '
                      "the kind you expect to hurt more), then {kind: row} with the recipes.run_route row of each "
                      "run, then re-run.")
    pick = str(prediction).strip().strip('"').lower().replace(" ", "_")
    problems = [] if pick in EX12_KINDS else [f'the prediction should be "truncated" or "wrong_value", not {prediction!r}']
    if not (isinstance(rows, dict) and set(rows) == set(EX12_KINDS) and all(isinstance(r, dict) for r in rows.values())):
        problems.append('pass rows as {"truncated": row, "wrong_value": row}, each the dict recipes.run_route returned')
        return report(name, False, "; ".join(problems) + ".")
    a, b = rows["truncated"], rows["wrong_value"]
    needed = (*EX12_SAME, "losses", "exact_match")
    missing = [k for k in needed if k not in a or k not in b]
    if missing:
        return report(name, False, f"the rows lack {missing}: pass what recipes.run_route returned (a diverged run "
                                   "has no scores; lower the learning rate and run it again).")
    differ = [k for k in EX12_SAME if a[k] != b[k]]
    if differ:
        problems.append(f"change the kind of noise only: {', '.join(differ)} differ between the two runs")
    if any(len(r["losses"]) != r["steps"] for r in (a, b)) or a["steps"] < 4:
        problems.append("train each run for its full steps, at least 4 (the rows' losses do not match their steps)")
    elif a["losses"] == b["losses"]:
        problems.append("the two runs have the same loss at every step, so they trained on the same data: pass "
                        "kinds=(\"truncated\",) to one add_noise call and kinds=(\"wrong_value\",) to the other")
    if problems:
        return report(name, False, "; ".join(problems) + ".")
    n = a["n"]
    hits = {k: round(rows[k]["exact_match"] * n) for k in EX12_KINDS}
    check = report(name, True, "")
    gap = hits["truncated"] - hits["wrong_value"]
    outcome = None if abs(gap) < EX12_MARGIN else min(EX12_KINDS, key=lambda k: hits[k])
    losses = (f" (answer loss {a['answer_loss']:.3f} and {b['answer_loss']:.3f})"
              if all(isinstance(r.get("answer_loss"), float) for r in (a, b)) else "")
    print(f"  exact match: truncated {hits['truncated']}/{n}, wrong_value {hits['wrong_value']}/{n}{losses}; worse: "
          + (f"neither, a tie at this n (a gap under {EX12_MARGIN} of {n}). You predicted {pick}: these two runs "
             "cannot say; more seeds or a larger test set could." if outcome is None else
             f"{outcome}. You predicted {pick}: " + ("it held." if pick == outcome else "it did not.")
             + " Think of what each kind teaches at every token: a wrong value one wrong token, a truncated "
             "target an early end."))
    return check
