"""The non-blocking `plausibility` check of the standard step: a warning with the figures, never a failure.

(No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.)
"""

import dagster as dg

from ..files import FileSteps
from ..model import PointTable
from .partitions import machine_files
from .resources import LeafStorage


@dg.asset_check(asset="standardGeojson", name="plausibility", blocking=False, partitions_def=machine_files,
                description="Working width against the spacing of passes, speeds, time span and yields are "
                            "physically plausible (a warning: the file is still processed)")
def plausibility(context: dg.AssetCheckExecutionContext, storage: LeafStorage,
                 standardGeojson: PointTable) -> dg.AssetCheckResult:  # noqa: N803 (the asset's key)
    """Warns, with the figures, when a processed file's numbers cannot be right (a unit read wrongly, a clock
    from another epoch); the standard points come from the IO manager, named after their asset."""
    return plausibility_check(FileSteps(storage.store(), context.partition_key), standardGeojson)


def plausibility_check(steps: FileSteps, standard: PointTable) -> dg.AssetCheckResult:
    result = steps.plausibility(standard)
    metadata = {k: v for k, v in result.figures.items() if v is not None}
    return dg.AssetCheckResult(check_name="plausibility", passed=result.passed, severity=dg.AssetCheckSeverity.WARN,
                               description="; ".join(result.findings) or "plausible", metadata=metadata)
