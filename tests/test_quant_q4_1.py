"""llama.cpp's Q4_1 (lora_edu.quant.q4_1) against gguf.quants, on random data and on the GGUF file the series loads."""

import numpy as np
import pytest
import torch

from lora_edu import quant
from lora_edu.pretrained import gguf_path

gguf = pytest.importorskip("gguf")
Q4_1 = gguf.GGMLQuantizationType.Q4_1


def _randn(*shape, seed=0, std=0.02):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * std


@pytest.fixture(scope="module")
def reader():
    path = gguf_path()
    if path is None:
        pytest.skip("the SmolLM2 GGUF package is not installed")
    return gguf.GGUFReader(path)


@pytest.mark.parametrize("shape", [(32,), (4, 64), (3, 96), (2, 5, 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_bytes_and_values_equal_gguf(shape, dtype):
    w = _randn(*shape, seed=len(shape)).to(dtype)
    ours = quant.quantize_q4_1(w)
    theirs = gguf.quants.quantize(w.float().numpy(), Q4_1)
    assert ours.dtype == torch.uint8 and ours.shape == theirs.shape == (*shape[:-1], shape[-1] // 32 * 20)
    assert np.array_equal(ours.numpy(), theirs)
    assert np.array_equal(quant.dequantize_q4_1(ours).numpy(), gguf.quants.dequantize(theirs, Q4_1))


def test_constant_blocks_and_extreme_values_equal_gguf():
    w = torch.cat([torch.full((32,), 0.5), torch.zeros(32), torch.linspace(-3e4, 3e4, 32),
                   torch.tensor([1e-30] * 31 + [0.0])])
    ours, theirs = quant.quantize_q4_1(w), gguf.quants.quantize(w.numpy(), Q4_1)
    assert np.array_equal(ours.numpy(), theirs)
    assert np.array_equal(quant.dequantize_q4_1(ours).numpy(), gguf.quants.dequantize(theirs, Q4_1))
    assert torch.equal(quant.dequantize_q4_1(ours)[:64], w[:64])  # a constant block comes back exactly


def test_block_layout_by_hand():
    x = torch.arange(32, dtype=torch.float32) / 15  # min 0, max 31/15, d = 31/225
    raw = quant.quantize_q4_1(x)
    d, m, q = quant.split_q4_1(raw)
    assert raw.shape == (20,) and m.item() == 0 and d.item() == pytest.approx(31 / 225, rel=1e-3)
    assert q[0, 0] == 0 and q[0, 31] == 15
    assert raw[4] == q[0, 0] | (q[0, 16] << 4)  # byte j: code j low, code j + 16 high


@pytest.mark.parametrize("name", ["blk.0.attn_v.weight", "blk.0.ffn_down.weight", "blk.29.ffn_up.weight"])
def test_dequantize_the_real_file_equals_gguf(reader, name):
    t = {t.name: t for t in reader.tensors}[name]
    assert t.tensor_type == Q4_1
    ours = quant.dequantize_q4_1(t.data)
    assert np.array_equal(ours.numpy(), gguf.quants.dequantize(t.data, Q4_1))
    assert ours.shape == (t.data.shape[0], t.data.shape[1] // 20 * 32)  # (out_features, in_features)
    # re-quantizing the decoded weight: our bytes equal gguf's, and decode to within half a step
    again = quant.quantize_q4_1(ours)
    assert np.array_equal(again.numpy(), gguf.quants.quantize(ours.numpy(), Q4_1))
    d = quant.split_q4_1(again)[0].float()
    assert ((quant.dequantize_q4_1(again) - ours).abs().reshape(-1, 32) <= d / 2 + 1e-6).all()


def test_five_bits_per_weight():
    assert quant.quantize_q4_1(torch.zeros(32 * 10)).numel() * 8 / (32 * 10) == 5.0


@pytest.mark.parametrize("bad, exc, match", [
    (torch.ones(33), ValueError, "multiple of 32"),
    (torch.tensor([1.0] * 31 + [float("nan")]), ValueError, "NaN"),
    (torch.tensor([1.0] * 31 + [float("inf")]), ValueError, "Inf"),
    (torch.ones(0), ValueError, "empty"),
    (torch.ones(32, dtype=torch.float64), TypeError, "float32"),
])
def test_bad_weights(bad, exc, match):
    with pytest.raises(exc, match=match):
        quant.quantize_q4_1(bad)


def test_bad_bytes():
    with pytest.raises(TypeError, match="uint8"):
        quant.dequantize_q4_1(torch.zeros(20, dtype=torch.int8))
    with pytest.raises(ValueError, match="multiple of 20"):
        quant.dequantize_q4_1(torch.zeros(2, 30, dtype=torch.uint8))
