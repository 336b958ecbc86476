"""The storage resource: every path goes through it, so the data directory can move."""

from __future__ import annotations

import dagster as dg

from ..storage import Storage, default_data_dir


class LeafStorage(dg.ConfigurableResource):
    """The data directory (LEAF_DATA_DIR, default ./data) as a Dagster resource."""

    data_dir: str

    def store(self) -> Storage:
        return Storage(self.data_dir)


def bound_to(data_dir: str) -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManager]:
    """The resources on one data directory: the storage, and the IO manager of step tables that uses it."""
    from .io_manager import StepTables  # it needs LeafStorage from here

    storage = LeafStorage(data_dir=data_dir)
    return {"storage": storage, "step_tables": StepTables(storage=storage)}


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=bound_to(str(default_data_dir())))
