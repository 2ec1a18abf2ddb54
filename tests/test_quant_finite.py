"""Finite in, finite out or a clear error: every quantizer in lora_edu.quant, on extreme and random inputs.

Issue 13 found two that broke it silently: Q4_1 above 65504 (its fp16 scale and minimum overflow) and
quantize_zeropoint on [-3e38, 3e38] (max - min overflows fp32). Hypothesis draws the rest.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lora_edu import quant

FP32_MAX = torch.finfo(torch.float32).max


def roundtrips():
    """(name, weight -> reconstruction) for every quantizer; the weight's last dim is a multiple of 64."""
    return {
        "absmax": lambda w: quant.dequantize_absmax(*quant.quantize_absmax(w)),
        "absmax_per_channel": lambda w: quant.dequantize_absmax(*quant.quantize_absmax(w, per_channel=True)),
        "zeropoint": lambda w: quant.dequantize_zeropoint(*quant.quantize_zeropoint(w)),
        "zeropoint4": lambda w: quant.dequantize_zeropoint(*quant.quantize_zeropoint(w, bits=4)),
        "blockwise": lambda w: quant.dequantize_blockwise(quant.quantize_blockwise(w)),
        "int4": lambda w: quant.dequantize_blockwise(quant.quantize_int4(w)),
        "nf4": lambda w: quant.dequantize_nf4(quant.quantize_nf4(w)),
        "nf4_dq": lambda w: quant.dequantize_nf4(quant.quantize_nf4(w, double_quant=True)),
        "fp4": lambda w: quant.dequantize_4bit(quant.quantize_fp4(w)),
        "q4_1": lambda w: quant.dequantize_q4_1(quant.quantize_q4_1(w)),
    }


ROUNDTRIPS = roundtrips()


def finite_or_clear_error(name, weight):
    try:
        out = ROUNDTRIPS[name](weight)
    except ValueError as e:  # a clear error must say what to do
        assert "Fix" in str(e) or "fix" in str(e), str(e)
        return None
    assert out.shape == weight.shape
    assert torch.isfinite(out).all(), f"{name}: finite input gave {int((~torch.isfinite(out)).sum())} NaN/Inf"
    return out


@pytest.mark.parametrize("name", sorted(ROUNDTRIPS))
@pytest.mark.parametrize("low, high", [(-3e38, 3e38), (0.0, FP32_MAX), (-FP32_MAX, 0.0), (-7e4, 7e4),
                                       (1e5, 1e6), (-1e-44, 1e-44), (0.0, 0.0)])
def test_extreme_ranges_give_finite_numbers_or_a_clear_error(name, low, high):
    weight = torch.linspace(low, high, 128).reshape(2, 64)
    finite_or_clear_error(name, weight)


def test_q4_1_beyond_fp16_is_a_clear_error():
    """Q4_1 stores d and m as fp16: 7e4 used to quantize to Inf without a word."""
    with pytest.raises(ValueError, match="65504"):
        quant.quantize_q4_1(torch.full((1, 32), 7e4))
    with pytest.raises(ValueError, match="65504"):
        quant.quantize_q4_1(torch.linspace(0, 1e6, 32).reshape(1, 32))  # m = 0 fits, d = 1e6 / 15 does not
    out = quant.dequantize_q4_1(quant.quantize_q4_1(torch.linspace(-6e4, 6e4, 32).reshape(1, 32)))
    assert torch.isfinite(out).all()  # d = 8000 and m = -6e4 both fit


def test_zeropoint_near_the_fp32_limit_is_finite_and_close_or_a_clear_error():
    """[-3e38, 3e38] used to give Inf (max - min overflows fp32); up to 1e38 it now works, above it says so."""
    with pytest.raises(ValueError, match="above 1e"):
        quant.quantize_zeropoint(torch.tensor([-3e38, 0.0, 3e38]))
    weight = torch.tensor([-1e38, -5e37, 0.0, 5e37, 1e38])
    out = quant.dequantize_zeropoint(*quant.quantize_zeropoint(weight))
    assert torch.isfinite(out).all()
    step = 2e38 / 255
    assert ((out.double() - weight.double()).abs() <= step / 2 * 1.001).all()


floats32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(ROUNDTRIPS)),
       weight=arrays("float32", (2, 64), elements=floats32))
def test_property_finite_in_finite_out_or_a_clear_error(name, weight):
    finite_or_clear_error(name, torch.from_numpy(weight))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(ROUNDTRIPS)), scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]),
       seed=st.integers(0, 2 ** 16))
def test_property_error_stays_within_the_formats_step(name, scale, seed):
    """Where a format accepts the weight, the round trip is close: within the range of its block."""
    weight = torch.randn(2, 64, generator=torch.Generator().manual_seed(seed)) * scale
    out = finite_or_clear_error(name, weight)
    if out is not None:
        assert (out - weight).abs().max() <= weight.abs().max() * 1.01 + 1e-30


def test_q4_1_bytes_whose_scale_is_nan_or_inf_are_refused():
    """One step further: corrupt Q4_1 bytes (fp16 0xFFFF is NaN, 0x7C00 Inf) used to decode to NaN silently."""
    raw = quant.quantize_q4_1(torch.randn(2, 32))
    bad = raw.clone()
    bad[1, 0:2] = 255  # d of the second block: NaN
    with pytest.raises(ValueError, match="block 1"):
        quant.dequantize_q4_1(bad)
    bad = raw.clone()
    bad[0, 2:4] = torch.tensor([0x00, 0x7C], dtype=torch.uint8)  # m of the first block: +Inf
    with pytest.raises(ValueError, match="block 0"):
        quant.dequantize_q4_1(bad)
