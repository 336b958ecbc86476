"""The DuckDB catalog: SQL views over the per-file outputs in lake/.

The pipeline never holds a lock that a SQL user could be waiting on, and a SQL user never blocks the
pipeline: outputs are separate Parquet/JSON files, and the catalog file holds only view definitions.
It is rebuilt in a temporary file and renamed over `leaf.duckdb`, so a reader that has the old catalog
open keeps reading it (the old inode lives until it closes) while new readers get the new one.

The project's own readers (the API's and the CLI's lists) never open `leaf.duckdb`: `reader` gives an
in-memory connection with the views they need, so a SQL user holding the file read-write, or reopening
it in a loop, cannot make a list fail with DuckDB's "Could not set lock".
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import duckdb

from .storage import Storage

# JSON records have fixed columns: nested values whose keys come from source files (units, steps) stay
# JSON, so two files with keys differing only in case cannot break the view.
_TS = "TIMESTAMPTZ"
RECORD_COLUMNS: dict[str, dict[str, str]] = {
    "batches": {"id": "VARCHAR", "leafUserId": "VARCHAR", "fileName": "VARCHAR", "size": "BIGINT",
                "provider": "VARCHAR", "status": "VARCHAR", "uploadTimestamp": _TS, "leafFiles": "VARCHAR[]",
                "statusDetails": "VARCHAR", "processedTimestamp": _TS, "apiOwnerUsername": "VARCHAR"},
    "files": {"id": "VARCHAR", "batchId": "VARCHAR", "leafUserId": "VARCHAR", "provider": "VARCHAR",
              "fileName": "VARCHAR", "fileFormat": "VARCHAR", "origin": "VARCHAR", "status": "VARCHAR",
              "operationType": "VARCHAR", "originalOperationType": "VARCHAR", "createdTime": _TS,
              "updatedTime": _TS, "startTime": _TS, "endTime": _TS, "sizeInBytes": "BIGINT", "pointCount": "BIGINT",
              "crops": "VARCHAR[]", "varieties": "VARCHAR[]", "units": "JSON", "steps": "JSON", "notes": "VARCHAR[]",
              "missingProperties": "VARCHAR[]", "sourcePath": "VARCHAR", "organizationId": "VARCHAR",
              "providerFileId": "VARCHAR", "areaM2": "DOUBLE", "fields": "VARCHAR[]", "sources": "VARCHAR[]",
              "apiOwnerUsername": "VARCHAR", "standard": "BOOLEAN", "terminalTotals": "JSON", "plausibility": "JSON"},
    "summaries": {"fileId": "VARCHAR", "operationType": "VARCHAR", "startTime": _TS, "endTime": _TS, "summary": "JSON"},
    "units": {"fileId": "VARCHAR", "property": "VARCHAR", "unit": "VARCHAR"},
    "images": {"fileId": "VARCHAR", "property": "VARCHAR", "unit": "VARCHAR", "min": "DOUBLE", "max": "DOUBLE",
               "path": "VARCHAR", "width": "INTEGER", "height": "INTEGER", "resolution": "DOUBLE", "ramp": "JSON"},
    "file_status": {"fileId": "VARCHAR", "batchId": "VARCHAR", "step": "VARCHAR", "status": "VARCHAR",
                    "message": "VARCHAR", "details": "JSON", "runId": "VARCHAR", "updatedTime": _TS},
}

# view name -> (lake table, file kind)
VIEWS: dict[str, tuple[str, str]] = {
    "batches": ("batches", "json"),
    "files": ("files", "json"),
    "file_status": ("file_status", "json"),
    "raw_points": ("raw", "parquet"),
    "standard_points": ("standard", "parquet"),
    "filtered_points": ("filtered", "parquet"),
    "polygons": ("polygons", "parquet"),
    "summaries": ("summaries", "json"),
    "units": ("units", "json"),
    "images": ("images", "json"),
}


def _view_sql(name: str, folder: Path, kind: str) -> str:
    pattern = (folder / f"*.{kind}").as_posix().replace("'", "''")
    if kind == "parquet":
        return f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)"
    columns = ", ".join(f"'{k}': '{v}'" for k, v in RECORD_COLUMNS[name].items())
    return (f"CREATE VIEW {name} AS SELECT * FROM read_json('{pattern}', format = 'auto', "
            f"columns = {{{columns}}}, maximum_object_size = 67108864)")


def _create_views(con: duckdb.DuckDBPyConnection, storage: Storage, names: Iterable[str]) -> None:
    """A view for each named table that has outputs."""
    for name in names:
        table, kind = VIEWS[name]
        folder = storage.table_dir(table)
        if folder.exists() and any(folder.glob(f"*.{kind}")):
            con.execute(_view_sql(name, folder, kind))


def reader(storage: Storage, *names: str) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the named views over lake/: no lock on leaf.duckdb to wait for."""
    con = duckdb.connect(":memory:")
    _create_views(con, storage, names)
    return con


def refresh_catalog(storage: Storage) -> Path:
    """Rebuild leaf.duckdb with a view for every table that has outputs; safe to call concurrently."""
    target = storage.catalog_path
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".leaf.", suffix=".duckdb", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # DuckDB creates the file itself
    try:
        with duckdb.connect(str(tmp)) as con:
            _create_views(con, storage, VIEWS)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return target


def query(storage: Storage, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL on the catalog read-only; returns column names and rows."""
    if not storage.catalog_path.exists():
        refresh_catalog(storage)
    with duckdb.connect(str(storage.catalog_path), read_only=True) as con:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
