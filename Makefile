# One entry point for people and CI. Every target installs what it needs first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint typecheck unit bench clean

$(BIN)/riskwatch: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/riskwatch

demo: install
	$(BIN)/riskwatch demo

lint: install
	$(BIN)/ruff check riskwatch tests bench
	$(BIN)/ruff format --check riskwatch tests bench
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
