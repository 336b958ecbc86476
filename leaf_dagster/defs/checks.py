"""Check specs: blocking gates that carry Leaf's failure messages, and non-blocking warnings.

Each pipeline step has one gate, evaluated inside the step. A step that passes materialises, then records
its passed gate. A step that fails records its failed gate (Leaf's message and the evidence) and raises
`dg.Failure` with the same message and evidence, without materialising: the UI then shows the step and its
asset partition failed, with Leaf's message as the failure's description, instead of a materialisation
followed by Dagster's generic `DagsterAssetCheckFailedError`. The steps downstream do not run, and show
as not run rather than failed (`release_downstream`).
A warning (severity WARN) never fails a step: the file stays processed and the UI shows the warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster import DagsterEvent, DagsterEventType
from dagster._core.events import AssetMaterializationPlannedData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

from .partitions import machine_files



def gate_spec(asset: str, name: str, description: str, partitions_def: dg.PartitionsDefinition = machine_files) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description, partitions_def=partitions_def)


def gate(name: str, failure: str | None, **metadata: Any) -> dg.AssetCheckResult:
    """Passed when `failure` is None, else failed with `failure` as the message shown to users."""
    return dg.AssetCheckResult(check_name=name, passed=failure is None, severity=dg.AssetCheckSeverity.ERROR,
                               description=failure or "ok", metadata=_present(metadata))


def fail(context: dg.AssetExecutionContext, failed: dg.AssetCheckResult, *others: dg.AssetCheckResult,
         **evidence: Any) -> Iterator[dg.AssetCheckResult]:
    """Fail the step: record its `failed` gate (and its other checks, `others`, so every planned check has a
    result), then raise `dg.Failure` with the gate's message and metadata plus further `evidence` for the UI.
    Retrying would only say the same, so Dagster's retries are off."""
    yield from others
    yield failed
    release_downstream(context)
    raise dg.Failure(description=failed.description, metadata={**failed.metadata, **_present(evidence)},
                     allow_retries=False)


def release_downstream(context: dg.AssetExecutionContext) -> None:
    """Withdraw this run's plan to materialise the assets downstream of the failing one, for this partition.

    Dagster counts a partition as failed for every asset that a failed run planned and did not materialise,
    so the steps a failure stops before they start would show failed beside the one step that did fail
    (`partition_status_cache.build_failed_and_in_progress_partition_subset`; OSS records no
    ASSET_FAILED_TO_MATERIALIZE events that could tell them apart). A run-less plan recorded for each of them
    before the run ends becomes their latest plan, one of no run, which Dagster counts neither failed nor in
    progress: they show as not run (or as their previous materialisation). The run's own events, which
    Leaf's status reads, are unchanged."""
    graph = context.job_def.asset_layer.asset_graph
    downstream: set[dg.AssetKey] = set()
    frontier = [context.asset_key]
    while frontier:
        children = graph.get(frontier.pop()).child_keys - downstream
        downstream |= children
        frontier.extend(children)
    planned = {entry.dagster_event.asset_key for entry in context.instance.all_logs(
        context.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED) if entry.dagster_event}
    for key in sorted(downstream & planned):
        context.instance.report_dagster_event(DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value, job_name=RUNLESS_JOB_NAME,
            event_specific_data=AssetMaterializationPlannedData(key, partition=context.partition_key),
            message=f"{key.to_user_string()} is not run: {context.asset_key.to_user_string()} failed"),
            run_id=RUNLESS_RUN_ID)


def plan(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str) -> None:
    """Record that this run meant to materialise `key` for `partition` and did not (a step of one file that
    failed in an upload's run). Dagster shows a partition failed when a failed run planned it and never
    materialised it; the upload's run fails when one of its files did (`assets/batch.py`), so the file's
    failed step shows failed, as in a run of its own, and the steps it stopped, never planned, as not run.
    Steps that succeed are not planned: their materialisation says all, and each event costs a write."""
    step = context.get_step_execution_context().step.key
    context.instance.report_dagster_event(DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value, job_name=context.job_name,
        step_key=step, event_specific_data=AssetMaterializationPlannedData(key, partition=partition),
        message=f"{step} intends to materialize {key.to_user_string()} partition {partition}"), run_id=context.run_id)


def _present(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if v is not None}


def warning_spec(asset: str, name: str, description: str,
                 partitions_def: dg.PartitionsDefinition = machine_files) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=False, description=description, partitions_def=partitions_def)


def warning(name: str, passed: bool, description: str, **metadata: Any) -> dg.AssetCheckResult:
    """A non-blocking result: WARN severity when it does not pass."""
    return dg.AssetCheckResult(check_name=name, passed=passed, severity=dg.AssetCheckSeverity.WARN,
                               description=description, metadata=_present(metadata))
