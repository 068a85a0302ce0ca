# The two commands of the README. Both create or refresh the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

## make run: the zero-setup demo (in-process amqtt broker, SQLite store, simulated community, collector, …)
run: $(STAMP)
	$(BIN)/heatwatch demo

## make test: lint, type-check, and the whole suite against real Mosquitto and influxd
test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) data out .pytest_cache .mypy_cache .ruff_cache
