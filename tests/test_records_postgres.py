"""The record store on PostgreSQL (LEAF_RECORDS_URL) against SQLite: the same upload run in-process with each gives
the same records, the same stored section text (what the API sends), the same lists and the same catalog rows."""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from benchmarks import postgres
from leaf_dagster.catalog import RECORD_KEYS, query, refresh_catalog
from leaf_dagster.ducklake import CATALOG_ENV
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.model import SECTIONS
from leaf_dagster.query import list_batches, list_files
from leaf_dagster.errors import RecordsConfigError
from leaf_dagster.records import RECORDS_URL_ENV, Records, records_url
from leaf_dagster.storage import Storage

from .conftest import RECORD_STORES, SAMPLES, records_in, records_url_of, require
from .test_ducklake import _libpq

# What differs from one run to the next whatever the store: the clock, Dagster's run ids, the random thumbnail
# tokens, the data directory.
_VOLATILE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:\d{2})?)?|"
                       r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{32}\b")


def _catalog(storage: Storage) -> dict[str, list[str]]:
    """Every record table of the catalog, each row as JSON (columns by name), sorted."""
    tables = {}
    for table in RECORD_KEYS:
        columns, rows = query(storage, f"SELECT * FROM {table}")
        tables[table] = sorted(json.dumps(dict(zip(columns, row)), default=str, sort_keys=True) for row in rows)
    return tables


def _masked(storage: Storage, outcome: dict[str, Any]) -> dict[str, Any]:
    """`outcome` with the data directory's path, times, run ids and tokens masked; the ids of files and batches
    (the same on both stores: they derive from the upload) named by their order."""
    files, batches = storage.records.many("files"), storage.records.many("batches")
    ids = {r["id"]: f"<{table} {n}>" for table, rows in (("file", files), ("batch", batches))
           for n, r in enumerate(rows)}
    text = json.dumps(outcome, default=str).replace(str(storage.root), "<data>")
    for real_id, alias in ids.items():  # before the masking of UUIDs, which would make them all alike
        text = text.replace(real_id, alias)
    return dict(json.loads(_VOLATILE.sub("<volatile>", text)))


def _outcome(storage: Storage) -> dict[str, Any]:
    """Everything a user sees of the records: each section's stored text, the lists (filtered, sorted) and every
    record table of the local catalog, masked."""
    records = storage.records
    outcome: dict[str, Any] = {"sections": {}, "lists": {}, "catalog": _catalog(storage)}
    for table in SECTIONS:
        sections = ", ".join(SECTIONS[table])
        outcome["sections"][table] = records.query(f"SELECT id, {sections} FROM {table} ORDER BY id", [])
    for sort in ("fileName,desc", "sizeInBytes", "provider"):
        outcome["lists"][sort] = [f["id"] for f in list_files(storage, sort=sort).items]
    # creation times are the registering process's milliseconds: two files of one upload tie in one run and not
    # in the next, so the order is checked against each store's own times (ties by id) rather than across stores
    listed = [(f["createdTime"], f["id"]) for f in list_files(storage, sort="createdTime,desc").items]
    outcome["lists"]["createdTime,desc"] = listed == sorted(sorted(listed, key=lambda f: f[1]), key=lambda f: f[0],
                                                             reverse=True)
    outcome["lists"]["standard"] = [f["id"] for f in list_files(storage, standard="true").items]
    outcome["lists"]["notStandard"] = [f["id"] for f in list_files(storage, standard="false").items]
    outcome["lists"]["minArea"] = [f["id"] for f in list_files(storage, minArea="1000").items]
    outcome["lists"]["batches"] = [b["id"] for b in list_batches(storage, sort="size,desc").items]
    outcome["lists"]["owner"] = [f["id"] for f in records.owner_files("local", "grower")]
    return _masked(storage, outcome)


def test_a_run_with_records_on_postgresql_shows_what_it_shows_on_sqlite(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two uploads (a John Deere yield file, an as-planted and an application file) through the
    pipeline in-process, once per store, in data directories of their own; with the PostgreSQL records, a DuckLake
    (its metadata in the same database) refreshed from them holds the local catalog's rows too."""
    require(postgres.reachable())
    uploads = [SAMPLES / "jd-wheat-yield-montana-2019.zip", SAMPLES / "ohio-corn-planting-and-nh3.zip"]
    outcomes = {}
    for store in RECORD_STORES:
        storage = Storage(tmp_path / store)
        with records_in(store) as url, dg.instance_for_test() as instance:
            for upload in uploads:
                process_upload(upload, storage, instance, leaf_user_id="grower", provider="Other")
            outcomes[store] = _outcome(storage)
            if url:
                monkeypatch.setenv(CATALOG_ENV, f"ducklake:postgres:{_libpq(url)}")
                refresh_catalog(storage)
                lake = _masked(storage, _catalog(storage))
                monkeypatch.delenv(CATALOG_ENV)
    sqlite, pg = outcomes["sqlite"], outcomes["postgresql"]
    assert lake == sqlite["catalog"]
    assert not (tmp_path / "postgresql" / "records.sqlite").exists()  # nothing went to a SQLite file
    assert len(sqlite["sections"]["files"]) >= 2 and len(sqlite["catalog"]["file_status"]) > 10
    assert sqlite["lists"]["createdTime,desc"] is True
    for part in ("sections", "lists", "catalog"):
        assert pg[part] == sqlite[part], part


def test_a_data_directory_moving_to_postgresql_keeps_its_records(tmp_path: Path) -> None:
    """The first use of a new PostgreSQL store copies the records of the data directory's SQLite file: the same
    records, the same stored text, the same list rows; the file is left as it was."""
    require(postgres.reachable())
    path = tmp_path / "records.sqlite"
    before = Records(path)
    before.put("files", "f1", "registration", {"id": "f1", "fileName": "Zürich ü.shp", "sizeInBytes": 7})
    before.put("files", "f1", "standard", {"pointCount": 3, "standard": True, "crops": ["wheat"]})
    before.put("files", "f2", "status", {"status": "failed"})  # not registered: in no list
    before.put("batches", "b1", "registration", {"id": "b1", "size": 9})
    tables = ("SELECT id, updated_time, registration, standard, status FROM files ORDER BY id",
              "SELECT * FROM file_list ORDER BY id", "SELECT * FROM batch_list ORDER BY id")
    with postgres.scratch_database("leaf_records") as url:
        after = Records(path, records_url_of(url))
        assert [after.query(sql, []) for sql in tables] == [before.query(sql, []) for sql in tables]
        assert after.many("files") == before.many("files") and after.many("batches") == before.many("batches")
        after.put("files", "f3", "registration", {"id": "f3"})
    assert before.ids_starting("files", "f") == ["f1"]


def _backend_of_a_child(path: str, url: str, answer: Any) -> None:
    records = Records(Path(path), url)
    records.put("files", "child", "registration", {"id": "child"})
    answer.put(records.query("SELECT pg_backend_pid()", [])[0][0])


def test_a_forked_child_never_uses_its_parents_connections(tmp_path: Path) -> None:
    """A process forked (as Celery's workers and Dagster's subprocesses are) while its parent keeps idle connections
    opens its own: the two never talk over one socket, and the parent's session outlives the child."""
    require(postgres.reachable())
    with postgres.scratch_database("leaf_records") as scratch:
        url = records_url_of(scratch)
        records = Records(tmp_path / "records.sqlite", url)
        records.put("files", "parent", "registration", {"id": "parent"})
        ((parent,),) = records.query("SELECT pg_backend_pid()", [])
        context = multiprocessing.get_context("fork")
        answer = context.Queue()
        child = context.Process(target=_backend_of_a_child, args=(str(records.path), url, answer))
        child.start()
        child_backend = answer.get(timeout=60)
        child.join(timeout=60)
        assert child.exitcode == 0 and child_backend != parent
        assert records.query("SELECT pg_backend_pid()", []) == [(parent,)]
        assert records.ids_starting("files", "") == ["child", "parent"]


@pytest.mark.parametrize("url", ["postgresql://leaf:secret@db.example/leaf",
                                 "postgresql://leaf@db.example/leaf?password=secret",
                                 "mysql://leaf@db.example/leaf"])
def test_a_records_url_with_a_password_or_of_another_database_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog's record views hold LEAF_RECORDS_URL, and a SQL user can read a view's definition: a password
    in it is refused with where to give it instead, and so is a URL that is not PostgreSQL's."""
    monkeypatch.setenv(RECORDS_URL_ENV, url)
    with pytest.raises(RecordsConfigError) as refused:
        records_url()
    assert "secret" not in str(refused.value)
    assert ("PGPASSWORD" in str(refused.value)) == url.startswith("postgresql")
