# Everyday actions; README and .ci/run call these same targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.metre-installed

.PHONY: up test lint bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

up: $(STAMP)          ## run metre on its embedded default (PostgreSQL + in-process bus)
	$(BIN)/metre up

# Test processes: one per core, four at most (each starts its own PostgreSQL and broker).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: $(STAMP)        ## the whole test suite (starts its own PostgreSQL and Kafka-protocol broker)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

lint: $(STAMP)        ## ruff, mypy and the import layers (import-linter)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info kernels/*.so
