"""An upload split over several runs (LEAF_FILES_PER_RUN): the upload's run does shard 0 and asks for the others,
which run `batchFiles` alone on the same batch partition, so that several run workers share one upload. Every
file is processed once, by the run of its shard, and ends with the status record the upload's one run gives it;
the batch stays PROCESSING until every shard's files are settled, a shard run that fails settles only its own
files, and the batch is settled, and its overview made, once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from leaf_dagster import instance as instance_settings
from leaf_dagster import run_requests
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.defs.recovery import (RECOVERS_TAG, SHARD_TAG, first_attempt, is_latest, requeue_request,
                                        settle_batch)
from leaf_dagster.ingest.batch import batch_id_for, ingest_batch, new_batch
from leaf_dagster.defs.sensors import inbox_sensor, requested_runs_sensor, status_sensor
from leaf_dagster.model import STEP_ORDER
from leaf_dagster.status import BATCH_JOB, OVERVIEW_JOB
from leaf_dagster.storage import Storage

from .conftest import REPO, samples_zip
from .sensor_loop import SensorLoop
from .test_batch_failures import drop_in_inbox
from .test_celery_workers import DEADLINE, Cluster, all_settled, engine_messages, standard_rows
from .test_celery_workers import batch_runs  # newest first
from .test_postgres_instance import VOLATILE as POSTGRES_VOLATILE
from .test_celery_workers import cluster  # noqa: F401  (the fixture: the daemon and two workers)
from .test_crash_recovery import FILES, six_shapefiles

# Four real samples, five machine files: one of them (the SMS CSV naming no crop) fails its filter.
UPLOADS = ("sms-yield-csv-victoria.zip", "jd-wheat-yield-montana-2019.zip", "ohio-corn-planting-and-nh3.zip",
           "agleader-text-soybeans.zip")
# what differs between the two uploads whatever the runs: times, ids, run ids and the API owner (the inbox
# drop names one, the CLI acts as `local`)
VOLATILE = POSTGRES_VOLATILE | {"apiOwnerUsername"}


def test_shards_are_named_and_split_by_index() -> None:
    assert [run_requests.shard_count(files, 2) for files in (0, 1, 2, 3, 5)] == [1, 1, 1, 2, 3]
    assert run_requests.shard_count(100, None) == 1  # unset: the whole upload in one run
    assert run_requests.parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="no shard name"):
            run_requests.parse_shard(bad)
    records = [{"id": str(i)} for i in range(5)] + [{"id": "u", "unsupportedReason": "not decodable"}]
    shares = [[r["id"] for r in run_requests.shard_records(records, f"{i}/3")] for i in range(3)]
    assert shares == [["0", "3"], ["1", "4"], ["2"]]  # runnable files only, every third from the i-th
    assert run_requests.shard_records(records, None) == records == run_requests.shard_records(records, "0/1")
    assert instance_settings.files_per_run({}) is None
    assert instance_settings.files_per_run({"LEAF_FILES_PER_RUN": "25"}) == 25
    with pytest.raises(instance_settings.InstanceConfigError, match="LEAF_FILES_PER_RUN='0': expected a whole number of files"):
        instance_settings.settings({"LEAF_FILES_PER_RUN": "0"})
    assert instance_settings.settings({"LEAF_FILES_PER_RUN": "25"}) == (REPO / "deploy" / "dagster.yaml").read_text()


def test_the_upload_run_and_its_shards_each_judge_their_own_attempts(instance: dg.DagsterInstance) -> None:
    """An upload's run asks for its shards before it tags itself shard 0: if it dies in between, the shard runs
    it asked for must not make it look superseded (it would then be neither queued again nor settled, and its
    files would stay processing). A run re-executed from the UI, lost and queued again, asks for the shards of
    the first attempt, under the same run keys."""
    partition = {"dagster/partition": "an-upload"}
    upload = create_run_for_test(instance, job_name=BATCH_JOB, tags=partition)  # died before tagging itself
    shards = [create_run_for_test(instance, job_name=BATCH_JOB, tags={**partition, SHARD_TAG: f"{i}/3"})
              for i in (1, 2)]
    assert is_latest(instance, upload) and all(is_latest(instance, shard) for shard in shards)

    again = create_run_for_test(instance, job_name=BATCH_JOB, tags={**partition, **requeue_request(upload).tags})
    assert not is_latest(instance, upload) and is_latest(instance, again)
    assert first_attempt(instance, again) == upload.run_id
    third = create_run_for_test(instance, job_name=BATCH_JOB, tags={**partition, SHARD_TAG: "1/3"})
    assert is_latest(instance, third) and not is_latest(instance, shards[0]) and is_latest(instance, again)

    rerun = create_run_for_test(instance, job_name=BATCH_JOB, tags=partition, root_run_id=upload.run_id,
                                parent_run_id=upload.run_id)
    lost_rerun_again = create_run_for_test(instance, job_name=BATCH_JOB,
                                           tags={**partition, **requeue_request(rerun).tags})
    assert {first_attempt(instance, run) for run in (upload, rerun, lost_rerun_again)} == {upload.run_id}


def test_an_upload_run_that_failed_before_tagging_itself_settles_only_shard_0(
        instance: dg.DagsterInstance, storage: Storage, tmp_path: Path) -> None:
    """The upload's run asked for two shards and failed before tagging itself shard 0: it settles the files of
    shard 0, and leaves shard 1's to the run it asked for."""
    upload = samples_zip(tmp_path / "two.zip", ["jd-wheat-yield-montana-2019.zip", "sms-yield-csv-victoria.zip"])
    batch_id = batch_id_for(upload, "grower", "JohnDeere")
    new_batch(storage, batch_id, upload, "grower", "JohnDeere", move=False)
    files = [record["id"] for record in ingest_batch(storage, batch_id).files]
    run = create_run_for_test(instance, job_name=BATCH_JOB, tags={"dagster/partition": batch_id},
                              status=dg.DagsterRunStatus.FAILURE)
    run_requests.request_shards(storage, batch_id, 2, run.run_id)

    settle_batch(instance, storage, run)

    statuses = [storage.records.get("files", file_id)["status"] for file_id in files]
    assert len(files) == 2 and statuses == ["failed", "processing"]
    assert storage.records.get("batches", batch_id)["status"] == "PROCESSING"


def comparable(records: list[dict]) -> dict[str, dict]:
    """Each file's record by name, without what differs between two uploads of the same zip, its own and its
    batch's ids (in its output paths) named alike."""
    out = {}
    for record in records:
        text = json.dumps({k: v for k, v in record.items() if k not in VOLATILE}, sort_keys=True)
        out[record["fileName"]] = json.loads(text.replace(record["id"], "FILE").replace(record["batchId"], "BATCH"))
    return out


def test_an_upload_split_over_runs_ends_as_in_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = samples_zip(tmp_path / "four-samples.zip", UPLOADS, in_folders=True)
    # the upload in one run, as without the setting
    whole = Storage(tmp_path / "whole")
    with dg.instance_for_test() as instance:
        process_upload(upload, whole, instance, leaf_user_id="grower", provider="JohnDeere")
    (one_batch,) = whole.records.many("batches")
    expected = comparable(whole.records.many("files", one_batch["leafFiles"]))
    assert len(expected) == 5 and sorted(f["status"] for f in expected.values()) == ["failed"] + ["processed"] * 4

    monkeypatch.setenv("LEAF_FILES_PER_RUN", "3")
    storage = Storage(tmp_path / "data")
    with dg.instance_for_test() as instance:
        loop = SensorLoop(instance, storage)
        batch_id = drop_in_inbox(storage, upload)
        loop._evaluate(inbox_sensor)  # the upload's run: the batch step, then shard 0 of 2
        (first,) = batch_runs(instance)
        assert first.tags[SHARD_TAG] == "0/2"
        batch = storage.records.get("batches", batch_id)
        files = storage.records.many("files", batch["leafFiles"])
        failing = [f["fileName"] for f in files].index("area2_yield_ISO-8859-1")
        assert failing % 2 == 0  # in shard 0 (files are split by their index in leafFiles)
        assert [f["status"] for f in files] == [expected[f["fileName"]]["status"] if i % 2 == 0 else "processing"
                                                for i, f in enumerate(files)]
        assert first.status == dg.DagsterRunStatus.FAILURE  # one of its files failed
        assert batch["status"] == "PROCESSING"
        # the failed run of shard 0 settles nothing of the other shards, and no overview is asked for yet
        assert not getattr(loop._evaluate(status_sensor), "run_requests", None)
        assert [f["status"] for f in storage.records.many("files", batch["leafFiles"])][1::2] == ["processing"] * 2
        assert storage.records.get("batches", batch_id)["status"] == "PROCESSING"

        assert loop._evaluate(requested_runs_sensor) == 1  # shard 1/2
        assert loop._evaluate(requested_runs_sensor) == 0  # asked for once
        loop.tick()
        loop.tick()

        runs = list(reversed(batch_runs(instance)))
        assert [r.tags.get(SHARD_TAG) for r in runs] == ["0/2", "1/2"]
        assert all(r.asset_selection == {dg.AssetKey("batchFiles")} for r in runs[1:])
        assert runs[1].status == dg.DagsterRunStatus.SUCCESS
        batch = storage.records.get("batches", batch_id)
        assert batch["status"] == "PROCESSED"
        files = storage.records.many("files", batch["leafFiles"])
        # each file was processed once, by the run of its shard (its index in leafFiles modulo 2)
        for index, record in enumerate(files):
            assert record["lastRunId"] == runs[index % 2].run_id
            for step in STEP_ORDER[:2]:
                done = instance.fetch_materializations(dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey(step), asset_partitions=[record["id"]]), limit=10).records
                assert len(done) == 1
        assert comparable(files) == expected
        # the batch settled once: one overview run and one materialisation of it
        overviews = instance.get_runs(dg.RunsFilter(job_name=OVERVIEW_JOB))
        assert len(overviews) == 1
        assert len(instance.fetch_materializations(dg.AssetKey("batchOverview"), limit=10).records) == 1
        settled_at = batch["processedTimestamp"]
        loop.tick()
        assert storage.records.get("batches", batch_id)["processedTimestamp"] == settled_at

        # a lost shard run is queued again with its shard and its assets, as the latest run of that shard
        again = requeue_request(runs[1])
        assert again.tags[SHARD_TAG] == "1/2" and again.tags[RECOVERS_TAG] == runs[1].run_id
        assert again.asset_selection == [dg.AssetKey("batchFiles")]
        assert all(is_latest(instance, run) for run in runs)


def test_two_celery_workers_share_one_upload_split_over_runs(cluster: Cluster, real: Path,  # noqa: F811
                                                            tmp_path: Path) -> None:
    """The daemon and two Celery workers (tests/test_celery_workers.py) with LEAF_FILES_PER_RUN=3: the six-field
    upload runs as two shard runs, each executed once by a worker, each file settled by its shard's run."""
    deadline = time.monotonic() + DEADLINE
    six, kept = six_shapefiles(real, tmp_path)
    cluster.env["LEAF_FILES_PER_RUN"] = "3"  # read by the upload's run, in a worker
    for name in ("w1", "w2"):
        cluster.start_worker(name)
    cluster.start_daemon()
    cluster.drop(six)

    cluster.wait_for("the upload settled", lambda: all_settled(cluster.data, 1, FILES), deadline)
    with dg.DagsterInstance.from_config(str(cluster.home)) as instance:
        cluster.wait_for("its runs to end", lambda: all(r.is_finished for r in batch_runs(instance)), deadline)
        runs = sorted(batch_runs(instance), key=lambda r: r.tags[SHARD_TAG])
        assert [(r.tags[SHARD_TAG], r.status) for r in runs] == [("0/2", dg.DagsterRunStatus.SUCCESS),
                                                                  ("1/2", dg.DagsterRunStatus.SUCCESS)]
        workers = []
        for run in runs:
            (executed,) = engine_messages(instance, run.run_id)  # each run executed once, by one worker
            workers.append(cluster.worker_of(executed[1]))
        assert set(workers) <= {"w1", "w2"}
        print(f"shard runs executed by {workers}")
    batch = next(iter(Storage(cluster.data).records.many("batches")))
    assert batch["status"] == "PROCESSED"
    for index, record in enumerate(Storage(cluster.data).records.many("files", batch["leafFiles"])):
        assert record["lastRunId"] == runs[index % 2].run_id
        assert record["status"] == "processed" and record["pointCount"] == kept[record["fileName"]]
        assert standard_rows(cluster.data, record["id"]) == kept[record["fileName"]]
