"""Every committed notebook keeps the house rules (lora_edu.notebook_meta), and the rules themselves bite."""

import shutil
from pathlib import Path

import nbformat
import pytest

from lora_edu import notebook_meta, runtime

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PLANNED = ["00_welcome", "01_low_rank_math", "02_lora_layer", "03_lora_toy_task", "04_lora_in_a_transformer",
           "05_merging", "06_quantization", "07_qlora", "08_gpu_finetune",
           "09_variants", "10_serving", "11_why_low_rank", "12_advice_tested"]


def test_the_planned_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert set(PLANNED) <= names, f"missing: {set(PLANNED) - names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_keeps_the_house_rules(path):
    assert notebook_meta.check_notebook(path) == []


def _good_notebook(name="99_demo.ipynb"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    badge = runtime.colab_badge_url(f"notebooks/{name}")
    setup = ("import sys\n\nIN_COLAB = 'google.colab' in sys.modules\nif IN_COLAB:\n    "
             + runtime.colab_install_line())
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Demo\n[![Open In Colab](badge.svg)]({badge})"),
                nbformat.v4.new_code_cell(setup, execution_count=1),
                nbformat.v4.new_code_cell("print(1)", execution_count=2,
                                          outputs=[nbformat.v4.new_output("stream", text="1\n")])]
    return nb


def _problems(tmp_path, nb, name="99_demo.ipynb"):
    (tmp_path / "notebooks").mkdir(exist_ok=True)
    path = tmp_path / "notebooks" / name
    nbformat.write(nb, path)
    return notebook_meta.check_notebook(path)


def test_a_good_notebook_passes(tmp_path):
    assert _problems(tmp_path, _good_notebook()) == []


@pytest.mark.parametrize("breakage, expected", [
    (lambda nb: nb.metadata.update(kernelspec={"name": "myenv", "display_name": "x"}), "kernelspec"),
    (lambda nb: setattr(nb.cells[0], "source", "# Demo, no badge"), "badge"),
    (lambda nb: setattr(nb.cells[1], "source", runtime.colab_install_line()), "install only on Colab"),
    (lambda nb: nb.cells[2].update(execution_count=None), "not been executed"),
    (lambda nb: nb.cells[2].update(execution_count=7), "top-to-bottom"),
    (lambda nb: nb.cells[2].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="",
                                                                  traceback=[])), "error output"),
    (lambda nb: nb.cells[2].outputs.append(nbformat.v4.new_output("stream", text="saved to /home/ann/x.png")),
     "absolute path"),
    (lambda nb: setattr(nb.cells[2], "source", "import os\n" * 31), "setup cell runs 31 lines"),
    (lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source + "\nthe update $(\x07lpha/r)\\,BA$"),
     "control character '\\x07'"),
])
def test_each_broken_rule_is_reported(tmp_path, breakage, expected):
    nb = _good_notebook()
    breakage(nb)
    problems = _problems(tmp_path, nb)
    assert any(expected in p for p in problems), problems


def test_a_badge_pointing_at_another_file_is_reported(tmp_path):
    assert any("badge" in p for p in _problems(tmp_path, _good_notebook("98_other.ipynb"), name="99_demo.ipynb"))


def test_set_repo_rewrites_badges_and_installs_in_one_go(tmp_path, monkeypatch):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nbformat.write(_good_notebook(), nbdir / "99_demo.ipynb")
    runtime_copy = tmp_path / "runtime.py"
    shutil.copy(Path(runtime.__file__), runtime_copy)
    monkeypatch.setattr(notebook_meta, "__file__", str(tmp_path / "notebook_meta.py"))
    changed = notebook_meta.set_repo("ann/my-lora-course", notebooks=nbdir)
    assert changed == [nbdir / "99_demo.ipynb"]
    assert notebook_meta.check_notebook(nbdir / "99_demo.ipynb", repo="ann/my-lora-course") == []
    assert 'GITHUB_REPO = "ann/my-lora-course"' in runtime_copy.read_text()
    with pytest.raises(ValueError, match="owner/name"):
        notebook_meta.set_repo("not a repo", notebooks=nbdir)


def test_strip_widget_state_drops_only_the_widget_metadata(tmp_path):
    nb = _good_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    view = nbformat.v4.new_output("display_data", data={notebook_meta.WIDGET_VIEW: {"model_id": "x"},
                                                        "text/plain": "VBox(children=...)"})
    nb.cells[2].outputs.append(view)
    (tmp_path / "notebooks").mkdir()
    path = tmp_path / "notebooks" / "99_demo.ipynb"
    nbformat.write(nb, path)
    assert notebook_meta.strip_widget_state(path)
    after = nbformat.read(path, as_version=4)
    assert "widgets" not in after.metadata and after.metadata["kernelspec"]["name"] == "python3"
    assert [o.output_type for o in after.cells[2].outputs] == ["stream"]  # the view went, the print stayed
    assert notebook_meta.check_notebook(path) == []
    assert not notebook_meta.strip_widget_state(path)  # nothing left to strip


def test_strip_widget_state_keeps_the_static_figure_of_a_slider(tmp_path):
    nb = _good_notebook()
    slider = nbformat.v4.new_output("display_data", data={notebook_meta.WIDGET_VIEW: {"model_id": "x"},
                                                          "image/png": "iVBORw0KGgo=", "text/plain": "Sliders"})
    nb.cells[2].outputs.append(slider)
    (tmp_path / "notebooks").mkdir()
    path = tmp_path / "notebooks" / "99_demo.ipynb"
    nbformat.write(nb, path)
    assert notebook_meta.strip_widget_state(path)
    kept = nbformat.read(path, as_version=4).cells[2].outputs[-1]
    assert set(kept.data) == {"image/png", "text/plain"}


def test_a_notebook_that_loads_smollm2_installs_its_gguf_file_on_colab(tmp_path):
    nb = _good_notebook()
    nb.cells[2].source = "model, tokenizer = load_model()"
    assert any("loads SmolLM2" in p for p in _problems(tmp_path, nb))
    nb.cells[1].source += "\n    " + runtime.colab_model_install_line()
    assert _problems(tmp_path, nb) == []


def test_a_notebook_that_never_loads_smollm2_does_not_download_it(tmp_path):
    nb = _good_notebook()
    nb.cells[1].source += "\n    " + runtime.colab_model_install_line()
    assert any("never loads SmolLM2" in p for p in _problems(tmp_path, nb))
