"""Check specs: blocking gates that carry Leaf's failure messages, and non-blocking warnings.

Each pipeline step has one gate, evaluated inside the step. A step that passes materialises, then records
its passed gate. A step that fails records its failed gate (Leaf's message and the evidence) and raises
`dg.Failure` with the same message and evidence, without materialising: the UI then shows the step and its
asset partition failed, with Leaf's message as the failure's description, instead of a materialisation
followed by Dagster's generic `DagsterAssetCheckFailedError`, and Dagster does not run anything downstream.
A warning (severity WARN) never fails a step: the file stays processed and the UI shows the warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg

from .partitions import machine_files

CONVERSION_FAILED = "Failed to convert file on provider batch processing"


def gate_spec(asset: str, name: str, description: str, partitions_def: dg.PartitionsDefinition = machine_files) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description, partitions_def=partitions_def)


def gate(name: str, failure: str | None, **metadata: Any) -> dg.AssetCheckResult:
    """Passed when `failure` is None, else failed with `failure` as the message shown to users."""
    return dg.AssetCheckResult(check_name=name, passed=failure is None, severity=dg.AssetCheckSeverity.ERROR,
                               description=failure or "ok", metadata=_present(metadata))


def fail(failed: dg.AssetCheckResult, *others: dg.AssetCheckResult, **evidence: Any) -> Iterator[dg.AssetCheckResult]:
    """Fail the step: record its `failed` gate (and its other checks, `others`, so every planned check has a
    result), then raise `dg.Failure` with the gate's message and metadata plus further `evidence` for the UI.
    Retrying would only say the same, so Dagster's retries are off."""
    yield from others
    yield failed
    raise dg.Failure(description=failed.description, metadata={**failed.metadata, **_present(evidence)},
                     allow_retries=False)


def _present(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if v is not None}


def warning_spec(asset: str, name: str, description: str,
                 partitions_def: dg.PartitionsDefinition = machine_files) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=False, description=description, partitions_def=partitions_def)


def warning(name: str, passed: bool, description: str, **metadata: Any) -> dg.AssetCheckResult:
    """A non-blocking result: WARN severity when it does not pass."""
    return dg.AssetCheckResult(check_name=name, passed=passed, severity=dg.AssetCheckSeverity.WARN,
                               description=description, metadata=_present(metadata))
