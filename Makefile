# Bootstraps .venv from pyproject.toml, then runs the service, the tests or the benchmarks.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kensa-installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)  ## install, then serve the API and web client on http://127.0.0.1:8000
	$(BIN)/kensa serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint  ## install, lint, then run every test
	$(BIN)/pytest $(ARGS)

bench: $(STAMP)  ## latency, throughput and memory figures as JSON under bench/results/
	$(BIN)/python bench/api_latency.py
	$(BIN)/python bench/train_infer.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
