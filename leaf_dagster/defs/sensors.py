"""Sensors: the inbox watcher, requested runs, the status recorder and recovery.

The inbox sensor only lists the inbox and stats files (no reading of zips), so a tick costs the same
whatever the upload size; storing, extracting, scanning and every file's steps happen in the batch run. Every run is tagged
for the fair queue (queue.py) and the recovery sensor keeps the queue moving when run processes die
(recovery.py).
"""


import json
import time
from datetime import datetime, timezone

import dagster as dg

from .. import run_requests
from ..catalog import refresh_catalog
from ..errors import CatalogError
from ..ingest.batch import batch_id_for, new_batch, read_sidecar
from ..status import BATCH_JOB, FILE_JOB
from ..storage import Storage
from .jobs import batch_overview_job, ingest_batch_job, process_file_job
from .partitions import batches, machine_files
from .queue import BATCH_TAG, FairQueue
from .run_status import record_file_status
from .recovery import JOBS, SHARD_TAG, fail_dead_runs, requeue_request, settle_batch, will_requeue
from .resources import LeafStorage

# An upload still being written must not be picked up: wait until it has not changed for this long.
SETTLE_SECONDS = 2.0
# The daemon evaluates sensors once per loop of 5 s at the most. A sensor's interval of 5 s would skip every
# other loop whenever a loop comes a moment early (an upload then waited 10 s for its run); asking for less
# than the loop, the inbox, requested-runs and status sensors tick on every loop.
EVERY_LOOP = 1
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dg.sensor(job=ingest_batch_job, minimum_interval_seconds=EVERY_LOOP, default_status=dg.DefaultSensorStatus.RUNNING)
def inbox_sensor(context: dg.SensorEvaluationContext, storage: LeafStorage):
    """A new zip in data/inbox/ becomes a batch partition and a batch run (once, whatever the ticks)."""
    store = storage.store()
    store.inbox.mkdir(parents=True, exist_ok=True)
    now = time.time()
    queue = FairQueue(context.instance)
    requests, new_keys = [], []
    for upload in sorted(store.synced(store.inbox).glob("*.zip")):
        if upload.name.startswith(".") or now - upload.stat().st_mtime < SETTLE_SECONDS:
            continue
        meta = read_sidecar(upload)
        batch_id = meta.get("batchId") or batch_id_for(upload, meta.get("leafUserId"), meta.get("provider"))
        if batch_id in new_keys or batches.has_partition_key(batch_id, dynamic_partitions_store=context.instance):
            continue
        record = new_batch(store, batch_id, upload, meta.get("leafUserId"), meta.get("provider"), meta.get("fileFormat"),
                           file_name=meta.get("fileName"), owner=meta.get("apiOwnerUsername"))
        new_keys.append(batch_id)
        requests.append(dg.RunRequest(run_key=batch_id, partition_key=batch_id,
                                      tags=queue.tags(record["apiOwnerUsername"], batch_id, **{
                                          "leaf/upload": upload.name, "leaf/leaf_user_id": record["leafUserId"]})))
    if not requests:
        return dg.SkipReason("no new uploads in the inbox")
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=[batches.build_add_request(new_keys)])


def file_run_tags(queue: FairQueue, store: Storage, file_id: str, **extra: str) -> dict[str, str]:
    record = store.records.get("files", file_id) or {}
    # a merged file belongs to no batch: it is its own unit of the per-batch limit
    return queue.tags(record.get("apiOwnerUsername"), str(record.get("batchId") or file_id), **{
        "leaf/file_name": str(record.get("fileName", ""))[:200], "leaf/file_format": str(record.get("fileFormat", "")),
        **extra})


@dg.sensor(jobs=[ingest_batch_job, process_file_job], minimum_interval_seconds=EVERY_LOOP,
           default_status=dg.DefaultSensorStatus.RUNNING)
def requested_runs_sensor(context: dg.SensorEvaluationContext, storage: LeafStorage):
    """Runs asked for over HTTP (merged files, batch retries): one run per file named in a request, and a
    batch run for each batch whose own step must run again; and the shard runs an upload's run asked for
    (`batchFiles` alone, on the batch's partition, tagged with the shard; their run keys name the upload's
    run, so a request written again starts nothing twice)."""
    store = storage.store()
    queue = FairQueue(context.instance)
    requests, keys = [], []
    for path, request in run_requests.pending(store):
        for batch_id in request.get("batchIds", []):
            batch = store.records.get("batches", batch_id) or {}
            requests.append(dg.RunRequest(run_key=f"{request['id']}:{batch_id}", job_name=BATCH_JOB,
                                          partition_key=batch_id,
                                          tags=queue.tags(batch.get("apiOwnerUsername"), batch_id,
                                                          **{"leaf/request": request["reason"]})))
        shards = request.get("shards") or {}
        names = shards.get("names", [])
        batch = (store.records.get("batches", shards["batchId"]) or {}) if names else {}
        for name in names:
            requests.append(dg.RunRequest(run_key=f"{request['id']}:{name}", job_name=BATCH_JOB,
                                          partition_key=shards["batchId"], asset_selection=[dg.AssetKey("batchFiles")],
                                          tags=queue.tags(batch.get("apiOwnerUsername"), shards["batchId"], **{
                                              SHARD_TAG: name, "leaf/request": request["reason"],
                                              "leaf/upload": str(batch.get("fileName"))[:200]})))
        for file_id in request["fileIds"]:
            keys.append(file_id)
            requests.append(dg.RunRequest(run_key=f"{request['id']}:{file_id}", job_name=FILE_JOB,
                                          partition_key=file_id,
                                          tags=file_run_tags(queue, store, file_id, **{"leaf/request": request["reason"]})))
        run_requests.mark_done(store, path)
    if not requests:
        return dg.SkipReason("no requested runs")
    return dg.SensorResult(run_requests=requests,
                           dynamic_partitions_requests=[machine_files.build_add_request(keys)] if keys else [])


@dg.sensor(job=batch_overview_job, minimum_interval_seconds=EVERY_LOOP, default_status=dg.DefaultSensorStatus.RUNNING)
def status_sensor(context: dg.SensorEvaluationContext, storage: LeafStorage):
    """Record Leaf's status of every finished file run, settle the batch of every failed batch run, refresh
    the SQL catalog, and request the overview of every batch these runs left PROCESSED or FAILED. Runs the
    recovery sensor will queue again are left to their second attempt."""
    store = storage.store()
    cursor = json.loads(context.cursor) if context.cursor else {"after": 0.0}
    records = context.instance.get_run_records(
        dg.RunsFilter(statuses=FINISHED, updated_after=datetime.fromtimestamp(cursor["after"], tz=timezone.utc)),
        order_by="update_timestamp", ascending=True, limit=200)
    records = [r for r in records if r.dagster_run.job_name in JOBS]
    if not records:
        return dg.SkipReason("no finished runs")
    touched: set[str] = set()
    for record in records:
        run = record.dagster_run
        if not run.tags.get("dagster/partition") or will_requeue(context.instance, run):
            continue
        if run.job_name == FILE_JOB:
            file_record = record_file_status(context.instance, store, run.tags["dagster/partition"]) or {}
            touched.update([file_record["batchId"]] if file_record.get("batchId") else [])
        else:
            settle_batch(context.instance, store, run)
            touched.add(run.tags["dagster/partition"])
    try:
        refresh_catalog(store)
    except CatalogError as exc:  # statuses and overviews do not wait on the shared catalog: a later refresh catches up
        context.log.error(str(exc))
    newest = max(r.update_timestamp.timestamp() for r in records)
    return dg.SensorResult(cursor=json.dumps({"after": newest}), run_requests=overview_requests(store, touched))


def overview_requests(store: Storage, batch_ids: set[str]) -> list[dg.RunRequest]:
    """An overview run for each batch that is settled, once per settling (a retry settles it again)."""
    requests = []
    for batch_id in sorted(batch_ids):
        batch = store.records.get("batches", batch_id) or {}
        if batch.get("status") in ("PROCESSED", "FAILED"):
            requests.append(dg.RunRequest(run_key=f"overview:{batch_id}:{batch.get('processedTimestamp')}",
                                          partition_key=batch_id,
                                          tags={BATCH_TAG: batch_id, "leaf/upload": str(batch.get("fileName"))[:200]}))
    return requests


@dg.sensor(jobs=[ingest_batch_job, process_file_job], minimum_interval_seconds=15,
           default_status=dg.DefaultSensorStatus.RUNNING)
def recovery_sensor(context: dg.SensorEvaluationContext):
    """Fail runs whose process is gone (they would hold the run queue forever) and queue every lost run
    of ours again, once. Its first tick after the daemon starts clears what a crash left behind."""
    dead = fail_dead_runs(context.instance)
    cursor = json.loads(context.cursor) if context.cursor else {"after": 0.0}
    records = context.instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE],
                      updated_after=datetime.fromtimestamp(cursor["after"], tz=timezone.utc)),
        order_by="update_timestamp", ascending=True, limit=200)
    if not records:
        return dg.SkipReason(f"no lost runs ({len(dead)} dead runs failed)" if dead else "no lost runs")
    requests = [requeue_request(r.dagster_run) for r in records if will_requeue(context.instance, r.dagster_run)]
    if dead:
        context.log.warning(f"failed {len(dead)} runs whose process was gone: {', '.join(dead)}")
    newest = max(r.update_timestamp.timestamp() for r in records)
    return dg.SensorResult(run_requests=requests, cursor=json.dumps({"after": newest}))
