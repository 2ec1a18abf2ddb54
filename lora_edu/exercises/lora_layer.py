"""Self-checks of notebooks/02_lora_layer.ipynb and 03_lora_toy_task.ipynb (the LoRA forward pass, counts,
scaling, the toy task's floor and alpha equivalence)."""

from __future__ import annotations

import torch

from .core import Check, _unanswered, check_function, check_value, report

# --- notebook 02 ---
# Checkers for notebooks/02_lora_layer.ipynb. SmolLM2-135M: hidden size 576, MLP 1536, 30 decoder layers;
# q_proj is 576 -> 576 and v_proj 576 -> 192 (grouped-query attention: 3 key/value heads of 64).

def lora_forward_reference(x, W0, A, B, scaling):
    """h = x W0^T + scaling * (x A^T) B^T, with A (r, in) and B (out, r) as PEFT stores them."""
    return x @ W0.T + (x @ A.T @ B.T) * scaling  # (..., in) -> (..., r) -> (..., out)


def _lora_forward_inputs() -> list[tuple]:
    """Fixed-seed (x, W0, A, B, scaling) cases: odd shapes, a 3-d batch, and scalings other than 1."""
    g = torch.Generator().manual_seed(2)
    cases = []
    shapes = [((4, 6), 5, 2, 2.0), ((2, 3, 7), 4, 3, 0.5), ((1, 9), 9, 1, 16.0)]  # (x, out, r, scaling)
    for x_shape, out_features, r, scaling in shapes:
        in_features = x_shape[-1]
        cases.append((torch.randn(*x_shape, generator=g), torch.randn(out_features, in_features, generator=g),
                      torch.randn(r, in_features, generator=g), torch.randn(out_features, r, generator=g),
                      scaling))
    return cases


def check_lora_forward(fn) -> Check:
    """Exercise 02.1: ``fn(x, W0, A, B, scaling)`` computes a LoRA layer's output (no bias, no dropout)."""
    return check_function("02.1 LoRA forward", fn, lora_forward_reference, _lora_forward_inputs(),
                          hint="The frozen path x @ W0.T plus the LoRA path x @ A.T @ B.T times scaling; "
                               "A is (r, in) and B is (out, r), so both need a transpose.", atol=1e-4,
                          placeholder_hint="Replace `...` with `def lora_forward(x, W0, A, B, scaling):` and a "
                                           "body that returns the layer's output (section 2 has the formula).")


def check_trainable_parameters(answer) -> Check:
    """Exercise 02.2: trainable numbers of r=16 on q_proj and v_proj in all 30 SmolLM2-135M layers."""
    r, layers = 16, 30
    expected = layers * r * ((576 + 576) + (576 + 192))  # q_proj (576 -> 576), v_proj (576 -> 192)
    return check_value("02.2 trainable parameters", answer, expected,
                       hint="Each adapted matrix trains r * (in + out); v_proj is 576 -> 192, "
                            "not 576 -> 576; add q_proj and v_proj, then multiply by the 30 layers.")


def _check_scalings(name: str, answer, r: int, lora_alpha: float) -> Check:
    """(standard, rsLoRA) scaling: (lora_alpha / r, lora_alpha / sqrt(r)); exercises 02.3 and 03.2. rtol 1e-3:
    a square root rounded to two decimals by hand (22.63 for 22.627) is right, a swapped or wrong rule is not."""
    return check_value(name, answer, (lora_alpha / r, lora_alpha / r**0.5), rtol=1e-3,
                       hint="standard: lora_alpha / r; rsLoRA: lora_alpha / sqrt(r). "
                            "Answer a tuple (standard, rslora); rounding to two decimals is fine.")


def check_scaling(answer) -> Check:
    """Exercise 02.3: (standard, rsLoRA) scaling for r = 128 and lora_alpha = 256 (section 6's table prints
    r = 1 ... 64 at lora_alpha = 16 only, so the answer is not on screen)."""
    return _check_scalings("02.3 scaling", answer, r=128, lora_alpha=256)


def check_compression(answer) -> Check:
    """Exercise 02.4: how many times fewer numbers r=16 trains than full fine-tuning of gate_proj. The exact
    answer has decimals, so an answer within 1% passes (a learner who rounds to a whole number is right)."""
    in_features, out_features, r = 576, 1536, 16
    expected = in_features * out_features / (r * (in_features + out_features))
    return check_value("02.4 compression ratio", answer, expected, rtol=1e-2,
                       hint="Full fine-tuning trains in * out numbers; LoRA trains r * (in + out); "
                            "divide the first by the second (an answer within 1% counts, so rounding is fine).")


# --- notebook 03 ---
# Checkers for notebooks/03_lora_toy_task.ipynb. Each problem's data is stated in the notebook and here.

EX03_SINGULAR_VALUES = (5.0, 3.0, 2.0, 0.5)  # exercise 03.1: not the notebook's (4, 3, 2, 1), so its floors differ


def check_toy_loss_floor(answer) -> Check:
    """Exercise 03.1: the lowest expected loss of LoRA with r = 2 when delta_W* has EX03_SINGULAR_VALUES."""
    expected = sum(s**2 for s in EX03_SINGULAR_VALUES[2:])
    return check_value("03.1 loss floor", answer, expected, rtol=1e-4,
                       hint="the expected loss is the squared distance ||delta_W* - delta_W||_F^2; the best "
                            "rank-2 update keeps the 2 largest singular values; add the squares of the rest.")


def check_toy_scaling(answer) -> Check:
    """Exercise 03.2: (standard, rsLoRA) scaling for r = 16 and lora_alpha = 32."""
    return _check_scalings("03.2 scaling", answer, r=16, lora_alpha=32)


def check_toy_lora_parameters(answer) -> Check:
    """Exercise 03.3: trainable numbers of LoRA with r = 8 on the toy's 64 -> 64 layer."""
    return check_value("03.3 trainable parameters", answer, 8 * (64 + 64),
                       hint="A is (r, in) and B is (out, r); W0 is frozen and does not count.")


EX03_ALPHA_FACTOR = 9  # exercise 03.4: lora_alpha is multiplied by this (the notebook's section 7 shows 4)


def check_alpha_equivalence(answer) -> Check:
    """Exercise 03.4: lora_alpha is multiplied by EX03_ALPHA_FACTOR. By what (lr factor, A-init factor) does a
    run with the old alpha have to be changed to follow exactly the same loss curve under Adam?"""
    root = EX03_ALPHA_FACTOR**0.5
    return check_value("03.4 alpha as a learning rate", answer, (root, root),
                       hint="write B A * c*s as (sqrt(c) B)(sqrt(c) A) * s; Adam moves every entry by about "
                            "lr whatever the gradient's size, so each factor's steps must grow by sqrt(c).")


EX03_WIDE_START = sum((4 * 0.93**i) ** 2 for i in range(64))  # exercise 03.5: the wide task's loss at B = 0
EX03_EXPERIMENT = dict(r=32, lora_alpha=8, lr=3e-3, step=100)  # exercise 03.5: a rank section 8 did not run


def check_rank_rule_experiment(prediction, run_standard, run_rslora) -> Check:
    """Exercise 03.5, an experiment: r = 32 on section 8's wide task under alpha / r and under rsLoRA, both with
    lora_alpha = 8 and lr = 3e-3; the loss after 100 steps decides. Any honest pair of runs in that setting
    passes; the line after it says whether the prediction held."""
    r, alpha, lr, step = (EX03_EXPERIMENT[k] for k in ("r", "lora_alpha", "lr", "step"))
    name = f"03.5 experiment: alpha / r against rsLoRA at r = {r}"
    answers = (prediction, run_standard, run_rslora)
    if any(_unanswered(a) for a in answers):
        return report(name, False, "replace each placeholder `...`: your prediction (\"rslora\" or \"alpha/r\"), "
                      "then the two runs of toy.train_lora_on_toy, then re-run.")
    from ..toy import ToyRun

    pick = str(prediction).strip().lower().replace(" ", "")
    problems = []
    if pick not in ("rslora", "alpha/r"):
        problems.append(f"the prediction should be \"rslora\" or \"alpha/r\", not {prediction!r}")
    if not (isinstance(run_standard, ToyRun) and isinstance(run_rslora, ToyRun)):
        problems.append("pass the two ToyRun objects that toy.train_lora_on_toy returns")
    else:
        if (run_standard.r, run_rslora.r) != (r, r):
            problems.append(f"both runs should have r = {r} (got {run_standard.r} and {run_rslora.r})")
        if run_standard.use_rslora or not run_rslora.use_rslora:
            problems.append("the first run uses alpha / r (use_rslora=False), the second use_rslora=True")
        if (run_standard.lora_alpha, run_standard.lr) != (run_rslora.lora_alpha, run_rslora.lr):
            problems.append("change one knob only: the same lora_alpha and lr in both runs")
        elif run_standard.lora_alpha != alpha or abs(run_standard.lr - lr) > 1e-9:
            problems.append(f"use the setting asked: lora_alpha={alpha:g}, lr={lr:g}")
        if min(len(run_standard.losses), len(run_rslora.losses)) < step:
            problems.append(f"train each run for at least {step} steps (steps={step})")
        starts = (float(run_standard.expected_losses[0]), float(run_rslora.expected_losses[0]))
        if any(abs(start - EX03_WIDE_START) > 1e-3 * EX03_WIDE_START for start in starts):
            problems.append("train on section 8's wide_task (task=wide_task): its loss starts at "
                            f"{EX03_WIDE_START:.1f}")
    if problems:
        return report(name, False, "; ".join(problems) + ".")
    loss_standard, loss_rslora = (float(run.expected_losses[step]) for run in (run_standard, run_rslora))
    lower = "rslora" if loss_rslora < loss_standard else "alpha/r"
    check = report(name, True, "")
    print(f"  measured after {step} steps: alpha / r {loss_standard:.3g}, rsLoRA {loss_rslora:.3g}; you predicted "
          f"{pick}: " + ("it held." if lower == pick else "it did not. Section 8 says why; say it in your own words."))
    return check
