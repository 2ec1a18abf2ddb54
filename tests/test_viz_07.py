"""Notebook 07's figure draws the measured bytes it is given and rejects malformed input clearly."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lora_edu import viz  # noqa: E402

MIB = 2**20


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def sizes(codes, constants, lora, other):
    return {"codes": codes * MIB, "constants": constants * MIB, "lora": lora * MIB, "other": other * MIB,
            "total": (codes + constants + lora + other) * MIB}


def test_model_bytes_stacks_the_parts_of_each_bar():
    data = {"fp32": sizes(0, 0, 0, 400), "NF4": sizes(50, 6, 0, 100), "NF4 + LoRA": sizes(50, 2, 8, 100)}
    ax = viz.plot_model_bytes(data)
    tops = {}
    for bar in ax.patches:  # one rectangle per (part that some bar has, bar)
        x = round(bar.get_x() + bar.get_width() / 2)
        tops[x] = max(tops.get(x, 0), bar.get_y() + bar.get_height())
    assert tops == pytest.approx({0: 400, 1: 156, 2: 160})
    assert len(ax.patches) == 4 * 3  # codes, constants, LoRA, other for each of the 3 bars
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["NF4 codes (4 bits each)", "block constants", "embeddings, norms, unquantized layers",
                      "LoRA A and B"]
    notes = [t.get_text() for t in ax.texts]
    assert notes[0] == "400 MiB" and notes[1] == "156 MiB\n(39% of fp32)"  # a share of the first bar
    assert [t.get_text() for t in ax.get_xticklabels()] == list(data)


def test_model_bytes_leaves_out_parts_no_bar_has():
    ax = viz.plot_model_bytes({"fp32": sizes(0, 0, 0, 400), "bf16": sizes(0, 0, 0, 200)})
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["embeddings, norms, unquantized layers"]
    assert ax.texts[1].get_text() == "200 MiB\n(50% of fp32)"


@pytest.mark.parametrize("bad", [{}, {"fp32": {"codes": 1}}, {"fp32": 400}, [sizes(0, 0, 0, 1)]])
def test_model_bytes_rejects_malformed_sizes(bad):
    with pytest.raises(ValueError, match="model_nbytes"):
        viz.plot_model_bytes(bad)
