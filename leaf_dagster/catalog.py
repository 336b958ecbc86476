"""The DuckDB catalog `leaf.duckdb`: SQL views over the GeoParquet outputs in lake/ and the record store.

The catalog holds only view definitions, so it never goes stale: the record views read the record store
(`records.sqlite` through DuckDB's SQLite scanner, or the PostgreSQL database of LEAF_RECORDS_URL through its
PostgreSQL scanner) and the point views glob lake/<table>/*.parquet when they are queried,
so a row appears as soon as the step that owns it has written. The file is rebuilt only when the set of
views changes (a point table gets its first output), in a temporary file renamed over `leaf.duckdb`: a
SQL user who has the old catalog open keeps reading it, new readers get the new one, and the pipeline
never waits on a SQL user (nor a SQL user on the pipeline: the record store is read without locking it
for writers).

That is the catalog of one machine. When LEAF_CATALOG names a DuckLake (`ducklake.py`), the same views are
kept as tables in it instead, for SQL users on every host.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb

from . import ducklake
from .extensions import load_extension
from .model import DEFAULTS, FLOAT, INT, JSON, ROW_FACTS, SECTIONS, TEXT, TEXTS, TS
from .records import Records
from .storage import Storage

# point view -> lake table of GeoParquet outputs
POINT_VIEWS = {"raw_points": "raw", "standard_points": "standard", "filtered_points": "filtered",
               "polygons": "polygons"}
# record view -> the record store table its rows come from, and the column holding that record's id
RECORD_KEYS = {"files": ("files", "id"), "batches": ("batches", "id"), "file_status": ("files", "fileId"),
               "summaries": ("files", "fileId"), "units": ("files", "fileId"), "images": ("files", "fileId")}


def _fact(section: str, key: str, kind: str, default: object) -> str:
    """One fact of a record section as a typed SQL column."""
    path = f"'$.{key}'"
    if kind == JSON:
        value = f"json_extract({section}, {path})"
    elif kind == TEXTS:
        value = f"CAST(json_extract({section}, {path}) AS VARCHAR[])"
    else:
        value = f"json_extract_string({section}, {path})"
        value = value if kind == TEXT else f"TRY_CAST({value} AS {kind})"
    if isinstance(default, str):
        value = f"coalesce({value}, '{default}')"
    return f'{value} AS "{key}"'


def _record_views(records: Records) -> dict[str, str]:
    """The views over the record store: one typed column per fact of `model.py`, and the status, summary,
    units and images of each file as rows."""
    views = {}
    for table in ("files", "batches"):
        columns = ["id"] + [_fact(section, key, kind, DEFAULTS[table].get(key))
                            for section, keys in SECTIONS[table].items() for key, kind in keys.items() if key != "id"]
        columns += [f'TRY_CAST(updated_time AS {kind}) AS "{key}"' for key, kind in ROW_FACTS[table].items()]
        views[table] = (f"SELECT {', '.join(columns)} FROM {records.scan(table)} "
                        "WHERE registration IS NOT NULL")
    files = f"{records.scan('files')} AS f"
    views["file_status"] = (
        "SELECT f.id AS \"fileId\", json_extract_string(f.registration, '$.batchId') AS \"batchId\", s.key AS step, "
        "s.value->>'status' AS status, s.value->>'message' AS message, s.value->'details' AS details, "
        f"json_extract_string(f.status, '$.lastRunId') AS \"runId\", TRY_CAST(f.updated_time AS {TS}) AS \"updatedTime\" "
        f"FROM {files}, json_each(f.status, '$.steps') AS s")
    views["summaries"] = (
        f"SELECT f.id AS \"fileId\", json_extract_string(f.standard, '$.operationType') AS \"operationType\", "
        f"TRY_CAST(json_extract_string(f.standard, '$.startTime') AS {TS}) AS \"startTime\", "
        f"TRY_CAST(json_extract_string(f.standard, '$.endTime') AS {TS}) AS \"endTime\", "
        f"json_extract(f.summary, '$.summary') AS summary FROM {files} WHERE f.summary IS NOT NULL")
    views["units"] = (f"SELECT f.id AS \"fileId\", u.key AS property, u.value->>'$' AS unit "
                      f"FROM {files}, json_each(f.units, '$.unitMap') AS u")
    views["images"] = (
        f"SELECT f.id AS \"fileId\", i.value->>'property' AS property, i.value->>'unit' AS unit, "
        f"TRY_CAST(i.value->>'min' AS {FLOAT}) AS min, TRY_CAST(i.value->>'max' AS {FLOAT}) AS max, "
        f"i.value->>'path' AS path, TRY_CAST(i.value->>'width' AS {INT}) AS width, "
        f"TRY_CAST(i.value->>'height' AS {INT}) AS height, TRY_CAST(i.value->>'resolution' AS {FLOAT}) AS resolution, "
        f"i.value->'ramp' AS ramp FROM {files}, json_each(f.images, '$.images') AS i")
    return views


def _point_views(storage: Storage) -> dict[str, str]:
    """A view for each point table that has outputs (a glob over no file is an error in DuckDB)."""
    views = {}
    for name, table in POINT_VIEWS.items():
        folder = storage.table_dir(table)
        if folder.exists() and any(folder.glob("*.parquet")):
            pattern = (folder / "*.parquet").as_posix().replace("'", "''")
            views[name] = f"SELECT * FROM read_parquet('{pattern}', union_by_name = true)"
    return views


def refresh_catalog(storage: Storage) -> None:
    """Make the catalog show the records and every point table with outputs: the DuckLake of LEAF_CATALOG
    when one is named, else leaf.duckdb. Cheap when nothing changed, so it is called after every run.
    Safe to call concurrently."""
    records = storage.records
    with records.connect():  # the record store exists before a view reads it
        pass
    url = ducklake.ducklake_url()
    if url is not None:
        views = _record_views(records)
        tables = {name: ducklake.RecordTable(*RECORD_KEYS[name], sql) for name, sql in views.items()}
        ducklake.sync(url, storage, records, tables, POINT_VIEWS)
        return
    _refresh_local(storage, records)


def _refresh_local(storage: Storage, records: Records) -> None:
    """leaf.duckdb: a view for the records and for every point table with outputs, rebuilt only when that
    set changes (a store named by another LEAF_RECORDS_URL is another set)."""
    target = storage.catalog_path
    views = {**_record_views(records), **_point_views(storage)}
    listing = target.with_name(target.name + ".views")
    wanted = "\n".join(f"{name}: {sql}" for name, sql in sorted(views.items()))
    if target.exists() and listing.exists() and listing.read_text() == wanted:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".leaf.", suffix=".duckdb", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # DuckDB creates the file itself
    try:
        with duckdb.connect(str(tmp)) as con:
            load_extension(con, records.scanner)
            for name, sql in views.items():
                con.execute(f"CREATE VIEW {name} AS {sql}")
        os.replace(tmp, target)
        with storage.atomic_path(listing) as written:
            written.write_text(wanted)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)


def query(storage: Storage, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL on the catalog read-only; returns column names and rows. The DuckLake is read as the last
    refresh left it (a reader on another host may have no records to refresh it from)."""
    url = ducklake.ducklake_url()
    if url is not None:
        return ducklake.query(url, sql)
    refresh_catalog(storage)
    with duckdb.connect(str(storage.catalog_path), read_only=True) as con:
        con.execute(ducklake.QUIET)
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
