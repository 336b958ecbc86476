"""The record store: every batch and machine file record, in one transactional SQLite database.

A record is a row whose columns are its sections (`model.FILE_SECTIONS`, `model.BATCH_SECTIONS`), each a
JSON document written whole, in one statement, by its one writer. Writers never read-modify-write another
section, so concurrent writers (a file's run, a field re-match, the API marking a retry) cannot lose each
other's updates; SQLite's write-ahead log lets any number of readers (the API's lists, the CLI, SQL users
through the catalog) read while a step writes, and a reader never blocks a writer.

The API's lists query `file_list`, a narrow table with a column per scalar fact that triggers keep in the
transaction of every write of a file record (indexed by owner, Leaf user and batch), and the `batch_list`
view: a list reads small rows, not every record's JSON, and nothing is rebuilt per request.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .model import DEFAULTS, JSON, SECTIONS, TEXTS, section_of, utc_now
from .storage import DEFAULT_OWNER

SCHEMA_VERSION = 1


def _listed(table: str) -> dict[str, str]:
    """The columns lists filter and sort on, as SQL over a record row: every scalar fact (lists and objects
    stay in their sections), defaults applied, the owner a record that names none belongs to, and whether
    the standard step succeeded."""
    columns = {"id": "id", "updatedTime": "updated_time",
               "owner": f"coalesce(json_extract(registration, '$.apiOwnerUsername'), '{DEFAULT_OWNER}')"}
    for section, keys in SECTIONS[table].items():
        for key, kind in keys.items():
            if key == "id" or kind in (TEXTS, JSON):
                continue
            value = f"json_extract({section}, '$.{key}')"
            default = DEFAULTS[table].get(key)
            columns[key] = value if default is None else f"coalesce({value}, {_sql_literal(default)})"
    if table == "files":
        columns["standardProcessed"] = "json_extract(status, '$.steps.standardGeojson.status') = 'processed'"
    return columns


def _list_schema(table: str) -> list[str]:
    """The list of `table`: for files a table kept by triggers in the same transaction as every write of a
    record (so a list reads narrow indexed rows, not every record's JSON); for batches, fewer and smaller, a view."""
    columns = _listed(table)
    select = "SELECT " + ", ".join(f'{sql} AS "{name}"' for name, sql in columns.items()) + f" FROM {table}"
    if table == "batches":
        return [f"CREATE VIEW batch_list AS {select} WHERE registration IS NOT NULL"]
    relist = (f"DELETE FROM file_list WHERE id = NEW.id; "
              f"INSERT INTO file_list {select} WHERE id = NEW.id AND registration IS NOT NULL;")
    return ["CREATE TABLE file_list (" + ", ".join(f'"{name}"' for name in columns) + ", PRIMARY KEY (id))",
            'CREATE INDEX file_list_owner ON file_list (owner, "leafUserId", "createdTime")',
            'CREATE INDEX file_list_batch ON file_list ("batchId")',
            f"CREATE TRIGGER files_listed AFTER INSERT ON files BEGIN {relist} END",
            f"CREATE TRIGGER files_relisted AFTER UPDATE ON files BEGIN {relist} END"]


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def owner_where(owner: str, leaf_user_id: str | None = None) -> tuple[list[str], list[Any]]:
    """The one rule for the records (files, batches) of an API owner, or of one of its Leaf users, as SQL
    conditions on a list and their parameters (`owner`: a record that names none is the local owner's)."""
    where, params = ['"owner" = ?'], [owner]
    if leaf_user_id is not None:
        where.append('"leafUserId" = ?')
        params.append(leaf_user_id)
    return where, params


class Records:
    """Batch and file records in `<data>/records.sqlite`."""

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (each statement its own transaction), waiting up to 60 s for a
        writer; the schema is made (and records of the JSON layout imported) on first use."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=NORMAL")
            if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
                self._create(con)  # checked per connection: the database may be removed while a process lives
            yield con
        finally:
            con.close()

    def _create(self, con: sqlite3.Connection) -> None:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                for table, sections in SECTIONS.items():
                    con.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, updated_time TEXT NOT NULL, "
                                + ", ".join(f"{s} TEXT" for s in sections) + ")")
                    for statement in _list_schema(table):
                        con.execute(statement)
                con.execute("INSERT INTO meta VALUES ('schema', ?)", [str(SCHEMA_VERSION)])
                import_json_layout(self, con, self.path.parent)  # the JSON layout's records, once
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # -- writing -------------------------------------------------------------------------------
    def put(self, table: str, record_id: str, section: str, doc: dict[str, Any] | None, *,
            con: sqlite3.Connection | None = None) -> None:
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
            con.execute(sql, params)
            return
        with self.connect() as own:
            own.execute(sql, params)

    def put_facts(self, table: str, record_id: str, facts: dict[str, Any], *,
                  con: sqlite3.Connection | None = None) -> None:
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
            row = con.execute(f"SELECT {section} FROM {table} WHERE id = ?", [record_id]).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def many(self, table: str, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Registered records in the order of `ids` (all of them, by id, when `ids` is None)."""
        sections = list(SECTIONS[table])
        select = f"SELECT id, updated_time, {', '.join(sections)} FROM {table} WHERE registration IS NOT NULL"
        with self.connect() as con:
            if ids is None:
                rows = con.execute(select + " ORDER BY id").fetchall()
            else:
                wanted = list(ids)
                found = {}
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    for row in con.execute(select + f" AND id IN ({', '.join('?' * len(chunk))})", chunk):
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
        """Rows of a read-only query over the tables and the list views."""
        with self.connect() as con:
            return con.execute(sql, params).fetchall()


# The JSON layout kept one file per record in lake/<table>/; its records move into the store once.
_JSON_TABLES = ("files", "batches", "summaries", "units", "images", "file_status")


def import_json_layout(records: Records, con: sqlite3.Connection, root: Path) -> None:
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
