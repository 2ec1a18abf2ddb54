"""lora_edu.merging: the spacing of float formats and what a merge into bf16 rounds away."""

import pytest
import torch

from lora_edu import LoraLinear
from lora_edu.merging import merge_rounding, spacing


def test_spacing_matches_the_next_representable_number():
    w = torch.tensor([0.5, 0.75, 1.0, -3.0, 1e-3])
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        stored = w.to(dtype)
        gap = torch.nextafter(stored.float(), torch.tensor(float("inf"))) if dtype == torch.float32 else None
        expected = (gap - stored.float()) if gap is not None else None
        got = spacing(stored, dtype)
        if expected is not None:
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        # adding the spacing gives the next number of the dtype; adding 0.4 of it changes nothing
        assert ((stored.float() + got).to(dtype) != stored).all()
        assert ((stored.float() + 0.4 * got).to(dtype) == stored).all()
    assert spacing(torch.tensor(0.5), torch.bfloat16) == 2.0**-8


def test_spacing_of_zero_is_finite_and_positive():
    gap = spacing(torch.zeros(3), torch.bfloat16)
    assert torch.isfinite(gap).all() and (gap > 0).all()


def test_spacing_rejects_an_integer_dtype():
    with pytest.raises(TypeError, match="floating-point"):
        spacing(torch.ones(2), torch.int8)


def test_merge_rounding_counts_vanished_entries_exactly():
    weight = torch.tensor([[0.5, 0.5], [0.75, 0.5]])
    delta = torch.tensor([[1e-3, 3e-3], [-1e-3, 0.0]])  # 1e-3 is below half a bf16 gap in [0.5, 1) (0.00195)
    out = merge_rounding(weight, delta, torch.bfloat16)
    assert out["n"] == 3  # the zero entry of delta is not an update entry
    assert out["vanished"] == pytest.approx(2 / 3)  # of the three nonzero entries, the two +-1e-3 vanish
    effective = torch.tensor([[0.0, 2.0**-8], [0.0, 0.0]])
    assert out["relative_error"] == pytest.approx(float(torch.linalg.norm(effective - delta) /
                                                        torch.linalg.norm(delta)), rel=1e-6)
    assert out["median_relative_size"] == pytest.approx(2e-3)
    assert out["half_spacing"] == 2.0**-8


def test_just_below_a_power_of_two_the_gaps_halve():
    """0.5 - 1e-3 does not vanish: below 0.5 bf16 numbers are 2^-9 apart, so it rounds to 0.5 - 2^-9."""
    out = merge_rounding(torch.tensor([0.5]), torch.tensor([-1e-3]), torch.bfloat16)
    assert out["vanished"] == 0
    assert float(torch.tensor(0.5 - 1e-3).to(torch.bfloat16)) == 0.5 - 2.0**-9


def test_merge_rounding_in_fp32_keeps_the_update():
    g = torch.Generator().manual_seed(0)
    weight, delta = torch.randn(32, 16, generator=g), 1e-3 * torch.randn(32, 16, generator=g)
    fp32, bf16 = merge_rounding(weight, delta, torch.float32), merge_rounding(weight, delta, torch.bfloat16)
    assert fp32["vanished"] == 0 and fp32["relative_error"] < 1e-3
    assert bf16["vanished"] > 0.1 and bf16["relative_error"] > 0.1


def test_merge_rounding_matches_lora_linear_merge_in_bf16():
    """The 'effective' update is what LoraLinear.merge really writes into a bf16 weight."""
    torch.manual_seed(0)
    layer = LoraLinear(torch.nn.Linear(16, 8).to(torch.bfloat16), r=2, lora_alpha=2, init_lora_weights=False)
    with torch.no_grad():
        layer.lora_B.weight.mul_(0.01)
    w0, delta = layer.weight.detach().float().clone(), layer.get_delta_weight()
    layer.merge()
    effective = layer.weight.float() - w0
    out = merge_rounding(w0, delta, torch.bfloat16)
    assert out["vanished"] == pytest.approx(float((effective[delta != 0] == 0).float().mean()))


@pytest.mark.parametrize("weight, delta, dtype, error, match", [
    (torch.ones(2, 3), torch.ones(3, 2), torch.bfloat16, ValueError, "shape"),
    (torch.ones(2, 2), torch.zeros(2, 2), torch.bfloat16, ValueError, "all zero"),
    (torch.ones(2, 2), torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), torch.bfloat16, ValueError, "NaN"),
    (torch.ones(2, 2), torch.ones(2, 2), torch.int32, TypeError, "floating-point"),
])
def test_merge_rounding_rejects_bad_input(weight, delta, dtype, error, match):
    with pytest.raises(error, match=match):
        merge_rounding(weight, delta, dtype)
