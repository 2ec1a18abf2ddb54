"""Self-checks of notebooks/11_why_low_rank.ipynb (subspace similarity by chance, equal budgets, amplification, and
an experiment: the amplification factor at a lower learning rate)."""

from __future__ import annotations

import torch

from .. import lowrank
from .core import Check, _unanswered, check_function, check_value, read_prediction, report

# SmolLM2-135M: hidden 576; q_proj is 576 -> 576, v_proj 576 -> 192 (per unit of rank: 1152 and 768 numbers).
EX11_I, EX11_J, EX11_K = 4, 64, 576  # exercise 11.1: phi of a random 4-dim and a random 64-dim subspace of R^576


def check_random_phi(answer) -> Check:
    """Exercise 11.1: phi(A, B, 4, 64) for random A (4 x 576) and B (64 x 576), predicted then measured."""
    return check_value("11.1 phi by chance", answer, lowrank.random_subspace_similarity(EX11_I, EX11_J, EX11_K),
                       rtol=0.05, hint="a random i-dim subspace keeps about i/k of a unit vector's squared "
                                       "length in a random j-dim one, so phi ~ max(i, j) / k = 64 / 576.")


def check_budget_rank(answer) -> Check:
    """Exercise 11.2: the rank of LoRA on W_q alone with the budget of W_q and W_v at r = 4 (SmolLM2)."""
    return check_value("11.2 rank at an equal budget", answer, round(4 * (1152 + 768) / 1152),
                       hint="W_q and W_v at r = 4 train 4 * (1152 + 768) numbers per layer; W_q alone trains "
                            "1152 per unit of rank. Divide and round to the nearest whole rank.")


def _amplification_inputs() -> list[tuple]:
    g = torch.Generator().manual_seed(11)
    cases = []
    for out_f, in_f, r in ((6, 5, 1), (8, 12, 3), (10, 7, 4)):
        delta = torch.randn(out_f, r, generator=g, dtype=torch.float64) @ torch.randn(r, in_f, generator=g,
                                                                                   dtype=torch.float64)
        cases.append((delta, torch.randn(out_f, in_f, generator=g, dtype=torch.float64), r))
    return cases


def check_amplification(fn) -> Check:
    """Exercise 11.3: ``fn(delta_w, weight, r)`` returns ||delta W||_F / ||U^T W V^T||_F (LoRA App. H.4)."""
    def as_float(*args):  # a float or a 0-d tensor is fine; None (a stub) is passed on, for its own hint
        value = fn(*args)
        return None if value is None else float(value)

    return check_function("11.3 amplification factor", fn if fn is None or fn is Ellipsis else as_float, lowrank.amplification_factor, _amplification_inputs(),
                          atol=1e-8, hint="U, S, Vh = torch.linalg.svd(delta_w); project with U[:, :r].T @ weight "
                                          "@ Vh[:r].T (r x r); divide the Frobenius norm of delta_w by its norm.")


EX11_SAME = ("task", "method", "r", "lora_alpha", "use_rslora", "steps", "batch_size", "warmup_steps", "seed",
             "n_facts", "eval_examples", "model_name", "trainable_params")


def check_amplification_lr_experiment(prediction, reference: dict, lower_lr: dict) -> Check:
    """Exercise 11.4, an experiment: the same LoRA run at a lower learning rate, and whether Table 7's
    amplification factor rises or falls. ``reference`` and ``lower_lr`` are what the notebook's cached
    ``run(...)`` returns ({"row": ..., "extract": {"updates": ...}}). Any honest pair passes; a second line
    says in how many of the extracted matrices the factor fell, and whether the prediction held."""
    name = "11.4 experiment: the amplification factor at a lower learning rate"
    if any(_unanswered(a) for a in (prediction, reference, lower_lr)):
        return report(name, False, 'replace each placeholder `...`: your prediction ("rise" or "fall"), then the '
                      "result of run(...) at the lower learning rate, then re-run.")
    pick, problems = read_prediction(prediction, ("rise", "fall"))

    def parts(res):
        try:
            return res["row"], res["extract"]["updates"]
        except (TypeError, KeyError):
            return None, None

    (row_a, up_a), (row_b, up_b) = parts(reference), parts(lower_lr)
    if row_a is None or row_b is None:
        problems.append("pass what run(...) returns for each: a dict with its row and extract")
        return report(name, False, "; ".join(problems) + ".")
    differ = [k for k in EX11_SAME if row_a.get(k) != row_b.get(k)]
    if differ:
        problems.append(f"change the learning rate only: {', '.join(differ)} differ "
                        "(call run(TASK, SETS[BEST], AMP_RANKS[0], lr=...), as table6 made the first)")
    if row_a.get("method") != "lora":
        problems.append("compare two LoRA runs (method 'lora'): full fine-tuning has no rank-r update")
    if not row_b.get("lr", 0) < row_a.get("lr", 0):
        problems.append(f"the second run needs a lower lr than the first ({row_b.get('lr')} vs {row_a.get('lr')})")
    names = [n for n in up_a if n in up_b]
    if not names:
        problems.append("the two runs share no extracted matrix to compare")
    if problems:
        return report(name, False, "; ".join(problems) + ".")
    fell = [n for n in names if up_b[n]["amplification"] < up_a[n]["amplification"]]
    outcome = "fall" if 2 * len(fell) > len(names) else "rise"
    first = names[0]
    check = report(name, True, "")
    print(f"  measured at lr {row_a['lr']:g} -> {row_b['lr']:g}: the factor fell in {len(fell)} of {len(names)} "
          f"matrices ({first}: {up_a[first]['amplification']:.2f} -> {up_b[first]['amplification']:.2f}; "
          f"||delta W||_F {up_a[first]['delta_norm']:.2f} -> {up_b[first]['delta_norm']:.2f}) ({outcome}); you "
          f"predicted {pick}: " + ("it held." if pick == outcome else "it did not. Which of the factor's two norms "
                                                                       "does a smaller step change most?"))
    return check
