"""`make cluster` as a user starts it (code server, webserver, daemon on a PostgreSQL instance, two Celery workers,
two API processes), with a PostgreSQL database, a Celery queue, a data directory and ports of the test's own: a
20-file upload POSTed to one API process is processed exactly once and ends, in the status both API processes
answer and in the SQL catalog, as the same upload run in-process on one machine.

The test runs the Makefile target itself, so it exercises the very commands `make cluster` starts. Without
PostgreSQL, RabbitMQ or Redis it skips, except in CI, where it fails: CI must prove the cluster's layout.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pyarrow.parquet as pq
import pytest
from dagster_celery.launcher import DAGSTER_CELERY_TASK_ID_TAG

from benchmarks import postgres
from leaf_dagster import instance as instance_settings
from leaf_dagster.catalog import query
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.defs.recovery import RECOVERS_TAG
from leaf_dagster.objects import status_object
from leaf_dagster.records import RECORDS_URL_ENV
from leaf_dagster.status import BATCH_JOB, FILE_JOB, OVERVIEW_JOB
from leaf_dagster.storage import DEFAULT_OWNER, Storage
from leaf_dagster.worker import EXECUTED_BY

from .conftest import REPO, records_in, records_url_of, require
from .test_api import BASE
from .test_celery_workers import BACKEND_URL, BROKER_URL, delete_queue, engine_messages, unreachable
from .test_make_run import free_port, kill_all, processes_with
from .test_postgres_instance import VOLATILE
from .uploads import wheat_fields

FIELDS, POINTS = 20, 100
DEADLINE = 300  # seconds for the whole test; about a minute and a half on a busy 2-core machine
STOP_SECONDS = 30
BIN = Path(sys.executable).parent  # the virtualenv the tests run from: `make cluster`'s $(BIN)
TOKEN = "cluster-token"
# The in-process run has no API token: its batch belongs to the default owner, so the API's token does too.
OWNER = DEFAULT_OWNER
USER, PROVIDER = "grower", "JohnDeere"
FINAL_BATCH = {"PROCESSED", "FAILED"}
# Catalog columns that differ between two runs of the same upload by nature, beyond VOLATILE (when, which run, the
# random thumbnail token): the file step's run id and the batch's times; and where the upload was kept: the API
# streams it to a name of its own and moves it out of the inbox, the in-process run keeps the caller's name and file.
IGNORED = VOLATILE | {"runId", "uploadTimestamp", "processedTimestamp", "storedName", "storedPath", "inboxPath",
                      "moveUpload"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Layout:
    """`make cluster` running: its process (make, leading a process group of its own), where it writes, its URLs."""

    process: subprocess.Popen
    log: Path
    data: Path
    home: Path
    workdirs: Path
    workers: list[str]
    apis: list[str]
    ui: str
    marker: str

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_for(self, what: str, condition: Callable[[], bool], deadline: float) -> None:
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"make cluster ended with status {self.process.returncode} while waiting for {what}:\n"
                            f"{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; make cluster's output ends:\n{self.tail()}")
            time.sleep(0.5)


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Layout]:
    """`make cluster` on free ports, with a scratch database, a queue of its own and its own data directory and
    .cluster folder; stopped with SIGTERM as a user stops it, then whatever carries its marker is killed, the queue
    deleted and the database dropped, whatever the test's outcome."""
    require(unreachable())
    data, cluster_dir = tmp_path / "data", tmp_path / "cluster"
    data.mkdir()
    # make queues the shipped samples once, unless this marker says they were: the test's upload is the only one
    (data / ".samples-queued").touch()
    suffix = uuid.uuid4().hex[:12]
    queue = f"leaf_test_{suffix}"
    # Celery node names are unique on the broker: another cluster on this host (a user's, a test's) has its own
    workers = [f"worker{n}-{suffix}" for n in (1, 2)]
    port, api_port, api_port2, code_port = (free_port() for _ in range(4))
    with postgres.scratch_database("leaf_test") as url:
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DAGSTER_HOME", instance_settings.PG_URL_ENV,
                            *instance_settings.PG_PARTS_ENV.values())}
        env.update({"LEAF_DATA_DIR": str(data), "LEAF_API_TOKENS": f"{TOKEN}={OWNER}",
                    "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
                    instance_settings.CELERY_BROKER_ENV: BROKER_URL, instance_settings.CELERY_BACKEND_ENV: BACKEND_URL,
                    instance_settings.CELERY_QUEUE_ENV: queue})
        # -o: the virtualenv these tests run from counts as installed, even when pyproject.toml is newer
        command = ["make", "--no-print-directory", "-o", f"{BIN}/leaf-dagster", "cluster", f"BIN={BIN}",
                   f"CLUSTER_DIR={cluster_dir}", f"CLUSTER_WORKERS={' '.join(workers)}", f"CLUSTER_PG_URL={url}",
                   "HOST=127.0.0.1", f"PORT={port}", f"API_PORT={api_port}", f"API_PORT2={api_port2}",
                   f"CODE_PORT={code_port}"]
        log = tmp_path / "make-cluster.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        # this process reads the same instance: its dagster.yaml names the variables
        for name in instance_settings.PG_PARTS_ENV.values():
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(instance_settings.PG_URL_ENV, url)
        monkeypatch.setenv(RECORDS_URL_ENV, records_url_of(url))  # the layout's records, in its database
        for name in (instance_settings.CELERY_BROKER_ENV, instance_settings.CELERY_BACKEND_ENV,
                     instance_settings.CELERY_QUEUE_ENV):
            monkeypatch.setenv(name, env[name])
        marker = f"LEAF_DATA_DIR={data}"
        try:
            yield Layout(process, log, data, cluster_dir / "dagster_home", cluster_dir, workers,
                         [f"http://127.0.0.1:{p}" for p in (api_port, api_port2)], f"http://127.0.0.1:{port}", marker)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            kill_all(marker)  # every process of the layout carries the data directory in its environment
            process.wait(timeout=STOP_SECONDS)
            forget_results(cluster_dir / "dagster_home")
            delete_queue(queue)


def forget_results(home: Path) -> None:
    """Delete the task states the runs left in the result backend (kept a week for run monitoring)."""
    if not (home / "dagster.yaml").exists():  # make stopped before writing it: no run was launched
        return
    with dg.DagsterInstance.from_config(str(home)) as dagster:
        for run in dagster.get_runs():
            if DAGSTER_CELERY_TASK_ID_TAG in run.tags:
                dagster.run_launcher.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG]).forget()


def answers(client: httpx.Client) -> bool:
    try:
        return client.get("/openapi.json").status_code == 200
    except httpx.HTTPError:
        return False


def relabel(value: Any, labels: dict[str, str]) -> Any:
    """`value` with every batch and file id in it (ids, paths, JSON text) replaced by what it stands for."""
    if isinstance(value, str):
        return UUID.sub(lambda m: labels.get(m.group(0), m.group(0)), value)
    if isinstance(value, (list, tuple)):
        return [relabel(v, labels) for v in value]
    if isinstance(value, dict):
        return {k: relabel(v, labels) for k, v in value.items()}
    return value


def id_labels(storage: Storage, batch_id: str) -> dict[str, str]:
    """The batch's id and each of its files' ids, by what they stand for (ids differ between runs, names do not)."""
    batch = storage.records.get("batches", batch_id) or {}
    files = storage.records.many("files", batch.get("leafFiles", []))
    return {batch_id: "<batch>", **{f["id"]: f"<file {f['fileName']}>" for f in files}}


def catalog(storage: Storage, labels: dict[str, str]) -> dict[str, list[str]]:
    """Every table of the SQL catalog, its rows without the IGNORED columns and with ids relabelled, sorted."""
    _, tables = query(storage, "SHOW TABLES")
    out = {}
    for (table,) in tables:
        columns, rows = query(storage, f'SELECT * FROM "{table}"')
        kept = [i for i, name in enumerate(columns) if name not in IGNORED]
        out[table] = sorted(repr(relabel([row[i] for i in kept], labels)) for row in rows)
    return out


def materialized(instance: dg.DagsterInstance, run_ids: list[str], labels: dict[str, str]) -> Counter:
    """How often each asset partition (by what it stands for) was materialised by the runs."""
    counts: Counter = Counter()
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            assert materialization is not None
            partition = materialization.partition or ""
            counts[(materialization.asset_key.to_user_string(), labels.get(partition, partition))] += 1
    return counts


def celery_totals(instance: dg.DagsterInstance, workers: list[str], pids: set[int]) -> dict[str, dict[str, int]]:
    """The tasks each of the layout's workers ran, by worker name and task name, as the workers themselves count
    them (Celery's `inspect stats`, asked of the workers by name, and answered by this layout's processes)."""
    names = [f"{worker}@{socket.gethostname()}" for worker in workers]  # what `--hostname NAME@%h` names them
    stats = instance.run_launcher.celery.control.inspect(destination=names, timeout=5.0).stats() or {}
    return {hostname.split("@", 1)[0]: dict(reply.get("total", {})) for hostname, reply in stats.items()
            if reply.get("pid") in pids}


def test_a_twenty_file_upload_through_make_cluster_is_processed_once_as_on_one_machine(
        layout: Layout, real: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    deadline = started + DEADLINE
    upload, kept = wheat_fields(real, tmp_path, FIELDS, POINTS, "twenty-fields")
    clients = [httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
               for url in layout.apis]
    layout.wait_for("both API processes", lambda: all(answers(c) for c in clients), deadline)
    with open(upload, "rb") as fh:
        response = clients[0].post(f"{BASE}/batch", params={"leafUserId": USER, "provider": PROVIDER},
                                   files={"file": (upload.name, fh, "application/zip")})
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    posted = time.monotonic()

    # the single machine's run of the same upload, in this process while the cluster works on it, on the in-memory
    # instance `leaf-dagster process` uses without DAGSTER_HOME
    single = Storage(tmp_path / "single")
    with records_in("sqlite"), dg.DagsterInstance.ephemeral() as instance:
        alone = process_upload(upload, single, instance, leaf_user_id=USER, provider=PROVIDER)
        alone_labels = id_labels(single, alone["batch"]["id"])
        alone_materialized = materialized(instance, [r.run_id for r in instance.get_runs()], alone_labels)
    alone_seconds = time.monotonic() - posted

    layout.wait_for("the upload to settle", lambda: clients[1].get(f"{BASE}/batch/{batch_id}").json()
                    .get("status") in FINAL_BATCH, deadline)
    shared = Storage(layout.data)
    labels = id_labels(shared, batch_id)
    batch = shared.records.get("batches", batch_id) or {}
    records = {r["fileName"]: r for r in shared.records.many("files", batch.get("leafFiles", []))}

    # the instance is opened only now: the layout's processes made its schema (no race to make it with them)
    with dg.DagsterInstance.from_config(str(layout.home)) as dagster:
        assert type(dagster.run_launcher).__name__ == "CeleryRunLauncher"
        assert type(dagster.run_storage).__name__ == "PostgresRunStorage"
        def all_ended() -> bool:
            runs = dagster.get_runs()
            return OVERVIEW_JOB in {r.job_name for r in runs} and all(r.is_finished for r in runs)

        layout.wait_for("the batch's overview run and every run to end", all_ended, deadline)
        runs = dagster.get_runs()
        # one run of the upload (never recovered, no run of a single file) and its overview, each successful
        assert sorted(r.job_name for r in runs) == sorted([BATCH_JOB, OVERVIEW_JOB])
        assert not [r for r in runs if r.status != dg.DagsterRunStatus.SUCCESS or RECOVERS_TAG in r.tags]
        assert FILE_JOB not in {r.job_name for r in runs}
        (batch_run,) = [r for r in runs if r.job_name == BATCH_JOB]
        assert batch_run.tags["dagster/partition"] == batch_id
        run_record = dagster.get_run_record_by_id(batch_run.run_id)
        assert run_record is not None and run_record.start_time and run_record.end_time
        run_seconds = run_record.end_time - run_record.start_time
        # each run a Celery task, executed once, by one of the two workers, which recorded it as successful
        ran_by: dict[str, str] = {}
        for run in runs:
            ((message, hostname),) = engine_messages(dagster, run.run_id)
            assert message == EXECUTED_BY.format(worker=hostname)
            ran_by[run.job_name] = hostname.split("@", 1)[0]
            assert dagster.run_launcher.celery.AsyncResult(
                run.tags[DAGSTER_CELERY_TASK_ID_TAG]).state == "SUCCESS"
        assert set(ran_by.values()) <= set(layout.workers)
        totals = celery_totals(dagster, layout.workers, set(processes_with(layout.marker)))
        assert sorted(totals) == layout.workers
        assert {w: totals[w].get("execute_job", 0) for w in layout.workers} == {
            w: sum(1 for name in ran_by.values() if name == w) for w in layout.workers}
        assert sum(sum(t.values()) for t in totals.values()) == len(runs)  # no other task: no resumption
        # each step of each file materialised once, as in the single machine's run
        cluster_materialized = materialized(dagster, [r.run_id for r in runs], labels)
        assert set(cluster_materialized.values()) == {1}
        assert cluster_materialized == alone_materialized

    # every file processed once, by the upload's run, with the points Leaf's default cleanup keeps
    assert sorted(records) == sorted(kept)
    for name, points in kept.items():
        record = records[name]
        assert (record["status"], record["pointCount"], record["lastRunId"]) == ("processed", points, batch_run.run_id)
        assert pq.read_metadata(shared.parquet_path("standard", record["id"])).num_rows == points
    # no worker wrote outside the shared data directory
    assert not [p for name in layout.workers for p in (layout.workdirs / name).rglob("*.parquet")]

    # both API processes answer the same for the batch and every file, and that is the single machine's status
    batch_status = [c.get(f"{BASE}/batch/{batch_id}/status").json() for c in clients]
    assert batch_status[0] == batch_status[1]
    assert sorted(batch_status[0]["converted"]["leafFiles"]) == sorted(r["id"] for r in records.values())
    alone_status = {f["fileName"]: f["steps"] for f in alone["files"]}
    for name, record in records.items():
        replies = [c.get(f"{BASE}/files/{record['id']}/status") for c in clients]
        assert [r.status_code for r in replies] == [200, 200]
        assert replies[0].json() == replies[1].json() == status_object(record) == alone_status[name]
    for client in clients:
        assert client.get(f"{BASE}/batch/{batch_id}").json()["status"] == alone["batch"]["status"] == "PROCESSED"
    assert httpx.get(f"{layout.ui}/server_info", timeout=10).status_code == 200  # the webserver of the layout

    # the SQL catalog: every table and row the same, but for ids (relabelled) and the IGNORED columns
    on_cluster = catalog(shared, labels)
    with records_in("sqlite"):
        on_one_machine = catalog(single, alone_labels)
    assert sorted(on_cluster) == sorted(on_one_machine)
    for table, rows in on_one_machine.items():
        assert on_cluster[table] == rows, table
    settled = (datetime.fromisoformat(batch["processedTimestamp"].replace("Z", "+00:00"))
               - datetime.fromisoformat(batch["uploadTimestamp"].replace("Z", "+00:00"))).total_seconds()
    print(f"{FIELDS} files of {POINTS} points: PROCESSED {settled:.1f} s after the upload, the upload's run "
          f"{run_seconds:.1f} s (the in-process run meanwhile {alone_seconds:.1f} s; "
          f"{time.monotonic() - started:.1f} s in all); runs by worker: {ran_by}; Celery tasks by worker: {totals}; "
          f"catalog rows compared: { {t: len(r) for t, r in on_cluster.items()} }")
