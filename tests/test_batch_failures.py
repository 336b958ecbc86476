"""A batch whose run hits an OS error (a full disk, a path over PATH_MAX) ends FAILED with the reason, and a retry
runs it again; nothing stays RECEIVED."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import dagster as dg
import pytest

from leaf_dagster import run_requests
from leaf_dagster.defs.resources import LeafStorage
from leaf_dagster.defs.sensors import inbox_sensor
from leaf_dagster.ingest import safe_zip
from leaf_dagster.ingest.batch import batch_id_for, ingest_batch, new_batch
from leaf_dagster.defs.in_process import QUIET, load_definitions, retry_batch
from leaf_dagster.status import BATCH_JOB
from leaf_dagster.records import Records
from leaf_dagster.storage import Storage

from .conftest import JD_WHEAT_ZIP, MONTANA, make_zip, samples_zip
from .sensor_loop import SensorLoop

OWNER = "alice"


def drop_in_inbox(storage: Storage, upload: Path) -> str:
    """What POST /batch does: the zip and a sidecar in the inbox, settled."""
    storage.inbox.mkdir(parents=True, exist_ok=True)
    target = storage.inbox / upload.name
    shutil.copyfile(upload, target)
    (storage.inbox / f"{upload.stem}.json").write_text(json.dumps(
        {"leafUserId": "grower", "provider": "JohnDeere", "apiOwnerUsername": OWNER}))
    old = time.time() - 60
    os.utime(target, (old, old))
    return batch_id_for(target, "grower", "JohnDeere")


def run_until_idle(loop: SensorLoop, ticks: int = 8) -> None:
    for _ in range(ticks):
        if not loop.tick():
            loop.tick()  # the status sensor records what the last runs did
            return


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    """A disk that is full while `state["extraction"]` / `state["records"]` are set: extracted members are
    written to /dev/full (the kernel answers ENOSPC, as a full file system does), batch records fail the same way."""
    state = {"extraction": True, "records": False}
    create_temp, put = safe_zip._create_temp, Records.put

    def temp_on_full_disk(folder: Path) -> tuple[int, Path]:
        if not state["extraction"]:
            return create_temp(folder)
        return os.open("/dev/full", os.O_WRONLY), folder / ".extract-full.part"

    def record_on_full_disk(self: Records, table: str, key: str, *args: Any, **kwargs: Any) -> None:
        if state["records"] and table == "batches":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        return put(self, table, key, *args, **kwargs)

    monkeypatch.setattr(safe_zip, "_create_temp", temp_on_full_disk)
    monkeypatch.setattr(Records, "put", record_on_full_disk)
    yield state


def test_a_path_over_path_max_fails_the_batch(storage: Storage, tmp_path: Path) -> None:
    deep = "/".join(["d" * 230] * 20) + "/yield.csv"  # every name under 255 bytes, the path over 4,096
    upload = make_zip(tmp_path / "deep.zip", {deep: "latitude,longitude\n46,-109\n"})
    batch_id = batch_id_for(upload, "g", "Other")
    new_batch(storage, batch_id, upload, "g", "Other", move=False)

    outcome = ingest_batch(storage, batch_id)

    assert outcome.error == "deep.zip: extracting the upload failed (File name too long)"
    batch = storage.records.get("batches", batch_id)
    assert batch["status"] == "FAILED" and batch["statusDetails"] == outcome.error
    assert str(storage.root) not in outcome.error
    assert not storage.extracted_dir(batch_id).exists()


def test_full_disk_during_extraction_fails_the_batch_and_a_retry_processes_it(
        real: Path, storage: Storage, instance: dg.DagsterInstance, full_disk: dict[str, bool]) -> None:
    batch_id = drop_in_inbox(storage, real / MONTANA / JD_WHEAT_ZIP)
    loop = SensorLoop(instance, storage)
    run_until_idle(loop)

    batch = storage.records.get("batches", batch_id)
    assert batch["status"] == "FAILED"
    assert batch["statusDetails"] == (f"{JD_WHEAT_ZIP}: extracting the upload failed (No space left on device); "
                                      "retry the batch once the server is fixed")
    assert not storage.extracted_dir(batch_id).exists()
    assert (storage.upload_dir(batch_id) / JD_WHEAT_ZIP).exists()

    full_disk["extraction"] = False  # space freed; PUT /batch/{id}/retry
    assert run_requests.request_retry(storage, batch)[0]["status"] == "RECEIVED"
    run_until_idle(loop)

    batch = storage.records.get("batches", batch_id)
    assert batch["status"] == "PROCESSED" and batch["statusDetails"] is None
    (file_id,) = batch["leafFiles"]
    assert storage.records.get("files", file_id)["status"] == "processed"
    assert instance.get_runs_count(dg.RunsFilter(job_name=BATCH_JOB)) == 2


def test_a_batch_whose_records_cannot_be_written_is_settled_once_space_is_freed(
        real: Path, storage: Storage, instance: dg.DagsterInstance, full_disk: dict[str, bool]) -> None:
    """The issue's case: even the batch's own record could not be written, so it stayed RECEIVED for good."""
    batch_id = drop_in_inbox(storage, real / MONTANA / JD_WHEAT_ZIP)
    registered = inbox_sensor(dg.build_sensor_context(  # the batch is registered (RECEIVED) ...
        instance=instance, resources={"storage": LeafStorage(data_dir=str(storage.root))}))
    assert [r.partition_key for r in registered.run_requests] == [batch_id]
    instance.add_dynamic_partitions("batches", [batch_id])
    full_disk["records"] = True  # ... then its run fills the disk
    result = load_definitions(storage).resolve_job_def(BATCH_JOB).execute_in_process(
        partition_key=batch_id, instance=instance, raise_on_error=False, run_config=QUIET)
    assert not result.success
    assert storage.records.get("batches", batch_id)["status"] == "RECEIVED"

    full_disk.update(records=False, extraction=False)  # space freed: the status sensor settles the batch
    SensorLoop(instance, storage).tick()
    batch = storage.records.get("batches", batch_id)
    assert batch["status"] == "FAILED"
    assert batch["statusDetails"] == (f"{JD_WHEAT_ZIP}: the batch could not be processed (No space left on device); "
                                      "retry the batch")
    assert not storage.extracted_dir(batch_id).exists()  # the extraction no longer holds the disk

    result = retry_batch(storage, instance, batch_id)  # the CLI's `batch retry`
    assert result["batch"]["status"] == "PROCESSED"
    assert [f["status"] for f in result["files"]] == ["processed"]


def test_retry_with_nothing_to_run_changes_nothing(storage: Storage, tmp_path: Path) -> None:
    """An upload of only undecodable files: a retry would answer the same, so it is not run and not RECEIVED."""
    batch = {"id": "b", "fileName": "x.zip", "status": "FAILED", "statusDetails": "..", "leafFiles": ["f"]}
    storage.records.put_facts("batches", "b", batch)
    storage.records.put_facts("files", "f", {"id": "f", "status": "failed", "unsupportedReason": "YLD files are not supported"})
    assert run_requests.retry_plan(storage, batch)[:2] == (False, [])
    assert run_requests.request_retry(storage, batch)[0] == batch
    assert run_requests.pending(storage) == []


def _can_mount_tmpfs(target: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    target.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(target)], capture_output=True)
    return probe.returncode == 0


def test_a_real_full_disk(real: Path, tmp_path: Path, instance: dg.DagsterInstance,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on a real 12 MB tmpfs data folder nearly filled by another file (needs root to mount)."""
    data = tmp_path / "small-disk"
    if not _can_mount_tmpfs(data):
        pytest.skip("mounting a tmpfs needs root; the /dev/full tests above cover the same paths")
    try:
        monkeypatch.setenv("LEAF_DATA_DIR", str(data))
        storage = Storage(data)
        filler = data / "filler.bin"
        filler.write_bytes(bytes(8 * 2**20))  # 4 MB left: the 1.8 MB upload fits, its 4.9 MB of members do not
        batch_id = drop_in_inbox(storage, real / MONTANA / JD_WHEAT_ZIP)
        loop = SensorLoop(instance, storage)
        run_until_idle(loop)
        batch = storage.records.get("batches", batch_id)
        assert batch["status"] == "FAILED" and "No space left on device" in batch["statusDetails"]
        assert not storage.extracted_dir(batch_id).exists()

        filler.unlink()
        run_requests.request_retry(storage, batch)
        run_until_idle(loop)
        assert storage.records.get("batches", batch_id)["status"] == "PROCESSED"
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def test_a_run_that_fails_outside_its_steps_names_its_own_error(instance: dg.DagsterInstance) -> None:
    """A run that fails before any step (a bad instance setting) is reported with the error that stopped it,
    not Dagster's generic "Execution of run ... failed" line."""
    from dagster._core.events import JobFailureData
    from dagster._utils.error import SerializableErrorInfo

    from leaf_dagster.status import FILE_JOB
    from leaf_dagster.defs.run_status import run_failure_message

    run = dg.DagsterRun(job_name=FILE_JOB, run_id="a0c1e2f3-0000-4000-8000-000000000001",
                        status=dg.DagsterRunStatus.FAILURE)
    instance.add_run(run)
    cause = SerializableErrorInfo("DagsterInvalidConfigError: dequeue_interval_seconds must be an int, not 'x'\n",
                                  [], "DagsterInvalidConfigError")
    error = SerializableErrorInfo("DagsterExecutionInterruptedError: the run could not start\n", [], "DagsterError",
                                  cause=cause)
    instance.report_run_failed(run, message='Execution of run for "process_file" failed. An exception was thrown.',
                               job_failure_data=JobFailureData(error=error))
    assert run_failure_message(instance, run) == "dequeue_interval_seconds must be an int, not 'x'"
    bare = dg.DagsterRun(job_name=FILE_JOB, run_id="a0c1e2f3-0000-4000-8000-000000000002",
                         status=dg.DagsterRunStatus.FAILURE)
    instance.add_run(bare)
    instance.report_run_failed(bare, message="the run's process was killed")
    assert run_failure_message(instance, bare) == "the run's process was killed"


def test_a_file_whose_events_cannot_be_recorded_is_not_reported_processed(
        storage: Storage, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload's run records each file (its events, then its status) while it makes the next one: a file whose
    events fail to be written never gets a `processed` status, the run fails with the error, and the files
    recorded before it keep their status and their materialisations."""
    from leaf_dagster.defs.assets import batch as batch_asset
    from leaf_dagster.defs.in_process import process_upload

    upload = samples_zip(tmp_path / "two.zip", ["jd-wheat-yield-montana-2019.zip", "sms-yield-csv-victoria.zip"])
    logged: list[str] = []
    log_events = batch_asset.log_file_events

    def event_log_down_at_second_file(context: Any, file_id: str, events: list[Any]) -> None:
        if logged:
            raise ConnectionError("the event log's database is unreachable")
        logged.append(file_id)
        log_events(context, file_id, events)

    monkeypatch.setattr(batch_asset, "log_file_events", event_log_down_at_second_file)
    result = process_upload(upload, storage, instance, leaf_user_id="grower", provider="JohnDeere")

    files = {f["id"]: f for f in result["files"]}
    assert len(files) == 2 and len(logged) == 1
    assert files[logged[0]]["status"] == "processed"
    others = [f for file_id, f in files.items() if file_id != logged[0]]
    assert all(f["status"] == "failed" for f in others)
    assert all(f["steps"]["originalFile"]["message"] == "the batch run failed (the event log's database is "
               "unreachable)" for f in others)
    (run,) = instance.get_runs(dg.RunsFilter(job_name=BATCH_JOB))
    assert run.status == dg.DagsterRunStatus.FAILURE
    materialised = instance.get_materialized_partitions(dg.AssetKey("zippedPNGs"))
    assert materialised == {logged[0]}
