"""Check specs: blocking gates that carry Leaf's failure messages, and non-blocking warnings.

Each pipeline step has one gate, evaluated inside the step: when it fails, Dagster fails the step and
skips everything downstream, and the check's description is the message of Leaf's status object. A
warning (severity WARN) never fails a step: the file stays processed and the UI shows the warning.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from .partitions import machine_files

CONVERSION_FAILED = "Failed to convert file on provider batch processing"


def gate_spec(asset: str, name: str, description: str, partitions_def: dg.PartitionsDefinition = machine_files) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description, partitions_def=partitions_def)


def gate(name: str, failure: str | None, **metadata: Any) -> dg.AssetCheckResult:
    """Passed when `failure` is None, else failed with `failure` as the message shown to users."""
    return dg.AssetCheckResult(check_name=name, passed=failure is None, severity=dg.AssetCheckSeverity.ERROR,
                               description=failure or "ok", metadata={k: v for k, v in metadata.items() if v is not None})


def warning_spec(asset: str, name: str, description: str,
                 partitions_def: dg.PartitionsDefinition = machine_files) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=False, description=description, partitions_def=partitions_def)


def warning(name: str, passed: bool, description: str, **metadata: Any) -> dg.AssetCheckResult:
    """A non-blocking result: WARN severity when it does not pass."""
    return dg.AssetCheckResult(check_name=name, passed=passed, severity=dg.AssetCheckSeverity.WARN,
                               description=description, metadata={k: v for k, v in metadata.items() if v is not None})
