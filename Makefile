# Fresh machine: `make demo` runs the service once on embedded defaults; `make test` runs the checks.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test lint typecheck pytest test-embedded test-asterisk bench bench-asterisk chaos clean

$(BIN)/twoway-callback: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/twoway-callback

demo: venv
	$(BIN)/twoway-callback demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -q -rs

# The database tests again, on an embedded Postgres (CI runs both).
test-embedded: venv
	TWOWAY_TEST_DB=embedded $(BIN)/pytest -q tests/test_schema.py tests/test_queue.py

# The real-Asterisk tests once per binary (22, then 16); `make test` runs them on the first
# Asterisk it finds (TWOWAY_TEST_ASTERISK, /opt/asterisk-22, the distribution's).
ASTERISK_BINARIES ?= /opt/asterisk-22/sbin/asterisk /opt/asterisk-16/sbin/asterisk
test-asterisk: venv
	@for binary in $(ASTERISK_BINARIES); do \
	  echo "== tests/integration on $$binary"; \
	  TWOWAY_TEST_ASTERISK=$$binary $(BIN)/pytest -q -rs -m asterisk tests/integration || exit 1; \
	done

test: lint typecheck pytest

# The chaos test of `make test` at twice its size: 4,000 requests, two waves of faults.
chaos: venv
	TWOWAY_CHAOS_SCALE=2 $(BIN)/pytest -q -rs -s tests/test_chaos.py

bench: venv
	$(BIN)/python -m bench

# Pick-up on a real Asterisk (the one tests/integration finds) with sipp, beside Asterisk's floor.
bench-asterisk: venv
	$(BIN)/python -m bench.asterisk

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
