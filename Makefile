# The two commands of the README. Both create or refresh the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench venv clean constraints

# constraints.txt pins every dependency to the versions the suite last passed with (README, Dependencies)
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

## make run: the zero-setup demo (in-process amqtt broker, SQLite store, simulated community, collector, …)
run: $(STAMP)
	$(BIN)/heatwatch demo

## make test: lint, type-check, and the whole suite against real Mosquitto and influxd
# pytest exit 5 = no test collected: nothing was tested, which must not pass for a green run
test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): nothing was tested" >&2; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports  # the layer contracts: pyproject.toml [tool.importlinter]

## make constraints: write constraints.txt from what the venv resolved (after an upgrade; README, Dependencies)
constraints:
	$(BIN)/python tools/freeze_constraints.py > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

bench: $(STAMP)
	$(BIN)/python -m bench.run_all  # benchmarks run as modules from the repository root

clean:
	rm -rf $(VENV) data out .pytest_cache .mypy_cache .ruff_cache
