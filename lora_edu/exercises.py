"""Self-checks for the exercises at the end of each notebook.

Each ``check_*`` prints a clear pass / not-yet line with a hint, and returns True or False. It never raises
on an unanswered placeholder (``...`` or ``None``), so a notebook with open exercises still runs top to
bottom. Reference solutions live apart, in ``notebooks/solutions/``; tests/test_exercises.py runs every
checker against them and against a wrong answer.
"""

from __future__ import annotations

import torch


def _unanswered(answer) -> bool:
    return answer is None or answer is Ellipsis


def report(name: str, ok: bool, hint: str) -> bool:
    """Print one line: a pass, or 'not yet' with a hint. Returns ``ok``."""
    print(f"[{name}] " + ("correct!" if ok else f"not yet. Hint: {hint}"))
    return ok


def check_value(name: str, answer, expected, hint: str, rtol: float = 1e-6) -> bool:
    """Compare a number, a tensor, or a tuple/list of them with the expected answer."""
    if _unanswered(answer):
        return report(name, False, "replace the placeholder `...` with your answer, then re-run. " + hint)
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


def check_function(name: str, fn, reference, inputs: list[tuple], hint: str, atol: float = 1e-5) -> bool:
    """Call the learner's ``fn`` and ``reference`` on each input tuple and compare the results."""
    if _unanswered(fn):
        return report(name, False, "write the function first. " + hint)
    try:
        ok = all(torch.allclose(torch.as_tensor(fn(*args)), torch.as_tensor(reference(*args)), atol=atol)
                 for args in inputs)
    except Exception as e:  # a learner's bug is a hint, not a crash
        return report(name, False, f"calling it raised {type(e).__name__}: {e}. " + hint)
    return report(name, ok, hint)


# Checkers for each notebook follow, one section per notebook, in notebook order.
