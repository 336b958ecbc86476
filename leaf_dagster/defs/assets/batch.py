"""The upload's run: store the zip, extract it safely, detect machine files and register their partitions
(`batch`), then every step of every file (`batchFiles`); and the batch's overview once its files are settled.

With LEAF_FILES_PER_RUN set, an upload of more runnable files than that is split into shards (run_requests.py):
the upload's run does shard 0 and asks for the others as runs of the same job on the same batch partition with
only `batchFiles` selected, each tagged with its shard, so that several run workers share one upload. Every shard
run settles its own files and then the batch's status, which stays PROCESSING until the last shard's files are
settled."""


from typing import Any

import dagster as dg

from ... import run_requests
from ...background import OneBehind
from ...ingest.batch import ingest_batch, link_members
from ...instance import files_per_run
from ...status import failing_step, overall, overview_rows, record_steps, steps_without_run, update_batch_status
from ...storage import Storage
from ..checks import fail, gate, gate_spec
from ..partitions import batches, machine_files
from ..recovery import SHARD_TAG, first_attempt
from ..resources import LeafStorage
from .files import FileRun, in_batch_run, log_file_events


@dg.asset(key="batch", partitions_def=batches, group_name="uploads", kinds={"zip"},
          check_specs=[gate_spec("batch", "has_machine_files", "The upload is a readable, safe zip with machine files",
                                 partitions_def=batches)])
def batch(context: dg.AssetExecutionContext, storage: LeafStorage):
    """One upload: moved out of the inbox, extracted (nested zips, traversal and bomb checks) and scanned.

    Every decodable machine file becomes a `machine_files` partition, processed next in the same run
    (`batchFiles`), or, past LEAF_FILES_PER_RUN files, shared with the shard runs it asks for. Files in a
    format we recognise but cannot decode are settled here (their members kept, `originalFile` failed with
    the reason): a run each would only say the same, and an upload of many such files would hold the run
    queue for nothing."""
    store = storage.store()
    outcome = ingest_batch(store, context.partition_key)
    runnable = [f["id"] for f in outcome.files if not f.get("unsupportedReason")]
    unsupported = [f for f in outcome.files if f.get("unsupportedReason")]
    for record in outcome.files:  # every file's members in its own folder (the shared store's too) before any
        link_members(store, record)  # of its runs, which may be on a host that did not extract the upload
    for record in unsupported:
        record_steps(store, record["id"], steps_without_run(record["unsupportedReason"]), context.run_id,
                     update_batch=False)
    if runnable:
        context.instance.add_dynamic_partitions(machine_files.name, runnable)
    shards = split(context, store, len(runnable)) if runnable and not outcome.error else 1
    final = outcome.batch if outcome.error else update_batch_status(store, context.partition_key) or outcome.batch
    if outcome.error:
        yield from fail(context, gate("has_machine_files", outcome.error, status_details=final.get("statusDetails")),
                        file_name=final["fileName"])
    yield dg.MaterializeResult(metadata={
        "file_name": final["fileName"], "size_bytes": final["size"],
        "leaf_user_id": final["leafUserId"], "provider": final["provider"],
        "status": final["status"], "machine_files": len(outcome.files), "files_to_run": len(runnable),
        "runs": shards,
        "files": dg.MetadataValue.md("\n".join(
            f"- `{f['fileFormat']}` {f['fileName']} ({f['id']})" + (f": {f['unsupportedReason']}" if f.get("unsupportedReason") else "")
            for f in outcome.files) or "none"),
    })
    yield gate("has_machine_files", None)


def split(context: dg.AssetExecutionContext, store: Storage, runnable: int) -> int:
    """Into how many runs the upload's files go; past one, this run is tagged shard 0 and the others are asked
    for. A run queued again after its first attempt was lost keeps that attempt's count (its tags) and asks
    with that attempt's name, so no shard starts twice; a run of the whole job tagged `0/1` (the CLI's) is
    never split."""
    tagged = context.run.tags.get(SHARD_TAG)
    count = run_requests.parse_shard(tagged)[1] if tagged else run_requests.shard_count(runnable, files_per_run())
    if count > 1:
        # named after the first attempt (a requeued run's, a run re-executed from the UI's root), so the runs
        # asked for again have the same run keys and none starts twice; asked for before this run is tagged
        # shard 0, so a run that could not ask still settles every file if it fails
        origin = first_attempt(context.instance, context.run)
        run_requests.request_shards(store, context.partition_key, count, origin)
        context.instance.add_run_tags(context.run_id, {SHARD_TAG: run_requests.shard_name(0, count)})
        context.log.info(f"{runnable} files in {count} runs, this one and {count - 1} asked for")
    return count


def shard_files(context: dg.AssetExecutionContext, store: Storage, batch: dict[str, Any]) -> tuple[str | None, list]:
    """The run's shard (its tag, read from the instance: the batch step of this same run may have set it) and
    the records of the files it takes: its share of the batch's runnable files, those not settled yet."""
    run = context.instance.get_run_by_id(context.run_id)
    shard = (run.tags if run else context.run.tags).get(SHARD_TAG)
    # registration and status only: a big file's summary is megabytes, and every shard reads the whole batch
    listed = store.records.many("files", batch.get("leafFiles", []), sections=("registration", "status"))
    records = run_requests.shard_records(listed, shard)
    return shard, [r for r in records if not r.get("unsupportedReason") and r.get("status", "processing") == "processing"]


@dg.asset(key="batchFiles", deps=["batch"], partitions_def=batches, group_name="uploads", kinds={"geoparquet"})
def batch_files(context: dg.AssetExecutionContext, storage: LeafStorage) -> dg.MaterializeResult:
    """Every step of every machine file of the upload, in this run, one file after another.

    Each file keeps its own partition of every step's asset: its materialisations, checks and Leaf status
    are recorded per file as its own run would record them, by a thread while the run makes the next file
    (`background.OneBehind`), and its status is written as soon as its events are. A file that fails stops only its own steps; the run then ends failed, naming how many files
    failed, so that each failed step shows failed on its file's partition (`checks.plan`). One run per
    upload instead of one per file saves the launch of a run process and a run's own events for every
    file. A shard run (LEAF_FILES_PER_RUN) takes only its shard's files. Files already settled (by an earlier
    attempt of this run, cut short) are left as they are; a single file runs on its own (`process_file`) for
    retries, merges and re-runs from the UI."""
    store = storage.store()
    batch = store.records.get("batches", context.partition_key) or {}
    shard, records = shard_files(context, store, batch)
    outcomes: dict[str, list[str]] = {"processed": [], "failed": []}
    # each file recorded by a thread while the run makes the next one: writing its events waits on the event
    # log's database; at most one file waits, so a run that dies loses one file's records at most (the file is
    # then still `processing`, as any file the run did not finish)
    with OneBehind("leaf-recorder") as recorder:
        for number, record in enumerate(records, start=1):
            context.log.info(f"[{number}/{len(records)}] {record['fileFormat']} {record['fileName']}")
            run = in_batch_run(context, store, record["id"])
            recorder.submit(record_file, context, store, record, run)
            outcomes.setdefault(overall(run.status), []).append(record["fileName"])
    final = update_batch_status(store, context.partition_key) or batch
    metadata = {"file_name": final.get("fileName", ""), "status": final.get("status", "unknown"),
                "shard": shard or "all", "files_run": len(records), "processed": len(outcomes["processed"]), "failed": len(outcomes["failed"]),
                "failed_files": dg.MetadataValue.md("\n".join(f"- {name}" for name in outcomes["failed"]) or "none")}
    if outcomes["failed"]:
        # the run fails, so that each failed file's failed step shows failed in the UI (checks.plan)
        raise dg.Failure(description=f"{len(outcomes['failed'])} of {len(records)} files failed; each file's "
                                     "status and the batch overview say why", metadata=metadata, allow_retries=False)
    return dg.MaterializeResult(metadata=metadata)


def record_file(context: dg.AssetExecutionContext, store: Storage, record: dict[str, Any], run: FileRun) -> None:
    """A file's events, then its Leaf status (a status says the file's events are all in the event log), then
    the line naming its failed step, after its events in the run's log."""
    log_file_events(context, record["id"], run.events)
    record_steps(store, record["id"], run.status, context.run_id, update_batch=False)
    failure = failing_step({"steps": run.status})
    if failure:
        context.log.error(f"{record['fileName']} ({record['id']}): {failure[0]} failed: {failure[1]}")


OVERVIEW_COLUMNS = [("file_name", "string"), ("format", "string"), ("operation_type", "string"), ("status", "string"),
                    ("failing_step", "string"), ("message", "string"), ("records_read", "int"), ("points", "int"),
                    ("crop", "string"), ("time_span", "string"), ("file_id", "string")]


@dg.asset(key="batchOverview", deps=["batch"], partitions_def=batches, group_name="overview", kinds={"table"})
def batch_overview(context: dg.AssetExecutionContext, storage: LeafStorage) -> dg.MaterializeResult:
    """Every file of one upload in a table: name, format, operation type, status, the failing step and Leaf's
    message, points, crop and time span. File partitions are ids; this is where a file is found by name.
    The status sensor materialises it when the batch reaches PROCESSED or FAILED."""
    batch = storage.store().records.get("batches", context.partition_key) or {}
    rows = overview_rows(storage.store(), context.partition_key)
    table = dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in OVERVIEW_COLUMNS]))
    return dg.MaterializeResult(metadata={
        "file_name": batch.get("fileName", ""), "status": batch.get("status", "unknown"),
        "status_details": batch.get("statusDetails") or "none", "files": table,
        "processed": sum(r["status"] == "processed" for r in rows), "failed": sum(r["status"] == "failed" for r in rows)})
