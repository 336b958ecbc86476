"""The upload step: store the zip, extract it safely, detect machine files and register their partitions."""


import dagster as dg

from ...ingest.batch import ingest_batch, link_members
from ...status import record_steps, steps_without_run, update_batch_status
from ..checks import gate, gate_spec
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
    final = update_batch_status(store, context.partition_key) or outcome.batch
    yield dg.MaterializeResult(metadata={
        "file_name": final["fileName"], "size_bytes": final["size"],
        "leaf_user_id": final["leafUserId"], "provider": final["provider"],
        "status": final["status"], "machine_files": len(outcome.files), "runs_to_start": len(runnable),
        "files": dg.MetadataValue.md("\n".join(
            f"- `{f['fileFormat']}` {f['fileName']} ({f['id']})" + (f": {f['unsupportedReason']}" if f.get("unsupportedReason") else "")
            for f in outcome.files) or "none"),
    })
    yield gate("has_machine_files", outcome.error, status_details=final.get("statusDetails"))
