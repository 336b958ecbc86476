"""Object storage as the data directory (LEAF_DATA_DIR=s3://bucket/prefix), against moto's S3 server run here.

Each `Storage` on the same URL with its own working folder stands for another host. The records are not
objects (they have their own shared store); where a second host needs them, a copy of the first host's
records file stands for that store.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pytest

from leaf_dagster import run_requests
from leaf_dagster.defs import sensors
from leaf_dagster.defs.in_process import load_definitions, process_upload, run_files
from leaf_dagster.fields import add_boundaries, load_fields
from leaf_dagster.errors import InvalidIdentifier, PathOutsideDataDir
from leaf_dagster.files import FileSteps
from leaf_dagster.storage import DATA_DIR_ENV, WORK_DIR_ENV, Storage

from .conftest import JD_WHEAT_ZIP, MONTANA, bucket_objects, make_zip
from .sensor_loop import SensorLoop
from .test_pipeline import jd_valid_points

BASE = "/services/operations/api"
PREFIX = "data"


def _host(bucket: str, folder: Path) -> Storage:
    return Storage(f"s3://{bucket}/{PREFIX}", folder)


def test_an_atomic_write_is_an_object_with_the_same_bytes(bucket: str, tmp_path: Path) -> None:
    a = _host(bucket, tmp_path / "a")
    target = a.parquet_path("standard", "f-1")
    with a.atomic_path(target) as tmp:
        tmp.write_bytes(b"PAR1 one")
    assert target.read_bytes() == b"PAR1 one"
    assert bucket_objects(bucket) == {f"{PREFIX}/lake/standard/f-1.parquet": b"PAR1 one"}
    with pytest.raises(RuntimeError), a.atomic_path(a.parquet_path("standard", "f-2")):
        raise RuntimeError("the step failed")  # nothing in place, nothing put
    assert list(bucket_objects(bucket)) == [f"{PREFIX}/lake/standard/f-1.parquet"]


def test_another_host_fetches_sees_an_overwrite_and_a_removal(bucket: str, tmp_path: Path) -> None:
    a, b = _host(bucket, tmp_path / "a"), _host(bucket, tmp_path / "b")
    with a.atomic_path(a.images_dir("f-1") / "yield.png") as tmp:
        tmp.write_bytes(b"first")
    copy = b.fetch(b.images_dir("f-1") / "yield.png")
    assert copy == tmp_path / "b" / "files" / "f-1" / "images" / "yield.png" and copy.read_bytes() == b"first"
    inode = copy.stat().st_ino
    assert b.fetch(copy).stat().st_ino == inode  # same ETag: the copy is not fetched again
    with a.atomic_path(a.images_dir("f-1") / "yield.png") as tmp:
        tmp.write_bytes(b"second, longer")
    assert b.fetch(copy).read_bytes() == b"second, longer"
    copy.write_bytes(b"changed here")  # a local copy that is no longer the fetched one is fetched again
    assert b.fetch(copy).read_bytes() == b"second, longer"
    assert b.exists(copy) and not b.exists(b.images_dir("f-1") / "other.png")
    a.discard(a.images_dir("f-1") / "yield.png")
    assert not b.fetch(copy).exists() and not b.exists(copy)


def test_a_folder_others_write_into_is_synced(bucket: str, tmp_path: Path) -> None:
    api, daemon = _host(bucket, tmp_path / "api"), _host(bucket, tmp_path / "daemon")
    for name, body in (("u1.json", b'{"leafUserId": "g-1"}'), ("u1.zip", b"PK zip")):
        with api.atomic_path(api.inbox / name) as tmp:
            tmp.write_bytes(body)
    daemon.inbox.mkdir(parents=True)
    receiving = daemon.inbox / ".token.part"  # this host's own upload in progress: never an object
    receiving.write_bytes(b"half")
    assert sorted(p.name for p in daemon.synced(daemon.inbox).iterdir()) == [".token.part", "u1.json", "u1.zip"]
    assert (daemon.inbox / "u1.zip").read_bytes() == b"PK zip"
    daemon.upload_dir("b-1").mkdir(parents=True)
    daemon.move(daemon.inbox / "u1.json", daemon.upload_dir("b-1") / "u1.json")
    api.discard(api.inbox / "u1.zip")
    assert [p.name for p in daemon.synced(daemon.inbox).iterdir()] == [".token.part"]
    assert [p.name for p in api.synced(api.inbox).iterdir()] == []
    assert set(bucket_objects(bucket)) == {f"{PREFIX}/batches/b-1/upload/u1.json"}


def test_a_run_requested_on_one_host_is_pending_once_on_another(bucket: str, tmp_path: Path) -> None:
    api, daemon = _host(bucket, tmp_path / "api"), _host(bucket, tmp_path / "daemon")
    request_id = run_requests.request_runs(api, ["f-1"], "retry")
    ((path, request),) = run_requests.pending(daemon)
    assert request["id"] == request_id and request["fileIds"] == ["f-1"]
    run_requests.mark_done(daemon, path)
    assert run_requests.pending(daemon) == [] and run_requests.pending(api) == []
    assert list(bucket_objects(bucket)) == [f"{PREFIX}/requests/done/{request_id}.json"]


def test_fields_added_on_one_host_are_matched_on_another(real: Path, bucket: str, tmp_path: Path) -> None:
    api, worker = _host(bucket, tmp_path / "api"), _host(bucket, tmp_path / "worker")
    boundary = real / "carpentries-ohio-planting-nh3" / "boundary.gpkg"
    (added,) = add_boundaries(api, "g-1", boundary, owner="alice")
    fields = load_fields(worker, "g-1", "alice")
    assert list(fields["id"]) == [added["id"]]
    assert fields.geometry.iloc[0].equals(gpd.read_file(boundary).to_crs(4326).geometry.iloc[0])


def test_keys_stay_inside_the_prefix(bucket: str, tmp_path: Path) -> None:
    a = _host(bucket, tmp_path / "a")
    with pytest.raises(InvalidIdentifier):
        a.parquet_path("standard", "../../escape")
    with pytest.raises(InvalidIdentifier):
        a.owner_path("..", "config.json")
    with pytest.raises(PathOutsideDataDir):
        a.user_path("alice", "g-1", "..", "..", "..", "..", "escape.json")
    outside = tmp_path / "elsewhere.zip"
    with a.atomic_path(outside) as tmp:  # a path outside the working folder has no key
        tmp.write_bytes(b"mine")
    a.records.put("batches", "b-1", "registration", {"id": "b-1"})  # records are not objects
    with a.atomic_path(a.owner_path("alice", "config.json")) as tmp:
        tmp.write_text("{}")
    assert list(bucket_objects(bucket)) == [f"{PREFIX}/owners/alice/config.json"]
    assert a.fetch(outside).read_bytes() == b"mine"


def test_a_local_data_directory_has_no_object_store(tmp_path: Path) -> None:
    local = Storage(tmp_path / "data")
    assert local.objects is None and local.work_dir is None and local.url == str((tmp_path / "data").resolve())
    assert local.fetch(local.inbox) == local.inbox and local.synced(local.inbox) == local.inbox


def _standard_geojson(client, file_id: str) -> dict:
    response = client.get(f"{BASE}/files/{file_id}/standardGeojson")
    assert response.status_code == 200, response.text
    return response.json()


def test_an_upload_processed_on_object_storage_reads_the_same_on_another_host(
        real: Path, bucket: str, storage: Storage, instance: dg.DagsterInstance, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from leaf_dagster.api.app import create_app

    upload = make_zip(tmp_path / "wheat.zip", {"a/" + JD_WHEAT_ZIP: real / MONTANA / JD_WHEAT_ZIP})
    local = process_upload(upload, storage, instance, leaf_user_id="grower-1", provider="JohnDeere")

    url = f"s3://{bucket}/{PREFIX}"
    monkeypatch.setenv(DATA_DIR_ENV, url)
    monkeypatch.setenv(WORK_DIR_ENV, str(tmp_path / "host-a"))
    host_a = Storage(url)
    assert host_a.root == (tmp_path / "host-a").resolve()
    with dg.instance_for_test() as other_instance:
        shared = process_upload(upload, host_a, other_instance, leaf_user_id="grower-1", provider="JohnDeere")
    (file,) = shared["files"]
    assert file["status"] == "processed" and file["pointCount"] == jd_valid_points(real / MONTANA / JD_WHEAT_ZIP)
    assert [f["id"] for f in local["files"]] == [file["id"]]

    keys = set(bucket_objects(bucket))
    fid = file["id"]
    assert all(k.startswith(f"{PREFIX}/") for k in keys)
    assert {f"{PREFIX}/lake/{t}/{fid}.parquet" for t in ("raw", "standard", "filtered")} <= keys
    assert f"{PREFIX}/files/{fid}/images/images.zip" in keys
    originals = {k.rsplit(".", 1)[-1] for k in keys if k.startswith(f"{PREFIX}/files/{fid}/original/")}
    assert originals >= {"shp", "dbf", "shx"}
    assert not any("records.sqlite" in k or "leaf.duckdb" in k for k in keys)

    host_b = Storage(url, tmp_path / "host-b")
    host_b.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(host_a.records.path, host_b.records.path)  # the shared record store
    for step in ("rawGeojson", "standardGeojson", "filteredGeojson"):
        ours, theirs = FileSteps(host_b, fid).load_table(step), FileSteps(storage, fid).load_table(step)
        pd.testing.assert_frame_equal(pd.DataFrame(ours.frame), pd.DataFrame(theirs.frame))

    headers = {"Authorization": "Bearer t"}
    remote = TestClient(create_app(host_b, tokens={"t": "local"}), headers=headers)
    same = TestClient(create_app(storage, tokens={"t": "local"}), headers=headers)
    assert _standard_geojson(remote, fid) == _standard_geojson(same, fid)
    for path in (f"/files/{fid}/zippedPNGs", f"/files/{fid}/originalFile"):
        ours_zip, theirs_zip = remote.get(BASE + path), same.get(BASE + path)
        assert ours_zip.status_code == 200 and theirs_zip.status_code == 200
        with zipfile.ZipFile(io.BytesIO(ours_zip.content)) as z1, zipfile.ZipFile(io.BytesIO(theirs_zip.content)) as z2:
            assert sorted(z1.namelist()) == sorted(z2.namelist()) and len(z1.namelist()) > 0
            assert all(z1.read(n) == z2.read(n) for n in z1.namelist())
    assert remote.get(f"{BASE}/files/{fid}").json()["standardGeojson"].endswith(f"/files/{fid}/standardGeojson")

    # the file run again on host B (a retry lands on any worker): its originals come from the bucket
    assert not host_b.extracted_dir(shared["batch"]["id"]).exists()
    with dg.instance_for_test() as third_instance:
        (again,) = run_files(host_b, third_instance, load_definitions(host_b), [fid])
    assert again["status"] == "processed" and again["pointCount"] == file["pointCount"]


def test_an_upload_to_one_api_host_is_taken_by_the_daemon_of_another(
        real: Path, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from leaf_dagster.api.app import create_app

    monkeypatch.setattr(sensors, "SETTLE_SECONDS", 0.0)  # the upload's object is complete once it is listed
    url = f"s3://{bucket}/{PREFIX}"
    api, daemon = Storage(url, tmp_path / "api"), Storage(url, tmp_path / "daemon")
    client = TestClient(create_app(api, tokens={"t": "alice"}), headers={"Authorization": "Bearer t"})
    with open(real / MONTANA / JD_WHEAT_ZIP, "rb") as fh:
        response = client.post(f"{BASE}/batch", params={"leafUserId": "grower-1", "provider": "JohnDeere"},
                               files={"file": (JD_WHEAT_ZIP, fh, "application/zip")})
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    assert not daemon.inbox.exists()  # nothing on the daemon's host until its sensor lists the store

    with dg.instance_for_test() as instance:
        loop = SensorLoop(instance, daemon)
        assert loop.tick() == 1
        assert loop.tick() == 0  # taken once
    batch = daemon.records.get("batches", batch_id)
    assert batch is not None and batch["status"] == "PROCESSED" and batch["apiOwnerUsername"] == "alice"
    (record,) = daemon.records.many("files", batch["leafFiles"])
    assert record["status"] == "processed" and record["pointCount"] == jd_valid_points(real / MONTANA / JD_WHEAT_ZIP)

    keys = set(bucket_objects(bucket))
    assert not any(k.startswith(f"{PREFIX}/inbox/") for k in keys)  # moved out of the inbox, on every host
    stored = {k for k in keys if k.startswith(f"{PREFIX}/batches/{batch_id}/upload/")}
    assert len(stored) == 2  # the zip and its sidecar
    sidecar = json.loads(next(v for k, v in bucket_objects(bucket).items() if k in stored and k.endswith(".json")))
    assert sidecar["batchId"] == batch_id and sidecar["fileName"] == JD_WHEAT_ZIP
    assert [p.name for p in api.synced(api.inbox).glob("*.zip")] == []
