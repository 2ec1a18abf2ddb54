"""What a fine-tune changed, measured: LoRA's A matrices, the update delta W, its spectrum and its amplification.

The pieces of notebooks/11_why_low_rank.ipynb, which repeats section 7 of the LoRA paper (Hu et al. 2021,
arXiv 2106.09685) on SmolLM2-135M, and the spectrum and forgetting comparison of Biderman et al. 2024 ("LoRA
Learns Less and Forgets Less", arXiv 2405.09673):

- ``budget_ranks(model, target_sets, r_all)``: a rank per set of target modules so that each set trains about
  the same number of parameters (Table 5's fixed budget), with the counts.
- ``update_summary(delta_w, weight, r)``: Table 7's row for one matrix: ||delta W||_F, ||W||_F, the projection
  ||U^T W V^T||_F onto the top-r directions of delta W, of W itself and of a random matrix, the amplification
  factor, and how many singular values hold 90% of delta W's energy.
- ``extract_updates(model, names, base_weights=None)``: the A matrices (LoRA) and ``update_summary`` of every
  named matrix, from a trained model, as plain tensors and numbers for ``sweeps.RunCache``.
- ``GENERAL_PROMPTS`` and ``general_examples``: ordinary chat prompts answered by the base model itself; the
  loss on them after a fine-tune measures forgetting.
- ``exact_counts(runs)``: the exact-match count of each run ("1 and 2 of 20"), never a mean of seeds that no
  run could score.
"""

from __future__ import annotations

import torch

from . import lowrank
from .evaluation import generate_answers
from .layers import LoraLinear
from .model import lora_parameter_count
from .sweeps import run_key
from .training import validation_loss

# Ordinary requests with nothing of Veldara or of JSON records in them (the two tasks): the base model's own
# greedy answers are the targets, so its loss on them is as low as it gets and any rise is forgetting.
GENERAL_PROMPTS = (
    "What is the capital of France?", "Give me one tip for sleeping better.", "What is 12 times 7?",
    "Name three primary colors.", "Write one sentence about the ocean.", "What does a thermometer measure?",
    "Translate 'good morning' into Spanish.", "Why is the sky blue? Answer in one sentence.",
    "What is the opposite of 'ancient'?", "How many days are in a leap year?",
    "Suggest a name for a pet goldfish.", "What gas do plants take in from the air?",
    "Give a synonym for 'happy'.", "What is the boiling point of water in Celsius?",
    "Write a short greeting for a birthday card.", "Which planet is closest to the Sun?",
)


def budget_ranks(model, target_sets: dict[str, tuple[str, ...]], r_all: int = 2) -> dict[str, dict]:
    """name -> {"targets", "r", "params"}: ranks that spend about the budget of ``r_all`` on every linear layer.

    The budget is what LoRA at rank ``r_all`` on all seven projections of one decoder layer trains; each set gets
    the rank whose count comes closest to it (rounded, at least 1). Counts use the shapes of the first layer,
    times the number of layers (SmolLM2's layers all have the same shapes).
    """
    layers = model.model.layers
    shapes = {name.rsplit(".", 1)[-1]: (m.in_features, m.out_features)
              for name, m in layers[0].named_modules() if isinstance(m, (torch.nn.Linear, LoraLinear))
              and "." in name}
    unknown = sorted({t for targets in target_sets.values() for t in targets} - set(shapes))
    if unknown:
        raise ValueError(f"target modules {unknown} are not linear layers of a decoder layer; choose from "
                         f"{sorted(shapes)}.")

    def per_rank(targets):  # parameters per unit of rank, per decoder layer: sum of (in + out)
        return sum(lora_parameter_count(*shapes[t], 1) for t in targets)

    budget = r_all * per_rank(tuple(shapes))
    out = {}
    for name, targets in target_sets.items():
        r = max(1, round(budget / per_rank(targets)))
        out[name] = {"targets": tuple(targets), "r": r, "params": r * per_rank(targets) * len(layers)}
    return out


@torch.no_grad()
def update_summary(delta_w: torch.Tensor, weight: torch.Tensor, r: int, seed: int = 0) -> dict:
    """One row of LoRA's Table 7 for ``delta_w`` on ``weight`` (both (out, in)), at rank ``r``; see the module doc."""
    delta_w, weight = delta_w.detach().double().cpu(), weight.detach().double().cpu()
    if not delta_w.any():  # before any SVD: the directions of a zero matrix are arbitrary
        raise ValueError("delta_w is all zeros: this layer did not change, so it has no directions to measure. "
                         "Fix: measure a layer that was trained (with LoRA, B is 0 until the first step).")
    g = torch.Generator().manual_seed(seed)
    random = torch.randn(weight.shape, generator=g, dtype=torch.float64)  # the paper's "Random" row
    S = torch.linalg.svdvals(delta_w)  # (min(out, in),)
    return {"r": r, "delta_norm": float(torch.linalg.matrix_norm(delta_w)),
            "weight_norm": float(torch.linalg.matrix_norm(weight)),
            "proj_delta": lowrank.projected_norm(weight, delta_w, r),
            "proj_weight": lowrank.projected_norm(weight, weight, r),
            "proj_random": lowrank.projected_norm(weight, random, r),
            "amplification": lowrank.amplification_factor(delta_w, weight, r),
            "rank_90": lowrank.effective_rank(S, 0.9), "singular_values": S.float()}


def extract_updates(model, names: list[str], base_weights: dict | None = None, r: int | None = None) -> dict:
    """{"A": name -> lora_A (r, in), "updates": name -> update_summary} for the named linear layers.

    On a LoRA model delta W is ``get_delta_weight()`` and W the frozen ``base_layer.weight``; on a fully
    fine-tuned model pass ``base_weights`` (name -> the weight before training) and ``r`` (the projection rank).
    """
    out = {"A": {}, "updates": {}}
    for name in names:
        layer = model.get_submodule(name)
        if isinstance(layer, LoraLinear):
            delta, weight, rank = layer.get_delta_weight(), layer.base_layer.weight, layer.r
            out["A"][name] = layer.lora_A.weight.detach().float().cpu().clone()  # (r, in)
        elif base_weights is not None and name in base_weights:
            weight = base_weights[name]
            delta, rank = layer.weight.detach().float().cpu() - weight.float().cpu(), r
        else:
            raise ValueError(f"{name} is not a LoRA layer and no base weight was given for it. Fix: pass "
                             "base_weights={name: weight before training} for a full fine-tune.")
        if rank is None:
            raise ValueError("r (the projection rank) is needed for a full fine-tune's update, e.g. r=4.")
        out["updates"][name] = update_summary(delta, weight, rank)
    return out


def make_extract(names: list[str], base_weights: dict, tokenizer, general: list[dict], r_full: int = 4):
    """(extract, extract_name) for ``sweeps.RunCache.run``: ``extract_updates`` on the named layers that carry
    LoRA (all of them for a full fine-tune, projected at ``r_full``) and the loss on ``general`` (forgetting).

    The name hashes the layer names, ``r_full`` and the general examples, so changing any of them invalidates
    the cached entries instead of serving numbers measured on something else.
    """
    def extract(model) -> dict:
        lora = [n for n in names if isinstance(model.get_submodule(n), LoraLinear)]
        full = not any(isinstance(m, LoraLinear) for m in model.modules())
        out = extract_updates(model, names if full else lora, base_weights, r_full if full else None)
        out["general_loss"] = validation_loss(model, tokenizer, general)
        return out

    return extract, "updates " + run_key({"names": list(names), "r_full": r_full, "general": general})


def general_examples(model, tokenizer, prompts=GENERAL_PROMPTS, max_new_tokens: int = 96) -> list[dict]:
    """``prompts`` with the base model's own greedy answers as targets (call it before any training).

    Only answers that finished within ``max_new_tokens`` are kept: a target always ends in the end-of-turn token
    (``chat.build_example`` appends it), so a cut-off answer would end in a stop in mid-sentence that the base
    model finds very unlikely, and the loss would then measure that stop more than the answer (notebook 11)."""
    answers, finished = generate_answers(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens,
                                         return_finished=True)
    examples = [{"prompt": p, "target": a} for p, a, done in zip(prompts, answers, finished, strict=True)
                if done and a.strip()]  # an empty answer has no tokens to score
    if not examples:
        raise ValueError(f"None of the {len(answers)} answers both finished within max_new_tokens={max_new_tokens} "
                         "and said something, so there is nothing to measure forgetting on. Fix: call this on the "
                         "pretrained base model, before training, and raise max_new_tokens if answers were cut.")
    return examples


def exact_counts(runs: list[dict]) -> str:
    """The questions each run got exactly right, as "1 and 2 of 20" (one run: "13 of 20").

    ``runs`` are ``sweeps`` results (``res["row"]`` with ``exact_match_after`` and ``n_eval``), e.g. one per
    seed. The mean of two seeds' 5% and 10% of 20 would read "8% of 20", 1.5 questions, which no run scored."""
    if not runs:
        raise ValueError("exact_counts got no runs. Fix: pass the list of results of one configuration, one per seed.")
    ns = {res["row"]["n_eval"] for res in runs}
    if len(ns) != 1:
        raise ValueError(f"exact_counts got runs tested on different numbers of questions {sorted(ns)}, so one "
                         '"of n" cannot describe them. Fix: pass runs of one configuration (same task and data).')
    n = ns.pop()
    counts = [str(round(res["row"]["exact_match_after"] * n)) for res in runs]
    text = counts[0] if len(counts) == 1 else ", ".join(counts[:-1]) + " and " + counts[-1]
    return f"{text} of {n}"
