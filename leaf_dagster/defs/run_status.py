"""A file's per-step status read from Dagster's event log, the one source of truth for it.

A step is `processed` when its asset materialised and its gate passed, `failed` with the gate's message
(or the error's root cause) otherwise, and `skipped` when a failure upstream stopped the run before it.
`status.record_steps` stores the result. An upload's run (`assets/batch.py`) logs its files' step outcomes
as these same events and derives each file's status from them with the same two rules (`failed_check_step`,
`step_error`).
"""

from __future__ import annotations

import re
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterInstance

from ..errors import public_message
from ..model import STEP_ORDER
from ..status import FILE_JOB, record_steps, steps_without_run
from ..storage import Storage


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


def failed_check_step(evaluation: Any) -> dict[str, Any] | None:
    """The status of the step a check belongs to when the check is a failed gate (ERROR severity): failed
    with the check's message and its metadata as details; None for a passed check or a warning."""
    if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
        return None
    details = {k: _public(getattr(v, "value", v)) for k, v in (evaluation.metadata or {}).items()}
    return {"status": "failed", "message": public_message(evaluation.description or evaluation.check_name),
            "details": details}


def step_error(error: Any) -> dict[str, Any]:
    """The status of a step that raised: failed with the root cause of its (Dagster-serialised) error."""
    return {"status": "failed", "message": _root_cause(error)}


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
    failures = {e.step_key: step_error(e.dagster_event.step_failure_data.error)  # type: ignore[union-attr]
                for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)}
    for name, step in steps.items():
        if step["status"] != "processed" and step_of.get(name) in failures:
            steps[name] = failures[step_of[name]]
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
        failed = failed_check_step(evaluation)
        if failed:
            steps[evaluation.asset_key.to_user_string()] = failed
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


def record_file_status(instance: DagsterInstance, storage: Storage, file_id: str) -> dict[str, Any] | None:
    """Write the file's status from its latest run; returns the updated file record."""
    run = latest_run(instance, FILE_JOB, file_id)
    if run is None or storage.records.get("files", file_id) is None:
        return storage.records.get("files", file_id)
    return record_steps(storage, file_id, run_steps(instance, run), run.run_id)
