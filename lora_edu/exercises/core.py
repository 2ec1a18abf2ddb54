"""The self-check machinery of the exercises: ``Check`` (prints pass/fail with a hint, never raises on an
unanswered ``...``), ``report``, ``check_value`` and ``check_function``."""

from __future__ import annotations

import torch


def _unanswered(answer) -> bool:
    return answer is None or answer is Ellipsis


class Check:
    """The result of a self-check: true when correct. Jupyter shows nothing more (the line is printed)."""

    def __init__(self, name: str, ok: bool):
        self.name, self.ok = name, bool(ok)

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"Check({self.name!r}, ok={self.ok})"

    def _ipython_display_(self) -> None:  # the printed line already says it; no "False" echo below it
        pass


def report(name: str, ok: bool, hint: str) -> Check:
    """Print one line: a pass, or 'not yet' with a hint. The result is true when ``ok``."""
    print(f"[{name}] " + ("correct!" if ok else f"not yet. Hint: {hint}"))
    return Check(name, ok)


_HINT_LATER = "(a hint comes with a first wrong answer)."


def check_value(name: str, answer, expected, hint: str, rtol: float = 1e-6) -> Check:
    """Compare a number, a tensor, or a tuple/list of them with the expected answer."""
    if _unanswered(answer):  # no hint before a first try: many hints are most of the answer
        return report(name, False, "replace the placeholder `...` with your answer, then re-run " + _HINT_LATER)
    try:
        if isinstance(expected, (tuple, list)):
            ok = len(answer) == len(expected) and all(
                _close(a, e, rtol) for a, e in zip(answer, expected, strict=True))
        else:
            ok = _close(answer, expected, rtol)
    except (TypeError, ValueError, RuntimeError):
        ok = False
    return report(name, ok, hint)


def _close(a, e, rtol: float) -> bool:
    if torch.is_tensor(e):
        a = torch.as_tensor(a, dtype=e.dtype)
        return a.shape == e.shape and torch.allclose(a, e, rtol=rtol, atol=rtol)
    if isinstance(e, str):
        return a == e
    return abs(float(a) - float(e)) <= rtol * max(1.0, abs(float(e)))


def check_function(name: str, fn, reference, inputs: list[tuple], hint: str, atol: float = 1e-5,
                   placeholder_hint: str | None = None) -> Check:
    """Call the learner's ``fn`` and ``reference`` on each input tuple and compare the results.

    While ``fn`` is still the placeholder, ``hint`` is held back (it would give the answer away before a first
    try); ``placeholder_hint`` (optional) says what to write instead."""
    if _unanswered(fn):
        return report(name, False, "write the function first. " + (placeholder_hint or "Then re-run " + _HINT_LATER))
    try:
        results = [fn(*args) for args in inputs]
        if any(result is None for result in results):  # a stub whose body is still `...`, or no return
            return report(name, False, "write the function first: it returned None (is its body still `...`, "
                          "or is the `return` missing?). " + hint)
        ok = all(torch.allclose(torch.as_tensor(result), torch.as_tensor(reference(*args)), atol=atol)
                 for result, args in zip(results, inputs, strict=True))
    except Exception as e:  # a learner's bug is a hint, not a crash
        return report(name, False, f"calling it raised {type(e).__name__}: {e}. " + hint)
    return report(name, ok, hint)


# Checkers for each notebook follow, one section per notebook, in notebook order.


def format_task_runs(configs, steps: int = 12, batch_size: int = 8, lr: float = 1e-3, seed: int = 0) -> list:
    """The runs of a paired experiment exercise (04.5, 09.6): for each LoraConfig, a fresh adapter on SmolLM2
    trained on the format task from the same seed and batches. Returns ``[(config, TrainResult), ...]``, what
    ``check_paired_runs`` takes. A few minutes on a laptop CPU per pair."""
    from ..data import load_task
    from ..model import inject_lora, unload
    from ..pretrained import load_model
    from ..runtime import seed_everything
    from ..training import train

    model, tokenizer = load_model(verbose=False)
    train_set = load_task("format", "train")
    runs = []
    for config in configs:
        seed_everything(seed)
        inject_lora(model, config)
        runs.append((config, train(model, tokenizer, train_set, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                   progress=False)))
        unload(model)
    return runs


def read_prediction(prediction, options: tuple) -> tuple:
    """``(pick, problems)``: the option a learner's prediction names (case and spaces ignored), or None and a
    one-item list saying what to write instead."""
    said = str(prediction).strip().lower().replace('"', "")
    pick = next((o for o in options if said == o.lower()), None)
    return pick, ([] if pick is not None else ["the prediction should be " + " or ".join(f'"{o}"' for o in options)
                                               + f", not {prediction!r}"])


def check_paired_runs(name: str, prediction, labels: dict, experiments: tuple, knob, same: tuple, knob_hint: str,
                      why: str | dict, min_steps: int = 12) -> Check:
    """An experiment exercise on a real model: two ``(LoraConfig, TrainResult)`` pairs that differ in one knob.

    ``labels`` maps the knob's two values (in the order of ``experiments``) to what a learner writes as the
    prediction; ``knob(config)`` reads the value from a config; ``same`` names the config fields that must
    agree; both runs must follow one recipe (the same lr at every step, ``min_steps`` or more). Any honest
    pair passes; a second line says which ended lower (mean loss of the last 3 steps) and whether the
    prediction held. ``why`` is said when it did not: one sentence, or a dict keyed like ``labels`` with one
    sentence for each outcome (the key of the run that ended lower), since each outcome has its own reason.
    """
    if any(_unanswered(a) for a in (prediction, *experiments)):
        return report(name, False, "replace each placeholder `...`: your prediction ("
                      + " or ".join(f'"{v}"' for v in labels.values()) + "), then (config, run) for each of the "
                      "two runs, then re-run.")
    from ..config import LoraConfig
    from ..training import TrainResult

    said = str(prediction).strip().lower().replace(" ", "").replace('"', "")
    pick = next((k for k, v in labels.items() if said in (k, v.replace(" ", "").lower())), None)
    problems = [] if pick is not None else ["the prediction should be " + " or ".join(f'"{v}"' for v in labels.values())
                                + f", not {prediction!r}"]
    if not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], LoraConfig) and isinstance(p[1], TrainResult)
               for p in experiments):
        problems.append("pass each experiment as (config, run): the LoraConfig you injected and what train returned")
        return report(name, False, "; ".join(problems) + ".")
    (config_a, run_a), (config_b, run_b) = experiments
    if (knob(config_a), knob(config_b)) != tuple(labels):
        problems.append(knob_hint)
    differ = [f for f in same if getattr(config_a, f) != getattr(config_b, f)]
    if differ:
        problems.append(f"change one knob only: {', '.join(differ)} differ between the two configs")
    lrs_a, lrs_b = [h["lr"] for h in run_a.history], [h["lr"] for h in run_b.history]
    if len(lrs_a) < min_steps or lrs_a != lrs_b:
        problems.append(f"train both with the same recipe (steps, lr, warmup), at least {min_steps} steps each")
    if problems:
        return report(name, False, "; ".join(problems) + ".")

    def final(run):  # the mean of the last 3 steps: one easy batch does not decide it
        return sum(h["loss"] for h in run.history[-3:]) / 3

    (key_a, label_a), (key_b, label_b) = labels.items()
    lower = key_a if final(run_a) < final(run_b) else key_b
    check = report(name, True, "")
    print(f"  measured after {len(lrs_a)} steps (mean loss of the last 3): {label_a} {final(run_a):.4f}, "
          f"{label_b} {final(run_b):.4f}; you predicted {labels[pick]}: "
          + ("it held." if lower == pick else f"it did not. {why[lower] if isinstance(why, dict) else why}"))
    return check
