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

.PHONY: install run cluster test bench clean-data FORCE

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

# `make cluster`: the layout of several machines, as processes on this one. Webserver and daemon on a PostgreSQL
# instance (CLUSTER_PG_URL, its database created on first start, which holds the records too), every run a Celery task (RabbitMQ broker, Redis
# result backend) executed by one of the workers (CLUSTER_WORKERS, two by default; each name is the worker's Celery
# node name on this host, which must be unique on the broker, and its working folder under .cluster/), and two API
# processes (API_PORT, API_PORT2), all sharing the database, the broker and the data directory. On real hosts each
# of these commands runs on its own machine with the same environment (README: "Running on several machines").
CLUSTER_DIR := $(CURDIR)/.cluster
CLUSTER_WORKERS ?= worker1 worker2
API_PORT2 ?= 8001
CLUSTER_PG_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/leaf_dagster
cluster: export DAGSTER_HOME := $(CLUSTER_DIR)/dagster_home
cluster: export DAGSTER_PG_URL ?= $(CLUSTER_PG_URL)
cluster: export LEAF_RECORDS_URL ?= $(subst postgresql+psycopg2:,postgresql:,$(CLUSTER_PG_URL))
cluster: export LEAF_CELERY_BROKER_URL ?= pyamqp://guest:guest@127.0.0.1:5672//
cluster: export LEAF_CELERY_BACKEND_URL ?= redis://127.0.0.1:6379/0
cluster: install $(LEAF_DATA_DIR)/.samples-queued
	@$(BIN)/python -m leaf_dagster.instance --create-database $(DAGSTER_HOME)
	@mkdir -p $(foreach worker,$(CLUSTER_WORKERS),$(CLUSTER_DIR)/$(worker)/tmp)
	@echo "Dagster UI http://$(HOST):$(PORT)  API http://$(HOST):$(API_PORT)/docs and :$(API_PORT2)  Celery workers $(CLUSTER_WORKERS)  data $(LEAF_DATA_DIR)  (Ctrl-C stops)"
	@exec $(BIN)/python scripts/supervise.py --first-ready 127.0.0.1:$(CODE_PORT) \
	  "$(BIN)/dagster code-server start -m leaf_dagster.definitions --location-name leaf_dagster -h 127.0.0.1 -p $(CODE_PORT) --log-level $(LOG_LEVEL)" \
	  "$(BIN)/dagster-webserver -w deploy/workspace.yaml -h $(HOST) -p $(PORT) --log-level warning --dagster-log-level $(LOG_LEVEL)" \
	  "$(BIN)/dagster-daemon run -w deploy/workspace.yaml --log-level $(LOG_LEVEL)" \
	  $(foreach worker,$(CLUSTER_WORKERS),"env TMPDIR=$(CLUSTER_DIR)/$(worker)/tmp $(BIN)/celery --workdir $(CLUSTER_DIR)/$(worker) -A leaf_dagster.worker worker --concurrency 1 --hostname $(worker)@%h --loglevel $(LOG_LEVEL)") \
	  "$(BIN)/leaf-dagster serve --host $(HOST) --port $(API_PORT)" \
	  "$(BIN)/leaf-dagster serve --host $(HOST) --port $(API_PORT2)"

bench: install
	$(BIN)/leaf-dagster bench

# Lint and type-check first (settings in pyproject.toml), then the tests.
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy leaf_dagster benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

clean-data:
	rm -rf $(LEAF_DATA_DIR)/inbox $(LEAF_DATA_DIR)/batches $(LEAF_DATA_DIR)/files $(LEAF_DATA_DIR)/lake \
	       $(LEAF_DATA_DIR)/leaf.duckdb* $(LEAF_DATA_DIR)/records.sqlite* $(LEAF_DATA_DIR)/.samples-queued $(DAGSTER_HOME) $(CLUSTER_DIR)
