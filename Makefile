# segstream: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
KAFKA  := deploy/kafka/kafka.sh

.PHONY: setup broker broker-stop topics run test unit integration lint bench bench-quick clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

broker:
	$(KAFKA) start

broker-stop:
	$(KAFKA) stop

topics: setup broker
	KAFKA_BOOTSTRAP_SERVERS=$$($(KAFKA) bootstrap) $(BIN)/segstream topics create

## The main job: broker, topics, simulator and worker; segment changes print as they happen.
run: setup broker
	KAFKA_BOOTSTRAP_SERVERS=$$($(KAFKA) bootstrap) deploy/run-local.sh

## The whole test suite: ruff, mypy, unit tests and integration tests against the real broker.
test: setup broker
	$(BIN)/ruff check streams models tests bench
	$(BIN)/mypy
	KAFKA_BOOTSTRAP_SERVERS=$$($(KAFKA) bootstrap) $(BIN)/python -m pytest

unit: setup
	$(BIN)/python -m pytest -m "not integration"

integration: setup broker
	KAFKA_BOOTSTRAP_SERVERS=$$($(KAFKA) bootstrap) $(BIN)/python -m pytest -m integration

lint: setup
	$(BIN)/ruff check streams models tests bench
	$(BIN)/mypy

## The benchmark suite at the issue's sizes (~30 min; see bench/README.md).
bench: setup broker
	KAFKA_BOOTSTRAP_SERVERS=$$($(KAFKA) bootstrap) $(BIN)/python bench/suite.py

## Regression guard (< 1 min): worker/raw ratios against bench/baseline.json.
bench-quick: setup broker
	KAFKA_BOOTSTRAP_SERVERS=$$($(KAFKA) bootstrap) $(BIN)/python bench/suite.py --quick

clean:
	$(KAFKA) stop --wipe || true
	rm -rf .local/state replay-out
