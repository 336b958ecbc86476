"""The run queue under one owner's many uploads: Dagster's own queue daemon, the project's dagster.yaml limits and
the tags the project's sensors put on runs (an upload is one run: its batch step and every step of its files). Runs are launched by a mocked launcher and each lasts one step of
simulated time, so the test measures the queue's decisions, not the machine's speed."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test, create_test_daemon_workspace_context
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from leaf_dagster.defs.resources import LeafStorage
from leaf_dagster.defs.sensors import inbox_sensor
from leaf_dagster.status import BATCH_JOB
from leaf_dagster.storage import Storage

from .conftest import REPO, make_zip

CSV = "latitude,longitude,Yld Mass(Dry)(tonne/ha)\n46.03,-109.17,5.1\n46.04,-109.17,5.3\n"
ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


class Queue:
    """The daemon's dequeue loop over an instance configured like `make run`'s, one simulated step at a time."""

    def __init__(self, instance: dg.DagsterInstance, context, storage: Storage):
        self.instance, self.context, self.storage = instance, context, storage
        self.daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        self.step = 0
        self.launched_at: dict[str, int] = {}

    def upload(self, owner: str, name: str, files: int) -> str:
        """An API upload: the zip and its sidecar in the inbox, picked up by the real inbox sensor."""
        upload = make_zip(self.storage.inbox / f"{name}.zip", {f"f{i:03d}.csv": CSV for i in range(files)})
        (self.storage.inbox / f"{name}.json").write_text(json.dumps(
            {"leafUserId": f"{owner}-grower", "provider": "Other", "apiOwnerUsername": owner}))
        old = time.time() - 60
        os.utime(upload, (old, old))
        result = inbox_sensor(self._sensor_context())
        (request,) = result.run_requests
        self.instance.add_dynamic_partitions("batches", [request.partition_key])
        self._enqueue(BATCH_JOB, request)
        return request.partition_key

    def advance(self) -> None:
        """One step: the runs launched in earlier steps finish, then the daemon launches what the queue allows."""
        for run in self.instance.get_runs(dg.RunsFilter(statuses=ACTIVE)):
            self.instance.report_dagster_event(dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name), run_id=run.run_id)
        list(self.daemon.run_iteration(self.context))
        for run in self.instance.get_runs(dg.RunsFilter(statuses=ACTIVE)):
            self.launched_at.setdefault(run.run_id, self.step)
        self.step += 1

    def _enqueue(self, job: str, request: dg.RunRequest) -> None:
        origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("leaf_dagster"), "__repository__"), job)
        create_run_for_test(self.instance, job_name=job, status=dg.DagsterRunStatus.QUEUED, remote_job_origin=origin,
                            tags={**request.tags, "dagster/partition": request.partition_key})

    def _sensor_context(self, cursor: str | None = None) -> dg.SensorEvaluationContext:
        return dg.build_sensor_context(instance=self.instance, cursor=cursor,
                                       resources={"storage": LeafStorage(data_dir=str(self.storage.root))})

    def done_at(self, batch_id: str) -> int | None:
        """The step at which the batch's run had finished."""
        runs = self.instance.get_runs(dg.RunsFilter(tags={"leaf/batch_id": batch_id}))
        if not runs or any(r.status != dg.DagsterRunStatus.SUCCESS for r in runs):
            return None
        return max(self.launched_at[r.run_id] for r in runs) + 1


@contextmanager
def queue_instance(tmp_path: Path) -> Iterator[tuple[dg.DagsterInstance, Any]]:
    """A sqlite instance with the project's queue settings, in memory-backed storage when the machine has it
    (the test writes a few thousand run events; on disk each commit waits for the disk)."""
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path) as home, \
            dg.instance_for_test(overrides=project_instance_settings(), temp_dir=home) as instance, \
            create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as context:
        yield instance, context


def project_instance_settings() -> dict:
    """The run queue settings `make run` uses, with a launcher that only records launches."""
    settings = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    return {"run_coordinator": settings["run_coordinator"], "concurrency": settings["concurrency"],
            "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}}


def steps_for_bob(tmp_path: Path, alice_uploads: int) -> tuple[int, dict[str, int]]:
    """Bob's upload, arriving while `alice_uploads` uploads of alice's are queued: the simulated steps from
    his upload to the end of its run, and how many runs of each owner were launched meanwhile."""
    storage = Storage(tmp_path / "data")
    storage.inbox.mkdir(parents=True)
    with queue_instance(tmp_path) as (instance, context):
        queue = Queue(instance, context, storage)
        for number in range(alice_uploads):
            queue.upload("alice", f"alice-{number:03d}", 10)
        queue.advance()  # alice's runs hold their slots
        start = queue.step
        bob = queue.upload("bob", "bob-6", 6)
        while queue.done_at(bob) is None:
            queue.advance()
            assert queue.step < start + 50, "bob's upload never finished"
        launched = {owner: sum(1 for r in instance.get_runs(dg.RunsFilter(tags={"leaf/owner": owner}))
                               if start <= queue.launched_at.get(r.run_id, -1) < queue.done_at(bob))
                    for owner in ("alice", "bob")}
        return queue.done_at(bob) - start, launched


@pytest.mark.parametrize("alice_uploads", [40])
def test_many_uploads_do_not_delay_another_owners_upload(tmp_path: Path, alice_uploads: int) -> None:
    alone, _ = steps_for_bob(tmp_path / "alone", 0)
    shared, launched = steps_for_bob(tmp_path / "shared", alice_uploads)
    # bob's upload is one run: launched at the next step whether or not alice's 40 are waiting
    assert alone == 1
    assert shared == alone
    assert launched["bob"] == 1
    # alice keeps the machine busy meanwhile, on the slots bob does not need
    assert launched["alice"] >= 2


def test_one_owners_runs_never_take_every_slot(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    storage.inbox.mkdir(parents=True)
    settings = project_instance_settings()
    with queue_instance(tmp_path) as (instance, context):
        queue = Queue(instance, context, storage)
        for number in range(8):
            queue.upload("alice", f"alice-{number}", 3)
        busiest = 0
        while instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])) or queue.step < 2:
            queue.advance()
            busiest = max(busiest, instance.get_runs_count(dg.RunsFilter(statuses=ACTIVE)))
    limits = {limit["key"]: limit["limit"] for limit in settings["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert busiest == limits["leaf/owner"] < settings["concurrency"]["runs"]["max_concurrent_runs"]
