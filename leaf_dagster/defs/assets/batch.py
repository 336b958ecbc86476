"""The upload step: store the zip, extract it safely, detect machine files and register their partitions."""


import dagster as dg

from ...ingest.batch import ingest_batch
from ..checks import gate, gate_spec
from ..partitions import batches, machine_files
from ..resources import LeafStorage


@dg.asset(key="batch", partitions_def=batches, group_name="uploads", kinds={"zip"},
          check_specs=[gate_spec("batch", "has_machine_files", "The upload is a readable, safe zip with machine files",
                                 partitions_def=batches)])
def batch(context: dg.AssetExecutionContext, storage: LeafStorage):
    """One upload: moved out of the inbox, extracted (nested zips, traversal and bomb checks) and scanned.

    Every machine file found becomes a `machine_files` partition; the inbox sensor's companion sensor
    then starts one run per file."""
    store = storage.store()
    outcome = ingest_batch(store, context.partition_key)
    ids = [f["id"] for f in outcome.files]
    if ids:
        context.instance.add_dynamic_partitions(machine_files.name, ids)
    yield dg.MaterializeResult(metadata={
        "file_name": outcome.batch["fileName"], "size_bytes": outcome.batch["size"],
        "leaf_user_id": outcome.batch["leafUserId"], "provider": outcome.batch["provider"],
        "status": outcome.batch["status"], "machine_files": len(ids),
        "files": dg.MetadataValue.md("\n".join(f"- `{f['fileFormat']}` {f['fileName']} ({f['id']})" for f in outcome.files) or "none"),
    })
    yield gate("has_machine_files", outcome.error, status_details=outcome.batch.get("statusDetails"))
