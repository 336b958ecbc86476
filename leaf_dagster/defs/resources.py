"""The storage resource: every path goes through it, so the data directory can move."""

from __future__ import annotations

import dagster as dg

from ..storage import Storage, default_data_dir


class LeafStorage(dg.ConfigurableResource):
    """The data directory (LEAF_DATA_DIR, default ./data) as a Dagster resource."""

    data_dir: str

    def store(self) -> Storage:
        return Storage(self.data_dir)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"storage": LeafStorage(data_dir=str(default_data_dir()))})
