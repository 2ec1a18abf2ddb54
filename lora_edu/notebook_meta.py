"""House rules for the committed notebooks, checked by tests/test_notebooks_meta.py.

A committed notebook must: be valid nbformat; use the ``python3`` kernel; carry outputs from one
top-to-bottom run with no errors; open with an "Open in Colab" badge whose path is its own file; have a
setup cell that installs lora_edu only on Colab (and SmolLM2's GGUF file when the notebook loads it); hold no
absolute path of any machine; and hold no control character in any cell's source (the BEL that "\\alpha" becomes
when a generator wrote LaTeX into a Python string without an ``r`` prefix).

The repository the badges and installs point at is ``runtime.GITHUB_REPO``. After publishing under
another name, run ``make set-repo REPO=owner/name`` (this module's ``set-repo`` command) and commit.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from .runtime import GITHUB_BRANCH, GITHUB_REPO, colab_badge_url, colab_install_line, colab_model_install_line

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
BADGE_RE = re.compile(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/(\S+?\.ipynb)")
INSTALL_RE = re.compile(r'%pip install -q "lora-edu @ git\+https://github\.com/([\w.-]+/[\w.-]+)@([\w.-]+)"')
# /home/x, /Users/x, /root/x, /tmp/x, /work/x, C:\Users\x: paths that exist on one machine only.
# A notebook that loads SmolLM2 (itself or through a run) installs its GGUF file on Colab too.
LOADS_MODEL_RE = re.compile(r"\bload_model\(|\brun_config\(|\bexperiments\.")
SETUP_MAX_LINES = 30  # the imports cell after the install cell: a learner reads it whole before anything runs
# Control characters other than tab, newline and carriage return: "\a" (BEL), "\b", "\f", "\v" from LaTeX such as
# \alpha, \beta, \frac, \vec written into a Python string without an r prefix.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ABS_PATH_RE = re.compile(r"(?<![\w.])(/(home|Users|root|tmp|work|mnt|opt)/[\w.-]+|[A-Za-z]:\\\\?Users)")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        for key in ("text/plain", "text/markdown", "text/html"):
            parts.append("".join(out.get("data", {}).get(key, "")))
    return "\n".join(parts)


def check_notebook(path: Path, repo: str = GITHUB_REPO, branch: str = GITHUB_BRANCH) -> list[str]:
    """Every way ``path`` breaks the house rules (an empty list when it keeps them all)."""
    import nbformat

    path = Path(path)
    problems = []
    nb = nbformat.read(path, as_version=4)
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        problems.append(f"invalid nbformat: {e.message}")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("kernelspec name is not 'python3'")

    rel = f"notebooks/{path.relative_to(path.parents[1]).as_posix()}" if path.parent.name != "notebooks" \
        else f"notebooks/{path.name}"
    first_md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    want = colab_badge_url(rel, repo, branch)
    if first_md is None or want not in _source(first_md):
        problems.append(f"the first markdown cell lacks the Colab badge link {want}")

    code = [c for c in nb.cells if c.cell_type == "code" and _source(c).strip()]
    if not code:
        return problems + ["no code cells"]
    setup = _source(code[0])
    install = colab_install_line(repo, branch)
    if install not in setup or "google.colab" not in setup or not re.search(r"^\s*if\b", setup, re.M):
        problems.append(f"the first code cell must install only on Colab: `if IN_COLAB:` then `{install}`")
    loads_model = any(LOADS_MODEL_RE.search(_source(c)) for c in code[1:])
    if loads_model and colab_model_install_line() not in setup:
        problems.append(f"this notebook loads SmolLM2: its first code cell must also run "
                        f"`{colab_model_install_line()}` on Colab (the same weights as everywhere else)")
    elif not loads_model and colab_model_install_line() in setup:
        problems.append("this notebook never loads SmolLM2: its first code cell need not install its GGUF file")

    if len(code) > 1 and len(_source(code[1]).splitlines()) > SETUP_MAX_LINES:
        problems.append(f"the setup cell runs {len(_source(code[1]).splitlines())} lines (at most "
                        f"{SETUP_MAX_LINES}): import from the public lora_edu namespace, several names a line")

    counts = [c.get("execution_count") for c in code]
    if any(n is None for n in counts):
        problems.append(f"{sum(n is None for n in counts)} of {len(code)} code cells have not been executed")
    elif counts != list(range(1, len(code) + 1)):
        problems.append(f"execution counts {counts[:5]}... are not 1..{len(code)}: not one top-to-bottom run")
    for i, c in enumerate(code):
        for out in c.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"code cell {i} has an error output ({out.get('ename')})")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr" and \
                    "Traceback" in "".join(out.get("text", "")):
                problems.append(f"code cell {i} printed a traceback")

    for i, c in enumerate(nb.cells):
        m = ABS_PATH_RE.search(_source(c) + "\n" + _text_outputs(c))
        if m:
            problems.append(f"cell {i} holds an absolute path {m.group(0)!r}")
        m = CONTROL_RE.search(_source(c))
        if m:
            near = _source(c)[max(0, m.start() - 20):m.end() + 10]
            problems.append(f"cell {i} holds a control character {m.group(0)!r} in {near!r} (LaTeX such as "
                            "\\alpha written into a Python string without an r prefix?)")
    return problems


def set_repo(repo: str, branch: str = GITHUB_BRANCH, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """Point every badge and Colab install line at ``repo``; also update runtime.GITHUB_REPO."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo or ""):
        raise ValueError(f"REPO must look like 'owner/name', got {repo!r}: make set-repo REPO=owner/name")
    import nbformat

    changed = []
    for path in sorted(notebooks.rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        before = [c.source for c in nb.cells]
        for c in nb.cells:
            c.source = BADGE_RE.sub(lambda m: colab_badge_url(m.group(3), repo, branch), c.source)
            c.source = INSTALL_RE.sub(lambda m: colab_install_line(repo, branch), c.source)
        if [c.source for c in nb.cells] != before:
            _atomic_write(path, nbformat.writes(nb) + "\n")
            changed.append(path)
    runtime_py = Path(__file__).with_name("runtime.py")
    src = runtime_py.read_text()
    _atomic_write(runtime_py, re.sub(r'GITHUB_REPO = "[^"]*"', f'GITHUB_REPO = "{repo}"', src))
    return changed


def strip_widget_state(path: Path) -> bool:
    """Drop stored widget state and widget views, keeping each slider's static figure; True if it changed.

    Executing with ``store_widget_state=False`` is not an option: nbclient then fails on the first output
    a slider sends into its Output widget. So notebooks run with state stored and lose it afterwards.
    ``viz.sliders`` displays its widget in one output with a PNG of the first figure beside the view: the
    view goes (without its state it renders as "VBox(children=...)" text on GitHub, or as an error in
    JupyterLab), the PNG stays, so every viewer sees one figure per slider.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = nb.metadata.pop("widgets", None) is not None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                outputs.append(out)
            elif "image/png" in data:  # a viz.sliders output: keep its static figure
                data.pop(WIDGET_VIEW)
                outputs.append(out)
                changed = True
        if len(outputs) != len(cell.outputs):
            cell.outputs, changed = outputs, True
    if changed:
        _atomic_write(path, nbformat.writes(nb) + "\n")
    return changed


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes it 0600
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "set-repo":
        for p in set_repo(argv[1]):
            print(f"updated {p}")
        return 0
    if len(argv) >= 2 and argv[0] == "strip-widget-state":
        for p in argv[1:]:
            strip_widget_state(Path(p))
        return 0
    if len(argv) >= 1 and argv[0] == "check":
        bad = 0
        for p in argv[1:] or sorted(NOTEBOOKS.glob("*.ipynb")):
            for problem in check_notebook(Path(p)):
                print(f"{p}: {problem}")
                bad += 1
        return 1 if bad else 0
    print("usage: python -m lora_edu.notebook_meta set-repo OWNER/NAME | check [NOTEBOOK ...] | "
          "strip-widget-state NOTEBOOK ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
