"""Self-checks of notebooks/10_serving.ipynb (adapter memory, the gathered BGMV delta, vLLM's max_lora_rank, and
an experiment: merge-and-swap at a larger batch)."""

from __future__ import annotations

import math

import torch

from .core import Check, _unanswered, check_function, check_value, read_prediction, report

# --- notebook 10 ---
# SmolLM2-135M: 30 decoder layers; per layer q_proj 576->576, k_proj and v_proj 576->192, o_proj 576->576,
# gate_proj and up_proj 576->1536, down_proj 1536->576.
EX10_RANKS = (8, 12, 40)  # exercise 10.3: three adapters to serve side by side in vLLM


def check_adapter_numbers(answer) -> Check:
    """Exercise 10.1: numbers in one r = 8 adapter on all seven linear types of every SmolLM2 layer."""
    per_layer = sum(i + o for i, o in ((576, 576), (576, 192), (576, 192), (576, 576), (576, 1536),
                                       (576, 1536), (1536, 576)))
    return check_value("10.1 adapter numbers", answer, 30 * 8 * per_layer,
                       hint="each adapted (out, in) layer stores A (r, in) and B (out, r): r * (in + out) numbers; "
                            "add the seven layers of one block, then multiply by the 30 blocks.")


def gathered_delta_reference(x, slots, stacked_A, stacked_B):
    """x (batch, in), slots (batch,), stacked_A (n, r, in), stacked_B (n, out, r) -> (batch, out)."""
    return torch.einsum("bri,bi->br", stacked_A[slots], x).unsqueeze(1).mul(stacked_B[slots]).sum(-1)


def _gathered_inputs() -> list[tuple]:
    g = torch.Generator().manual_seed(10)
    cases = []
    for batch, n, r, in_f, out_f in ((4, 3, 2, 5, 6), (6, 4, 3, 7, 3), (1, 2, 4, 4, 4)):
        cases.append((torch.randn(batch, in_f, generator=g), torch.randint(0, n, (batch,), generator=g),
                      torch.randn(n, r, in_f, generator=g), torch.randn(n, out_f, r, generator=g)))
    return cases


def check_gathered_delta(fn) -> Check:
    """Exercise 10.2: the BGMV delta, each row through the A and B of its own slot."""
    return check_function("10.2 gathered delta", fn, gathered_delta_reference, _gathered_inputs(),
                          hint="gather first: A = stacked_A[slots] is (batch, r, in); then per row A x (r,), "
                               "then B (out, r) times that. torch.einsum('bri,bi->br', ...) does the first step.")


def check_max_lora_rank(answer) -> Check:
    """Exercise 10.3: the smallest max_lora_rank vLLM accepts that serves ranks 8, 12 and 40 together."""
    return check_value("10.3 max_lora_rank", answer, 64,
                       hint="max_lora_rank must hold the largest rank (40) and be one of vLLM's allowed values "
                            "1, 8, 16, 32, 64, 128, 256, 320, 512.")


def _mix_problems(mix, what: str) -> list[str]:
    ok = isinstance(mix, dict) and isinstance(mix.get("rows"), int) and isinstance(mix.get("k"), int) and \
        isinstance(mix.get("tokens_per_s"), dict)
    if not ok:
        return [f"pass {what} as measure(...) returns it: a dict with rows, k and tokens_per_s"]
    speeds = [mix["tokens_per_s"].get(m) for m in ("merge-swap", "peft")]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in speeds):
        return [f"{what} needs a positive, finite tokens/s for both merge-swap and peft"]
    return []


def check_merge_swap_batch_experiment(prediction, small: dict, big: dict) -> Check:
    """Exercise 10.4, an experiment: merge-and-swap against PEFT's mixed batch at the same number k of distinct
    adapters, with more rows in the batch. ``small`` and ``big`` are what the notebook's ``measure(k, ids)``
    returns. Any honest pair passes; a second line says whether merge-swap / peft rose or fell, and if the
    prediction held."""
    name = "10.4 experiment: merge-and-swap at a larger batch"
    if any(_unanswered(a) for a in (prediction, small, big)):
        return report(name, False, 'replace each placeholder `...`: your prediction ("rise" or "fall"), then '
                      "big = measure(8, ids) with a batch of more rows, then re-run.")
    pick, problems = read_prediction(prediction, ("rise", "fall"))
    problems += _mix_problems(small, "small") + _mix_problems(big, "big")
    if not problems:
        if small["k"] != big["k"] or small["k"] < 2:
            problems.append(f"keep k the same, 2 or more, in both (got k = {small['k']} and {big['k']}): "
                            "change the batch only")
        if big["rows"] <= small["rows"]:
            problems.append(f"the big batch needs more rows than the small one ({big['rows']} vs {small['rows']})")
    if problems:
        return report(name, False, "; ".join(problems) + ".")
    ratio = {which: mix["tokens_per_s"]["merge-swap"] / mix["tokens_per_s"]["peft"]
             for which, mix in (("small", small), ("big", big))}
    outcome = "rise" if ratio["big"] > ratio["small"] else "fall"
    check = report(name, True, "")
    print(f"  measured merge-swap / peft at k = {big['k']}: {ratio['small']:.2f} with {small['rows']} rows, "
          f"{ratio['big']:.2f} with {big['rows']} rows ({outcome}); you predicted {pick}: "
          + ("it held." if pick == outcome else "it did not. Which part of merge-and-swap's work grows with the "
                                                 "rows, and which is paid once per adapter? (Timings on a shared "
                                                 "machine are noisy: run it twice.)"))
    return check
