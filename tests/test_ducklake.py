"""The shared catalog: a DuckLake with its metadata in the real PostgreSQL, read from other processes, against
the local DuckDB catalog of the same data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest

from leaf_dagster.catalog import POINT_VIEWS, RECORD_KEYS
from leaf_dagster.config import save
from leaf_dagster import ducklake
from leaf_dagster.defs.in_process import load_definitions, process_upload, run_files
from leaf_dagster.ducklake import CATALOG_ENV, DATA_PATH_ENV, ducklake_url
from leaf_dagster.errors import CatalogError
from leaf_dagster.storage import DATA_DIR_ENV, Storage

from benchmarks import postgres

from .conftest import MONTANA, REPO, make_zip, require

def _libpq(url: str, dbname: str | None = None) -> str:
    """A PostgreSQL URL (LEAF_PG_ADMIN_URL's server, as every PostgreSQL test's) as the libpq keywords
    LEAF_CATALOG takes, naming `dbname` instead of the URL's database when given."""
    parts = urlsplit(url)
    keywords = {"host": parts.hostname, "port": parts.port, "user": parts.username, "password": parts.password,
                "dbname": dbname or parts.path.lstrip("/") or None}
    return " ".join(f"{key}={value}" for key, value in keywords.items() if value is not None)
# Runs the catalog's SQL in a process of its own and prints every table's rows, each as JSON (columns by name,
# so their order does not count), sorted.
READER = """
import json
from leaf_dagster.catalog import query
from leaf_dagster.storage import Storage, default_data_dir
storage = Storage(default_data_dir())
tables = {}
for (table,) in query(storage, "SHOW TABLES")[1]:
    columns, rows = query(storage, f'SELECT * FROM "{table}"')
    tables[table] = sorted(json.dumps(dict(zip(columns, row)), default=str, sort_keys=True) for row in rows)
print(json.dumps(tables))
"""
REFRESH = "from leaf_dagster.catalog import refresh_catalog; from leaf_dagster.storage import default_data_dir, Storage; " \
          "refresh_catalog(Storage(default_data_dir()))"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A database of its own on the real PostgreSQL, dropped at the end (CI must reach the server)."""
    require(postgres.reachable())
    with postgres.scratch_database("leaf_test") as url:
        yield f"ducklake:postgres:{_libpq(url)}"


def _env(data: Path, catalog: str | None, mount: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", CATALOG_ENV, DATA_PATH_ENV)}
    return env | {DATA_DIR_ENV: str(data), "PYTHONPATH": str(REPO)} | ({CATALOG_ENV: catalog} if catalog else {}) \
        | ({DATA_PATH_ENV: f"{mount}/"} if mount else {})


def _start(code: str, data: Path, catalog: str | None, mount: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env=_env(data, catalog, mount), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out


def _tables(data: Path, catalog: str | None) -> dict:
    return json.loads(_finish(_start(READER, data, catalog)))


@pytest.fixture(scope="module")
def world(real: Path, database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Storage, str, Path]]:
    """Real files through the pipeline: two while the catalog is local, the DuckLake then filled by two
    refreshes started at once, and a third file with the DuckLake set (its run refreshes it, one output per
    commit). The CSV's raw
    `Time` holds whole numbers, the GeoPackage's text. Also an empty directory for readers on other hosts."""
    root = tmp_path_factory.mktemp("ducklake")
    storage = Storage(root / "data")
    save(storage, {"enablePolygonOutput": True}, leaf_user_id="mt")
    csv = make_zip(root / "csv.zip", {"area1.csv": real / "csiro-pyprecag-yield-csv" / "area1_yield_ascii_wgs84.csv"})
    planting = make_zip(root / "ohio.zip", {"asplanted.gpkg": real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg"})
    with dg.instance_for_test() as instance:
        for upload in (real / MONTANA / "FarmerB_YE_YLD_2014_sec1west.zip", csv):
            process_upload(upload, storage, instance, leaf_user_id="mt", provider="AgLeader")
        racing = [_start(REFRESH, storage.root, database) for _ in range(2)]
        for process in racing:
            _finish(process)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(CATALOG_ENV, database)
            patch.setattr(ducklake, "OUTPUTS_PER_COMMIT", 1)  # the file's outputs in a commit each
            process_upload(planting, storage, instance, leaf_user_id="mt", provider="Other")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    yield storage, database, elsewhere


def test_every_host_sees_the_local_catalogs_tables(world: tuple[Storage, str, Path]) -> None:
    storage, database, elsewhere = world
    local = _tables(storage.root, None)
    assert sorted(local) == sorted([*RECORD_KEYS, *POINT_VIEWS])  # every table, so every one is compared
    assert len(local["standard_points"]) > 40000
    assert {json.loads(row)["Time"] is None for row in local["raw_points"]} == {True, False}
    mount = elsewhere / "mnt"  # the second host mounts the shared storage at another path
    mount.symlink_to(storage.ducklake_dir)
    # no data directory of their own
    readers = [_start(READER, elsewhere, database), _start(READER, elsewhere, database, mount)]
    first, second = (json.loads(_finish(p)) for p in readers)
    assert first == second == local


def test_a_rerun_file_replaces_its_rows(world: tuple[Storage, str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    storage, database, elsewhere = world
    (record,) = [r for r in storage.records.many("files") if r["fileFormat"] == "SHAPEFILE"]
    output = storage.parquet_path("standard", record["id"])
    before = output.stat().st_mtime_ns
    monkeypatch.setenv(CATALOG_ENV, database)
    with dg.instance_for_test() as instance:
        run_files(storage, instance, load_definitions(storage), [record["id"]])  # refreshes the DuckLake itself
    assert output.stat().st_mtime_ns != before  # the output was written again
    shared = _tables(elsewhere, database)
    assert shared == _tables(storage.root, None)
    points = [json.loads(row) for row in shared["standard_points"]]
    assert sum(row["file_id"] == record["id"] for row in points) == record["pointCount"]


@pytest.mark.parametrize("value", ["postgres:dbname=leaf", "duckdb:leaf.duckdb"])
def test_a_misnamed_catalog_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CATALOG_ENV, value)
    with pytest.raises(CatalogError, match=f"{CATALOG_ENV} must be 'local' or a DuckLake"):
        ducklake_url()


def test_a_catalog_that_cannot_be_opened_is_named_without_its_password() -> None:
    with pytest.raises(CatalogError, match="cannot open the DuckLake catalog") as caught:
        ducklake.query(f"ducklake:postgres:{_libpq(postgres.admin_url(), 'leaf_no_such_database')} password=sekrit", "SELECT 1")
    assert "sekrit" not in str(caught.value) and "password=***" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # nor in a chained error
