"""lora_edu.quant (integer part, lora_edu.quant.intquant): absmax, zero-point, blockwise, int4, errors, bad input."""

import pytest
import torch

from lora_edu import quant


def _randn(*shape, seed=0, std=0.02):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * std


def test_public_names_of_the_issue():
    for name in ["nf4_code", "quantize_nf4", "dequantize_nf4", "quantize_q4_1", "dequantize_q4_1"]:
        assert callable(getattr(quant, name))
    assert set(quant.__all__) <= set(dir(quant))


@pytest.mark.parametrize("module", ["lora_edu.quant.nf4", "lora_edu.quant.q4_1", "lora_edu.quant.double_quant", "lora_edu.quant.intquant"])
def test_each_module_imports_on_its_own(module):
    # no import cycle: a fresh interpreter imports any of the modules first
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)


@pytest.mark.parametrize("per_channel", [False, True])
def test_absmax_int8_roundtrip_error_is_at_most_half_a_step(per_channel):
    w = _randn(16, 48)
    codes, scale = quant.quantize_absmax(w, per_channel=per_channel)
    assert codes.dtype == torch.int8 and codes.abs().max() == 127  # the absmax lands on +-127
    assert scale.shape == ((16, 1) if per_channel else ())
    err = (quant.dequantize_absmax(codes, scale) - w).abs()
    assert (err <= scale / 2 + 1e-9).all()
    torch.testing.assert_close(scale.squeeze(), (w.abs().amax(1) if per_channel else w.abs().max()) / 127)


def test_absmax_by_hand():
    codes, scale = quant.quantize_absmax(torch.tensor([0.5, -1.0, 0.25, 0.0]))
    assert codes.tolist() == [64, -127, 32, 0]  # round(0.5 * 127) = 64 (63.5 rounds to even)
    assert scale.item() == pytest.approx(1 / 127)


def test_an_outlier_hurts_per_tensor_more_than_per_channel_and_blocks():
    w = _randn(32, 64)
    w[3, 5] = 1.0  # one outlier, 50 standard deviations out
    per_tensor = quant.dequantize_absmax(*quant.quantize_absmax(w))
    per_channel = quant.dequantize_absmax(*quant.quantize_absmax(w, per_channel=True))
    blocks = quant.dequantize_blockwise(quant.quantize_blockwise(w, blocksize=64))
    errors = [quant.quantization_error(w, x)["rel_frobenius"] for x in (per_tensor, per_channel, blocks)]
    assert errors[0] > 5 * errors[1] and errors[1] >= errors[2]


def test_zeropoint_uses_all_codes_on_one_sided_data_and_keeps_zero_exact():
    x = _randn(1000).abs()
    x[0] = 0.0
    codes, scale, zp = quant.quantize_zeropoint(x)
    assert codes.dtype == torch.uint8 and zp.item() == 0 and codes.max() == 255
    x_hat = quant.dequantize_zeropoint(codes, scale, zp)
    assert x_hat[0] == 0 and ((x_hat - x).abs() <= scale / 2 + 1e-9).all()
    # absmax on the same data uses only the positive half: twice the step
    _, scale_absmax = quant.quantize_absmax(x)
    assert scale_absmax / scale == pytest.approx(255 / 127, rel=1e-5)


def test_zeropoint_negative_range_and_4_bits():
    x = torch.linspace(-3, 1, 101)
    codes, scale, zp = quant.quantize_zeropoint(x, bits=4)
    assert codes.max() == 15 and codes.min() == 0 and zp.item() == 11  # round(3 / (4 / 15))
    assert ((quant.dequantize_zeropoint(codes, scale, zp) - x).abs() <= scale / 2 + 1e-6).all()


@pytest.mark.parametrize("shape", [(4, 64), (3, 50), (7,), (2, 3, 40)])
@pytest.mark.parametrize("bits", [8, 4])
def test_blockwise_roundtrip_and_ragged_last_block(shape, bits):
    w = _randn(*shape, seed=1)
    q = quant.quantize_blockwise(w, blocksize=64, bits=bits)
    n_blocks = -(-w.numel() // 64)
    assert q.codes.shape == (n_blocks, 64) and q.absmax.shape == (n_blocks,)
    flat = w.reshape(-1)
    expected = torch.stack([flat[i:i + 64].abs().max() for i in range(0, flat.numel(), 64)])
    assert torch.equal(q.absmax, expected)  # the last block holds only what is left
    w_hat = quant.dequantize_blockwise(q)
    assert w_hat.shape == w.shape
    step = (q.absmax / (2 ** (bits - 1) - 1)).repeat_interleave(64)[: w.numel()].view(w.shape)
    assert ((w_hat - w).abs() <= step / 2 + 1e-9).all()


def test_int4_uses_minus7_to_7_and_is_worse_than_int8():
    w = _randn(8, 128, seed=2)
    q4 = quant.quantize_int4(w)
    assert q4.bits == 4 and q4.codes.min() >= -7 and q4.codes.max() <= 7 and q4.codes.abs().max() == 7
    e4 = quant.quantization_error(w, quant.dequantize_blockwise(q4))["rel_frobenius"]
    e8 = quant.quantization_error(w, quant.dequantize_blockwise(quant.quantize_blockwise(w)))["rel_frobenius"]
    assert e4 > 10 * e8


def test_zero_blocks_give_zero_codes_not_nan():
    w = torch.zeros(2, 64)
    w[1, 0] = 1.0
    q = quant.quantize_blockwise(w, blocksize=64)
    assert q.codes[0].eq(0).all() and torch.equal(quant.dequantize_blockwise(q), w)
    assert quant.quantize_absmax(torch.zeros(3))[0].eq(0).all()


def test_quantization_error_values():
    w = torch.tensor([1.0, -2.0, 2.0])
    e = quant.quantization_error(w, torch.tensor([1.0, -1.0, 2.0]))
    assert e == pytest.approx({"mean_abs": 1 / 3, "max_abs": 1.0, "rel_frobenius": 1 / 3})


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, exc, match", [
    (torch.tensor([1.0, float("nan")]), ValueError, "NaN"),
    (torch.tensor([1.0, float("inf")]), ValueError, "Inf"),
    (torch.zeros(0), ValueError, "empty"),
    (torch.arange(4), TypeError, "float32"),
    (torch.zeros(4, dtype=torch.float64), TypeError, "float32"),
    ([1.0, 2.0], TypeError, "torch.Tensor"),
])
@pytest.mark.parametrize("fn", [quant.quantize_absmax, quant.quantize_zeropoint, quant.quantize_blockwise,
                                quant.quantize_int4])
def test_bad_weights(fn, bad, exc, match):
    with pytest.raises(exc, match=match):
        fn(bad)


@pytest.mark.parametrize("blocksize, exc", [(0, ValueError), (-64, ValueError), (64.0, TypeError),
                                            (True, TypeError)])
def test_bad_blocksize(blocksize, exc):
    with pytest.raises(exc, match="blocksize"):
        quant.quantize_blockwise(torch.ones(64), blocksize=blocksize)


@pytest.mark.parametrize("bits", [1, 9, 4.0])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        quant.quantize_absmax(torch.ones(4), bits=bits)


def test_per_channel_needs_a_matrix():
    with pytest.raises(ValueError, match="2-D"):
        quant.quantize_absmax(torch.ones(4), per_channel=True)


def test_dequantize_wrong_codes_dtype_or_constants_shape():
    w = _randn(2, 64)
    codes, scale = quant.quantize_absmax(w)
    with pytest.raises(TypeError, match="int8"):
        quant.dequantize_absmax(codes.float(), scale)
    codes, scale, zp = quant.quantize_zeropoint(w)
    with pytest.raises(TypeError, match="uint8"):
        quant.dequantize_zeropoint(codes.to(torch.int32), scale, zp)
    q = quant.quantize_blockwise(w, blocksize=32)
    q.absmax = q.absmax[:-1]
    with pytest.raises(ValueError, match="absmax must have shape"):
        quant.dequantize_blockwise(q)
    q = quant.quantize_blockwise(w, blocksize=32)
    q.codes = q.codes.to(torch.uint8)
    with pytest.raises(ValueError, match="int8"):
        quant.dequantize_blockwise(q)


def test_quantization_error_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        quant.quantization_error(torch.ones(4), torch.ones(5))
