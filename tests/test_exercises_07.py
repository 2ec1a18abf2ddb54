"""Notebook 07's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import torch
from exercise_checks import solutions, standard_tests

from lora_edu import exercises
from lora_edu.memory import GB, fits_on_gpu, training_memory

SOLUTIONS = solutions("07")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_qlora_bits, "qlora_bits", (4.5, 4.126953125)),  # blocks of 64
    (exercises.check_nf4_7b_gb, "nf4_7b_gb", 7e9 * 4.5 / 8 / GB),  # without double quantization
    (exercises.check_fits_24gb, "fits_24gb", (False, True, True)),  # 13B x 2 bytes = 26 GB does not fit
    (exercises.check_merge_threshold, "merge_threshold", 0.07958029955625534),  # the value, not the midpoint
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise(capsys):
    assert not exercises.check_qlora_bits(5.0)  # a number, not the (without, with) pair
    assert not exercises.check_fits_24gb((0, 0, 1))  # ints, not bools
    assert not exercises.check_fits_24gb("no, no, yes")
    assert not exercises.check_nf4_7b_gb("3.6 GB")
    assert capsys.readouterr().out.count("Hint") == 4


def test_rounded_answers_pass_at_three_decimals_but_not_when_a_term_is_missing(capsys):
    assert exercises.check_qlora_bits((5, 4.254))  # rounded as the notebook rounds 4.127
    assert exercises.check_qlora_bits((5.0, 4.2539))
    assert not exercises.check_qlora_bits((5.0, 4.25))  # forgets the fp32 absmax per 256 blocks
    assert exercises.check_nf4_7b_gb(3.611)
    assert not exercises.check_nf4_7b_gb(3.6)  # notebook 06's table rounds to one decimal: too coarse here
    assert "too rounded" in capsys.readouterr().out


def test_the_answers_follow_from_the_library():
    from lora_edu import quant
    from lora_edu.memory import nf4_bits_per_weight

    assert SOLUTIONS["qlora_bits"] == (nf4_bits_per_weight(False, 32), nf4_bits_per_weight(True, 32))
    assert abs(SOLUTIONS["nf4_7b_gb"] - 3.611) < 1e-3
    assert fits_on_gpu(training_memory(33e9, "qlora", trainable_fraction=0.005), 24)
    # 07.4: just below the midpoint a weight of 0 re-quantizes to code 7 (0.0), just above to code 8
    t = SOLUTIONS["merge_threshold"]
    block = quant.quantize_nf4(torch.tensor([1.0, t * 0.999, t * 1.001, 0.0]), blocksize=4)
    assert quant.unpack_4bit(block.codes, 4).tolist() == [15, 7, 8, 7]


def test_the_double_quant_experiment_recomputes_the_errors_and_says_if_the_prediction_held(capsys):
    import torch

    from lora_edu import quant

    torch.manual_seed(0)
    W = torch.randn(64, 256) * 0.02
    errors = {dq: quant.quantization_error(W, quant.dequantize_nf4(quant.quantize_nf4(W, 64, double_quant=dq)))
              ["rel_frobenius"] for dq in (False, True)}
    assert exercises.check_double_quant_experiment("less", W, errors)
    assert exercises.check_double_quant_experiment("more", W, errors)  # a wrong prediction is still an experiment
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    assert not exercises.check_double_quant_experiment("less", W, {False: errors[True], True: errors[False]})
    assert not exercises.check_double_quant_experiment("less", W, {True: 0.1})
    assert not exercises.check_double_quant_experiment("maybe", W, errors)
    assert not exercises.check_double_quant_experiment("less", [[1.0]], errors)
    assert not exercises.check_double_quant_experiment(..., ..., ...)
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 5
