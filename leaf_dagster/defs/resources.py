"""The storage resource: every path goes through it, so the data directory can move."""

from __future__ import annotations

import dagster as dg

from ..storage import Storage, data_url


class LeafStorage(dg.ConfigurableResource):
    """The data directory (LEAF_DATA_DIR, default ./data: a folder or s3://bucket/prefix) as a Dagster resource;
    `work_dir` is the local working folder for object storage (default LEAF_WORK_DIR)."""

    data_dir: str
    work_dir: str | None = None

    def store(self) -> Storage:
        return Storage(self.data_dir, self.work_dir)


def bound_to(data_dir: str,
             work_dir: str | None = None) -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManager]:
    """The resources on one data directory: the storage, and the IO manager of step tables that uses it."""
    from .io_manager import StepTables  # it needs LeafStorage from here

    storage = LeafStorage(data_dir=data_dir, work_dir=work_dir)
    return {"storage": storage, "step_tables": StepTables(storage=storage)}


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=bound_to(data_url()))
