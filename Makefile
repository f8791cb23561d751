# The two set-up commands of the README: `make demo` and `make test`. Each installs
# everything it needs into .venv on a fresh machine first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev

.PHONY: install constraints system-deps feast-env demo test lint typecheck unit bench clean

# constraints.txt pins every package at the versions the last green CI run installed, so
# that a release elsewhere cannot change what a fresh machine installs.
$(BIN)/.installed-$(EXTRAS): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	# Bytecode is compiled at install (as pip does; uv does not by default): without it
	# every process compiles scikit-learn, pandas and skops again on import, and a
	# server starts about 3 s later (PYTHONDONTWRITEBYTECODE also stops the cache).
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python \
		-c constraints.txt -e '.[$(EXTRAS)]' \
		|| $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

# After changing dependencies: pin what resolves today, then run make test.
constraints: install
	{ sed -n '1,/^$$/p' constraints.txt; \
	  $(BIN)/uv pip compile pyproject.toml --extra dev --quiet --no-header --no-annotate; \
	} > constraints.txt.new && mv constraints.txt.new constraints.txt

install: $(BIN)/.installed-$(EXTRAS)

# Debian packages the tests need besides Python's, each as package:command: Chromium,
# which renders the monitoring report (tests/monitoring/test_report_chromium.py), and
# with its chromedriver runs the web console's browser tests (tests/serving/console/),
# Prometheus, which scrapes a real server and evaluates the shipped rules and dashboard
# (tests/deploy/test_prometheus.py), and the NATS server, which the stream tests start
# with JetStream when none runs (tests/streams/). A no-op when they are installed; as
# root, or through sudo.
SYSTEM_PACKAGES := chromium:chromium chromium-driver:chromedriver prometheus:prometheus \
	nats-server:nats-server
system-deps:
	@missing=; for pair in $(SYSTEM_PACKAGES); do command -v $${pair#*:} >/dev/null 2>&1 || \
		missing="$$missing $${pair%%:*}"; done; \
	[ -z "$$missing" ] || { \
		if [ "$$(id -u)" = 0 ]; then sudo=; \
		elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
		else echo "warning:$$missing missing and this user cannot install them (not" \
			"root, no sudo): run 'apt-get install -y$$missing' as root; their tests" \
			"are skipped (they fail under CI=true)" >&2; exit 0; fi; \
		echo "installing$$missing (Debian's packages)"; \
		$$sudo apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; }

# Feast, for the feature store's adapter test (tests/features/test_feast.py, which runs
# it beside ours) and benchmarks/features: in an environment of its own, because Feast
# pins its own dependencies, as a team that runs it already has.
FEAST_VENV ?= .feast-venv
FEAST_PINS := tests/features/feast_side/constraints.txt
$(FEAST_VENV)/.installed: $(FEAST_PINS) | $(BIN)/.installed-$(EXTRAS)
	$(BIN)/uv venv --quiet --allow-existing --python $(BIN)/python $(FEAST_VENV)
	$(BIN)/uv pip install --quiet --python $(FEAST_VENV)/bin/python -c $(FEAST_PINS) \
		'feast[redis]==0.67.0'
	touch $@

feast-env: $(FEAST_VENV)/.installed

demo: install
	$(BIN)/modelhost quickstart

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest --cov --cov-report=term

test: system-deps feast-env lint typecheck unit

bench: install
	$(BIN)/python benchmarks/signature/bench_validator.py
	$(BIN)/python benchmarks/registry/bench_register.py

clean:
	rm -rf $(VENV) $(FEAST_VENV) .modelhost .pytest_cache .mypy_cache .ruff_cache .coverage
