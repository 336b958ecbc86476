"""Runs executed by Celery workers: a PostgreSQL-backed instance (a database of the test's own, created then
dropped), the real `dagster-daemon`, and two `celery -A leaf_dagster.worker worker` processes, each with its own
working folder, sharing the data directory, RabbitMQ (a queue named for the test, deleted at the end) and Redis
as the result backend.

Without the services the tests skip, except in CI, where they fail: CI must prove the multi-worker path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from benchmarks import postgres
from benchmarks.daemon import _die_with_parent, stop_daemon
from leaf_dagster import instance as instance_settings
from leaf_dagster.catalog import query
from leaf_dagster.defs.recovery import RECOVERS_TAG
from leaf_dagster.records import RECORDS_URL_ENV
from leaf_dagster.status import BATCH_JOB
from leaf_dagster.storage import Storage
from leaf_dagster.worker import EXECUTED_BY, RESUMED_BY

from .conftest import REPO, records_url_of, require
from .test_crash_recovery import FILES, six_shapefiles
from .test_postgres_instance import mixed_upload

BROKER_URL = os.environ.get("LEAF_TEST_CELERY_BROKER_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
BACKEND_URL = os.environ.get("LEAF_TEST_CELERY_BACKEND_URL", "redis://127.0.0.1:6379/0")
DEADLINE = 420  # seconds for a whole test; about a minute on an idle 2-core machine
FINAL = {"processed", "failed"}


# -- the settings ------------------------------------------------------------------------------------------------
def test_a_broker_makes_runs_celery_tasks_named_by_reference_and_keeps_the_rest() -> None:
    env = {"LEAF_CELERY_BROKER_URL": "pyamqp://leaf:s3cret@mq.example:5672/leaf",
           "LEAF_CELERY_BACKEND_URL": "redis://:s3cret@cache.example:6379/0", "LEAF_CELERY_QUEUE": "farm"}
    text = instance_settings.settings(env)
    assert "s3cret" not in text  # the yaml names the variables; the passwords stay in the environment
    written, template = yaml.safe_load(text), yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    launcher = written.pop("run_launcher")
    assert written == template
    assert (launcher["module"], launcher["class"]) == ("dagster_celery.launcher", "CeleryRunLauncher")
    config = launcher["config"]
    assert (config["broker"], config["backend"], config["default_queue"]) == (
        {"env": "LEAF_CELERY_BROKER_URL"}, {"env": "LEAF_CELERY_BACKEND_URL"}, {"env": "LEAF_CELERY_QUEUE"})
    source = config["config_source"]
    assert source["task_acks_late"] and source["task_reject_on_worker_lost"]
    assert source["worker_prefetch_multiplier"] == 1
    # the broker never gives a running task to a second worker before run monitoring would stop the run
    assert source["broker_transport_options"]["visibility_timeout"] > template["run_monitoring"]["max_runtime_seconds"]
    with pytest.raises(instance_settings.InstanceConfigError, match="LEAF_CELERY_BACKEND_URL is not"):
        instance_settings.settings({"LEAF_CELERY_BROKER_URL": "pyamqp://guest@localhost//"})
    assert "default_queue" not in yaml.safe_load(instance_settings.settings(
        {k: v for k, v in env.items() if k != "LEAF_CELERY_QUEUE"}))["run_launcher"]["config"]


def test_the_instance_s_launcher_is_checked_before_a_worker_starts(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    instance_settings.write(tmp_path, {})  # make run's default: local run processes
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    from leaf_dagster import worker

    with pytest.raises(RuntimeError, match="launches runs with DefaultRunLauncher, not Celery"):
        worker.make_app()


def test_make_cluster_creates_its_database_once() -> None:
    require(postgres.reachable())
    name = f"leaf_test_{uuid.uuid4().hex[:12]}"
    admin = urlsplit(postgres.admin_url())
    env = {instance_settings.PG_URL_ENV: urlunsplit(("postgresql+psycopg2", admin.netloc, f"/{name}", "", ""))}
    try:
        assert instance_settings.create_database(env) is True
        assert instance_settings.create_database(env) is False  # a second start finds it
    finally:
        postgres.drop_database(name)


# -- the workers ---------------------------------------------------------------------------------------------------
def unreachable() -> str | None:
    """Why the services cannot be used (one line), or None."""
    reason = postgres.reachable()
    if reason:
        return reason
    from kombu import Connection

    try:
        with Connection(BROKER_URL, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        return f"Celery broker {BROKER_URL} unreachable: {exc}"
    import redis

    try:
        redis.Redis.from_url(BACKEND_URL, socket_connect_timeout=5).ping()
    except Exception as exc:
        return f"Celery result backend {BACKEND_URL} unreachable: {exc}"
    return None


def delete_queue(name: str) -> None:
    """Delete the queue and its exchange (Celery names it after the queue)."""
    from kombu import Connection

    with Connection(BROKER_URL, connect_timeout=5) as connection:
        for delete in ("queue_delete", "exchange_delete"):
            channel = connection.channel()  # one each: a failed delete closes its channel
            try:
                getattr(channel, delete)(name)
            except Exception:  # never declared (no run was launched): nothing to delete
                pass


class Cluster:
    """The daemon and two workers on one PostgreSQL instance, each process in its own session."""

    def __init__(self, tmp_path: Path, database_url: str, queue: str):
        self.home, self.data, self.logs = tmp_path / "dagster_home", tmp_path / "data", tmp_path / "logs"
        self.logs.mkdir()
        (self.data / "inbox").mkdir(parents=True)
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), "LEAF_DATA_DIR": str(self.data),
                    "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
                    instance_settings.PG_URL_ENV: database_url, instance_settings.CELERY_BROKER_ENV: BROKER_URL,
                    instance_settings.CELERY_BACKEND_ENV: BACKEND_URL, instance_settings.CELERY_QUEUE_ENV: queue,
                    RECORDS_URL_ENV: records_url_of(database_url)}  # the records in the same database, as on hosts
        for name in list(self.env):
            if name in instance_settings.PG_PARTS_ENV.values():
                del self.env[name]
        instance_settings.write(self.home, self.env)
        self.daemon: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.workdirs: dict[str, Path] = {}

    def _start(self, command: list[str], log: str, cwd: Path, **env: str) -> subprocess.Popen:
        with open(self.logs / log, "ab") as out:
            return subprocess.Popen(command, cwd=cwd, env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent)  # none outlives a test that was killed

    def start_worker(self, name: str) -> None:
        """`celery worker` with one run at a time, in a working folder (and TMPDIR) of its own."""
        workdir = self.workdirs[name] = self.home.parent / "workers" / name
        (workdir / "tmp").mkdir(parents=True)
        command = [sys.executable, "-m", "celery", "-A", "leaf_dagster.worker", "worker", "--concurrency", "1",
                   "--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        self.workers[name] = self._start(command, f"{name}.log", workdir, TMPDIR=str(workdir / "tmp"))

    def start_daemon(self) -> None:
        binary = Path(sys.executable).with_name("dagster-daemon")
        self.daemon = self._start([str(binary), "run", "-w", "workspace.yaml"], "daemon.log", REPO)

    def worker_of(self, hostname: str) -> str:
        return hostname.split("@", 1)[0]

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and its pool process, as when its host dies."""
        process = self.workers[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in [*self.workers.values(), *([self.daemon] if self.daemon else [])]:
            if process.poll() is None:
                stop_daemon(process, grace=10)

    def logs_tail(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}"
                         for log in sorted(self.logs.glob("*.log")))

    def wait_for(self, what: str, condition: Callable[[], bool], deadline: float, pause: float = 0.5) -> None:
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; logs end:\n{self.logs_tail()}")
            time.sleep(pause)

    def drop(self, upload: Path, owner: str = "grower") -> None:
        inbox = self.data / "inbox"
        (inbox / f"{upload.stem}.json").write_text(json.dumps({"leafUserId": owner, "provider": "JohnDeere"}))
        os.replace(upload, inbox / upload.name)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    require(unreachable())
    queue = f"leaf_test_{uuid.uuid4().hex[:12]}"
    with postgres.scratch_database("leaf_test") as url:
        cluster = Cluster(tmp_path, url, queue)
        for name in (*instance_settings.PG_PARTS_ENV.values(), "DAGSTER_HOME", "LEAF_DATA_DIR"):
            monkeypatch.delenv(name, raising=False)
        for name, value in cluster.env.items():  # this process reads the same instance: its yaml names variables
            if os.environ.get(name) != value:
                monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(cluster.home)) as instance:  # the schema made before the
            instance.get_runs(limit=1)                                        # processes race to make it
        try:
            yield cluster
        finally:
            cluster.stop()
            delete_queue(queue)


def engine_messages(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """The run's engine events naming a Celery worker: (message, worker hostname)."""
    out = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        worker = (data.metadata or {}).get("Celery worker") if data else None
        if worker is not None:
            out.append((entry.message or "", str(getattr(worker, "value", worker))))
    return out


def files_of(data: Path) -> list[dict[str, Any]]:
    storage = Storage(data)
    ids = [i for batch in storage.records.many("batches") for i in batch.get("leafFiles") or []]
    return storage.records.many("files", ids)


def all_settled(data: Path, batches: int, files: int) -> bool:
    storage = Storage(data)
    records = list(storage.records.many("batches"))
    return (len(records) == batches and all(b.get("status") in ("PROCESSED", "FAILED") for b in records)
            and len(files_of(data)) == files and all(f.get("status") in FINAL for f in files_of(data)))


def standard_rows(data: Path, file_id: str) -> int:
    """Rows of the file's standard GeoParquet output: the one output of its points, written once."""
    return pq.read_metadata(Storage(data).parquet_path("standard", file_id)).num_rows


def batch_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.job_name == BATCH_JOB]


def test_two_workers_process_two_uploads_each_file_once(cluster: Cluster, real: Path, tmp_path: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    six, kept = six_shapefiles(real, tmp_path)
    mixed = mixed_upload(tmp_path)
    for name in ("w1", "w2"):
        cluster.start_worker(name)
    cluster.start_daemon()
    cluster.drop(six)
    cluster.drop(mixed, owner="other")  # another owner: its run is not held back by the first one's limit

    cluster.wait_for("both uploads settled", lambda: all_settled(cluster.data, 2, FILES + 2), deadline)
    with dg.DagsterInstance.from_config(str(cluster.home)) as instance:
        assert type(instance.run_launcher).__name__ == "CeleryRunLauncher"
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = batch_runs(instance)
        assert len(runs) == 2 and not [r for r in runs if RECOVERS_TAG in r.tags]
        workers = set()
        for run in runs:
            executed = engine_messages(instance, run.run_id)
            assert len(executed) == 1 and executed[0][0] == EXECUTED_BY.format(worker=executed[0][1])
            workers.add(cluster.worker_of(executed[0][1]))
        assert workers <= {"w1", "w2"}
        print(f"runs executed by {sorted(workers)}")

    records = {r["fileName"]: r for r in files_of(cluster.data)}
    by_run = {r.tags["dagster/partition"]: r for r in runs}
    for record in records.values():
        assert record["lastRunId"] == by_run[record["batchId"]].run_id  # settled by its upload's one run
    # the six fields: processed, each with the points Leaf's default cleanup keeps (counted from the source)
    for name, points in kept.items():
        assert records[name]["status"] == "processed" and records[name]["pointCount"] == points
        assert standard_rows(cluster.data, records[name]["id"]) == points
    # the mixed upload ends as on one machine (tests/test_postgres_instance.py): one processed, one failed
    assert records["FarmerB Farms Inc.-FarmerB Family LLC-sec 1 west-Wheat (Hrd Rd Wtr)-1"]["status"] == "processed"
    failed = records["area2_yield_ISO-8859-1"]
    assert failed["status"] == "failed" and failed["steps"]["standardGeojson"]["status"] == "failed"
    # no worker wrote outside the shared data directory: their working folders hold only what Celery keeps
    for workdir in cluster.workdirs.values():
        assert not [p for p in workdir.rglob("*.parquet")]


def test_a_killed_worker_s_run_is_resumed_by_the_other_and_each_file_lands_once(cluster: Cluster, real: Path,
                                                                                 tmp_path: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    six, kept = six_shapefiles(real, tmp_path)
    for name in ("w1", "w2"):
        cluster.start_worker(name)
    cluster.start_daemon()
    cluster.drop(six)

    with dg.DagsterInstance.from_config(str(cluster.home)) as instance:
        holder: list[str] = []

        def mid_run() -> bool:
            runs = batch_runs(instance)
            if not runs or runs[0].status != dg.DagsterRunStatus.STARTED:
                return False
            done = [f for f in files_of(cluster.data) if f.get("status") in FINAL]
            executed = engine_messages(instance, runs[0].run_id)
            if executed and done:
                holder[:] = [cluster.worker_of(executed[0][1])]
                return True
            return False

        cluster.wait_for("the upload's run to settle its first file", mid_run, deadline, pause=0.1)
        settled_before = {f["id"] for f in files_of(cluster.data) if f.get("status") in FINAL}
        assert len(settled_before) < FILES, "the run finished before the worker could be killed mid-run"
        cluster.kill_worker(holder[0])
        other = ({"w1", "w2"} - set(holder)).pop()

        cluster.wait_for("every file settled", lambda: all_settled(cluster.data, 1, FILES), deadline)
        cluster.wait_for("the run to end", lambda: batch_runs(instance)[0].is_finished, deadline)
        (run,) = batch_runs(instance)  # the same run, resumed; no second run queued
        assert run.status == dg.DagsterRunStatus.SUCCESS
        messages = engine_messages(instance, run.run_id)
        assert [cluster.worker_of(w) for _, w in messages] == [holder[0], other]
        assert messages[1][0] == RESUMED_BY.format(worker=messages[1][1])

    records = {r["fileName"]: r for r in files_of(cluster.data)}
    for name, points in kept.items():
        record = records[name]
        assert record["status"] == "processed" and record["pointCount"] == points
        assert record["lastRunId"] == run.run_id
        assert standard_rows(cluster.data, record["id"]) == points  # written once, complete
    # no output of the file the killed worker held is left half-written: every output is read back whole
    for output in (cluster.data / "lake").rglob("*.parquet"):
        if not output.name.startswith("."):
            pq.read_metadata(output)
    # and the SQL catalog holds each file's points once
    _, rows = query(Storage(cluster.data), "SELECT file_id, count(*) FROM standard_points GROUP BY file_id")
    names = {r["id"]: name for name, r in records.items()}
    assert {names[file_id]: points for file_id, points in rows} == kept
