# leaf-dagster: `make run` starts Dagster (UI + daemon) with the samples; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export LEAF_DATA_DIR ?= $(CURDIR)/data
HOST ?= 127.0.0.1
PORT ?= 3000

# The API's development token; set LEAF_API_TOKENS (token=owner,...) for real use.
export LEAF_API_TOKENS ?= dev-token=local
API_PORT ?= 8000

.PHONY: install run test bench clean-data

$(BIN)/leaf-dagster: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/leaf-dagster

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# The shipped samples go into the inbox once; the sensor picks them up without a click.
$(LEAF_DATA_DIR)/.samples-queued:
	mkdir -p $(LEAF_DATA_DIR)/inbox
	cp data/samples/*.zip data/samples/*.json $(LEAF_DATA_DIR)/inbox/
	touch $@

# Dagster (UI + daemon) on $(PORT) and the HTTP API on $(API_PORT); Ctrl-C stops both.
run: install $(DAGSTER_HOME)/dagster.yaml $(LEAF_DATA_DIR)/.samples-queued
	trap 'kill 0' INT TERM EXIT; \
	$(BIN)/leaf-dagster serve --host $(HOST) --port $(API_PORT) & \
	$(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

bench: install
	$(BIN)/leaf-dagster bench

# Lint and type-check first (settings in pyproject.toml), then the tests.
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy leaf_dagster benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

clean-data:
	rm -rf $(LEAF_DATA_DIR)/inbox $(LEAF_DATA_DIR)/batches $(LEAF_DATA_DIR)/files $(LEAF_DATA_DIR)/lake \
	       $(LEAF_DATA_DIR)/leaf.duckdb $(LEAF_DATA_DIR)/.samples-queued $(DAGSTER_HOME)
