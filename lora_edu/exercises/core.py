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


def check_value(name: str, answer, expected, hint: str, rtol: float = 1e-6) -> Check:
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


def check_function(name: str, fn, reference, inputs: list[tuple], hint: str, atol: float = 1e-5) -> Check:
    """Call the learner's ``fn`` and ``reference`` on each input tuple and compare the results."""
    if _unanswered(fn):
        return report(name, False, "write the function first. " + hint)
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
