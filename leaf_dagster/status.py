"""Leaf's status of machine files and batches, kept in the record store's `status` and `state` sections.

This module is their only writer. A file's per-step status is derived from its steps' outcomes (in a file's
own run `defs/run_status.py` reads them from Dagster's event log; an upload's run takes them as it logs them)
and recorded by `record_steps`; a batch's status follows from its files' in `batch_state`, and
`set_batch_state` records it, or a batch-level outcome (a refused upload, a retry).
"""

from __future__ import annotations

from typing import Any

from .errors import CONVERSION_FAILED, UNREADABLE
from .model import STEP_ORDER, utc_now
from .storage import Storage

FILE_JOB = "process_file"
BATCH_JOB = "ingest_batch"
OVERVIEW_JOB = "batch_overview"
SETTLED = ("PROCESSED", "FAILED")


def steps_without_run(message: str, step: str = STEP_ORDER[0]) -> dict[str, dict[str, Any]]:
    """The status of a file that ends before any run of its steps (an unsupported format found in the
    batch run, a run that never started): `step` failed with `message`, every later step skipped."""
    later = STEP_ORDER[STEP_ORDER.index(step) + 1:]
    return {step: {"status": "failed", "message": message}, **{s: {"status": "skipped", "message": "skipped"} for s in later}}


def overall(steps: dict[str, dict[str, Any]]) -> str:
    """Leaf's file-level status: processed, failed or processing."""
    states = {s["status"] for s in steps.values()}
    if "failed" in states:
        return "failed"
    if states and states <= {"processed"}:
        return "processed"
    return "processing"


def record_steps(storage: Storage, file_id: str, steps: dict[str, dict[str, Any]] | None, run_id: str | None, *,
                 update_batch: bool = True) -> dict[str, Any]:
    """Record a file's per-step status (None: `processing` until a run reports) and update its batch's
    (callers settling many files of one batch update it once themselves)."""
    doc = None if steps is None else {"status": overall(steps), "steps": steps, "lastRunId": run_id}
    storage.records.put("files", file_id, "status", doc)
    record = storage.records.get("files", file_id) or {}
    if update_batch and record.get("batchId"):
        update_batch_status(storage, record["batchId"])
    return record


def batch_state(records: list[dict[str, Any]]) -> tuple[str, str | None]:
    """A batch's status from its files' records: PROCESSING while one is, then PROCESSED when one succeeded,
    FAILED (with the reasons) when none did."""
    states = [r.get("status", "processing") for r in records]
    if "processing" in states:
        return "PROCESSING", None
    return ("PROCESSED", None) if "processed" in states else ("FAILED", failure_details(records))


def set_batch_state(storage: Storage, batch_id: str, status: str, details: str | None = None) -> dict[str, Any] | None:
    """Record a batch's status; a settled one (PROCESSED, FAILED) gets its processed time."""
    storage.records.put("batches", batch_id, "state", _state(status, details))
    return storage.records.get("batches", batch_id)


def _state(status: str, details: str | None) -> dict[str, Any]:
    return {"status": status, "statusDetails": details, "processedTimestamp": utc_now() if status in SETTLED else None}


def update_batch_status(storage: Storage, batch_id: str) -> dict[str, Any] | None:
    """The batch's status from its files' (a batch that registered none keeps its own outcome).

    Read and written under the record store's write lock, and a settled status already recorded is kept when
    no file was settled since: the runs of an upload split over several (LEAF_FILES_PER_RUN) each update it as
    they end, and however they interleave, the batch is PROCESSING until its last file is settled and is then
    settled once (one `processedTimestamp`, one overview); a file run later settles it anew. Only the files'
    registration and status are read under the lock (`batch_state` reads nothing else)."""
    with storage.records.locked("batches", batch_id) as con:
        batch = storage.records.get("batches", batch_id)
        if batch is not None and batch.get("leafFiles"):
            files = storage.records.many("files", batch["leafFiles"], sections=("registration", "status"))
            status, details = batch_state(files)
            settled = batch.get("processedTimestamp") or ""
            if (batch.get("status"), batch.get("statusDetails")) != (status, details) \
                    or any(f["updatedTime"] > settled for f in files):
                storage.records.put("batches", batch_id, "state", _state(status, details), con=con)
    return storage.records.get("batches", batch_id)


def failing_step(record: dict[str, Any]) -> tuple[str, str] | None:
    """(step, message) of the first failed step of a file record, or None."""
    return next(((name, step["message"]) for name, step in (record.get("steps") or {}).items()
                 if step["status"] == "failed"), None)


def unreadable(record: dict[str, Any]) -> bool:
    """The file really could not be read: a format we cannot decode, or a reader that failed on it."""
    return bool(record.get("unsupportedReason")) or failing_step(record) == ("rawGeojson", CONVERSION_FAILED)


def failure_details(records: list[dict[str, Any]]) -> str:
    """A failed batch's statusDetails: Leaf's text when its files could not be read, and each file that was
    read but failed a later step (every point removed by the cleanup, an unsupported operation) named with
    that step's message."""
    failed = [(r, failing_step(r)) for r in records]
    named = [f"{r.get('fileName')}: {step[0]} failed: {step[1]}" for r, step in failed if step and not unreadable(r)]
    unread = [str(r.get("fileName")) for r, _ in failed if unreadable(r)]
    if unread:
        named.insert(0, f"{UNREADABLE} ({', '.join(unread)})" if named else UNREADABLE)
    return "; ".join(named) or UNREADABLE


def overview_rows(storage: Storage, batch_id: str) -> list[dict[str, str | int | None]]:
    """One row per file of a batch, in upload order: what a user scans first (name, format, operation,
    status), why a file failed (its failing step and Leaf's message) and what a processed one holds."""
    batch = storage.records.get("batches", batch_id) or {}
    rows = []
    for record in storage.records.many("files", batch.get("leafFiles", [])):
        file_id = record["id"]
        step, message = failing_step(record) or (None, None)
        start, end = record.get("startTime"), record.get("endTime")
        rows.append({"file_name": record.get("fileName"), "format": record.get("fileFormat"),
                     "operation_type": record.get("operationType"), "status": record.get("status", "processing"),
                     "failing_step": step, "message": message,
                     "records_read": (record.get("raw") or {}).get("recordCount"), "points": record.get("pointCount"),
                     "crop": ", ".join(record.get("crops") or []) or None,
                     "time_span": f"{start} – {end}" if start and end else None, "file_id": file_id})
    return rows
