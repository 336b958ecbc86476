"""The shared SQL catalog: a DuckLake whose metadata lives in PostgreSQL and whose data files live on the
shared storage, so SQL users on every host see the same tables (`LEAF_CATALOG=ducklake:postgres:...`).

The local catalog (`catalog.py`) is views over lake/ and the record store, which only the host holding those
files (and records.sqlite, unless the records are in PostgreSQL) can read. A DuckLake holds tables, so this module
copies into them what the local views show, under the same names and columns, and keeps the copy current:
`sync` compares what the sources hold now (each lake/<table>/<id>.parquet by size and modification time, each
record by its updated_time) with what the lake last took from them (the table leaf_sync.sources, in the same
DuckLake), and for every source that changed it deletes the rows that source gave before and inserts its rows
now, all in one DuckLake transaction: a SQL user sees a refresh whole or not at all, and a re-run file replaces
its rows instead of adding to them.

Rows are inserted rather than the Parquet outputs registered in place (`ducklake_add_data_files`): a re-run
renames a new output over the same path, and DuckLake's metadata about a registered file (its size, row
count, column statistics) would then describe a file that is gone, while DuckLake's cleanup of the old
snapshot would delete that path, which now holds the new output; raw outputs also differ in columns from
one format to another, while a registered file must match its table. Copying costs a second, compressed
copy of the points and the time to write it, spent after a run, never inside a step.

Two refreshes at once (the status sensor and an in-process run, or two hosts) both update the one row of
leaf_sync.state, so DuckLake commits one and refuses the other with a conflict; that one starts again and
finds the work done. Readers never wait: a DuckLake reader sees the last committed snapshot.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import duckdb

from .errors import CatalogError
from .extensions import load_extension
from .records import Records
from .storage import DATA_DIR_ENV, ENDPOINT_ENV, Storage

CATALOG_ENV = "LEAF_CATALOG"
DATA_PATH_ENV = "LEAF_CATALOG_DATA_PATH"
ALIAS = "leaf"
SYNC = f"{ALIAS}.leaf_sync"
ATTEMPTS = 5  # refreshes that lose a commit to another one in a row before giving up
OUTPUTS_PER_COMMIT = 60  # 20 files' raw, standard and filtered outputs
# How long replaced rows stay readable: a query started on an older snapshot can still read its data files
# for this long, after which the snapshot is expired and, as long again later, its files are deleted.
RETENTION = "INTERVAL '1 hour'"
# DuckDB draws a progress bar on stdout for a long query: it would corrupt the JSON of `leaf-dagster sql --json`.
QUIET = "SET enable_progress_bar = false"


@dataclass(frozen=True)
class RecordTable:
    """A table of rows derived from one table of the record store: `sql` yields them, `key` names the column
    holding the id of the record each row comes from."""
    source: str
    key: str
    sql: str


def ducklake_url() -> str | None:
    """The DuckLake named by LEAF_CATALOG, or None for the local catalog (unset, empty or `local`)."""
    value = os.environ.get(CATALOG_ENV, "").strip()
    if value in ("", "local"):
        return None
    if not value.startswith("ducklake:"):
        raise CatalogError(f"{CATALOG_ENV} must be 'local' or a DuckLake such as "
                           f"'ducklake:postgres:dbname=leaf host=db.example user=leaf', not {_hidden(value)!r}")
    return value


def _hidden(text: object) -> str:
    """A message (or the error's) without the password a connection string in it may hold: libpq's keyword form
    (`password=...`, quoted or not) and its URI form (`//user:...@`)."""
    text = re.sub(r"password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s\"']+)", "password=***", str(text), flags=re.IGNORECASE)
    return re.sub(r"(//[^/:@\s]*):[^@\s]*@", r"\1:***@", text)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(url: str, *, data_path: str | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session with the DuckLake attached as `leaf`. `data_path` is where the data files
    are, stored in the catalog by the session that creates it; LEAF_CATALOG_DATA_PATH names where this host
    mounts that folder, for this session only (the catalog holds paths relative to it)."""
    con = duckdb.connect()
    con.execute(QUIET)
    mounted = os.environ.get(DATA_PATH_ENV, "").strip()
    data_path = mounted or data_path
    options = (["READ_ONLY"] if read_only else []) + ([f"DATA_PATH {_literal(data_path)}"] if data_path else []) \
        + (["OVERRIDE_DATA_PATH true"] if mounted else [])
    attach = f"ATTACH {_literal(url)} AS {ALIAS}" + (f" ({', '.join(options)})" if options else "")
    try:
        load_extension(con, "ducklake")
        if url.startswith("ducklake:postgres:"):
            load_extension(con, "postgres_scanner")
        if _on_object_storage(data_path):
            _s3_secret(con)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                con.execute(attach)
                return con
            except duckdb.Error:
                # the first writers of a new DuckLake race to create its metadata tables: the losers' creation
                # is rolled back and they find the tables on their next attempt
                if read_only or attempt == ATTEMPTS:
                    raise
                time.sleep(0.1 * attempt)
    except duckdb.Error as exc:
        con.close()
        raise CatalogError(f"cannot open the DuckLake catalog of {CATALOG_ENV}: {_hidden(exc)}") from None
    raise AssertionError("unreachable")


def _on_object_storage(data_path: str | None) -> bool:
    """Whether this session reads or writes data files in object storage: its data path is an s3:// URL, or
    the environment names object storage (the data directory, an endpoint or keys), as it does for a reader
    on a host of its own, which learns the data path only from the catalog, after DuckDB needs httpfs."""
    named = (os.environ.get(DATA_DIR_ENV, ""), data_path or "")
    return any(value.startswith("s3://") for value in named) \
        or any(os.environ.get(name) for name in (ENDPOINT_ENV, "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"))


def _s3_secret(con: duckdb.DuckDBPyConnection) -> None:
    """Load httpfs and give this session an S3 secret made from the environment obstore reads (`storage.py`):
    the endpoint of LEAF_S3_ENDPOINT or AWS_ENDPOINT_URL (path-style URLs, TLS as its scheme says), the
    region and the keys of the AWS_* variables. The values are bound as parameters, so no SQL text, nor an
    error quoting it, holds a key; the secret lives in this session only."""
    load_extension(con, "httpfs")
    options: dict[str, str | bool | None] = {
        "KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID"), "SECRET": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "SESSION_TOKEN": os.environ.get("AWS_SESSION_TOKEN"),
        "REGION": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")}
    endpoint = os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "//" in endpoint else f"https://{endpoint}")
        options |= {"ENDPOINT": parts.netloc + parts.path.rstrip("/"), "URL_STYLE": "path",
                    "USE_SSL": parts.scheme != "http"}
    named = {key: value for key, value in options.items() if value not in (None, "")}
    con.execute(f"CREATE SECRET leaf_s3 (TYPE s3{''.join(f', {key} ?' for key in named)})", list(named.values()))


def data_path(storage: Storage) -> str:
    """Where a new DuckLake keeps its data files: ducklake/ in the data directory (the shared storage), in the
    bucket itself with object storage."""
    if storage.objects is not None:
        return f"{storage.url.rstrip('/')}/ducklake/"
    folder = storage.ducklake_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder.as_posix().rstrip("/") + "/"


def query(url: str, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL read-only on the DuckLake's tables; returns column names and rows."""
    with connect(url, read_only=True) as con:
        con.execute(f"USE {ALIAS}")
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()


def sync(url: str, storage: Storage, records: Records, record_tables: dict[str, RecordTable],
         point_tables: dict[str, str]) -> int:
    """Bring the DuckLake up to date with the record store `records` and the lake/ outputs; `point_tables`
    maps a table name to its lake/ folder. Returns how many sources (outputs and records) changed."""
    total = 0
    for attempt in range(1, ATTEMPTS + 1):
        with connect(url, data_path=data_path(storage)) as con:
            try:
                load_extension(con, records.scanner)
                while True:
                    done, more = _sync_once(con, storage, records, record_tables, point_tables)
                    total += done
                    if not more:
                        if total:  # old snapshots go only when a refresh made new ones
                            _expire(con)
                        return total
            except duckdb.TransactionException as exc:
                if attempt == ATTEMPTS:
                    raise CatalogError(f"the DuckLake catalog kept changing under {ATTEMPTS} refreshes: {_hidden(exc)}") from None
            except duckdb.Error as exc:
                raise CatalogError(f"cannot refresh the DuckLake catalog of {CATALOG_ENV}: {_hidden(exc)}") from None
    raise AssertionError("unreachable")


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    """The bookkeeping tables, once per DuckLake."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SYNC}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {SYNC}.sources (source VARCHAR, key VARCHAR, stamp VARCHAR)")
    con.execute(f"CREATE TABLE IF NOT EXISTS {SYNC}.state (generation BIGINT)")
    if not con.execute(f"SELECT 1 FROM {SYNC}.state").fetchone():
        con.execute(f"INSERT INTO {SYNC}.state VALUES (0)")


def _current(con: duckdb.DuckDBPyConnection, storage: Storage, records: Records, record_tables: dict[str, RecordTable],
             point_tables: dict[str, str]) -> None:
    """Temp table `now_sources`: every source as it is now. A file's stamp is taken before it is read, so an
    output replaced meanwhile is read again at the next refresh."""
    sources, keys, stamps = [], [], []
    for table in point_tables.values():
        for name, stamp in storage.stamps(storage.table_dir(table)).items():
            if name.endswith(".parquet"):
                sources.append(f"lake/{table}")
                keys.append(name.removesuffix(".parquet"))
                stamps.append(stamp)
    con.execute("CREATE OR REPLACE TEMP TABLE now_sources (source VARCHAR, key VARCHAR, stamp VARCHAR)")
    con.execute("INSERT INTO now_sources SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[]), unnest($3::VARCHAR[])",
                [sources, keys, stamps])
    for source in sorted({t.source for t in record_tables.values()}):
        con.execute(f"INSERT INTO now_sources SELECT 'records/{source}', id, updated_time FROM {records.scan(source)}")


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, tuple[str, str]]:
    """Each column's name and type by its lower-cased name: SQL names are not case-sensitive (one format's
    `Distance` is another's `DISTANCE`, one column in the local view too)."""
    return {name.lower(): (name, kind) for name, kind, *_ in con.execute(f"DESCRIBE {relation}").fetchall()}


def _widens(con: duckdb.DuckDBPyConnection, have: str, incoming: str) -> bool:
    """Whether a column of type `have` must change type to take values of type `incoming`: the type DuckDB
    gives the union of both (the type the local view's union_by_name gives it) is not `have`."""
    if have == incoming:
        return False
    ((union,),) = con.execute(
        f"SELECT typeof(x) FROM (SELECT NULL::{have} AS x UNION ALL SELECT NULL::{incoming}) LIMIT 1").fetchall()
    return bool(union != have)


def _replace(con: duckdb.DuckDBPyConnection, table: str, key: str, source: str, select: str,
             select_all: str | None = None) -> bool:
    """Delete the rows of `table` whose `key` names a touched source, then insert `select` (the rows of the
    changed ones), creating the table, or adding the columns it lacks, first. When a column must change
    type (a raw column holding numbers in one format's files and text in another's), which DuckLake cannot
    do in place, the table is made again from `select_all` (the rows of every source): returns True then."""
    target = f'{ALIAS}.main."{table}"'
    exists = con.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
                         "AND table_name = ?", [ALIAS, table]).fetchone()
    changed = con.execute("SELECT 1 FROM changed WHERE source = ?", [source]).fetchone()
    if not exists:
        if changed:
            con.execute(f"CREATE TABLE {target} AS {select}")
        return False
    have = _columns(con, target)
    incoming = _columns(con, f"({select})") if changed else {}
    if select_all and any(low in have and _widens(con, have[low][1], kind) for low, (_, kind) in incoming.items()):
        con.execute(f"DROP TABLE {target}")
        con.execute(f"CREATE TABLE {target} AS {select_all}")
        return True
    con.execute(f'DELETE FROM {target} WHERE "{key}" IN (SELECT key FROM touched WHERE source = ?)', [source])
    for low, (name, kind) in incoming.items():
        if low not in have:
            con.execute(f'ALTER TABLE {target} ADD COLUMN "{name}" {kind}')
    if changed:
        con.execute(f"INSERT INTO {target} BY NAME {select}")
    return False


def _outputs(con: duckdb.DuckDBPyConnection, storage: Storage, table: str, source: str, listing: str) -> str:
    """SQL reading the outputs of a lake/ table that the temp table `listing` names (empty if none)."""
    keys = [k for (k,) in con.execute(f"SELECT key FROM {listing} WHERE source = ? ORDER BY key", [source]).fetchall()]
    paths = ", ".join(_literal(_output_location(storage, table, k)) for k in keys)
    return f"SELECT * FROM read_parquet([{paths}], union_by_name = true)"


def _output_location(storage: Storage, table: str, key: str) -> str:
    """Where the refresh reads an output: its file, or with object storage its object (through httpfs), since
    this host's working folder lacks the outputs that workers on other hosts wrote."""
    path = storage.parquet_path(table, key)
    return storage.object_url(path) or path.as_posix()


def _sync_once(con: duckdb.DuckDBPyConnection, storage: Storage, records: Records, record_tables: dict[str, RecordTable],
               point_tables: dict[str, str]) -> tuple[int, bool]:
    """One commit: the records that changed and up to OUTPUTS_PER_COMMIT outputs, so a first refresh of a
    large lake is committed bit by bit and a refresh cut short keeps what it did. Returns how many sources
    it took and whether some are left."""
    _prepare(con)
    _current(con, storage, records, record_tables, point_tables)
    con.execute("CREATE OR REPLACE TEMP TABLE changed AS "
                f"SELECT source, key, stamp FROM now_sources EXCEPT SELECT source, key, stamp FROM {SYNC}.sources")
    con.execute("CREATE OR REPLACE TEMP TABLE all_touched AS SELECT source, key FROM changed UNION "
                f"(SELECT source, key FROM {SYNC}.sources EXCEPT SELECT source, key FROM now_sources)")
    # this commit's share: every record, and the first outputs (a file's tables together)
    con.execute("CREATE OR REPLACE TEMP TABLE touched AS SELECT source, key FROM all_touched WHERE source LIKE 'records/%' "
                "UNION ALL SELECT source, key FROM (SELECT source, key, row_number() OVER (ORDER BY key, source) AS n "
                f"FROM all_touched WHERE source LIKE 'lake/%') WHERE n <= {OUTPUTS_PER_COMMIT}")
    con.execute("DELETE FROM changed WHERE source || '/' || key NOT IN (SELECT source || '/' || key FROM touched)")
    ((count, everything),) = con.execute("SELECT (SELECT count(*) FROM touched), (SELECT count(*) FROM all_touched)"
                                         ).fetchall()
    if not count:
        return 0, False
    con.execute("BEGIN")
    try:
        con.execute(f"UPDATE {SYNC}.state SET generation = generation + 1")  # one refresh commits at a time
        rebuilt = []
        for name, table in point_tables.items():
            source = f"lake/{table}"
            selects = [_outputs(con, storage, table, source, keys) for keys in ("changed", "now_sources")]
            if _replace(con, name, "file_id", source, *selects):
                rebuilt.append(source)
        for name, spec in record_tables.items():
            source = f"records/{spec.source}"
            _replace(con, name, spec.key, source,
                     f'SELECT * FROM ({spec.sql}) WHERE "{spec.key}" IN '
                     f"(SELECT key FROM changed WHERE source = {_literal(source)})")
        con.execute(f"DELETE FROM {SYNC}.sources WHERE source || '/' || key IN "
                    "(SELECT source || '/' || key FROM touched)")
        con.execute(f"INSERT INTO {SYNC}.sources SELECT source, key, stamp FROM changed")
        for source in rebuilt:  # every output of a rebuilt table was taken as it is now
            con.execute(f"DELETE FROM {SYNC}.sources WHERE source = ?", [source])
            con.execute(f"INSERT INTO {SYNC}.sources SELECT source, key, stamp FROM now_sources WHERE source = ?",
                        [source])
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:  # a refused commit has ended the transaction already
            pass
        raise
    return int(count), everything > count


def _expire(con: duckdb.DuckDBPyConnection) -> None:
    """Expire the snapshots older than RETENTION and delete the data files only they used, so the rows a
    refresh replaced do not pile up on the shared storage. Two refreshes may do this at once: the one that
    loses the commit leaves it to the other."""
    try:
        con.execute(f"CALL ducklake_expire_snapshots('{ALIAS}', older_than => now() - {RETENTION})")
        con.execute(f"CALL ducklake_cleanup_old_files('{ALIAS}', older_than => now() - {RETENTION})")
    except duckdb.TransactionException:
        pass
