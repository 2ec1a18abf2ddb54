"""Notebook 02's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import torch
from exercise_checks import solutions, standard_tests

from lora_edu import (
    LoraConfig,
    LoraLinear,
    exercises,
    inject_lora,
    lora_parameter_count,
    trainable_parameters,
)
from lora_edu.pretrained import tiny_llama

SOLUTIONS = solutions("02")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_lora_forward, "lora_forward",
     lambda x, W0, A, B, s: x @ W0.T + x @ A.T @ B.T),  # forgot the scaling
    (exercises.check_trainable_parameters, "trainable_parameters",
     30 * 2 * 16 * (576 + 576)),  # took v_proj to be 576 x 576 like q_proj
    (exercises.check_scaling, "scaling", (256 / 128**0.5, 256 / 128)),  # the two rules swapped
    (exercises.check_compression, "compression", 16 * (576 + 1536) / (576 * 1536)),  # upside down
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_forward_checker_reports_other_mistakes(capsys):
    assert not exercises.check_lora_forward(lambda x, W0, A, B, s: (x @ A.T @ B.T) * s)  # no frozen path
    assert not exercises.check_lora_forward(lambda x, W0, A, B, s: x @ W0.T + (x @ B @ A) * s)  # shapes
    assert "RuntimeError" in capsys.readouterr().out
    assert not exercises.check_scaling(2.0)  # one number, not the (standard, rslora) pair
    assert not exercises.check_scaling((0.25, 2.0))  # r = 64, lora_alpha = 16: the pair section 6 prints
    assert exercises.check_scaling((2, 22.63))  # rounded by hand: right
    assert not exercises.check_scaling((2, 22.7))  # off by 0.3%: not the square root


def test_forward_placeholder_hint_does_not_give_the_formula_away(capsys):
    """Before a first try the learner sees only what to write; the formula comes with a wrong answer."""
    assert not exercises.check_lora_forward(...)
    first = capsys.readouterr().out
    assert "write the function first" in first and "def lora_forward" in first and "A.T" not in first
    assert not exercises.check_lora_forward(lambda x, W0, A, B, s: x @ W0.T)  # no LoRA path
    assert "x @ A.T @ B.T" in capsys.readouterr().out


def test_compression_accepts_a_rounded_answer():
    """The exact ratio is 26.18...: the 26 a learner gets by rounding passes, 27 and 25 do not."""
    assert exercises.check_compression(26) and exercises.check_compression(26.2)
    assert not exercises.check_compression(27) and not exercises.check_compression(25)


def test_forward_reference_matches_lora_linear():
    """The checker's reference is LoraLinear's arithmetic: same A and B copied in, same output."""
    torch.manual_seed(0)
    base = torch.nn.Linear(7, 5, bias=False)
    layer = LoraLinear(base, r=3, lora_alpha=6)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(2, 4, 7)
    expected = exercises.lora_forward_reference(x, base.weight, layer.lora_A.weight, layer.lora_B.weight,
                                                layer.scaling)
    torch.testing.assert_close(layer(x), expected)


def test_trainable_count_rule_matches_inject_lora():
    """The counting rule behind 02.2 (r * (in + out) per matrix) is what inject_lora actually trains."""
    model = tiny_llama()
    inject_lora(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    expected = sum(lora_parameter_count(m.in_features, m.out_features, 2)
                   for name, m in model.named_modules() if name.endswith(("q_proj", "v_proj")))
    assert trainable_parameters(model)[0] == expected > 0
