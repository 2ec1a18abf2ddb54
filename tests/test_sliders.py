"""viz.sliders in a real kernel: one output that is both the live widget and a static figure.

A live front end renders the widget view (its figure follows the sliders); a static viewer renders the PNG
in the same output. So no cell needs a second, frozen copy of the figure, and after ``strip_widget_state``
(what ``make notebooks`` does before a commit) the committed cell shows exactly one figure.
"""

import nbformat
from nbclient import NotebookClient

from lora_edu import notebook_meta

CELL = """
import matplotlib.pyplot as plt
from ipywidgets import IntSlider
from lora_edu import viz

def show(k):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot(range(k))
    plt.show()
    print(f"k is {k}")  # the live widget prints this under its figure; the static copy does not

viz.sliders(show, k=IntSlider(value=3, min=1, max=9, continuous_update=False))  # last line, as in the notebooks
"""


def test_one_output_holds_the_widget_and_its_static_figure(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True).execute()
    outputs = nb.cells[0].outputs
    # no second figure, and no stray print, beside the widget
    assert len(outputs) == 1, [(o.output_type, o.get("data", {}).keys()) for o in outputs]
    data = outputs[0]["data"]
    assert notebook_meta.WIDGET_VIEW in data and data["image/png"] and "k = 3" in data["text/plain"]

    path = tmp_path / "notebooks" / "99_demo.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    assert notebook_meta.strip_widget_state(path)
    (kept,) = nbformat.read(path, as_version=4).cells[0].outputs
    assert "image/png" in kept["data"] and notebook_meta.WIDGET_VIEW not in kept["data"]
