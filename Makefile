# One entry point for people and CI. Every target installs what it needs first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint typecheck unit audit lock bench clean

# Every dependency comes from the lock file, each download checked against its hash
# (docs/supply-chain.md); the package itself is then built by the locked hatchling.
$(BIN)/riskwatch: pyproject.toml requirements/dev.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@$(BIN)/pip check >/dev/null || { $(BIN)/pip check; \
		echo "pyproject.toml needs what requirements/dev.lock lacks: run make lock" >&2; exit 1; }
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

# Known-vulnerable pins in the lock files (pip-audit); says so, without failing, when
# the vulnerability database cannot be reached.
audit: install
	$(BIN)/python scripts/audit_locks.py requirements/runtime.lock requirements/dev.lock

# Re-resolve the lock files after a change of pyproject.toml or requirements/build.in
# (uv, in a virtual environment of its own).
LOCK := uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock" pyproject.toml requirements/build.in
lock:
	test -x .venv-lock/bin/uv || { $(PY) -m venv .venv-lock && .venv-lock/bin/pip install --quiet uv; }
	.venv-lock/bin/$(LOCK) -o requirements/runtime.lock
	.venv-lock/bin/$(LOCK) --extra dev -o requirements/dev.lock

clean:
	rm -rf $(VENV) .venv-lock build .mypy_cache .ruff_cache .pytest_cache
