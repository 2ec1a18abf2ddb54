"""Notebook 06's self-checks accept the reference answers, reject wrong ones, and never raise on `...`."""

import torch
from exercise_checks import solutions, standard_tests

from lora_edu import exercises

SOLUTIONS = solutions("06")

# (checker, name of the reference answer in the solutions file, a plausible wrong answer)
CASES = [
    (exercises.check_absmax_codes, "absmax_codes", (50, -128, 2, 90)),  # scale from 128, not 127
    (exercises.check_fake_quant_int8, "fake_quant_int8", lambda x: torch.round(x * 127) / 127),  # no scale
    (exercises.check_nf4_index, "nf4_index", 10),  # the lower neighbour
    (exercises.check_bits_per_parameter, "bits_per_parameter", (4.5, 4.126953125)),  # blocks of 64
    (exercises.check_packed_byte, "packed_byte", 12 * 16 + 3),  # llama.cpp's nibble order
    (exercises.check_q8_0_bits, "q8_0_bits", 8.0),  # forgot the scale
]

test_reference_answers_pass, test_wrong_answers_fail_with_a_hint, test_placeholders_do_not_raise = standard_tests(
    CASES, SOLUTIONS)


def test_malformed_answers_do_not_raise(capsys):
    assert not exercises.check_absmax_codes((50, -127, 2))  # one code short
    assert not exercises.check_bits_per_parameter(4.25)  # a number, not the (without, with) pair
    assert not exercises.check_nf4_index("eleven")
    assert not exercises.check_fake_quant_int8(lambda x: x / 0 + "a")  # a learner's bug is reported
    assert "TypeError" in capsys.readouterr().out


def test_the_answers_follow_from_the_library():
    from lora_edu import quant

    assert quant.nf4_code()[SOLUTIONS["nf4_index"]] == quant.nf4_code()[11]
    assert abs(quant.nf4_code()[11] - 0.3) < abs(quant.nf4_code()[10] - 0.3)
    assert SOLUTIONS["packed_byte"] == 0x3C


def test_q8_0_block_is_the_one_gguf_reads():
    import gguf

    weights, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0]
    assert exercises.EX06_Q8_0 == (weights, nbytes) and SOLUTIONS["q8_0_bits"] == 8.5


def test_the_fake_quant_placeholder_hint_does_not_give_the_answer(capsys):
    assert not exercises.check_fake_quant_int8(...)
    out = capsys.readouterr().out
    assert "plain torch" in out and "torch.round" not in out


def test_bits_per_parameter_accepts_three_decimals_but_not_a_forgotten_nested_absmax():
    assert exercises.check_bits_per_parameter((4.25, 4.063))  # rounded as the notebook rounds 4.127
    assert not exercises.check_bits_per_parameter((4.25, 4.0625))  # 4 + 8/128: the fp32 absmax per 256 forgotten


def test_the_blocksize_experiment_recomputes_the_errors_and_says_if_the_prediction_held(capsys):
    from lora_edu import quant

    torch.manual_seed(0)
    W = torch.randn(64, 256) * 0.02
    errors = {b: quant.quantization_error(W, quant.dequantize_nf4(quant.quantize_nf4(W, b)))["rel_frobenius"]
              for b in exercises.EX06_BLOCKS}
    assert exercises.check_blocksize_experiment("more", W, errors)
    assert exercises.check_blocksize_experiment("less", W, errors)  # a wrong prediction is still an experiment
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "it held." in out and "it did not." in out
    assert not exercises.check_blocksize_experiment("more", W, {**errors, 16: errors[16] * 1.1})  # not measured
    assert not exercises.check_blocksize_experiment("more", W, {256: 0.1, 64: 0.1})
    assert not exercises.check_blocksize_experiment("maybe", W, errors)
    assert not exercises.check_blocksize_experiment("more", "W", errors)
    assert not exercises.check_blocksize_experiment(..., ..., ...)
    assert not exercises.check_blocksize_experiment(..., W, ...)  # the notebook's cell: the weight is given
    out = capsys.readouterr().out
    assert "correct!" not in out and out.count("Hint") == 6
    assert "3 placeholders" in out and "2 placeholders" in out
    assert "the weight you quantize" not in out.splitlines()[-1]  # only what is still `...` is named
