"""The record store: every batch and machine file record, in one transactional database: a SQLite file in the
data directory (one machine, or hosts sharing one filesystem), or a PostgreSQL database that every host reaches
(`LEAF_RECORDS_URL`).

A record is a row whose columns are its sections (`model.FILE_SECTIONS`, `model.BATCH_SECTIONS`), each a
JSON document written whole, in one statement, by its one writer. Writers never read-modify-write another
section, so concurrent writers (a file's run, a field re-match, the API marking a retry) cannot lose each
other's updates: SQLite takes one writer at a time, and PostgreSQL's row lock makes a second writer of the same
record wait and then set its own section on the row the first one committed. SQLite's write-ahead log and
PostgreSQL's snapshots let any number of readers (the API's lists, the CLI, SQL users through the catalog) read
while a step writes, and a reader never blocks a writer. A section is kept as the text its writer gave
(PostgreSQL `text`, not `jsonb`, which would reorder keys), so both stores give back the same bytes.

The API's lists query `file_list`, a narrow table with a column per scalar fact that triggers keep in the
transaction of every write of a file record (indexed by owner, Leaf user and batch), and the `batch_list`
view: a list reads small rows, not every record's JSON, and nothing is rebuilt per request. The SQL is the
same on both databases; `_SQLite` and `_Postgres` differ only in how a fact is read from a section (SQLite's
json_extract is typed by the value; PostgreSQL's is cast by the fact's kind, booleans as 0/1 like SQLite's),
how text sorts (byte order on both), how a trigger is declared and how connections are opened.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .errors import RecordsConfigError
from .model import BOOL, DEFAULTS, FLOAT, INT, JSON, SECTIONS, TEXT, TEXTS, TS, section_of, utc_now
from .storage import DEFAULT_OWNER

SCHEMA_VERSION = 1
RECORDS_URL_ENV = "LEAF_RECORDS_URL"
PG_SCHEMA = "leaf_records"  # the PostgreSQL schema of the records: a database shared with Dagster's instance keeps them apart
# A sqlite3 connection or a psycopg2 one (in autocommit mode): `Records.connect` gives one, `put` takes one.
Connection = Any


def records_url() -> str | None:
    """The PostgreSQL database of LEAF_RECORDS_URL (a libpq URL), or None for the SQLite file (unset or empty)."""
    url = os.environ.get(RECORDS_URL_ENV, "").strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise RecordsConfigError(f"{RECORDS_URL_ENV} must be a libpq URL such as postgresql://leaf@db.example/leaf, "
                                 f"not one starting {url.split(':', 1)[0]}:")
    parts = urlsplit(url)
    if parts.password is not None or "password" in parse_qs(parts.query):
        # the catalog's record views hold this URL, and any SQL user can read a view's definition
        raise RecordsConfigError(f"{RECORDS_URL_ENV} must not hold a password (the SQL catalog's views show the URL): "
                                 "give it through ~/.pgpass or PGPASSWORD")
    return url


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _SQLite:
    """The record store in one SQLite file, a connection per use."""

    scanner = "sqlite_scanner"  # DuckDB's extension that reads it
    text = "TEXT"

    def __init__(self, path: Path):
        self.path = path

    def open(self) -> tuple[Connection, bool]:
        """A connection in autocommit mode (each statement its own transaction), waiting up to 60 s for a
        writer, and whether the schema is there (looked for each time: the file may be removed while a process
        lives)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=NORMAL")
            return con, con.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is not None
        except BaseException:
            con.close()
            raise

    @staticmethod
    def release(con: Connection, reusable: bool) -> None:
        con.close()

    @staticmethod
    def execute(con: Connection, sql: str, params: Iterable[Any] = ()) -> Any:
        return con.execute(sql, list(params))

    @staticmethod
    def begin(con: Connection) -> None:
        """Start a write transaction, taking the write lock now (not at its first write, when a reader's snapshot
        could make it fail)."""
        con.execute("BEGIN IMMEDIATE")

    @staticmethod
    def lock(con: Connection, name: str) -> None:
        """Nothing more to take: `begin` holds the database's write lock already."""

    def begin_create(self, con: Connection) -> None:
        """Start the transaction that makes the schema, one process at a time."""
        con.execute("PRAGMA journal_mode=WAL")
        self.begin(con)

    @staticmethod
    def fact(section: str, path: str, kind: str) -> str:
        """A scalar fact of a section as SQL (`path`: its keys joined by dots); SQLite types it by its JSON value."""
        return f"json_extract({section}, '$.{path}')"

    @staticmethod
    def flag(condition: str) -> str:
        """A condition as the list's 0/1 column."""
        return condition

    @staticmethod
    def column(kind: str) -> str:
        """The type of a list column holding facts of `kind` (SQLite's columns take any)."""
        return ""

    @staticmethod
    def triggers(table: str, relist: str) -> list[str]:
        return [f"CREATE TRIGGER {table}_listed AFTER INSERT ON {table} BEGIN {relist} END",
                f"CREATE TRIGGER {table}_relisted AFTER UPDATE ON {table} BEGIN {relist} END"]

    def scan(self, table: str) -> str:
        """DuckDB SQL reading one table of the store."""
        return f"sqlite_scan({_sql_literal(self.path.as_posix())}, {_sql_literal(table)})"


# Idle PostgreSQL connections of this process, by URL: opening one costs a server process and a login (~15 ms
# on the local server), more than a record's write.
_IDLE: dict[str, list[Connection]] = {}
_IDLE_MAX = 4
_IDLE_LOCK = threading.Lock()


def _forget_inherited() -> None:
    """In a child made by fork: the parent's idle connections share its sockets, and closing one here would end the
    parent's session on the server, so each socket is pointed at /dev/null before the connection is dropped."""
    global _IDLE_LOCK
    _IDLE_LOCK = threading.Lock()  # another thread of the parent may have held it
    for connections in _IDLE.values():
        for con in connections:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, con.fileno())
            os.close(null)
    _IDLE.clear()


os.register_at_fork(after_in_child=_forget_inherited)


def _number(value: str | None, cursor: Any) -> int | float | None:
    """A list's numeric column as SQLite gives it: an int when whole, else a float (not a Decimal)."""
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else float(value)


def _number_type() -> Any:
    import psycopg2.extensions  # type: ignore[import-untyped]  # only a store on PostgreSQL needs it

    return psycopg2.extensions.new_type((1700,), "LEAF_NUMBER", _number)  # 1700: numeric's type oid


class _Postgres:
    """The record store in the schema leaf_records of a PostgreSQL database, through psycopg2 (dagster-postgres's
    driver), connections kept for reuse by each process."""

    scanner = "postgres_scanner"
    text = 'text COLLATE "C"'  # byte order, as SQLite sorts, whatever the database's collation

    def __init__(self, url: str):
        self.url = url

    def open(self) -> tuple[Connection, bool]:
        """An idle connection of this process that still answers, else a new one, and whether the schema is there
        (looked for on every use, as SQLite's is: the query also finds a kept connection the server has closed)."""
        import psycopg2

        while True:
            with _IDLE_LOCK:
                idle = _IDLE.get(self.url)
                con = idle.pop() if idle else None
            kept = con is not None
            if con is None:
                con = psycopg2.connect(self.url, connect_timeout=10,
                                       options=f"-c search_path={PG_SCHEMA} -c client_encoding=UTF8")
                con.autocommit = True
                psycopg2.extensions.register_type(_number_type(), con)
            try:
                return con, self.execute(con, f"SELECT to_regclass('{PG_SCHEMA}.meta')").fetchone()[0] is not None
            except psycopg2.OperationalError:
                con.close()
                if not kept:  # a new connection that fails is the server's answer
                    raise  # (a kept one closed by a restart or an idle timeout is dropped for another)
            except BaseException:
                con.close()
                raise

    def release(self, con: Connection, reusable: bool) -> None:
        """Keep a connection that ended its work cleanly, outside any transaction, for the next use."""
        import psycopg2.extensions

        if reusable and not con.closed and con.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            with _IDLE_LOCK:
                idle = _IDLE.setdefault(self.url, [])
                if len(idle) < _IDLE_MAX:
                    idle.append(con)
                    return
        con.close()

    @staticmethod
    def execute(con: Connection, sql: str, params: Iterable[Any] = ()) -> Any:
        """Run SQL written with `?` placeholders (SQLite's, which the callers use) through psycopg2's `%s`."""
        cursor = con.cursor()
        cursor.execute(sql.replace("%", "%%").replace("?", "%s"), list(params))
        return cursor

    @staticmethod
    def begin(con: Connection) -> None:
        con.cursor().execute("BEGIN")

    @staticmethod
    def lock(con: Connection, name: str) -> None:
        """Hold `name` until the transaction ends (a transaction-scoped advisory lock)."""
        con.cursor().execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])

    def begin_create(self, con: Connection) -> None:
        """Start the transaction that makes the schema, one process at a time (a lock held until it ends)."""
        self.begin(con)
        self.lock(con, PG_SCHEMA)
        con.cursor().execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")

    @staticmethod
    def fact(section: str, path: str, kind: str) -> str:
        """A scalar fact of a section as SQL, cast by its kind: numbers as numeric, booleans as 0/1 (SQLite's
        values), anything of another JSON type than its kind as NULL rather than an error that would refuse the write."""
        keys = "'{" + path.replace(".", ",") + "}'"
        value = f"({section}::json #>> {keys})"
        if kind in (INT, FLOAT):
            return f"CASE WHEN json_typeof({section}::json #> {keys}) = 'number' THEN {value}::numeric END"
        if kind == BOOL:
            return f"CASE {value} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END"
        return f'{value} COLLATE "C"'

    @staticmethod
    def flag(condition: str) -> str:
        return f"({condition})::integer"

    @staticmethod
    def column(kind: str) -> str:
        if kind in (INT, FLOAT):
            return " numeric"
        return " integer" if kind == BOOL else ' text COLLATE "C"'

    @staticmethod
    def triggers(table: str, relist: str) -> list[str]:
        return [f"CREATE FUNCTION {table}_relist() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {relist} "
                "RETURN NULL; END $$",
                f"CREATE TRIGGER {table}_listed AFTER INSERT OR UPDATE ON {table} FOR EACH ROW "
                f"EXECUTE FUNCTION {table}_relist()"]

    def scan(self, table: str) -> str:
        return f"postgres_scan({_sql_literal(self.url)}, {_sql_literal(PG_SCHEMA)}, {_sql_literal(table)})"


Dialect = _SQLite | _Postgres


def _listed(dialect: Dialect, table: str) -> dict[str, tuple[str, str]]:
    """The columns lists filter and sort on, as SQL over a record row and their kind: every scalar fact (lists and
    objects stay in their sections), defaults applied, the owner a record that names none belongs to, and whether
    the standard step succeeded."""
    owner = f"coalesce({dialect.fact('registration', 'apiOwnerUsername', TEXT)}, '{DEFAULT_OWNER}')"
    columns = {"id": ("id", TEXT), "updatedTime": ("updated_time", TS), "owner": (owner, TEXT)}
    for section, keys in SECTIONS[table].items():
        for key, kind in keys.items():
            if key == "id" or kind in (TEXTS, JSON):
                continue
            value = dialect.fact(section, key, kind)
            default = DEFAULTS[table].get(key)
            columns[key] = (value if default is None else f"coalesce({value}, {_sql_literal(default)})", kind)
    if table == "files":
        processed = dialect.fact("status", "steps.standardGeojson.status", TEXT) + " = 'processed'"
        columns["standardProcessed"] = (dialect.flag(processed), BOOL)
    return columns


def _list_schema(dialect: Dialect, table: str) -> list[str]:
    """The list of `table`: for files a table kept by triggers in the same transaction as every write of a
    record (so a list reads narrow indexed rows, not every record's JSON); for batches, fewer and smaller, a view."""
    columns = _listed(dialect, table)
    select = "SELECT " + ", ".join(f'{sql} AS "{name}"' for name, (sql, _) in columns.items()) + f" FROM {table}"
    if table == "batches":
        return [f"CREATE VIEW batch_list AS {select} WHERE registration IS NOT NULL"]
    relist = (f"DELETE FROM file_list WHERE id = NEW.id; "
              f"INSERT INTO file_list {select} WHERE id = NEW.id AND registration IS NOT NULL;")
    return ["CREATE TABLE file_list (" + ", ".join(f'"{name}"{dialect.column(kind)}' for name, (_, kind) in columns.items())
            + ", PRIMARY KEY (id))",
            'CREATE INDEX file_list_owner ON file_list (owner, "leafUserId", "createdTime")',
            'CREATE INDEX file_list_batch ON file_list ("batchId")',
            *dialect.triggers(table, relist)]


def owner_where(owner: str, leaf_user_id: str | None = None) -> tuple[list[str], list[Any]]:
    """The one rule for the records (files, batches) of an API owner, or of one of its Leaf users, as SQL
    conditions on a list and their parameters (`owner`: a record that names none is the local owner's)."""
    where, params = ['"owner" = ?'], [owner]
    if leaf_user_id is not None:
        where.append('"leafUserId" = ?')
        params.append(leaf_user_id)
    return where, params


class Records:
    """Batch and file records: in `path` (`<data>/records.sqlite`), or in the PostgreSQL database `url` when one is
    given (a new one imports the JSON layout of `path`'s folder, as a new SQLite file does)."""

    def __init__(self, path: Path, url: str | None = None):
        self.path = path
        self.url = url
        self._dialect: Dialect = _SQLite(path) if url is None else _Postgres(url)

    @property
    def scanner(self) -> str:
        """The DuckDB extension that reads the store."""
        return self._dialect.scanner

    def scan(self, table: str) -> str:
        """DuckDB SQL reading the rows of one table of the store (`files`, `batches`), without locking it for writers."""
        return self._dialect.scan(table)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection in autocommit mode (each statement its own transaction); the schema is made (and records of
        the JSON layout imported) on first use."""
        con, ready = self._dialect.open()
        reusable = False
        try:
            if not ready:
                self._create(con)
            yield con
            reusable = True
        finally:
            self._dialect.release(con, reusable)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in one write transaction, committed when the block ends and rolled back if it raises: for
        many records written at once (`put(..., con=...)`), each reader seeing all of them or none."""
        with self.connect() as con:
            self._dialect.begin(con)
            with self._ended(con):
                yield con

    @contextmanager
    def locked(self, table: str, record_id: str) -> Iterator[Connection]:
        """A write transaction holding one record to itself until it ends, so processes that read, decide and
        write it (a batch's status from its files') take turns; the record is read on any connection. On
        PostgreSQL that is an advisory lock on the record; on SQLite it is the store's write lock, which every
        writer waits for (up to its busy timeout): keep what is done under it small."""
        with self.transaction() as con:
            self._dialect.lock(con, f"{table}/{record_id}")
            yield con

    @contextmanager
    def _ended(self, con: Connection) -> Iterator[None]:
        try:
            yield
            self.execute(con, "COMMIT")
        except BaseException:
            self.execute(con, "ROLLBACK")
            raise

    def execute(self, con: Connection, sql: str, params: Iterable[Any] = ()) -> Any:
        """Run one statement (`?` placeholders) on a connection of this store; returns its cursor."""
        return self._dialect.execute(con, sql, params)

    def _create(self, con: Connection) -> None:
        self._dialect.begin_create(con)
        with self._ended(con):
            self.execute(con, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = self.execute(con, "SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                text = self._dialect.text
                for table, sections in SECTIONS.items():
                    self.execute(con, f"CREATE TABLE {table} (id {text} PRIMARY KEY, updated_time TEXT NOT NULL, "
                                 + ", ".join(f"{s} TEXT" for s in sections) + ")")
                    for statement in _list_schema(self._dialect, table):
                        self.execute(con, statement)
                self.execute(con, "INSERT INTO meta VALUES ('schema', ?)", [str(SCHEMA_VERSION)])
                if self.url is not None and self.path.exists():
                    import_sqlite(self, con, Records(self.path))  # the data directory's records so far, once
                import_json_layout(self, con, self.path.parent)  # the JSON layout's records, once

    # -- writing -------------------------------------------------------------------------------
    def put(self, table: str, record_id: str, section: str, doc: dict[str, Any] | None, *,
            con: Connection | None = None) -> None:
        """Replace one section of a record (creating the record); `None` clears the section."""
        if section not in SECTIONS[table]:
            raise KeyError(f"{section} is not a section of {table}")
        unknown = set(doc or {}) - set(SECTIONS[table][section])
        if unknown:
            raise KeyError(f"{', '.join(sorted(unknown))} not in the {section} section of {table}")
        sql = (f"INSERT INTO {table} (id, updated_time, {section}) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
               f"{section} = excluded.{section}, updated_time = excluded.updated_time")
        params = [record_id, utc_now(), None if doc is None else json.dumps(doc, default=str, ensure_ascii=False)]
        if con is not None:
            self.execute(con, sql, params)
            return
        with self.connect() as own:
            self.execute(own, sql, params)

    def put_facts(self, table: str, record_id: str, facts: dict[str, Any], *,
                  con: Connection | None = None) -> None:
        """Write a whole record given as one dict, each fact into its section (facts of no section are left
        out): for records brought from elsewhere (the JSON layout's), not for the pipeline's writers."""
        sections: dict[str, dict[str, Any]] = {}
        for key, value in facts.items():
            try:
                sections.setdefault(section_of(table, key), {})[key] = value
            except KeyError:
                continue
        for section, doc in sections.items():
            self.put(table, record_id, section, doc, con=con)

    # -- reading -------------------------------------------------------------------------------
    def get(self, table: str, record_id: str) -> dict[str, Any] | None:
        """A record as one dict (every section's facts, the defaults of sections not written yet)."""
        records = self.many(table, [record_id])
        return records[0] if records else None

    def section(self, table: str, record_id: str, section: str) -> dict[str, Any] | None:
        """One section of a record as its writer stored it."""
        if section not in SECTIONS[table]:
            raise KeyError(f"{section} is not a section of {table}")
        with self.connect() as con:
            row = self.execute(con, f"SELECT {section} FROM {table} WHERE id = ?", [record_id]).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def many(self, table: str, ids: Iterable[str] | None = None,
             sections: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Registered records in the order of `ids` (all of them, by id, when `ids` is None), with the facts
        of `sections` only when given (a file's summary holds its coverage polygon: megabytes for a season's
        file, which a caller that wants its status should not read)."""
        sections = list(SECTIONS[table]) if sections is None else list(sections)
        unknown = set(sections) - set(SECTIONS[table])
        if unknown:
            raise KeyError(f"{sorted(unknown)} are not sections of {table}")
        select = f"SELECT id, updated_time, {', '.join(sections)} FROM {table} WHERE registration IS NOT NULL"
        with self.connect() as con:
            if ids is None:
                rows = self.execute(con, select + " ORDER BY id").fetchall()
            else:
                wanted = list(ids)
                found = {}
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    for row in self.execute(con, select + f" AND id IN ({', '.join('?' * len(chunk))})", chunk):
                        found[row[0]] = row
                rows = [found[i] for i in wanted if i in found]
        return [self._merge(table, row) for row in rows]

    @staticmethod
    def _merge(table: str, row: tuple[Any, ...]) -> dict[str, Any]:
        record: dict[str, Any] = dict(DEFAULTS[table])
        for value in row[2:]:
            if value:
                record.update(json.loads(value))
        if table == "files":
            record["updatedTime"] = row[1]
        return record

    def ids_starting(self, table: str, prefix: str) -> list[str]:
        """Ids of registered records that start with `prefix`, sorted."""
        rows = self.query(f"SELECT id FROM {table} WHERE registration IS NOT NULL AND substr(id, 1, ?) = ? ORDER BY id",
                          [len(prefix), prefix])
        return [row[0] for row in rows]

    def owner_files(self, owner: str, leaf_user_id: str | None = None) -> list[dict[str, Any]]:
        """The file records of an API owner (or of one of its Leaf users), chosen by the same rule as every list."""
        where, params = owner_where(owner, leaf_user_id)
        ids = self.query(f"SELECT id FROM file_list WHERE {' AND '.join(where)} ORDER BY id", params)
        return self.many("files", [i for (i,) in ids])

    def query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (`?` placeholders) over the tables and the list views."""
        with self.connect() as con:
            return list(self.execute(con, sql, params).fetchall())


def import_sqlite(records: Records, con: Connection, source: Records) -> None:
    """Copy every record of `source` (the SQLite file of a data directory moving to PostgreSQL) into the new store,
    as stored: the sections' text and the times of their writes unchanged, the list rows made by the triggers.
    The file is left as it was."""
    for table, sections in SECTIONS.items():
        names = ", ".join(["id", "updated_time", *sections])
        for row in source.query(f"SELECT {names} FROM {table}", []):
            records.execute(con, f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(row))})", row)


# The JSON layout kept one file per record in lake/<table>/; its records move into the store once.
_JSON_TABLES = ("files", "batches", "summaries", "units", "images", "file_status")


def import_json_layout(records: Records, con: Connection, root: Path) -> None:
    """Import the records of the JSON layout (lake/files, lake/batches and the per-file summaries, units and
    images) into the new store, each fact into its section, then move the JSON folders to lake/.json-layout/."""
    lake = root / "lake"
    folders = {t: lake / t for t in _JSON_TABLES if (lake / t).is_dir()}
    if not folders:
        return

    def load(table: str) -> dict[str, Any]:
        folder = folders.get(table)
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder else {}

    extra = {"summary": load("summaries"), "units": load("units"), "images": load("images")}
    for table in ("files", "batches"):
        for key, old in load(table).items():
            old.pop("summary", None)  # the record's copy of the summary's properties: lake/summaries has the Feature
            if table == "files":
                summary = (extra["summary"].get(key) or {}).get("summary")
                if summary:
                    old["summary"] = summary
                if key in extra["units"]:
                    old["unitMap"] = {r["property"]: r["unit"] for r in extra["units"][key]}
                if key in extra["images"]:
                    old["images"] = extra["images"][key]
            records.put_facts(table, key, old, con=con)
    target = lake / ".json-layout"
    target.mkdir(exist_ok=True)
    for table, folder in folders.items():
        shutil.move(folder, target / table)
