"""The upload step (store the zip, extract it safely, detect machine files and register their partitions) and
the batch's overview once its files are settled."""


import dagster as dg

from ...ingest.batch import ingest_batch, link_members
from ...status import overview_rows, record_steps, steps_without_run, update_batch_status
from ..checks import fail, gate, gate_spec
from ..partitions import batches, machine_files
from ..resources import LeafStorage


@dg.asset(key="batch", partitions_def=batches, group_name="uploads", kinds={"zip"},
          check_specs=[gate_spec("batch", "has_machine_files", "The upload is a readable, safe zip with machine files",
                                 partitions_def=batches)])
def batch(context: dg.AssetExecutionContext, storage: LeafStorage):
    """One upload: moved out of the inbox, extracted (nested zips, traversal and bomb checks) and scanned.

    Every decodable machine file becomes a `machine_files` partition; the inbox sensor's companion sensor
    then starts one run per file. Files in a format we recognise but cannot decode are settled here (their
    members kept, `originalFile` failed with the reason): a run each would only say the same, and an upload
    of many such files would hold the run queue for nothing."""
    store = storage.store()
    outcome = ingest_batch(store, context.partition_key)
    runnable = [f["id"] for f in outcome.files if not f.get("unsupportedReason")]
    unsupported = [f for f in outcome.files if f.get("unsupportedReason")]
    for record in unsupported:
        link_members(store, record)
        record_steps(store, record["id"], steps_without_run(record["unsupportedReason"]), context.run_id,
                     update_batch=False)
    if runnable:
        context.instance.add_dynamic_partitions(machine_files.name, runnable)
    final = outcome.batch if outcome.error else update_batch_status(store, context.partition_key) or outcome.batch
    if outcome.error:
        yield from fail(context, gate("has_machine_files", outcome.error, status_details=final.get("statusDetails")),
                        file_name=final["fileName"])
    yield dg.MaterializeResult(metadata={
        "file_name": final["fileName"], "size_bytes": final["size"],
        "leaf_user_id": final["leafUserId"], "provider": final["provider"],
        "status": final["status"], "machine_files": len(outcome.files), "runs_to_start": len(runnable),
        "files": dg.MetadataValue.md("\n".join(
            f"- `{f['fileFormat']}` {f['fileName']} ({f['id']})" + (f": {f['unsupportedReason']}" if f.get("unsupportedReason") else "")
            for f in outcome.files) or "none"),
    })
    yield gate("has_machine_files", None)


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
