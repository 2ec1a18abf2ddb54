"""NF4 / FP4 / double quantization (lora_edu.quant.nf4, lora_edu.quant.double_quant) against bitsandbytes on the CPU."""

import copy
import dataclasses
import warnings

import pytest
import torch

from lora_edu import quant
from lora_edu.pretrained import gguf_path
from lora_edu.quant import double_quant

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bnbF = pytest.importorskip("bitsandbytes.functional")

# The 16 values as papers.md section 2 lists them (from bitsandbytes' get_4bit_type("nf4")).
PAPERS_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
              -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
              0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
              0.7229568362236023, 1.0]


def _randn(*shape, seed=0, std=0.02, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * std).to(dtype)


def _ours(w, quant_type, blocksize=64, double_quant=False):
    fn = quant.quantize_nf4 if quant_type == "nf4" else quant.quantize_fp4
    return fn(w, blocksize=blocksize, double_quant=double_quant)


def _bnb(w, quant_type, blocksize=64, double_quant=False):
    packed, state = bnbF.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type,
                                       compress_statistics=double_quant)
    return packed, state, bnbF.dequantize_4bit(packed, state)


def _assert_same_weights(q, ours, theirs):
    """Our dequantized weight equals bitsandbytes' bit for bit, with one exception measured on an Intel Xeon with
    AVX512-FP16 (bitsandbytes 0.50.2, torch 2.11): there its CPU kernel rounds an fp16 result that lies exactly
    halfway between two fp16 values away from zero (each of the 21 we printed there, 4 of these tests), not to the
    even one. Ours rounds the fp32 product once, half to even (IEEE, as torch's ``.to(torch.float16)``), so any
    difference must be such a tie, with ours on the even side."""
    ours, theirs = ours.reshape(-1), theirs.reshape(-1)  # bnb returns (1, n) for some 1-D shapes
    differ = ours != theirs
    if differ.any():
        exact = quant.dequantize_4bit(dataclasses.replace(q, dtype=torch.float32)).reshape(-1)[differ]
        _assert_fp16_ties(exact, ours[differ], theirs[differ])


def _assert_fp16_ties(exact, ours, theirs):
    """Each fp32 value of ``exact`` is exactly halfway between ``ours`` and ``theirs`` (fp16), ours its round to even."""
    assert ours.dtype == theirs.dtype == torch.float16, f"{ours.dtype}: only fp16 ties may differ"
    assert torch.equal(exact.double(), (ours.double() + theirs.double()) / 2), "a difference that is not a tie"
    assert torch.equal(ours, exact.to(torch.float16))


def test_the_fp16_tie_rule_accepts_ties_only():
    exact = torch.tensor([-0.0329132080078125, 0.02619171142578125])  # both halfway between two fp16 values
    ours = exact.to(torch.float16)  # -0.03289794921875 and 0.02618408203125: the even neighbours
    other = torch.tensor([-0.032928466796875, 0.0261993408203125], dtype=torch.float16)  # away from zero
    _assert_fp16_ties(exact, ours, other)  # what that CPU's bitsandbytes returned
    with pytest.raises(AssertionError, match="not a tie"):
        _assert_fp16_ties(exact + 1e-6, ours, other)
    with pytest.raises(AssertionError):
        _assert_fp16_ties(exact, other, ours)  # the odd neighbour is not ours to give
    with pytest.raises(AssertionError, match="only fp16"):
        _assert_fp16_ties(exact, ours.float(), other.float())


@pytest.fixture(scope="module")
def real_weights():
    """Two real SmolLM2 weights (v_proj, down_proj of layer 0), decoded from the GGUF file the series loads."""
    gguf = pytest.importorskip("gguf")
    path = gguf_path()
    if path is None:
        pytest.skip("the SmolLM2 GGUF package is not installed")
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    return [quant.dequantize_q4_1(tensors[name].data) for name in ("blk.0.attn_v.weight", "blk.0.ffn_down.weight")]


# --- the code tables -------------------------------------------------------------------------------------

def test_nf4_code_equals_bitsandbytes_and_papers_md():
    code = quant.nf4_code()
    assert code.dtype == torch.float32 and code.shape == (16,)
    assert torch.equal(code, bnbF.get_4bit_type("nf4", device="cpu"))
    assert torch.equal(code, torch.tensor(PAPERS_NF4, dtype=torch.float32))
    assert code[7] == 0 and code[0] == -1 and code[-1] == 1 and (code.diff() > 0).all()


def test_nf4_construction_reproduces_the_table_bit_for_bit():
    assert torch.equal(quant.nf4_code_from_quantiles(), quant.nf4_code())
    assert not torch.equal(quant.nf4_code_from_quantiles(0.99), quant.nf4_code())  # the offset matters


def test_eq4_as_printed_starts_at_minus_infinity():
    q = quant.nf4_eq4_values()
    assert q.shape == (16,) and q[0] == float("-inf")
    assert torch.isfinite(q[1:]).all() and (q[1:].diff() > 0).all()
    # lopsided: 8 values below zero (one of them -inf), q_8 = 0, 7 above; the finite ones mirror each other
    assert (q < 0).sum() == 8 and q[8] == 0 and (q > 0).sum() == 7
    torch.testing.assert_close(q[1:8], -q[9:].flip(0))


def test_fp4_code_equals_bitsandbytes_and_differs_from_textbook_e2m1_only_in_the_subnormal():
    code = quant.fp4_code()
    assert torch.equal(code, bnbF.get_4bit_type("fp4", device="cpu"))
    ours = code[:8].sort().values  # magnitudes, scaled to max 1
    textbook = quant.e2m1_values() / 6
    assert ours[1] == pytest.approx(1 / 192) and textbook[1] == pytest.approx(1 / 12)
    torch.testing.assert_close(ours[2:], textbook[2:])
    assert ours[0] == textbook[0] == 0


def test_fp4_exponent_fields_fall_as_they_rise_so_no_bias_maps_them():
    # fp4_code's docstring: fields 01, 10, 11 (codes 2, 4, 6) give 8, 4, 2; the mantissa bit (codes 3, 5, 7)
    # multiplies by 1.5. bitsandbytes' create_fp8_map("bias 2") does not rebuild the table: its subnormal is 1/48.
    code = quant.fp4_code() * 12
    assert code[[2, 4, 6]].tolist() == [8, 4, 2] and code[[3, 5, 7]].tolist() == [12, 6, 3]
    rebuilt = bnbF.create_fp8_map(signed=True, exponent_bits=2, precision_bits=1, total_bits=4)
    assert rebuilt[rebuilt > 0].min() == pytest.approx(1 / 48)
    assert quant.fp4_code()[1] == pytest.approx(1 / 192)


def test_dynamic_map_equals_bitsandbytes():
    dm = quant.dynamic_map()
    assert torch.equal(dm, bnbF.create_dynamic_map())
    assert dm.shape == (256,) and (dm.diff() > 0).all() and dm[-1] == 1 and (dm == 0).sum() == 1


# --- packing -----------------------------------------------------------------------------------------------

def test_pack_first_code_in_the_high_nibble():
    packed = quant.pack_4bit(torch.tensor([1, 2, 15, 0], dtype=torch.uint8))
    assert packed.tolist() == [0x12, 0xF0]
    assert quant.unpack_4bit(packed, 4).tolist() == [1, 2, 15, 0]
    assert quant.unpack_4bit(packed, 3).tolist() == [1, 2, 15]


@pytest.mark.parametrize("n", [2, 7, 64])
def test_byte_table_decodes_two_codes_per_lookup(n):
    from lora_edu.quant.nf4 import byte_table

    code = quant.nf4_code()
    codes = torch.randint(0, 16, (n,), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)
    packed = quant.pack_4bit(codes if n % 2 == 0 else torch.cat([codes, codes[:1]]))
    assert torch.equal(byte_table(code)[packed.long()].reshape(-1)[:n], code[codes.long()])


def test_nf4_by_hand():
    # one block: absmax 2; 2 -> code 15 (1.0), -2 -> 0 (-1.0), 0 -> 7 (0.0), 0.16 -> 0.08 -> code 8
    q = quant.quantize_nf4(torch.tensor([2.0, -2.0, 0.0, 0.16]), blocksize=64)
    assert q.codes.tolist() == [0xF0, 0x78] and q.absmax.tolist() == [2.0]


# --- oracle: bitsandbytes quantize_4bit / dequantize_4bit on the CPU ----------------------------------

SHAPES = [(64, 64), (3, 50), (7,), (5, 33), (130,), (300, 257), (2, 3, 40)]


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_matches_bitsandbytes_bit_for_bit(quant_type, shape, dtype):
    w = _randn(*shape, seed=sum(shape), dtype=dtype)
    packed, state, deq = _bnb(w, quant_type)
    q = _ours(w, quant_type)
    assert torch.equal(q.codes, packed.reshape(-1))
    assert torch.equal(q.absmax, state.absmax)
    ours = quant.dequantize_4bit(q)
    assert ours.shape == w.shape and ours.dtype == dtype == deq.dtype
    _assert_same_weights(q, ours, deq)


@pytest.mark.parametrize("blocksize", [32, 128, 256, 4096])
def test_matches_bitsandbytes_at_other_block_sizes(blocksize):
    w = _randn(40, 130, seed=blocksize)
    packed, state, deq = _bnb(w, "nf4", blocksize)
    q = quant.quantize_nf4(w, blocksize=blocksize)
    assert torch.equal(q.codes, packed.reshape(-1)) and torch.equal(q.absmax, state.absmax)
    assert torch.equal(quant.dequantize_nf4(q), deq)


def test_matches_bitsandbytes_with_zero_blocks_and_a_zero_tail():
    w = torch.zeros(3, 50)
    w[0, :10] = _randn(10)  # block 0 nonzero, block 1 zeros, the short block 2 (22 values) zeros
    for quant_type in ["nf4", "fp4"]:
        packed, state, deq = _bnb(w, quant_type)
        q = _ours(w, quant_type)
        assert torch.equal(q.codes, packed.reshape(-1)) and torch.equal(q.absmax, state.absmax)
        assert torch.equal(quant.dequantize_4bit(q), deq)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_matches_bitsandbytes_on_real_weights(real_weights, quant_type):
    for w in real_weights:
        packed, state, deq = _bnb(w, quant_type)
        q = _ours(w, quant_type)
        assert torch.equal(q.codes, packed.reshape(-1)) and torch.equal(q.absmax, state.absmax)
        assert torch.equal(quant.dequantize_4bit(q), deq)


# --- double quantization -----------------------------------------------------------------------------------

def _check_double_quant_against_bnb(w, blocksize=64):
    """Every part bit for bit: 4-bit codes, offset, nested absmax, nested codes, dequantized weights."""
    packed, state, _ = _bnb(w, "nf4", blocksize, double_quant=True)
    q = quant.quantize_nf4(w, blocksize=blocksize, double_quant=True)
    assert q.absmax is None and q.double_quant
    assert torch.equal(q.codes, packed.reshape(-1))  # the 4-bit codes do not depend on double quantization
    assert torch.equal(q.nested.offset, state.offset)
    assert torch.equal(q.nested.absmax, state.state2.absmax)
    assert torch.equal(q.nested.codes, state.absmax)
    # bnb's CPU dequantize_4bit (0.50.2, its AVX-512 path) takes a wrong block constant when a row's length
    # is not a multiple of the blocksize (e.g. (64, 64) at 128): dequantize the flat (1, n) view instead
    flat = copy.copy(state)
    flat.shape = torch.Size([w.numel()])
    deq = bnbF.dequantize_4bit(packed, flat)
    _assert_same_weights(q, quant.dequantize_nf4(q), deq)
    return q


DQ_SHAPES = [(64, 64), (5, 33), (300, 257), (576, 576), (3, 64 * 256 + 7)]


@pytest.mark.parametrize("blocksize", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", DQ_SHAPES)
def test_double_quant_matches_bitsandbytes(shape, dtype, blocksize):
    for seed in range(3):
        _check_double_quant_against_bnb(_randn(*shape, seed=seed + shape[0], dtype=dtype), blocksize)


@pytest.mark.parametrize("blocksize", [64, 128])
def test_double_quant_matches_bitsandbytes_on_real_weights(real_weights, blocksize):
    for w in real_weights:
        _check_double_quant_against_bnb(w, blocksize)


def test_bnb_cpu_search_equals_bitsandbytes_on_hard_values():
    # one block of 256 whose absmax is 1, so bitsandbytes quantizes x itself: values right at the midpoints
    # between map values (where a half grid step decides), and tiny values near 0 (denser than the grid)
    dm = quant.dynamic_map()
    mid = (dm[:-1] + dm[1:]) / 2
    x = torch.cat([mid, torch.nextafter(mid, torch.tensor(2.0)), torch.nextafter(mid, torch.tensor(-2.0)),
                   mid + 1e-5, mid - 1e-5, _randn(1000, std=1e-5, seed=7), dm])
    x = torch.nn.functional.pad(x, (0, -x.numel() % 255)).view(-1, 255).clamp(-1, 1)
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1).reshape(-1)  # the 1.0 sets each block's absmax
    codes, state = bnbF.quantize_blockwise(x, code=bnbF.create_dynamic_map(), blocksize=256)
    assert (state.absmax == 1).all()
    ours = double_quant.bnb_cpu_search(dm, x)
    assert torch.equal(ours, codes)
    nearest = double_quant.nearest_index(x, dm)
    assert (ours != nearest).sum() > 100  # ... and it is not the nearest value on many of these
    assert ((x - dm[nearest.long()]).abs() <= (x - dm[ours.long()]).abs()).all()


def test_bnb_cpu_search_cannot_reach_some_tiny_codes():
    dm = quant.dynamic_map()
    reached = double_quant.bnb_cpu_search(dm, torch.linspace(-1, 1, 1_000_001)).unique()
    missing = sorted(set(range(256)) - set(reached.tolist()))
    # the 7 map values closer to 0 than half a grid step (|v| <= 7.75e-6), 0 itself included
    assert missing == list(range(124, 131)) and dm[127] == 0 and (dm[missing].abs() < 1e-5).all()
    zero = double_quant.bnb_cpu_search(dm, torch.zeros(1))
    assert zero.item() == 131 and dm[131] == pytest.approx(2.125e-5)  # 0.0 is stored as 2.125e-5
    assert double_quant.nearest_index(torch.zeros(1), dm).item() == 127


def test_nearest_teaching_version_is_never_worse_and_rarely_different():
    w = _randn(576, 576, seed=8)
    plain = quant.quantize_nf4(w).absmax
    exact = double_quant.double_quantize(plain, match_bitsandbytes=False)
    bnb = double_quant.double_quantize(plain)
    assert torch.equal(exact.absmax, bnb.absmax) and torch.equal(exact.offset, bnb.offset)
    differ = (exact.codes != bnb.codes).float().mean()
    assert 0 < differ < 0.01  # about 1 in 600
    err = (double_quant.double_dequantize(exact) - plain).abs()
    err_bnb = (double_quant.double_dequantize(bnb) - plain).abs()
    # never farther in the normalized [-1, 1] units (fp32 rounding of * scale + offset aside)
    assert (err <= err_bnb + 1e-6 * plain.abs().max()).all() and err.sum() < err_bnb.sum()


def test_double_quant_constants_are_close_and_smaller():
    w = _randn(256, 256, seed=3)
    q, q_dq = quant.quantize_nf4(w), quant.quantize_nf4(w, double_quant=True)
    rel = ((q_dq.block_absmax() - q.absmax).abs() / q.absmax).max()
    assert rel < 0.01
    assert q.nbytes() == 256 * 256 // 2 + 4 * 1024
    assert q_dq.nbytes() == 256 * 256 // 2 + 1024 + 4 * 4 + 4
    e = quant.quantization_error(w, quant.dequantize_nf4(q))["rel_frobenius"]
    e_dq = quant.quantization_error(w, quant.dequantize_nf4(q_dq))["rel_frobenius"]
    assert e_dq == pytest.approx(e, rel=0.02)


def test_single_block_double_quant_is_exact_like_bnb():
    w = _randn(64, seed=4)  # one block: absmax - mean = 0, 0/0 in the nested block -> code 0
    packed, state, deq = _bnb(w, "nf4", double_quant=True)
    q = quant.quantize_nf4(w, double_quant=True)
    assert torch.equal(q.nested.codes, state.absmax)
    assert torch.equal(quant.dequantize_nf4(q), deq.reshape(-1))  # bnb gives (1, 64)


def test_bits_per_parameter():
    b = quant.bits_per_parameter()
    assert b["constants"] == 0.5 and b["total"] == 4.5
    assert b["constants_dq"] == pytest.approx(8 / 64 + 32 / (64 * 256)) and b["constants_dq"] == pytest.approx(0.127, abs=5e-4)
    assert b["total_dq"] == pytest.approx(4.127, abs=5e-4) and b["saving"] == pytest.approx(0.373, abs=5e-4)
    assert quant.bits_per_parameter(blocksize=32)["constants"] == 1.0
    # the measured bytes agree with the formula (up to the one fp32 offset)
    w = _randn(64 * 256 * 4, seed=5)
    assert quant.quantize_nf4(w).nbytes() * 8 / w.numel() == 4.5
    assert quant.quantize_nf4(w, double_quant=True).nbytes() * 8 / w.numel() == pytest.approx(b["total_dq"],
                                                                                             abs=1e-3)


def test_nf4_beats_fp4_and_int4_on_normal_weights():
    w = _randn(512, 512, seed=6)
    err = {name: quant.quantization_error(w, deq)["rel_frobenius"] for name, deq in [
        ("nf4", quant.dequantize_nf4(quant.quantize_nf4(w))),
        ("fp4", quant.dequantize_4bit(quant.quantize_fp4(w))),
        ("int4", quant.dequantize_blockwise(quant.quantize_int4(w)))]}
    assert err["nf4"] < err["fp4"] and err["nf4"] < err["int4"]


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, exc, match", [
    (torch.tensor([1.0, float("nan")]), ValueError, "NaN"),
    (torch.tensor([float("-inf"), 1.0]), ValueError, "Inf"),
    (torch.zeros(0, 64), ValueError, "empty"),
    (torch.ones(64, dtype=torch.int32), TypeError, "float32"),
    (torch.ones(64, dtype=torch.float64), TypeError, "float32"),
])
def test_bad_weights(bad, exc, match):
    with pytest.raises(exc, match=match):
        quant.quantize_nf4(bad)
    with pytest.raises(exc, match=match):
        quant.quantize_fp4(bad)


@pytest.mark.parametrize("blocksize, exc, match", [(0, ValueError, "positive"), (-64, ValueError, "positive"),
                                                   (63, ValueError, "odd"), ("64", TypeError, "int")])
def test_bad_blocksize(blocksize, exc, match):
    with pytest.raises(exc, match=match):
        quant.quantize_nf4(torch.ones(128), blocksize=blocksize)


def test_dequantize_with_constants_of_the_wrong_shape():
    q = quant.quantize_nf4(_randn(4, 64))
    q.absmax = q.absmax[:3]
    with pytest.raises(ValueError, match="absmax must be float32 of shape"):
        quant.dequantize_nf4(q)
    q = quant.quantize_nf4(_randn(4, 64))
    q.absmax = q.absmax.half()
    with pytest.raises(ValueError, match="float32"):
        quant.dequantize_nf4(q)
    q = quant.quantize_nf4(_randn(4, 64), double_quant=True)
    q.nested.codes = q.nested.codes[:2]
    with pytest.raises(ValueError, match="double-quantized"):
        quant.dequantize_nf4(q)
    q = quant.quantize_nf4(_randn(4, 64), double_quant=True)
    q.nested.absmax = torch.ones(2)
    with pytest.raises(ValueError, match="nested absmax"):
        quant.dequantize_nf4(q)


def test_dequantize_with_wrong_codes():
    q = quant.quantize_nf4(_randn(4, 64))
    q.codes = q.codes.to(torch.int8)
    with pytest.raises(TypeError, match="uint8"):
        quant.dequantize_nf4(q)
    q = quant.quantize_nf4(_randn(4, 64))
    q.codes = q.codes[:-1]
    with pytest.raises(ValueError, match="bytes"):
        quant.dequantize_nf4(q)
    with pytest.raises(ValueError, match="fp4"):
        quant.dequantize_nf4(quant.quantize_fp4(_randn(64)))
    with pytest.raises(TypeError, match="Quant4bit"):
        quant.dequantize_nf4(torch.ones(4))


def test_bad_packing_input():
    with pytest.raises(TypeError, match="uint8"):
        quant.pack_4bit(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="even"):
        quant.pack_4bit(torch.tensor([1, 2, 3], dtype=torch.uint8))
    with pytest.raises(ValueError, match="0..15"):
        quant.pack_4bit(torch.tensor([1, 16], dtype=torch.uint8))


def test_bad_code_table_and_double_quant_input():
    with pytest.raises(ValueError, match="16 float32"):
        quant.quantize_4bit(torch.ones(64), torch.linspace(-1, 1, 15))
    with pytest.raises(TypeError, match="1-D float32"):
        quant.double_quantize(torch.ones(4, 4))


# --- the fast dequantize: the same bits as the readable reference ------------------------------------------

def _bits(t):  # the raw bits, so that -0.0 vs 0.0 or a different NaN would count as a difference
    return t.view({torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}[t.dtype])


@pytest.mark.parametrize("quant_type", ["nf4", "fp4", "custom"])
@pytest.mark.parametrize("shape,blocksize", [((64, 64), 64), ((1536, 576), 64), ((3, 50), 64), ((7,), 64),
                                             ((1,), 64), ((5, 33), 32), ((300, 257), 128), ((2, 3, 40), 16),
                                             ((70000,), 256)])  # 70000/64 = 1093.75: 1094 blocks, a short one
@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fast_dequantize_equals_the_reference_bit_for_bit(quant_type, shape, blocksize, double_quant, dtype):
    w = _randn(*shape, seed=sum(shape) + blocksize, dtype=dtype)
    w.view(-1)[:: max(1, w.numel() // 5)] *= -50  # a few outliers: blocks with very different constants
    if quant_type == "custom":  # not a cached table: the pair table is built from q.code itself
        code = quant.nf4_code().flip(0) * torch.linspace(0.5, 1.0, 16)
        q = quant.quantize_4bit(w, code, blocksize, "custom", double_quant)
    else:
        q = _ours(w, quant_type, blocksize, double_quant)
    fast, ref = quant.dequantize_4bit(q), quant.dequantize_4bit_reference(q)
    assert fast.shape == ref.shape == w.shape and fast.dtype == ref.dtype == dtype
    assert torch.equal(_bits(fast), _bits(ref))


@pytest.mark.parametrize("n_blocks", [1, 255, 256, 257, 1000])
def test_double_dequantize_equals_its_formula_bit_for_bit(n_blocks):
    absmax = _randn(n_blocks, seed=n_blocks).abs() + 1e-3
    nested = quant.double_quantize(absmax)
    formula = quant.dynamic_map()[nested.codes.long()] * nested.absmax.repeat_interleave(256)[:n_blocks] \
        + nested.offset  # the docstring's formula, with a fresh map
    assert torch.equal(_bits(quant.double_dequantize(nested)), _bits(formula))


def test_code_tables_are_built_once_per_device_and_public_ones_are_fresh():
    assert quant.code_table("nf4", torch.device("cpu")) is quant.code_table("nf4", torch.device("cpu"))
    assert torch.equal(quant.code_table("nf4", torch.device("cpu")), quant.nf4_code())
    assert torch.equal(quant.code_table("fp4", torch.device("cpu")), quant.fp4_code())
    assert quant.nf4_code() is not quant.nf4_code()  # a learner may write into these: never the cache
    with torch.inference_mode():  # a table first made in inference mode still serves training later
        quant.code_table("nf4", torch.device("meta"))
    assert not quant.code_table("nf4", torch.device("meta")).is_inference()
    with pytest.raises(ValueError, match="knows 'nf4' and 'fp4'"):
        quant.code_table("int4", torch.device("cpu"))


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("double_quant", [False, True])
def test_dequantize_copies_no_table_to_the_device_per_call(quant_type, double_quant):
    from device_copies import CrossDeviceCopies  # tests/device_copies.py

    q = _ours(_randn(48, 64), quant_type, 64, double_quant)
    meta = torch.device("meta")  # stands in for a GPU: shapes, no data
    q_meta = copy.copy(q)
    q_meta.codes, q_meta.code = q.codes.to(meta), quant.code_table(quant_type, meta)
    if double_quant:
        q_meta.nested = double_quant_on(q.nested, meta)
    else:
        q_meta.absmax = q.absmax.to(meta)
    quant.dequantize_4bit(q_meta)  # the first call on a device may fill the table cache
    with CrossDeviceCopies() as moves:
        for _ in range(3):
            out = quant.dequantize_4bit(q_meta)
    assert out.device == meta and moves.ops == []


def double_quant_on(nested, device):
    return double_quant.NestedAbsmax(nested.codes.to(device), nested.absmax.to(device),
                                     nested.offset.to(device), nested.blocksize)
