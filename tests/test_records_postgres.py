"""The record store on PostgreSQL (LEAF_RECORDS_URL) against SQLite: the same upload run in-process with each gives
the same records, the same stored section text (what the API sends), the same lists and the same catalog rows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from benchmarks import postgres
from leaf_dagster.catalog import RECORD_KEYS, query
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.model import SECTIONS
from leaf_dagster.query import list_batches, list_files
from leaf_dagster.records import RECORDS_URL_ENV
from leaf_dagster.storage import Storage

from .conftest import REPO, records_url_of, require

SAMPLES = REPO / "data" / "samples"
# What differs from one run to the next whatever the store: the clock, Dagster's run ids, the random thumbnail
# tokens, the data directory.
_VOLATILE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:\d{2})?)?|"
                       r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{32}\b")


@contextmanager
def _records_in(store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The records in SQLite, or in a PostgreSQL database of their own for the block."""
    with postgres.scratch_database("leaf_records") if store == "postgresql" else nullcontext() as url:
        with monkeypatch.context() as patch:
            if url:
                patch.setenv(RECORDS_URL_ENV, records_url_of(url))
            yield


def _outcome(storage: Storage) -> dict[str, Any]:
    """Everything a user sees of the records: each section's stored text, the lists (filtered, sorted) and every
    record table of the catalog, with the data directory's path, times and run ids masked (ids of files and
    batches are the same on both: they derive from the upload)."""
    records = storage.records
    files, batches = records.many("files"), records.many("batches")
    ids = {r["id"]: f"<{table} {n}>" for table, rows in (("file", files), ("batch", batches))
           for n, r in enumerate(rows)}
    outcome: dict[str, Any] = {"sections": {}, "lists": {}, "catalog": {}}
    for table in SECTIONS:
        sections = ", ".join(SECTIONS[table])
        outcome["sections"][table] = records.query(f"SELECT id, {sections} FROM {table} ORDER BY id", [])
    for sort in ("fileName,desc", "sizeInBytes", "createdTime,desc", "provider"):
        outcome["lists"][sort] = [f["id"] for f in list_files(storage, sort=sort).items]
    outcome["lists"]["standard"] = [f["id"] for f in list_files(storage, standard="true").items]
    outcome["lists"]["notStandard"] = [f["id"] for f in list_files(storage, standard="false").items]
    outcome["lists"]["minArea"] = [f["id"] for f in list_files(storage, minArea="1000").items]
    outcome["lists"]["batches"] = [b["id"] for b in list_batches(storage, sort="size,desc").items]
    outcome["lists"]["owner"] = [f["id"] for f in records.owner_files("local", "grower")]
    for table in RECORD_KEYS:
        columns, rows = query(storage, f"SELECT * FROM {table}")
        outcome["catalog"][table] = sorted(json.dumps(dict(zip(columns, row)), default=str, sort_keys=True)
                                           for row in rows)
    text = json.dumps(outcome, default=str).replace(str(storage.root), "<data>")
    for real_id, alias in ids.items():  # before the masking of UUIDs, which would make them all alike
        text = text.replace(real_id, alias)
    return json.loads(_VOLATILE.sub("<volatile>", text))


def test_a_run_with_records_on_postgresql_shows_what_it_shows_on_sqlite(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two uploads (a John Deere yield file, an as-planted and an application file) through the
    pipeline in-process, once per store, in data directories of their own."""
    require(postgres.reachable())
    uploads = [SAMPLES / "jd-wheat-yield-montana-2019.zip", SAMPLES / "ohio-corn-planting-and-nh3.zip"]
    outcomes = {}
    for store in ("sqlite", "postgresql"):
        storage = Storage(tmp_path / store)
        with _records_in(store, monkeypatch), dg.instance_for_test() as instance:
            for upload in uploads:
                process_upload(upload, storage, instance, leaf_user_id="grower", provider="Other")
            outcomes[store] = _outcome(storage)
    sqlite, pg = outcomes["sqlite"], outcomes["postgresql"]
    assert not (tmp_path / "postgresql" / "records.sqlite").exists()  # nothing went to a SQLite file
    assert len(sqlite["sections"]["files"]) >= 2 and len(sqlite["catalog"]["file_status"]) > 10
    for part in ("sections", "lists", "catalog"):
        assert pg[part] == sqlite[part], part
