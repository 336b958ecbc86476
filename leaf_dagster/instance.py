"""The Dagster instance's settings (`$DAGSTER_HOME/dagster.yaml`), made from `deploy/dagster.yaml` and the environment.

`deploy/dagster.yaml` is the one source of the instance's settings: run queue, monitoring, logging. It names no
storage, so Dagster keeps runs, events and schedules in SQLite files under DAGSTER_HOME: one machine, `make run`'s
default, and then the file is copied byte for byte. Two things the environment may change:

- Storage. `DAGSTER_PG_URL` (a `postgresql+psycopg2://` URL), or the usual `DAGSTER_POSTGRES_USER`, `..._PASSWORD`,
  `..._DB`, `..._HOST`, `..._PORT`, put run, event-log and schedule storage in PostgreSQL, so a webserver and a
  daemon on different hosts share one instance (and SQLite's per-event file locking is gone); the event log is
  dagster-postgres's with its connection kept open (leaf_dagster/pg_event_log.py). The written yaml
  refers to the variables (`{env: DAGSTER_PG_URL}`), never their values: no password lands on disk, and every
  process reading the instance needs the same variables.
- The run queue's limits: `LEAF_MAX_CONCURRENT_RUNS` (runs at a time), `LEAF_RUNS_PER_OWNER` and
  `LEAF_RUNS_PER_BATCH` (the `leaf/owner` and `leaf/batch_id` tag limits), sized to the machines' cores.
  `LEAF_FILES_PER_RUN` is no setting of dagster.yaml but of the runs (`files_per_run`, read by the upload's run);
  it is checked here too, so a bad value stops `make run` before any process starts.
- Where runs execute. `LEAF_CELERY_BROKER_URL` (RabbitMQ, `pyamqp://user:password@host:5672/vhost`) makes every
  run a Celery task that any worker (`celery -A leaf_dagster.worker worker`, on any host) executes, instead of a
  process on the daemon's machine; `LEAF_CELERY_BACKEND_URL` (Redis, `redis://host:6379/0`) is where workers
  record their tasks' states, which Dagster's run monitoring reads; `LEAF_CELERY_QUEUE` names the queue (default
  `dagster`). The task is acknowledged only once it has finished and given back to the broker when its worker
  dies, so another worker takes it over (leaf_dagster/worker.py resumes the run there).

One template with the storage added by code, rather than a second yaml per storage, keeps the queue and monitoring
settings in one place: a second file would repeat them and drift. Plain Python (yaml only), so `make` can write
the file before any Dagster process starts.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml"
PG_URL_ENV = "DAGSTER_PG_URL"
# The DAGSTER_POSTGRES_* variables and the postgres_db keys they fill.
PG_PARTS_ENV = {"username": "DAGSTER_POSTGRES_USER", "password": "DAGSTER_POSTGRES_PASSWORD",
                "db_name": "DAGSTER_POSTGRES_DB", "hostname": "DAGSTER_POSTGRES_HOST", "port": "DAGSTER_POSTGRES_PORT"}
PG_DEFAULT_HOST = "localhost"
# dagster-postgres works through psycopg2 only (it sends NOTIFY with client-side parameters, which psycopg 3
# refuses), while SQLAlchemy 2.1 opens a bare postgresql:// URL with psycopg 3: the driver must be named.
PG_URL_SCHEME = "postgresql+psycopg2"
# The classes of each storage on PostgreSQL: dagster-postgres's, but for the event log, which keeps its connection
# (leaf_dagster/pg_event_log.py says why).
STORAGE_CLASSES = {"run_storage": ("dagster_postgres.run_storage", "PostgresRunStorage"),
                   "event_log_storage": ("leaf_dagster.pg_event_log", "PooledPostgresEventLogStorage"),
                   "schedule_storage": ("dagster_postgres.schedule_storage", "PostgresScheduleStorage")}
# Run queue limits from the environment: the variable, then the tag it limits (None: max_concurrent_runs).
LIMITS_ENV = {"LEAF_MAX_CONCURRENT_RUNS": None, "LEAF_RUNS_PER_OWNER": "leaf/owner", "LEAF_RUNS_PER_BATCH": "leaf/batch_id"}
# Files of one upload per run: unset, an upload is one run; set, an upload of more runnable files is split into
# that many files or fewer per run, so several workers share it (defs/assets/batch.py).
FILES_PER_RUN_ENV = "LEAF_FILES_PER_RUN"
CELERY_BROKER_ENV, CELERY_BACKEND_ENV, CELERY_QUEUE_ENV = "LEAF_CELERY_BROKER_URL", "LEAF_CELERY_BACKEND_URL", "LEAF_CELERY_QUEUE"
# A Redis broker hands an unacknowledged task to a second worker after its visibility timeout: it must outlast
# the longest run (run_monitoring.max_runtime_seconds stops runs after 3 hours). RabbitMQ ignores it and closes
# the channel of a task unacknowledged past its own `consumer_timeout` (a server setting, 30 minutes by default),
# which must be raised the same way (README, "Running on several machines").
CELERY_VISIBILITY_TIMEOUT_S = 4 * 3600
CELERY_SETTINGS: dict[str, Any] = {
    # acknowledged when the run ends, and given back to the queue when the worker process is lost (SIGKILL,
    # out of memory, the host gone): the broker then delivers it to another worker
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # one run at a time per worker process, none reserved ahead: a queued run waits for a free worker, not
    # behind a busy one
    "worker_prefetch_multiplier": 1,
    # a worker cut off from the broker stops its running tasks, which the broker gives to another worker:
    # without this the run would go on twice
    "worker_cancel_long_running_tasks_on_connection_loss": True,
    "broker_connection_retry_on_startup": True,
    "broker_transport_options": {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S, "max_retries": 3,
                                 "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    "result_expires": 7 * 24 * 3600,  # run monitoring reads a run's task state for as long as the run may last
}


class InstanceConfigError(ValueError):
    """The environment asks for an instance that cannot be configured (names the variable and why)."""


def storage_kind(env: Mapping[str, str]) -> str:
    """"postgres" when the environment names a PostgreSQL database, else "sqlite"."""
    if env.get(PG_URL_ENV) or env.get(PG_PARTS_ENV["db_name"]):
        return "postgres"
    return "sqlite"


def postgres_config(env: Mapping[str, str]) -> dict[str, Any] | None:
    """dagster-postgres's connection settings for the environment, or None when it names no PostgreSQL."""
    url = env.get(PG_URL_ENV)
    if url:
        if not url.startswith(f"{PG_URL_SCHEME}://"):
            scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
            raise InstanceConfigError(f"{PG_URL_ENV} must start with {PG_URL_SCHEME}:// (Dagster's PostgreSQL "
                                      f"storage works through the psycopg2 driver), not {scheme}")
        return {"postgres_url": {"env": PG_URL_ENV}}
    if not env.get(PG_PARTS_ENV["db_name"]):
        return None
    if not env.get(PG_PARTS_ENV["username"]):
        raise InstanceConfigError(f"{PG_PARTS_ENV['db_name']} is set but {PG_PARTS_ENV['username']} is not: "
                                  "PostgreSQL storage needs a user")
    db: dict[str, Any] = {key: {"env": var} for key, var in PG_PARTS_ENV.items() if env.get(var)}
    db.setdefault("hostname", PG_DEFAULT_HOST)
    db["scheme"] = PG_URL_SCHEME
    return {"postgres_db": db}


def postgres_storage(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The run, event-log and schedule storage blocks of dagster.yaml for the environment (None: SQLite).
    Three blocks rather than Dagster's `storage: postgres:` shorthand, for the event log's own class."""
    config = postgres_config(env)
    if config is None:
        return None
    return {key: {"module": module, "class": name, "config": config} for key, (module, name) in STORAGE_CLASSES.items()}


def celery_launcher(env: Mapping[str, str]) -> dict[str, Any] | None:
    """Dagster's `run_launcher:` block running each run as a Celery task, or None when no broker is named."""
    if not env.get(CELERY_BROKER_ENV):
        return None
    if not env.get(CELERY_BACKEND_ENV):
        raise InstanceConfigError(f"{CELERY_BROKER_ENV} is set but {CELERY_BACKEND_ENV} is not: run monitoring "
                                  "reads each run's task state from the result backend (redis://host:6379/0)")
    config: dict[str, Any] = {"broker": {"env": CELERY_BROKER_ENV}, "backend": {"env": CELERY_BACKEND_ENV},
                              "config_source": CELERY_SETTINGS}
    if env.get(CELERY_QUEUE_ENV):
        config["default_queue"] = {"env": CELERY_QUEUE_ENV}
    return {"module": "dagster_celery.launcher", "class": "CeleryRunLauncher", "config": config}


def _positive_int(env: Mapping[str, str], name: str, unit: str = "runs") -> int:
    value = env[name]
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InstanceConfigError(f"{name}={value!r}: expected a whole number of {unit}, at least 1")
    return number


def files_per_run(env: Mapping[str, str] | None = None) -> int | None:
    """LEAF_FILES_PER_RUN: the most files of one upload a run takes (None: unset, the whole upload in one run)."""
    env = os.environ if env is None else env
    return _positive_int(env, FILES_PER_RUN_ENV, "files") if env.get(FILES_PER_RUN_ENV) else None


def settings(env: Mapping[str, str], template: Path = TEMPLATE) -> str:
    """The text of dagster.yaml for this environment: the template itself when nothing is asked of it."""
    text = template.read_text()
    files_per_run(env)  # checked now, read by the runs
    storage = postgres_storage(env)
    launcher = celery_launcher(env)
    limits = {name: _positive_int(env, name) for name in LIMITS_ENV if env.get(name)}
    if storage is None and launcher is None and not limits:
        return text
    config = yaml.safe_load(text)
    runs = config["concurrency"]["runs"]
    for name, limit in limits.items():
        tag = LIMITS_ENV[name]
        if tag is None:
            runs["max_concurrent_runs"] = limit
        else:
            next(t for t in runs["tag_concurrency_limits"] if t["key"] == tag)["limit"] = limit
    if storage is not None:
        config.update(storage)
    if launcher is not None:
        config["run_launcher"] = launcher
    changed = ", ".join([*(["storage: PostgreSQL"] if storage else []), *(["runs: Celery"] if launcher else []),
                         *limits])
    return (f"# Written from {template.parent.name}/{template.name} (whose comments say why each setting is there), "
            f"with {changed} from the environment.\n" + yaml.safe_dump(config, sort_keys=False))


def write(home: Path, env: Mapping[str, str] | None = None) -> Path:
    """Write `home`/dagster.yaml for the environment (atomically; left alone when already the same)."""
    text = settings(os.environ if env is None else env)
    target = home / "dagster.yaml"
    if target.exists() and target.read_text() == text:
        return target
    home.mkdir(parents=True, exist_ok=True)
    # a temporary name of its own: every process of a shared DAGSTER_HOME may write the file at once
    handle, partial = tempfile.mkstemp(dir=home, prefix=".dagster.yaml.")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(partial, 0o644)  # as a plain write would leave it: every Dagster process reads it
    os.replace(partial, target)
    return target


def create_database(env: Mapping[str, str]) -> bool:
    """Create the database DAGSTER_PG_URL names when its server lacks it (`make cluster`'s first start); True
    when it was created. Connects to the server's `postgres` database as the URL's user, who must be allowed to
    create databases."""
    import psycopg2  # type: ignore[import-untyped]  # dagster-postgres's driver

    url = env.get(PG_URL_ENV)
    if not url:
        raise InstanceConfigError(f"{PG_URL_ENV} names no database to create")
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    connection = psycopg2.connect(admin, connect_timeout=10)
    connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is not None:
                return False
            try:
                cursor.execute(f'CREATE DATABASE "{name}"')
            except psycopg2.errors.DuplicateDatabase:  # another process created it in between
                return False
            return True
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m leaf_dagster.instance [--create-database] DAGSTER_HOME`: what `make run` and `make cluster` use
    to write the instance's settings (`--create-database`: and create DAGSTER_PG_URL's database if missing)."""
    args = sys.argv[1:] if argv is None else argv
    create = "--create-database" in args
    args = [a for a in args if a != "--create-database"]
    if len(args) != 1:
        print("usage: python -m leaf_dagster.instance [--create-database] DAGSTER_HOME", file=sys.stderr)
        return 2
    try:
        target = write(Path(args[0]))
    except InstanceConfigError as exc:
        print(f"dagster.yaml not written: {exc}", file=sys.stderr)
        return 1
    if create:
        try:
            if create_database(os.environ):
                print(f"database {urlsplit(os.environ[PG_URL_ENV]).path.lstrip('/')} created")
        except Exception as exc:  # psycopg2's errors and ours: the reason is what matters
            print(f"database not created: {str(exc).strip()}", file=sys.stderr)
            return 1
    runs = "Celery workers" if os.environ.get(CELERY_BROKER_ENV) else "local processes"
    print(f"{target}: {storage_kind(os.environ)} storage, runs on {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
