"""The daemon's whole process group killed while file runs are STARTED, then restarted: a real `dagster-daemon`
against a temporary DAGSTER_HOME (the project's dagster.yaml, with shorter monitoring intervals) and data folder.

Before the recovery sensor the killed runs stayed STARTED for good, held both run slots, and every owner's
uploads waited. Now the restarted daemon fails them, queues each once more, and every file ends processed.
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

import dagster as dg
import pytest
import yaml

from dagster._core.events import EngineEventData

from benchmarks.daemon import stop_daemon
from leaf_dagster.defs.recovery import RECOVERS_TAG, WORKER_GONE, process_alive, worker_pid
from leaf_dagster.defs.sensors import recovery_sensor
from leaf_dagster.defs.run_status import record_file_status
from leaf_dagster.status import BATCH_JOB, FILE_JOB
from leaf_dagster.storage import Storage

from .conftest import REPO
from .uploads import wheat_fields

FILES = 6
POINTS = 400
DEADLINE = 420  # seconds for the whole test; on an idle 2-core machine it takes about a minute and a half
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def test_a_process_is_alive_only_if_it_is_the_one_that_reported() -> None:
    assert process_alive(os.getpid(), time.time())
    assert not process_alive(os.getpid(), time.time() - 10 ** 6)  # started after the report: a reused pid
    child = subprocess.Popen(["true"])
    child.wait()
    assert not process_alive(child.pid, time.time())


def started_run(instance: dg.DagsterInstance, file_id: str, pid: int, **tags: str) -> dg.DagsterRun:
    """A file run that Dagster believes STARTED, whose worker reported `pid`."""
    run = dg.DagsterRun(job_name=FILE_JOB, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED,
                        tags={"dagster/partition": file_id, "leaf/owner": "alice", **tags})
    instance.add_run(run)
    instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
    return run


def test_dead_runs_are_failed_and_queued_again_once(storage: Storage, instance: dg.DagsterInstance) -> None:
    child = subprocess.Popen(["true"])
    child.wait()  # a worker that is gone
    storage.records.put_facts("files", "f1", {"id": "f1", "status": "processing"})
    instance.add_dynamic_partitions("machine_files", ["f1"])
    alive = started_run(instance, "f2", os.getpid())
    first = started_run(instance, "f1", child.pid)

    result = recovery_sensor(dg.build_sensor_context(instance=instance))
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
    assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.FAILURE
    (request,) = result.run_requests
    assert (request.run_key, request.job_name, request.partition_key) == (f"recover:{first.run_id}", FILE_JOB, "f1")
    assert request.tags[RECOVERS_TAG] == first.run_id and request.tags["leaf/owner"] == "alice"
    again = recovery_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
    assert not getattr(again, "run_requests", None)  # the same lost run is not queued twice

    second = started_run(instance, "f1", child.pid, **{RECOVERS_TAG: first.run_id})  # the second attempt dies too
    last = recovery_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
    assert instance.get_run_by_id(second.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not last.run_requests  # once only: the file now fails with the reason
    record = record_file_status(instance, storage, "f1")
    assert record["status"] == "failed"
    assert record["steps"]["originalFile"] == {"status": "failed", "message": WORKER_GONE.format(pid=child.pid)}


def six_shapefiles(real: Path, tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """Six fields of 400 real points each (tests/uploads.py), so each file run is short and the test is about the
    crash, not the reading; with the points Leaf's default cleanup keeps, per file."""
    return wheat_fields(real, tmp_path, FILES, POINTS, "six-fields")


class Daemon:
    """`dagster-daemon run` in its own session, so its process group holds the code server and run workers."""

    def __init__(self, home: Path, data: Path, log: Path):
        self.env = {**os.environ, "DAGSTER_HOME": str(home), "LEAF_DATA_DIR": str(data)}
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = Path(sys.executable).with_name("dagster-daemon")
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([str(binary), "run", "-w", "workspace.yaml"], cwd=REPO, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def kill_group(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)  # kill -9 -- -PGID
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_daemon(self.process, grace=10)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[Path, Path, Daemon]]:
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    (data / "inbox").mkdir(parents=True)
    settings = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    # the shipped intervals, shortened so the test is quick: runs that never started fail after 20 s
    settings["run_monitoring"].update(start_timeout_seconds=20, poll_interval_seconds=5)
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    with dg.DagsterInstance.from_config(str(home)) as instance:  # its databases made before two processes race to
        instance.get_runs(limit=1)                               # create them (the daemon and the test's reader)
    daemon = Daemon(home, data, tmp_path / "daemon.log")
    try:
        yield home, data, daemon
    finally:
        daemon.stop()


def wait_for(what: str, condition: Callable[[], bool], deadline: float, log: Path) -> None:
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"timed out waiting for {what}; daemon log ends:\n{tail}")
        time.sleep(1)


def runs(instance: dg.DagsterInstance, statuses: list[dg.DagsterRunStatus] | None = None) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(statuses=statuses or [])))


def test_killed_daemon_group_is_recovered_on_restart(real: Path, tmp_path: Path, workspace) -> None:
    home, data, daemon = workspace
    deadline = time.monotonic() + DEADLINE
    upload, kept = six_shapefiles(real, tmp_path)
    (data / "inbox" / "six.json").write_text(json.dumps({"leafUserId": "grower", "provider": "JohnDeere"}))
    os.replace(upload, data / "inbox" / "six.zip")

    daemon.start()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        def files_running() -> bool:
            batch = next(iter(Storage(data).records.many("batches")), {})
            return batch.get("status") == "PROCESSING" and any(
                r.job_name == BATCH_JOB for r in runs(instance, [dg.DagsterRunStatus.STARTED]))

        wait_for("the upload's run to start on its files", files_running, deadline, daemon.log)
        daemon.kill_group()
        before = {r["id"]: r.get("lastRunId") for r in Storage(data).records.many("files")
                  if r.get("status") == "processed"}

        stuck = [r for r in runs(instance, [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])]
        assert any(r.job_name == BATCH_JOB and r.status == dg.DagsterRunStatus.STARTED for r in stuck)
        # every worker dies with the group (SIGKILL lands asynchronously: a process in disk sleep takes a moment);
        # Dagster still believes they run
        reported = [pid for pid in (worker_pid(instance, run.run_id) for run in stuck) if pid is not None]
        wait_for("the killed group's run workers to be gone", lambda: not any(process_alive(*p) for p in reported),
                 min(deadline, time.monotonic() + 30), daemon.log)

        daemon.start()
        batch_files: list[str] = []

        def all_files_final() -> bool:
            batch = next(iter(Storage(data).records.many("batches")), {})
            batch_files[:] = batch.get("leafFiles", [])
            records = Storage(data).records.many("files", batch_files)
            return (batch.get("status") == "PROCESSED" and len(records) == FILES
                    and all(r.get("status") == "processed" for r in records) and not runs(instance, UNFINISHED))

        wait_for("every file processed and the queue empty", all_files_final, deadline, daemon.log)

        for run in stuck:
            after = instance.get_run_by_id(run.run_id)
            assert after is not None and after.status == dg.DagsterRunStatus.FAILURE
            again = runs(instance)
            retries = [r for r in again if r.tags.get(RECOVERS_TAG) == run.run_id]
            assert len(retries) == 1 and retries[0].status == dg.DagsterRunStatus.SUCCESS
            assert retries[0].tags["dagster/partition"] == run.tags["dagster/partition"]
        every = {r.run_id: r for r in runs(instance)}
        # each file and the batch succeed exactly once; every other run of one is the recovery of one of its
        # runs that failed: a killed one, or (on a loaded machine) one run monitoring failed for starting late
        assert not [r for r in every.values() if r.job_name == FILE_JOB]  # the files ran in the upload's runs
        # files settled before the kill were not run again by the second attempt
        assert {i: Storage(data).records.get("files", i)["lastRunId"] for i in before} == before
        for job in (BATCH_JOB,):
            mine = [r for r in every.values() if r.job_name == job]
            for partition in {r.tags["dagster/partition"] for r in mine}:
                its = [r for r in mine if r.tags["dagster/partition"] == partition]
                assert sum(r.status == dg.DagsterRunStatus.SUCCESS for r in its) == 1
                assert sum(RECOVERS_TAG not in r.tags for r in its) == 1
                for retry in (r for r in its if RECOVERS_TAG in r.tags):
                    failed = every[retry.tags[RECOVERS_TAG]]
                    assert failed.tags["dagster/partition"] == partition
                    assert failed.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
        points = {}
        for record in Storage(data).records.many("files", batch_files):
            points[record["fileName"]] = record["pointCount"]
        assert points == kept
