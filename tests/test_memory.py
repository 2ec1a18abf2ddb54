"""Tests for lora_edu.memory: the seed's 7B numbers, the QLoRA paper's claims, and every bad input."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lora_edu import viz  # noqa: E402
from lora_edu.memory import (  # noqa: E402
    GB,
    GiB,
    MemoryBreakdown,
    fits_on_gpu,
    llama_embedding_params,
    llama_lora_params,
    nf4_bits_per_weight,
    training_memory,
)


def guanaco(size: str, n_params: float, **kw) -> MemoryBreakdown:
    """QLoRA's Guanaco setup: NF4 + DQ, r=64 on all linear layers, bf16 LoRA and embeddings, 32-bit AdamW."""
    return training_memory(n_params, "qlora", lora_params=llama_lora_params(size),
                           unquantized_params=llama_embedding_params(size), **kw)


# --- the seed's 7B numbers --------------------------------------------------------------------------

def test_seed_7b_full_fp32_adam_is_112_gb():
    b = training_memory(7e9)  # defaults: full fine-tuning, fp32, AdamW
    assert b.weights == 28 * GB  # 7e9 * 4 bytes
    assert b.gradients == 28 * GB
    assert b.optimizer_states == 56 * GB  # m and v, 4 bytes each
    assert b.lora == b.master_weights == b.activations == 0
    assert b.total == 112 * GB
    assert math.isclose(b.total / GiB, 104.31, abs_tol=0.01)  # the same bytes in GiB (papers.md section 10)


def test_seed_112_gb_leaves_out_activations():
    b = training_memory(7e9, activations_bytes=5 * GB)
    assert b.total == 117 * GB
    assert "activations not included" in str(training_memory(7e9))
    assert "activations not included" not in str(b)


def test_str_reports_gb():
    text = str(training_memory(7e9))
    assert "GB = 1e9 bytes" in text
    assert "weights" in text and "28.00 GB" in text and "112.00 GB" in text and "104.31 GiB" in text


def test_mixed_precision_is_16_bytes_per_param():
    # ZeRO section 3.1: bf16 weights + bf16 grads + fp32 master + fp32 m, v = 2 + 2 + 4 + 8 = 16 bytes
    b = training_memory(7e9, weight_bits=16, master_weights=True)
    assert b.total == 16 * 7e9
    assert b.master_weights == 4 * 7e9


# --- the QLoRA paper's claims -----------------------------------------------------------------------

def test_nf4_bits_per_weight():
    assert nf4_bits_per_weight(double_quant=False) == 4.5  # 4 + 32/64
    assert math.isclose(nf4_bits_per_weight(), 4.127, abs_tol=5e-4)  # 4 + 8/64 + 32/(64*256)
    assert math.isclose(nf4_bits_per_weight(False) - nf4_bits_per_weight(True), 0.373, abs_tol=5e-4)


def test_nf4_bits_agree_with_double_quant_module():
    double_quant = pytest.importorskip("lora_edu.quant.double_quant")
    bits = double_quant.bits_per_parameter()
    assert math.isclose(bits["total_dq"], nf4_bits_per_weight(True))
    assert math.isclose(bits["total"], nf4_bits_per_weight(False))


def test_65b_16bit_full_finetuning_is_more_than_780_gb():
    # QLoRA abstract: regular 16-bit fine-tuning of 65B needs "more than 780GB". 16-bit weights and
    # gradients plus fp32 Adam states are 12 bytes per parameter: exactly 780 GB before activations.
    b = training_memory(65e9, weight_bits=16)
    assert math.isclose(b.total, 780 * GB)
    assert training_memory(65e9, weight_bits=16, activations_bytes=1).total > 780 * GB
    assert training_memory(65e9, weight_bits=16, master_weights=True).total == 1040 * GB


def test_guanaco_lora_parameter_counts():
    assert llama_lora_params("65B") == 80 * 64 * (4 * 2 * 8192 + 3 * (8192 + 22016))  # 799,539,200
    assert math.isclose(llama_lora_params("65B") / 65e9, 0.0123, abs_tol=1e-4)
    assert llama_lora_params("33B") == 60 * 64 * (4 * 2 * 6656 + 3 * (6656 + 17920))
    assert llama_lora_params("7B", r=8, target_modules=("q_proj", "v_proj")) == 32 * 2 * 8 * 2 * 4096
    assert llama_embedding_params("65B") == 2 * 32_000 * 8192


def test_65b_qlora_fits_one_48_gb_gpu():
    # "finetune a 65B parameter model on a single 48GB GPU" (QLoRA abstract)
    b = guanaco("65B", 65e9)
    assert math.isclose(65e9 * nf4_bits_per_weight() / 8 / GB, 33.5, abs_tol=0.05)  # the 4-bit base
    assert b.lora == b.gradients == 2 * llama_lora_params("65B")  # bf16 A and B, bf16 gradients
    assert b.optimizer_states == 8 * llama_lora_params("65B")
    assert 43 * GB < b.total < 45 * GB  # 43.9 GB before activations
    assert fits_on_gpu(b, 48)
    assert not fits_on_gpu(b, 24)  # the seed's "65B on a single 24 GB GPU" is wrong


def test_65b_does_not_fit_24_gb_even_with_paging():
    b = guanaco("65B", 65e9)
    assert 65e9 * nf4_bits_per_weight() / 8 > 24 * GB  # the 4-bit base alone is 33.5 GB
    report = fits_on_gpu(b, 24, paged_optimizer=True)
    assert not report and report.spilled == 0
    assert "would not be enough" in str(report)


def test_33b_qlora_fits_24_gb_and_paging_absorbs_a_spike():
    b = guanaco("33B", 33e9)
    assert 23 * GB < b.total < 24 * GB  # 23.5 GB: 0.5 GB left for activations
    assert fits_on_gpu(b, 24)
    spike = guanaco("33B", 33e9, activations_bytes=3 * GB)  # a long-sequence batch
    assert not fits_on_gpu(spike, 24)
    assert "paged optimizer could" in str(fits_on_gpu(spike, 24))
    paged = fits_on_gpu(spike, 24, paged_optimizer=True)
    assert paged.fits
    assert math.isclose(paged.spilled, spike.total - 24 * GB)
    assert 0 < paged.spilled <= spike.optimizer_states
    assert "PCIe" in str(paged)


def test_fits_reports_spare_memory_and_pages_nothing():
    report = fits_on_gpu(training_memory(1e9, weight_bits=16), 80, paged_optimizer=True)
    assert report.fits and report.spilled == 0 and report.needed == 12 * GB and report.available == 80 * GB
    assert "68.0 GB to spare" in str(report)
    # the verdict says the box was read: a learner who ticks "paged optimizer" sees why nothing changed
    assert "nothing to page" in str(report)
    assert "nothing paged" in str(fits_on_gpu(training_memory(1e9, weight_bits=16), 80))


# --- how the parts move -----------------------------------------------------------------------------

def test_more_bits_means_more_memory():
    kw = dict(trainable_fraction=0.01)
    q_dq, q = training_memory(7e9, "qlora", **kw), training_memory(7e9, "qlora", double_quant=False, **kw)
    lora16 = training_memory(7e9, "lora", weight_bits=16, **kw)
    lora32 = training_memory(7e9, "lora", weight_bits=32, **kw)
    assert q_dq.weights < q.weights < lora16.weights < lora32.weights
    assert training_memory(7e9, weight_bits=16).total < training_memory(7e9, weight_bits=32).total


def test_more_parameters_and_trainable_parameters_means_more_memory():
    totals = [training_memory(n, "lora", trainable_fraction=0.01).total for n in (1e9, 7e9, 13e9)]
    assert totals == sorted(totals) and len(set(totals)) == 3
    assert (training_memory(7e9, "qlora", lora_params=1e6).total
            < training_memory(7e9, "qlora", lora_params=1e8).total)


def test_optimizers_order():
    states = {opt: training_memory(7e9, optimizer=opt).optimizer_states
              for opt in ("sgd", "adamw-8bit", "sgd-momentum", "adamw")}
    assert states["sgd"] == 0
    assert math.isclose(states["adamw-8bit"], 7e9 * (2 + 8 / 256))  # two uint8 states + absmax per 256
    assert states["sgd-momentum"] == 4 * 7e9 and states["adamw"] == 8 * 7e9


def test_lora_trains_only_the_adapters():
    b = training_memory(7e9, "lora", weight_bits=16, lora_params=4e6)
    assert b.weights == 14 * GB  # frozen bf16 base
    assert b.lora == b.gradients == 8e6  # 4e6 bf16 parameters, and their gradients
    assert b.optimizer_states == 32e6
    assert training_memory(7e9, "lora", trainable_fraction=0.002).lora == 0.002 * 7e9 * 4
    assert training_memory(7e9, "qlora", lora_params=4e6, trainable_bits=32).lora == 16e6  # PEFT's fp32


def test_gb_dict_sums_to_total():
    b = guanaco("7B", 6.7e9, activations_bytes=2 * GB)
    parts = b.gb()
    assert math.isclose(sum(v for k, v in parts.items() if k != "total"), parts["total"])
    assert math.isclose(parts["total"] * GB, b.total)
    assert 3.5 * GB < b.weights < 5.048 * GB  # a lower bound: QLoRA section 2 measures 5,048 MB


# --- bad inputs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_params", [-7e9, 0, float("nan"), float("inf")])
def test_bad_n_params(n_params):
    with pytest.raises(ValueError, match="n_params must be finite and positive"):
        training_memory(n_params)


@pytest.mark.parametrize("n_params", ["7B", None, True])
def test_n_params_must_be_a_number(n_params):
    with pytest.raises(TypeError, match="n_params must be a number"):
        training_memory(n_params)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="prefix"), "method='prefix' is not supported"),
    (dict(optimizer="adam9"), "optimizer='adam9' is not supported"),
    (dict(weight_bits=8), "weight_bits=8 is not supported"),
    (dict(weight_bits=4), "A 4-bit base is method=.qlora."),
    (dict(method="qlora", weight_bits=16, lora_params=1), "weight_bits=16 is not supported"),
    (dict(method="lora", lora_params=1, trainable_bits=8), "trainable_bits=8 is not supported"),
    (dict(weight_bits=32, trainable_bits=16), "Full fine-tuning trains the base"),
    (dict(master_weights=True), "master_weights=True keeps fp32 copies"),
    (dict(lora_params=10), "full fine-tuning trains all n_params"),
    (dict(method="lora"), "needs exactly one of lora_params"),
    (dict(method="qlora", lora_params=1, trainable_fraction=0.1), "needs exactly one of lora_params"),
    (dict(method="lora", trainable_fraction=1.5), "trainable_fraction must be below 1"),
    (dict(method="lora", trainable_fraction=-0.1), "trainable_fraction must be finite"),
    (dict(method="lora", lora_params=-5), "lora_params must be finite"),
    (dict(activations_bytes=-1), "activations_bytes must be finite and zero or more"),
    (dict(unquantized_params=10), "unquantized_params=10 needs method='qlora'"),
    (dict(method="qlora", lora_params=1, unquantized_params=2e9), "at most n_params"),
    (dict(method="qlora", lora_params=1, blocksize=0), "blocksize must be a positive int"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training_memory(1e9, **kwargs)


def test_bad_llama_arguments():
    with pytest.raises(ValueError, match="unknown LLaMA size '70B'"):
        llama_lora_params("70B")
    with pytest.raises(ValueError, match="unknown LLaMA size"):
        llama_embedding_params("3B")
    with pytest.raises(ValueError, match=r"unknown target_modules \['c_attn'\]"):
        llama_lora_params("7B", target_modules=("q_proj", "c_attn"))
    with pytest.raises(ValueError, match="r must be a positive int"):
        llama_lora_params("7B", r=0)


def test_bad_fits_arguments():
    with pytest.raises(TypeError, match="breakdown must come from training_memory"):
        fits_on_gpu(112e9, 80)
    with pytest.raises(ValueError, match="gpu_gb must be finite and positive"):
        fits_on_gpu(training_memory(7e9), -24)


# --- the figure (notebook 07) -----------------------------------------------------------------------

def test_plot_training_memory_bars():
    fig = viz.plot_training_memory(65e9, trainable_fraction=0.01, weight_bits=16, activations_gb=2, gpu_gb=48)
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        ax = fig.axes[0]
        names = [t.get_text() for t in ax.get_xticklabels()]
        assert names == ["full fine-tuning", "LoRA", "QLoRA (NF4 + DQ)"]
        assert len(ax.containers) == len(MemoryBreakdown.PARTS)  # one stacked segment per part
        labels = [c.get_label() for c in ax.containers]
        assert labels == list(MemoryBreakdown.LABELS)
        tops = [max(r.get_y() + r.get_height() for r in bars) for bars in zip(*ax.containers, strict=True)]
        kw = dict(activations_bytes=2 * GB)
        expected = [training_memory(65e9, "full", weight_bits=16, **kw),
                    training_memory(65e9, "lora", weight_bits=16, trainable_fraction=0.01, **kw),
                    training_memory(65e9, "qlora", trainable_fraction=0.01, **kw)]
        for top, b in zip(tops, expected, strict=True):
            assert math.isclose(top, b.total / GB, rel_tol=1e-9)
        assert math.isclose(tops[0], 782.0)  # 780 GB + 2 GB of activations
        assert any(line.get_ydata()[0] == 48 for line in ax.get_lines())  # the GPU line
        zoom = fig.axes[1]  # the same bars, 0 to 1.5x the GPU, each saying how much room it leaves
        assert zoom.get_ylim() == (0, 72) and len(zoom.containers) == len(MemoryBreakdown.PARTS)
        notes = [t.get_text() for t in zoom.texts]
        assert notes[0] == "782.0 GB\n(off the scale)\n734.0 GB over"
        qlora = training_memory(65e9, "qlora", trainable_fraction=0.01, **kw).total / GB
        assert notes[2] == f"{qlora:,.1f} GB\n{48 - qlora:,.1f} GB to spare" and 48 - qlora > 0
    finally:
        plt.close(fig)


def test_plot_training_memory_without_a_gpu_or_with_an_axes_draws_one_panel():
    for kw in ({}, {"gpu_gb": 48, "ax": plt.subplots()[1]}):
        fig = viz.plot_training_memory(7e9, **kw)
        try:
            assert len(fig.axes) == 1 and not fig.axes[0].texts[0].get_text().endswith("to spare")
        finally:
            plt.close(fig)


def test_the_same_overflow_reads_the_same_with_and_without_paging():
    # notebook 12's case: 7B QLoRA with an 11.8 GB activation spike on 16 GB is 0.25 GB over, and its optimizer
    # states are 0.56 GB; both messages give both to two decimals (one decimal showed 0.3 beside "0.6 GB")
    spike = training_memory(7e9, "qlora", trainable_fraction=0.01, activations_bytes=11.8 * GB)
    plain, paged = str(fits_on_gpu(spike, 16)), str(fits_on_gpu(spike, 16, paged_optimizer=True))
    over = f"{(spike.total - 16 * GB) / GB:.2f}"
    assert f"{over} GB over" in plain and f"{over} GB of the {spike.optimizer_states / GB:.2f} GB optimizer state" in paged
