"""The Dagster instance on PostgreSQL: the settings `make run` writes for each environment, and one real upload
through the real inbox sensor and `dagster-daemon` on a PostgreSQL instance ending exactly as on SQLite.

The database is the local server's (LEAF_PG_ADMIN_URL, default postgres@127.0.0.1:5432): the test creates a
database with a unique name and drops it at the end. Without a server the daemon test skips, except in CI, where
it fails: CI must prove the PostgreSQL path.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks import daemon as daemon_bench
from benchmarks import postgres
from leaf_dagster import instance
from leaf_dagster.storage import Storage

from .conftest import REPO, require, samples_zip

# A John Deere yield shapefile (processed) and the SMS yield CSV, which names no crop, so Leaf's default cleanup
# drops every point (failed at standardGeojson): one upload whose files end both ways.
PROCESSED_SAMPLE, FAILED_SAMPLE = "jd-wheat-yield-montana-2019.zip", "sms-yield-csv-victoria.zip"
TIMEOUT = 420.0
# What differs between two runs of the same upload by nature: when, and which Dagster run.
VOLATILE = {"createdTime", "updatedTime", "lastRunId", "thumbnailToken"}
# The data folder's databases, written by the records store and the catalog (compared through the records).
NOT_OUTPUTS = ("records.sqlite", "leaf.duckdb")


# -- the settings ------------------------------------------------------------------------------------------------
def test_without_postgres_the_settings_are_deploy_dagster_yaml_itself(tmp_path: Path) -> None:
    target = instance.write(tmp_path / "home", {"PATH": "/usr/bin", "DAGSTER_POSTGRES_HOST": "db"})
    assert target.read_bytes() == (REPO / "deploy" / "dagster.yaml").read_bytes()
    assert instance.storage_kind({}) == "sqlite"


def test_a_postgres_url_puts_every_storage_in_postgres_by_reference_and_keeps_the_queue() -> None:
    secret = "postgresql+psycopg2://leaf:s3cret@db.example:5432/dagster"
    text = instance.settings({"DAGSTER_PG_URL": secret})
    assert "s3cret" not in text  # the yaml names the variable; the password stays in the environment
    written, template = yaml.safe_load(text), yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    for key in ("run_storage", "event_log_storage", "schedule_storage"):
        assert written.pop(key)["config"] == {"postgres_url": {"env": "DAGSTER_PG_URL"}}
    assert written == template
    with pytest.raises(instance.InstanceConfigError, match="DAGSTER_PG_URL must start with postgresql[+]psycopg2://"):
        instance.settings({"DAGSTER_PG_URL": "postgresql://leaf@db.example/dagster"})


def test_the_usual_postgres_variables_fill_postgres_db() -> None:
    env = {"DAGSTER_POSTGRES_USER": "leaf", "DAGSTER_POSTGRES_PASSWORD": "pw", "DAGSTER_POSTGRES_DB": "dagster",
           "DAGSTER_POSTGRES_PORT": "6432"}
    db = yaml.safe_load(instance.settings(env))["event_log_storage"]["config"]["postgres_db"]
    assert db == {"username": {"env": "DAGSTER_POSTGRES_USER"}, "password": {"env": "DAGSTER_POSTGRES_PASSWORD"},
                  "db_name": {"env": "DAGSTER_POSTGRES_DB"}, "port": {"env": "DAGSTER_POSTGRES_PORT"},
                  "hostname": "localhost", "scheme": "postgresql+psycopg2"}
    with pytest.raises(instance.InstanceConfigError, match="DAGSTER_POSTGRES_USER"):
        instance.settings({"DAGSTER_POSTGRES_DB": "dagster"})


def test_the_run_queue_limits_come_from_the_environment() -> None:
    env = {"LEAF_MAX_CONCURRENT_RUNS": "8", "LEAF_RUNS_PER_OWNER": "4", "LEAF_RUNS_PER_BATCH": "3"}
    runs = yaml.safe_load(instance.settings(env))["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == 8
    assert {t["key"]: t["limit"] for t in runs["tag_concurrency_limits"]} == {"leaf/owner": 4, "leaf/batch_id": 3}
    for bad in ("0", "two", "-1"):
        with pytest.raises(instance.InstanceConfigError, match=f"LEAF_RUNS_PER_OWNER='{bad}'"):
            instance.settings({"LEAF_RUNS_PER_OWNER": bad})


# -- one upload through the daemon on each instance ------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres_server() -> str:
    """The admin URL of a PostgreSQL server that answers (CI must have one: its absence fails there)."""
    require(postgres.reachable())
    return postgres.admin_url()


def mixed_upload(tmp_path: Path) -> Path:
    """One zip holding both samples' files."""
    return samples_zip(tmp_path / "two-samples.zip", (PROCESSED_SAMPLE, FAILED_SAMPLE))


def files_by_name(data: Path) -> dict[str, dict[str, Any]]:
    """Each file's record as the pipeline left it, keyed by file name, without its times and run id."""
    out = {}
    for record in Storage(data).records.many("files"):
        kept = {k: v for k, v in record.items() if k not in VOLATILE}
        out[record["fileName"]] = kept
    return out


def digest(path: Path) -> str:
    """A file's SHA-256; a zip's over its members' names and contents (their times are when they were written)."""
    sha = hashlib.sha256()
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for member in sorted(archive.namelist()):
                sha.update(member.encode() + b"\0" + archive.read(member))
    else:
        sha.update(path.read_bytes())
    return sha.hexdigest()


def outputs(data: Path) -> dict[str, str]:
    """Every file the pipeline wrote under the data folder (its databases aside), by path, with its digest."""
    return {str(path.relative_to(data)): digest(path) for path in sorted(data.rglob("*"))
            if path.is_file() and not path.name.startswith(NOT_OUTPUTS)}


def database_exists(name: str) -> bool:
    import psycopg2

    with psycopg2.connect(postgres.admin_url()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cursor.fetchone() is not None


@pytest.mark.parametrize("storage_class", ["PooledPostgresEventLogStorage", "PostgresEventLogStorage"])
def test_the_event_log_keeps_its_connection_between_events(postgres_server: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, storage_class: str) -> None:
    """Twenty materialisations stored through the instance: two connections opened for all of them by the
    project's event log, against two per event by dagster-postgres's own (why the project has its own)."""
    import dagster as dg
    from sqlalchemy import event

    with postgres.scratch_database("leaf_test") as url:
        monkeypatch.setenv("DAGSTER_PG_URL", url)
        settings = yaml.safe_load(instance.settings({"DAGSTER_PG_URL": url}))
        if storage_class == "PostgresEventLogStorage":
            settings["event_log_storage"].update(module="dagster_postgres.event_log", **{"class": storage_class})
        (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
        with dg.DagsterInstance.from_config(str(tmp_path)) as dagster:
            storage = dagster.event_log_storage
            assert type(storage).__name__ == storage_class
            opened: list[object] = []
            event.listen(storage._engine, "connect", lambda connection, record: opened.append(connection))
            for number in range(20):
                dagster.report_runless_asset_event(dg.AssetMaterialization("steps", metadata={"number": number}))
            connections = len(opened)
            stored = dagster.fetch_materializations(dg.AssetKey("steps"), limit=100).records
            assert sorted(r.asset_materialization.metadata["number"].value for r in stored) == list(range(20))
        # an event is written on two connections at once (the event, then the asset index)
        if storage_class == "PooledPostgresEventLogStorage":
            assert connections == 2
        else:
            assert connections >= 2 * 20


def test_an_upload_through_the_daemon_on_postgres_ends_as_on_sqlite(postgres_server: str, tmp_path: Path) -> None:
    upload = mixed_upload(tmp_path)
    results = {}
    for kind in ("sqlite", "postgres"):
        copy = tmp_path / kind / upload.name  # the same name, size and mtime: the same batch and file ids
        copy.parent.mkdir()
        shutil.copy2(upload, copy)
        results[kind] = daemon_bench.through_daemon(copy, tmp_path / "work", 2, TIMEOUT, print, instance=kind)

    sqlite, pg = results["sqlite"], results["postgres"]
    assert sqlite["storage"]["run_storage"] == "SqliteRunStorage"
    assert pg["storage"] == {"run_storage": "PostgresRunStorage", "event_log_storage": "PooledPostgresEventLogStorage",
                             "schedule_storage": "PostgresScheduleStorage"}
    assert pg["launch"]["concurrency"] == yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["concurrency"]
    for result in (sqlite, pg):
        assert not result["timed_out"], result
        assert (result["files"], result["processed"], result["failed"]) == (2, 1, 1), result
    assert pg["database"].startswith("leaf_bench_") and not database_exists(pg["database"])  # dropped at the end

    on_sqlite = files_by_name(tmp_path / "work" / "daemon-sqlite" / "data")
    on_postgres = files_by_name(tmp_path / "work" / "daemon-postgres" / "data")
    assert on_postgres == on_sqlite
    statuses = {name: (record["status"], {step: s["status"] for step, s in record["steps"].items()})
                for name, record in on_postgres.items()}
    assert statuses["FarmerB Farms Inc.-FarmerB Family LLC-sec 1 west-Wheat (Hrd Rd Wtr)-1"][0] == "processed"
    assert statuses["area2_yield_ISO-8859-1"][1]["standardGeojson"] == "failed"
    written = outputs(tmp_path / "work" / "daemon-postgres" / "data")
    assert any(name.startswith("lake/standard/") for name in written)  # the GeoParquet outputs are among them
    assert written == outputs(tmp_path / "work" / "daemon-sqlite" / "data")
