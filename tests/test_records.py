"""The record store: each fact has one writer, concurrent writers lose nothing, a file's run reads its source
once and writes each output once, and a data directory of the JSON layout keeps its records. Every test runs
with the records in SQLite and in PostgreSQL (`records_store`)."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from leaf_dagster import files as file_steps
from leaf_dagster.defs.in_process import load_definitions, process_upload, run_files
from leaf_dagster.fields import add_geojson
from leaf_dagster.model import FILE_SECTIONS, STEP_ORDER
from leaf_dagster.objects import file_object
from leaf_dagster.records import PG_SCHEMA, Records
from leaf_dagster.storage import Storage

from .conftest import REPO

pytestmark = pytest.mark.usefixtures("records_store")
JD_SAMPLE = REPO / "data" / "samples" / "jd-wheat-yield-montana-2019.zip"


def _processed(storage: Storage, instance: dg.DagsterInstance) -> dict[str, Any]:
    (file,) = process_upload(JD_SAMPLE, storage, instance, leaf_user_id="grower", provider="JohnDeere")["files"]
    assert file["status"] == "processed"
    return storage.records.get("files", file["id"]) or {}


def test_a_field_rematch_during_a_files_run_loses_nothing(storage: Storage, instance: dg.DagsterInstance) -> None:
    """A boundary posted while the file runs again: the re-match writes the file's fields in the middle of
    the run (after its raw step, before its standard step writes); the fields and every step's facts survive."""
    before = _processed(storage, instance)
    assert before["fields"] == []
    coverage = before["summary"]["geometry"]
    put = file_steps.FileSteps.put
    rematched: list[list[str]] = []

    def put_after_a_rematch(self: file_steps.FileSteps, section: str, doc: dict[str, Any]) -> None:
        if section == "standard" and not rematched:
            worker = threading.Thread(target=lambda: rematched.append(
                [f["id"] for f in add_geojson(storage, "grower", {"name": "home", "geometry": coverage})]))
            worker.start()  # a user posts a field, which re-matches the user's files ...
            worker.join()
        put(self, section, doc)  # ... then the run goes on writing its own facts

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(file_steps.FileSteps, "put", put_after_a_rematch)
        (again,) = run_files(storage, instance, load_definitions(storage), [before["id"]])

    after = storage.records.get("files", before["id"]) or {}
    assert rematched and after["fields"] == rematched[0]  # the re-match's facts
    assert again["status"] == "processed" and after["pointCount"] == before["pointCount"] > 0  # the run's
    assert after["summary"]["properties"] == before["summary"]["properties"]
    assert file_object(after)["fields"] == rematched[0]


def _write_sections(path: str, url: str | None, record_id: str, sections: list[str], rounds: int) -> None:
    records = Records(Path(path), url)
    for number in range(rounds):
        for section in sections:
            key = next(iter(FILE_SECTIONS[section]))
            records.put("files", record_id, section, {key: f"{section}-{number}"})


def test_concurrent_writers_of_different_sections_lose_nothing(tmp_path: Path, records_store: str | None) -> None:
    """Four processes each rewrite their own sections of one record 50 times at once: every section ends
    with its writer's last value (a read-modify-write of the whole record would drop some), and the list row
    the triggers keep holds the last writes too."""
    path = tmp_path / "records.sqlite"
    records = Records(path, records_store)
    records.put("files", "f", "registration", {"id": "f"})
    writers = [["raw", "standard"], ["filtered", "plausibility"], ["summary", "units"], ["fields", "status"]]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_sections, args=(str(path), records_store, "f", sections, 50))
                 for sections in writers]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    for sections in writers:
        for section in sections:
            key = next(iter(FILE_SECTIONS[section]))
            assert records.section("files", "f", section) == {key: f"{section}-49"}
    assert records.query('SELECT "operationType", "status" FROM file_list', []) == [("standard-49", "status-49")]


def _count_under_lock(path: str, url: str | None, times: int) -> None:
    records = Records(Path(path), url)
    for _ in range(times):
        with records.locked("batches", "b") as con:
            seen = (records.section("batches", "b", "state") or {}).get("status") or "0"
            records.put("batches", "b", "state", {"status": str(int(seen) + 1)}, con=con)


def test_a_locked_record_is_read_and_written_by_one_process_at_a_time(tmp_path: Path, records_store: str | None) -> None:
    """Three processes each read a batch's counter, on another connection, and write it plus one, 30 times,
    under `locked` (as a batch's status is updated by the runs of a split upload): no increment is lost."""
    path = tmp_path / "records.sqlite"
    records = Records(path, records_store)
    records.put("batches", "b", "state", {"status": "0"})
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_count_under_lock, args=(str(path), records_store, 30)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert records.section("batches", "b", "state") == {"status": "90"}


def test_a_reader_in_a_transaction_never_blocks_a_writer(tmp_path: Path, records_store: str | None) -> None:
    """A reader that keeps its transaction open (a SQL user, a long list) while a record is written: the write
    goes through at once (a blocked one would wait out its timeout and fail), and the reader goes on."""
    records = Records(tmp_path / "records.sqlite", records_store)
    records.put("files", "f", "registration", {"id": "f"})
    with records.connect() as reader:
        records.execute(reader, "BEGIN")
        assert records.execute(reader, "SELECT count(*) FROM file_list").fetchone() == (1,)
        records.put("files", "g", "registration", {"id": "g"})
        records.put("files", "f", "status", {"status": "failed"})
        assert records.execute(reader, "SELECT id FROM files WHERE id = 'f'").fetchone() == ("f",)
        records.execute(reader, "COMMIT")
    assert [r["status"] for r in records.many("files")] == ["failed", "processing"]


def test_a_section_refuses_facts_it_does_not_own(tmp_path: Path, records_store: str | None) -> None:
    records = Records(tmp_path / "records.sqlite", records_store)
    with pytest.raises(KeyError, match="fields not in the standard section"):
        records.put("files", "f", "standard", {"pointCount": 3, "fields": []})


def test_records_read_with_some_sections_have_only_their_facts(tmp_path: Path, records_store: str | None) -> None:
    """What the batch status reads under its lock: the files' registration and status, not their summaries."""
    records = Records(tmp_path / "records.sqlite", records_store)
    records.put("files", "f", "registration", {"id": "f", "fileName": "a.zip", "batchId": "b"})
    records.put("files", "f", "summary", {"summary": {"type": "Feature"}, "areaM2": 12.5})
    records.put("files", "f", "status", {"status": "processed", "steps": {}})
    (whole,) = records.many("files", ["f"])
    (some,) = records.many("files", ["f"], sections=("registration", "status"))
    assert whole["areaM2"] == 12.5 and "areaM2" not in some and "summary" not in some
    assert some == {k: v for k, v in whole.items() if k not in ("summary", "areaM2")}
    with pytest.raises(KeyError, match="not sections of files"):
        records.many("files", ["f"], sections=("status", "secrets"))


def test_a_store_removed_while_a_process_lives_is_made_again(tmp_path: Path, records_store: str | None) -> None:
    records = Records(tmp_path / "records.sqlite", records_store)
    records.put("files", "f", "standard", {"pointCount": 3})
    if records_store is None:
        for path in tmp_path.glob("records.sqlite*"):  # what `make clean-data` does beside a running API
            path.unlink()
    else:  # the records' schema dropped on the server while this process keeps a connection to it
        with records.connect() as con:
            records.execute(con, f"DROP SCHEMA {PG_SCHEMA} CASCADE")
    records.put("files", "g", "standard", {"pointCount": 4})
    assert records.section("files", "g", "standard") == {"pointCount": 4}
    assert records.section("files", "f", "standard") is None


def test_a_files_run_reads_its_source_once_and_writes_each_output_once(storage: Storage,
                                                                      instance: dg.DagsterInstance) -> None:
    """Counted with spies on the reader, the storage and the record store: the steps hand their tables over
    through the IO manager, so no step reads back what an earlier step of the run wrote."""
    reads: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    read_source, read_geoparquet = file_steps.read_machine_file, Storage.read_geoparquet
    write_geoparquet, put = file_steps.FileSteps.write_geoparquet, Records.put

    def counted_read(detected: Any) -> Any:
        reads[detected.name] += 1
        return read_source(detected)

    def counted_read_back(self: Storage, table: str, key: str) -> Any:
        reads[f"lake/{table}"] += 1
        return read_geoparquet(self, table, key)

    def counted_geoparquet(self: file_steps.FileSteps, table: str, *args: Any) -> Path:
        writes[f"lake/{table}"] += 1
        return write_geoparquet(self, table, *args)

    def counted_put(self: Records, table: str, record_id: str, section: str, *args: Any, **kwargs: Any) -> None:
        writes[f"{table}.{section}"] += 1
        return put(self, table, record_id, section, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(file_steps, "read_machine_file", counted_read)
        patch.setattr(file_steps.FileSteps, "write_geoparquet", counted_geoparquet)
        patch.setattr(Storage, "read_geoparquet", counted_read_back)
        patch.setattr(Records, "put", counted_put)
        record = _processed(storage, instance)

    assert list(reads.items()) == [(record["fileName"], 1)]  # the source read once, no output read back
    file_outputs = {k: v for k, v in writes.items() if k.startswith(("lake/", "files."))}
    assert set(file_outputs.values()) == {1}, file_outputs  # each output written once
    assert set(file_outputs) == {"lake/raw", "lake/standard", "lake/filtered", *(
        f"files.{s}" for s in ("registration", "raw", "standard", "filtered", "plausibility", "summary", "units",
                               "images", "fields", "status"))}
    assert list(record["steps"]) == STEP_ORDER


def test_records_of_the_json_layout_are_imported_once(tmp_path: Path) -> None:
    """A data directory written before the record store: its JSON records become sections, the JSON folders
    are kept aside, and nothing is imported twice."""
    lake = tmp_path / "lake"
    record = {"id": "f1", "batchId": "b1", "fileName": "yield.shp", "status": "processed", "pointCount": 12,
              "steps": {"originalFile": {"status": "processed", "message": "ok"}}, "fields": ["field-1"],
              "units": {"speed": "km/h"}, "summary": {"totalArea": 1}, "updatedTime": "2024-01-01T00:00:00.000Z"}
    for table, key, value in (("files", "f1", record),
                              ("batches", "b1", {"id": "b1", "status": "PROCESSED", "leafFiles": ["f1"]}),
                              ("summaries", "f1", {"fileId": "f1", "summary": {"type": "Feature"}}),
                              ("units", "f1", [{"fileId": "f1", "property": "speed", "unit": "km/h"}])):
        (lake / table).mkdir(parents=True, exist_ok=True)
        (lake / table / f"{key}.json").write_text(json.dumps(value))

    records = Storage(tmp_path).records
    imported = records.get("files", "f1") or {}
    assert imported["pointCount"] == 12 and imported["fields"] == ["field-1"] and imported["status"] == "processed"
    assert imported["summary"] == {"type": "Feature"}
    assert records.section("files", "f1", "units") == {"unitMap": {"speed": "km/h"}}
    assert (records.get("batches", "b1") or {})["leafFiles"] == ["f1"]
    assert not (lake / "files").exists() and (lake / ".json-layout" / "files" / "f1.json").exists()
