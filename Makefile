# The two set-up commands of the README: `make demo` and `make test`. Each installs
# everything it needs into .venv on a fresh machine first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev

.PHONY: install demo test lint typecheck unit bench clean

$(BIN)/.installed-$(EXTRAS): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	# Bytecode is compiled at install (as pip does; uv does not by default): without it
	# every process compiles scikit-learn, pandas and skops again on import, and a
	# server starts about 3 s later (PYTHONDONTWRITEBYTECODE also stops the cache).
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[$(EXTRAS)]' \
		|| $(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: $(BIN)/.installed-$(EXTRAS)

demo: install
	$(BIN)/modelhost quickstart

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest --cov --cov-report=term

test: lint typecheck unit

bench: install
	$(BIN)/python benchmarks/signature/bench_validator.py
	$(BIN)/python benchmarks/registry/bench_register.py

clean:
	rm -rf $(VENV) .modelhost .pytest_cache .mypy_cache .ruff_cache .coverage
