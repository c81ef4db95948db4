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

test: $(STAMP)        ## the whole test suite (starts its own PostgreSQL and Kafka-protocol broker)
	$(BIN)/python -m pytest

lint: $(STAMP)        ## ruff, mypy and the import layers (import-linter)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info kernels/*.so
