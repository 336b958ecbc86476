"""Every path the pipeline reads or writes, in one place.

The data directory is laid out so that each pipeline step owns one folder of per-file outputs:

    inbox/                          uploads waiting to be picked up (NAME.zip, optional NAME.json)
    owners/<owner>/config.json      an API owner's configuration
    owners/<owner>/users/<leafUserId>/config.json, fields/
                                    a Leaf user's configuration and field boundaries, per owner
    batches/<batch_id>/upload/      the stored upload
    batches/<batch_id>/extracted/   its safely extracted contents
    files/<file_id>/original/       the members that make up one machine file
    files/<file_id>/images/         property PNGs (+ .aux.xml) and their zip
    lake/<table>/<id>.parquet       one GeoParquet output per file and step
    records.sqlite                  batch and file records, one section per writer (`records.py`)
    leaf.duckdb                     SQL catalog: views over lake/ and the records
    ducklake/                       data files of the shared DuckLake catalog, when LEAF_CATALOG names one

Every per-owner and per-user path comes from `owner_path`/`user_path`: the identifiers must match
`identifiers.ID_PATTERN` and the resolved path must lie inside the owner's folder. Record and output
keys (file and batch ids) are checked the same way.

Writers always write to a temporary name in the target folder and rename it into place, so a reader
never sees half an output and a crashed step never leaves one behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PathOutsideDataDir
from .identifiers import check_id

if TYPE_CHECKING:
    import geopandas as gpd

    from .records import Records

DATA_DIR_ENV = "LEAF_DATA_DIR"
# Uploads that name no API owner (inbox drops without one in their sidecar, the CLI) belong to this owner.
DEFAULT_OWNER = "local"


def owner_of(record: dict[str, Any]) -> str:
    """The API owner of a batch or file record (records without one belong to the local owner)."""
    return record.get("apiOwnerUsername") or DEFAULT_OWNER


def default_data_dir() -> Path:
    """The data directory named by LEAF_DATA_DIR, else ./data."""
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


class Storage:
    """Paths and atomic writes under one data directory."""

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.root = Path(data_dir).resolve()

    # -- layout --------------------------------------------------------------------------------
    def _inside(self, *parts: str, base: Path | None = None) -> Path:
        """`parts` joined under `base` (the data directory by default), resolved, and refused if it leaves it."""
        base = base or self.root
        path = base.joinpath(*parts).resolve()
        if path != base and base not in path.parents:
            raise PathOutsideDataDir(f"{'/'.join(parts)} is outside its folder in the data directory")
        return path

    def owner_path(self, owner: str, *parts: str) -> Path:
        """The one way to a path of an API owner: owners/<owner>/<parts>, never outside that folder."""
        folder = self._inside("owners", check_id("API owner", owner))
        return self._inside(*parts, base=folder)

    def user_path(self, owner: str, leaf_user_id: str, *parts: str) -> Path:
        """A path of one Leaf user of one API owner: owners/<owner>/users/<leafUserId>/<parts>."""
        return self.owner_path(owner, "users", check_id("leafUserId", leaf_user_id), *parts)

    @property
    def inbox(self) -> Path:
        return self._inside("inbox")

    @property
    def catalog_path(self) -> Path:
        return self._inside("leaf.duckdb")

    @property
    def ducklake_dir(self) -> Path:
        return self._inside("ducklake")

    def batch_dir(self, batch_id: str) -> Path:
        return self._inside("batches", check_id("batch id", batch_id))

    def upload_dir(self, batch_id: str) -> Path:
        return self.batch_dir(batch_id) / "upload"

    def extracted_dir(self, batch_id: str) -> Path:
        return self.batch_dir(batch_id) / "extracted"

    def file_dir(self, file_id: str) -> Path:
        return self._inside("files", check_id("file id", file_id))

    def original_dir(self, file_id: str) -> Path:
        return self.file_dir(file_id) / "original"

    def images_dir(self, file_id: str) -> Path:
        return self.file_dir(file_id) / "images"

    def table_dir(self, table: str) -> Path:
        return self._inside("lake", table)

    def parquet_path(self, table: str, key: str) -> Path:
        return self._inside("lake", table, f"{check_id('id', key)}.parquet")

    @property
    def records(self) -> "Records":
        """The batch and file records: `records.sqlite` in the data directory, or the PostgreSQL database of
        LEAF_RECORDS_URL when one is named."""
        from .records import Records, records_url

        return Records(self._inside("records.sqlite"), records_url())

    # -- atomic writes -------------------------------------------------------------------------
    @contextmanager
    def atomic_path(self, target: Path) -> Iterator[Path]:
        """Yield a temporary sibling of `target`; it replaces `target` only if the block succeeds."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.replace(tmp_path, target)
        finally:
            tmp_path.unlink(missing_ok=True)

    def read_geoparquet(self, table: str, key: str) -> "gpd.GeoDataFrame":
        import geopandas as gpd  # heavy: only the steps that read points pay for it

        return gpd.read_parquet(self.parquet_path(table, key))
