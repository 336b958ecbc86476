"""Leaf's per-file status object, read from Dagster's event log and recorded for SQL users.

Dagster's event log is the source of truth: a step is `processed` when its asset materialised and its
gate passed, `failed` with the gate's message (or the error's root cause) otherwise, and `skipped` when
a failure upstream stopped the run before it. The result is written to lake/file_status/<id>.json and
to the file record, and the batch's status follows from its files'.
"""

from __future__ import annotations

import re
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterInstance

from .errors import public_message
from .ingest.batch import CONVERSION_FAILED, UNREADABLE, utc_now
from .objects import STEP_ORDER
from .storage import Storage

FILE_JOB = "process_file"
BATCH_JOB = "ingest_batch"
OVERVIEW_JOB = "batch_overview"


def _root_cause(error: Any) -> str:
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return public_message(error.message.strip().splitlines()[0]) if error.message else "error"


def _public(value: Any) -> Any:
    """Check metadata shown as status details, with server paths cut to file names."""
    if isinstance(value, str):
        return public_message(value)
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def latest_run(instance: DagsterInstance, job_name: str, partition_key: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(dg.RunsFilter(job_name=job_name, tags={"dagster/partition": partition_key}), limit=1)
    return runs[0] if runs else None


def run_steps(instance: DagsterInstance, run: dg.DagsterRun) -> dict[str, dict[str, Any]]:
    """{step: {status, message[, details]}} for every asset the run planned."""
    steps: dict[str, dict[str, Any]] = {}
    step_of: dict[str, str | None] = {}
    finished = run.is_finished
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED):
        name = entry.dagster_event.asset_key.to_user_string()  # type: ignore[union-attr]
        step_of[name] = entry.step_key
        steps[name] = {"status": "skipped" if finished else "processing", "message": "skipped" if finished else ""}
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        name = entry.dagster_event.asset_key.to_user_string()  # type: ignore[union-attr]
        steps[name] = {"status": "processed", "message": "ok"}
    failures = {e.step_key: _root_cause(e.dagster_event.step_failure_data.error)  # type: ignore[union-attr]
                for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)}
    for name, step in steps.items():
        if step["status"] != "processed" and step_of.get(name) in failures:
            steps[name] = {"status": "failed", "message": failures[step_of[name]]}
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            details = {k: _public(getattr(v, "value", v)) for k, v in (evaluation.metadata or {}).items()}
            steps[evaluation.asset_key.to_user_string()] = {
                "status": "failed", "message": public_message(evaluation.description or evaluation.check_name),
                "details": details}
    steps = dict(sorted(steps.items(), key=lambda kv: STEP_ORDER.index(kv[0]) if kv[0] in STEP_ORDER else 99))
    return _with_run_failure(instance, run, steps)


def _with_run_failure(instance: DagsterInstance, run: dg.DagsterRun,
                      steps: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A run that failed or was canceled outside any step (its process killed, a start timeout) fails its
    first unfinished step with the run's own message, so the file does not look `processing` forever."""
    if run.status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        return steps
    if any(step["status"] == "failed" for step in steps.values()):
        return steps
    message = run_failure_message(instance, run)
    pending = next((name for name, step in steps.items() if step["status"] != "processed"), None)
    if pending is None and steps:
        return steps
    if pending is None:
        return steps_without_run(message)
    return {**steps, pending: {"status": "failed", "message": message}}


def run_failure_message(instance: DagsterInstance, run: dg.DagsterRun) -> str:
    """Why a failed or canceled run ended, in one line: its first failed step's root cause, else the run's
    own message (a killed process, a start timeout). An OS error keeps its reason, not the path it names."""
    failures = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
    if failures and failures[0].dagster_event:
        message = _root_cause(failures[0].dagster_event.step_failure_data.error)
    else:
        kind = DagsterEventType.RUN_FAILURE if run.status == dg.DagsterRunStatus.FAILURE else DagsterEventType.RUN_CANCELED
        events = instance.all_logs(run.run_id, of_type=kind)
        event = events[-1].dagster_event if events else None
        # the run's own error (a bad instance setting, a code location that failed to load) says more than
        # the event's generic "Execution of run ... failed"
        error = getattr(event.event_specific_data, "error", None) if event else None
        message = (_root_cause(error) if error else None) or (event.message if event else None) \
            or f"the run {'failed' if kind == DagsterEventType.RUN_FAILURE else 'was canceled'}"
    message = re.sub(r"^[A-Za-z_.]*(Error|Exception): ", "", message.strip().splitlines()[0])
    os_error = re.match(r"^\[Errno \d+\] ([^:]+)", message)
    return os_error.group(1) if os_error else public_message(message)


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


def record_file_status(instance: DagsterInstance, storage: Storage, file_id: str) -> dict[str, Any] | None:
    """Write the file's status from its latest run; returns the updated file record."""
    run = latest_run(instance, FILE_JOB, file_id)
    if run is None or storage.read_record("files", file_id) is None:
        return storage.read_record("files", file_id)
    return record_steps(storage, file_id, run_steps(instance, run), run.run_id)


def record_steps(storage: Storage, file_id: str, steps: dict[str, dict[str, Any]], run_id: str, *,
                 update_batch: bool = True) -> dict[str, Any]:
    """Write a file's per-step status (lake/file_status and the file record) and update its batch's
    (callers settling many files of one batch update it once themselves)."""
    record = storage.read_record("files", file_id) or {}
    rows = [{"fileId": file_id, "batchId": record.get("batchId"), "step": step, "status": s["status"],
             "message": s["message"], "details": s.get("details"), "runId": run_id, "updatedTime": utc_now()}
            for step, s in steps.items()]
    storage.write_record("file_status", file_id, rows)
    record = storage.update_record("files", file_id, status=overall(steps), steps=steps, lastRunId=run_id,
                                   updatedTime=utc_now())
    if update_batch and record.get("batchId"):
        update_batch_status(storage, record["batchId"])
    return record


def update_batch_status(storage: Storage, batch_id: str) -> dict[str, Any] | None:
    """PROCESSED once every file is done and one succeeded, FAILED when none did, else PROCESSING."""
    batch = storage.read_record("batches", batch_id)
    if batch is None or not batch.get("leafFiles"):
        return batch
    records = [storage.read_record("files", fid) or {} for fid in batch["leafFiles"]]
    states = [r.get("status", "processing") for r in records]
    if "processing" in states:
        return storage.update_record("batches", batch_id, status="PROCESSING", statusDetails=None)
    status, details = ("PROCESSED", None) if "processed" in states else ("FAILED", failure_details(records))
    return storage.update_record("batches", batch_id, status=status, statusDetails=details, processedTimestamp=utc_now())


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
    batch = storage.read_record("batches", batch_id) or {}
    rows = []
    for file_id in batch.get("leafFiles", []):
        record = storage.read_record("files", file_id) or {"id": file_id}
        step, message = failing_step(record) or (None, None)
        start, end = record.get("startTime"), record.get("endTime")
        rows.append({"file_name": record.get("fileName"), "format": record.get("fileFormat"),
                     "operation_type": record.get("operationType"), "status": record.get("status", "processing"),
                     "failing_step": step, "message": message,
                     "records_read": (record.get("raw") or {}).get("recordCount"), "points": record.get("pointCount"),
                     "crop": ", ".join(record.get("crops") or []) or None,
                     "time_span": f"{start} – {end}" if start and end else None, "file_id": file_id})
    return rows
