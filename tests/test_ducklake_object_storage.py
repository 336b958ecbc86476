"""The shared catalog with the data directory on object storage (moto's S3 server run here): the DuckLake's
metadata in the real PostgreSQL, its data files in the bucket, refreshed by a host that did not process the
file and read by one that has only the environment.

Each working folder stands for another host; a copy of the worker's records file stands for the record store
the hosts share."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from leaf_dagster import ducklake
from leaf_dagster.defs.in_process import load_definitions, process_upload, run_files
from leaf_dagster.ducklake import CATALOG_ENV, DATA_PATH_ENV
from leaf_dagster.storage import DATA_DIR_ENV, ENDPOINT_ENV, WORK_DIR_ENV, Storage

from .conftest import JD_WHEAT_ZIP, MONTANA, REPO, bucket_objects, make_zip
from .test_ducklake import READER, database  # noqa: F401 (the scratch DuckLake's fixture)
from .test_pipeline import jd_valid_points

PREFIX = "data"
# What the status sensor runs after every run, on its own host.
REFRESH = "from leaf_dagster.catalog import refresh_catalog; from leaf_dagster.storage import Storage, data_url; " \
          "refresh_catalog(Storage(data_url()))"


def _run(code: str, cwd: Path, **env: str) -> str:
    """`code` in a process of its own with the S3 environment of the test, none of the leaf variables but `env`."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("DAGSTER_HOME", CATALOG_ENV, DATA_PATH_ENV, DATA_DIR_ENV, WORK_DIR_ENV)}
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", code], env=base | {"PYTHONPATH": str(REPO)} | env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_catalog_of_an_upload_on_object_storage_reads_the_same_on_every_host(
        real: Path, bucket: str, database: str,  # noqa: F811 (the fixture imported above)
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"s3://{bucket}/{PREFIX}"
    upload = make_zip(tmp_path / "wheat.zip", {"a/" + JD_WHEAT_ZIP: real / MONTANA / JD_WHEAT_ZIP})
    worker_dir, sensor_dir, reader_dir = tmp_path / "worker", tmp_path / "sensor", tmp_path / "reader"
    monkeypatch.setenv(DATA_DIR_ENV, url)
    monkeypatch.setenv(WORK_DIR_ENV, str(worker_dir))
    worker = Storage(url)
    with dg.instance_for_test() as instance:
        result = process_upload(upload, worker, instance, leaf_user_id="grower-1", provider="JohnDeere")
    (file,) = result["files"]
    assert file["status"] == "processed"

    # the status sensor's host: the shared records, none of the worker's outputs
    sensor_dir.mkdir()
    shutil.copyfile(worker.records.path, Storage(url, sensor_dir).records.path)
    _run(REFRESH, sensor_dir, **{DATA_DIR_ENV: url, WORK_DIR_ENV: str(sensor_dir), CATALOG_ENV: database})
    assert not (sensor_dir / "lake").exists()  # the outputs were read from the bucket, not fetched

    # a SQL user's host: LEAF_CATALOG and the S3 environment, no data directory or working folder
    shared = json.loads(_run(READER, reader_dir, **{CATALOG_ENV: database}))
    local = json.loads(_run(READER, worker_dir, **{DATA_DIR_ENV: url, WORK_DIR_ENV: str(worker_dir)}))
    assert shared == local
    assert len(local["standard_points"]) == file["pointCount"] == jd_valid_points(real / MONTANA / JD_WHEAT_ZIP)
    assert list(reader_dir.iterdir()) == []

    data_files = _data_files(bucket)
    assert data_files and all(k.endswith(".parquet") for k in data_files)

    # the file run again on the worker, the DuckLake set: its run refreshes it, and once the replaced rows'
    # snapshots expire their data files go from the bucket
    monkeypatch.setenv(CATALOG_ENV, database)
    monkeypatch.setattr(ducklake, "RETENTION", "INTERVAL '0 seconds'")
    with dg.instance_for_test() as instance:
        (again,) = run_files(worker, instance, load_definitions(worker), [file["id"]])
    assert again["status"] == "processed"
    shared = json.loads(_run(READER, reader_dir, **{CATALOG_ENV: database}))
    assert shared == json.loads(_run(READER, worker_dir, **{DATA_DIR_ENV: url, WORK_DIR_ENV: str(worker_dir)}))
    assert shared["files"] != local["files"]  # the records the run changed were taken
    assert data_files - _data_files(bucket)
    for folder in (worker_dir, sensor_dir, reader_dir):
        assert not list(folder.rglob("ducklake-*")), folder  # DuckLake's data files are objects only


def _data_files(bucket: str) -> set[str]:
    return {k for k in bucket_objects(bucket) if k.startswith(f"{PREFIX}/ducklake/")}


def _secret(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, str]:
    """The S3 secret a DuckLake session makes from `env` (DuckDB's own listing, the secret key redacted)."""
    for name in (ENDPOINT_ENV, "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with duckdb.connect() as con:
        ducklake._s3_secret(con)
        ((listing,),) = con.execute("SELECT secret_string FROM duckdb_secrets() WHERE name = 'leaf_s3'").fetchall()
    return dict(field.split("=", 1) for field in listing.split(";"))


def test_the_s3_secret_comes_from_the_environment_obstore_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "AKIDLEAF", "AWS_SECRET_ACCESS_KEY": "s3kr1t'\"; DROP"}
    custom = _secret(monkeypatch, **keys, AWS_ENDPOINT_URL="https://minio.example:9000", AWS_REGION="eu-west-3",
                     **{ENDPOINT_ENV: "http://127.0.0.1:9000"})  # LEAF_S3_ENDPOINT comes first
    assert (custom["endpoint"], custom["url_style"], custom["use_ssl"], custom["region"], custom["key_id"]) == \
        ("127.0.0.1:9000", "path", "false", "eu-west-3", "AKIDLEAF")
    assert custom["secret"] == "redacted"
    tls = _secret(monkeypatch, **keys, AWS_ENDPOINT_URL="https://minio.example:9000", AWS_DEFAULT_REGION="us-west-2")
    assert (tls["endpoint"], tls["use_ssl"], tls["region"]) == ("minio.example:9000", "true", "us-west-2")
    aws = _secret(monkeypatch, **keys)  # AWS itself: DuckDB's defaults, its endpoint and virtual-host URLs
    assert aws["key_id"] == "AKIDLEAF" and not {"endpoint", "url_style", "use_ssl"} & set(aws)


def test_a_local_data_directory_needs_no_httpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (DATA_DIR_ENV, ENDPOINT_ENV, "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    storage = Storage(tmp_path / "data")
    path = ducklake.data_path(storage)
    assert path == f"{storage.ducklake_dir.as_posix()}/" and not ducklake._on_object_storage(path)
    assert ducklake._on_object_storage("s3://bucket/data/ducklake/")

