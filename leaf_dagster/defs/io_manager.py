"""The IO manager that hands a file's tables from step to step.

The raw, standard and filtered steps return their table; this IO manager writes it once, as the step's
GeoParquet (lake/<table>/<file id>.parquet, the path given by the asset key and the partition), and keeps
it for the later steps of the same run, which run in the same process (`jobs.py`): a file's run reads its
source once and no step reads back what an earlier step of the run wrote. A step run on its own (from the
UI, after a fix) gets the table read back from the earlier run's GeoParquet.

(No `from __future__ import annotations` here: Dagster reads the nested resource's annotation at definition time.)
"""

from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from ..files import FileSteps
from ..model import PointTable, SourceTable
from .resources import LeafStorage


class StepTables(dg.ConfigurableIOManager):
    """A file's step tables: written once by `handle_output`, then kept for the rest of the run."""

    storage: LeafStorage
    _kept: dict[tuple[str, str], Any] = PrivateAttr(default_factory=dict)

    def handle_output(self, context: dg.OutputContext, obj: SourceTable | PointTable) -> None:
        step = context.asset_key.to_user_string()
        FileSteps(self.storage.store(), context.partition_key).write_table(step, obj)
        self._kept[(step, context.partition_key)] = obj

    def load_input(self, context: dg.InputContext) -> SourceTable | PointTable:
        step = context.asset_key.to_user_string()
        kept = self._kept.get((step, context.partition_key))
        if kept is not None:
            return kept
        return FileSteps(self.storage.store(), context.partition_key).load_table(step)
