# leaf-dagster: `make run` starts Dagster (UI + daemon) with the samples; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export LEAF_DATA_DIR ?= $(CURDIR)/data
HOST ?= 127.0.0.1
PORT ?= 3000
# Dagster's code server, on 127.0.0.1 only (deploy/workspace.yaml reads the port).
CODE_PORT ?= 4000
export LEAF_CODE_SERVER_PORT = $(CODE_PORT)
# What Dagster's services print (`make run LOG_LEVEL=info` shows sensor ticks and launches again).
LOG_LEVEL ?= warning

# The API's development token; set LEAF_API_TOKENS (token=owner,...) for real use.
export LEAF_API_TOKENS ?= dev-token=local
API_PORT ?= 8000

.PHONY: install run test bench clean-data FORCE

$(BIN)/leaf-dagster: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/leaf-dagster

# The instance's settings: deploy/dagster.yaml as it is (SQLite under $(DAGSTER_HOME)), or with PostgreSQL storage
# when DAGSTER_PG_URL (or DAGSTER_POSTGRES_DB and _USER, ...) is set, and the run queue's limits from
# LEAF_MAX_CONCURRENT_RUNS, LEAF_RUNS_PER_OWNER, LEAF_RUNS_PER_BATCH (leaf_dagster/instance.py). Written on every
# `make run` (only when it changed), so a change of environment is never met by a stale file.
$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml $(BIN)/leaf-dagster FORCE
	@$(BIN)/python -m leaf_dagster.instance $(DAGSTER_HOME)

FORCE:

# The shipped samples go into the inbox once; the sensor picks them up without a click.
$(LEAF_DATA_DIR)/.samples-queued:
	mkdir -p $(LEAF_DATA_DIR)/inbox
	cp data/samples/*.zip data/samples/*.json $(LEAF_DATA_DIR)/inbox/
	touch $@

# Dagster as a service (`dagster dev` is superseded in 1.13): one code server, the webserver (UI on $(PORT)) and the
# daemon (sensors, run queue) using it, and the HTTP API on $(API_PORT).
# scripts/supervise.py starts the others once the code server is up, and stops all of them with every process they
# started (the run workers included) on Ctrl-C or SIGTERM.
run: install $(DAGSTER_HOME)/dagster.yaml $(LEAF_DATA_DIR)/.samples-queued
	@echo "Dagster UI http://$(HOST):$(PORT)  API http://$(HOST):$(API_PORT)/docs  data $(LEAF_DATA_DIR)  (Ctrl-C stops)"
	@exec $(BIN)/python scripts/supervise.py --first-ready 127.0.0.1:$(CODE_PORT) \
	  "$(BIN)/dagster code-server start -m leaf_dagster.definitions --location-name leaf_dagster -h 127.0.0.1 -p $(CODE_PORT) --log-level $(LOG_LEVEL)" \
	  "$(BIN)/dagster-webserver -w deploy/workspace.yaml -h $(HOST) -p $(PORT) --log-level warning --dagster-log-level $(LOG_LEVEL)" \
	  "$(BIN)/dagster-daemon run -w deploy/workspace.yaml --log-level $(LOG_LEVEL)" \
	  "$(BIN)/leaf-dagster serve --host $(HOST) --port $(API_PORT)"

bench: install
	$(BIN)/leaf-dagster bench

# Lint and type-check first (settings in pyproject.toml), then the tests.
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy leaf_dagster benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

clean-data:
	rm -rf $(LEAF_DATA_DIR)/inbox $(LEAF_DATA_DIR)/batches $(LEAF_DATA_DIR)/files $(LEAF_DATA_DIR)/lake \
	       $(LEAF_DATA_DIR)/leaf.duckdb* $(LEAF_DATA_DIR)/records.sqlite* $(LEAF_DATA_DIR)/.samples-queued $(DAGSTER_HOME)
