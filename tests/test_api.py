"""The HTTP API: a real server process, uploads over HTTP, the pipeline driven by its sensors, auth and errors."""

from __future__ import annotations

import email.message
import email.utils
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import dagster as dg
import geopandas as gpd
import httpx
import pytest

from leaf_dagster.api.deps import attachment
from leaf_dagster.storage import Storage

from .conftest import JD_WHEAT, JD_WHEAT_ZIP, MONTANA, REPO, make_zip
from .sensor_loop import SensorLoop

BASE = "/services/operations/api"
ALICE, BOB = {"Authorization": "Bearer alice-token"}, {"Authorization": "Bearer bob-token"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: Path, max_upload: int | None = None, **extra_env: str):
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        env.update(LEAF_DATA_DIR=str(data), LEAF_API_TOKENS="alice-token=alice,bob-token=bob")
        if max_upload:
            env["LEAF_API_MAX_UPLOAD_BYTES"] = str(max_upload)
        env.update(extra_env)
        self.proc = subprocess.Popen([sys.executable, "-m", "leaf_dagster.cli", "serve", "--port", str(self.port)],
                                     env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                httpx.get(self.url + "/openapi.json", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start: " + self.proc.stderr.read().decode()[-2000:])

    def client(self, headers: dict[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers or {}, timeout=120)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path / "data", max_upload=5_000_000)
    yield s
    s.stop()


def _process(storage: Storage, client: httpx.Client, batch_id: str) -> dict:
    """The daemon's part, in-process, until a file of the batch is converted and none is processing; returns
    the batch's status answer."""
    with dg.instance_for_test() as instance:
        loop = SensorLoop(instance, storage)
        for upload in storage.inbox.glob("*.zip"):  # settled: as if written a while ago
            os.utime(upload, (time.time() - 60, time.time() - 60))
        for _ in range(10):
            loop.tick()
            status = client.get(f"{BASE}/batch/{batch_id}/status").json()
            if status["converted"]["leafFiles"] and not status["processing"]["leafFiles"]:
                break
    return status


def test_end_to_end_upload_status_and_downloads(real: Path, server: Server, tmp_path: Path) -> None:
    alice = server.client(ALICE)
    with open(real / MONTANA / JD_WHEAT_ZIP, "rb") as fh:
        response = alice.post(f"{BASE}/batch", params={"leafUserId": "grower-1", "provider": "JohnDeere"},
                              files={"file": (JD_WHEAT_ZIP, fh, "application/zip")})
    assert response.status_code == 200, response.text
    batch = response.json()
    assert batch["status"] == "RECEIVED" and batch["fileName"] == JD_WHEAT_ZIP and batch["leafUserId"] == "grower-1"

    storage = Storage(tmp_path / "data")
    status = _process(storage, alice, batch["id"])
    (file_id,) = status["converted"]["leafFiles"]
    assert alice.get(f"{BASE}/batch/{batch['id']}").json()["status"] == "PROCESSED"

    listing = alice.get(f"{BASE}/files", params={"leafUserId": "grower-1"})
    assert listing.headers["X-Total-Count"] == "1" and 'rel="first"' in listing.headers["Link"]
    record = listing.json()["operations"][0]
    assert record["id"] == file_id and record["batchId"] == batch["id"] and record["apiOwnerUsername"] == "alice"
    assert alice.get(f"{BASE}/files/{file_id}/status").json()["zippedPNGs"] == {"status": "processed", "message": "ok"}
    summary = alice.get(f"{BASE}/files/{file_id}/summary").json()
    assert summary["type"] == "Feature" and summary["properties"]["operationType"] == "harvested"
    assert alice.get(f"{BASE}/files/{file_id}/units").json()["wetMassPerArea"] == "lb/ac"

    standard = storage.read_geoparquet("standard", file_id)
    geojson = alice.get(record["standardGeojson"].replace(server.url, "")).json()
    assert geojson["type"] == "FeatureCollection" and len(geojson["features"]) == len(standard) == record["pointCount"]
    first = geojson["features"][0]
    assert first["geometry"]["coordinates"] == pytest.approx([standard.geometry.x[0], standard.geometry.y[0]])
    assert first["properties"]["timestamp"].endswith("Z")
    download = alice.get(record["downloadStandardGeojson"].replace(server.url, ""))
    assert "attachment" in download.headers["content-disposition"]

    link = alice.get(f"{BASE}/files/{file_id}/standardGeoparquet").json()["downloadStandardGeoparquet"]
    parquet = alice.get(link.replace(server.url, ""))
    frame = gpd.read_parquet(io.BytesIO(parquet.content))
    assert len(frame) == len(standard)
    zipped = alice.get(record["zippedPNGs"].replace(server.url, ""))
    assert zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    images = alice.get(f"{BASE}/files/{file_id}/images").json()
    png = alice.get(images[0]["url"].replace(server.url, ""))
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    original = zipfile.ZipFile(io.BytesIO(alice.get(record["originalFile"].replace(server.url, "")).content))
    assert {n.rsplit(".", 1)[1] for n in original.namelist()} == {"shp", "shx", "dbf", "prj"}

    # the coverage map the Dagster UI shows comes from an unguessable URL that needs no token
    token = storage.records.get("files", file_id)["thumbnailToken"]
    anonymous = server.client()
    assert anonymous.get(f"/thumbnails/{file_id}/{token}.png").content[:4] == b"\x89PNG"
    assert anonymous.get(f"/thumbnails/{file_id}/{'0' * 32}.png").status_code == 404

    # retry and merge go through the requested-runs sensor
    retried = alice.put(f"{BASE}/batch/{batch['id']}/retry").json()
    assert retried["status"] == "PROCESSED"  # every file converted: nothing to run again, nothing changes
    merge = alice.post(f"{BASE}/files/merge", json={"ids": [file_id]})
    assert merge.status_code == 400 and "two or more" in merge.json()["message"]


def _saved_as(header: str) -> tuple[str, str]:
    """A Content-Disposition's two names: `filename*` decoded (RFC 5987), which RFC 6266 clients use, and the
    plain `filename` the others use."""
    message = email.message.Message()
    message["Content-Disposition"] = header
    params = message.get_params(header="content-disposition")[1:]
    encoded = next(value for key, value in params if key == "filename" and isinstance(value, tuple))
    plain = next(value for key, value in params if key == "filename" and isinstance(value, str))
    return email.utils.collapse_rfc2231_value(encoded), plain


@pytest.mark.parametrize("name,header", [
    ("Ernte_Müller_2023.zip",
     "attachment; filename=\"Ernte_Muller_2023.zip\"; filename*=UTF-8''Ernte_M%C3%BCller_2023.zip"),
    ("収穫.zip", "attachment; filename=\"__.zip\"; filename*=UTF-8''%E5%8F%8E%E7%A9%AB.zip"),
    ('a "b"\\c; d,e 100%.zip',
     "attachment; filename=\"a _b__c; d,e 100_.zip\"; filename*=UTF-8''a%20%22b%22%5Cc%3B%20d%2Ce%20100%25.zip"),
])
def test_a_download_header_names_the_file_for_every_client(name: str, header: str) -> None:
    assert attachment(name) == {"Content-Disposition": header}
    assert _saved_as(header) == (name, header.split('"')[1])


def test_original_files_download_under_the_names_users_gave(real: Path, server: Server, tmp_path: Path) -> None:
    """An upload with a German name holding a shapefile named in Japanese and a CSV whose name has quotes, a
    semicolon and a comma: each file's original members come back zipped, under its own name."""
    alice = server.client(ALICE)
    with zipfile.ZipFile(real / MONTANA / JD_WHEAT_ZIP) as jd:
        members: dict[str, Path | bytes | str] = {f"収穫.{ext}": jd.read(f"{JD_WHEAT}.{ext}")
                                                  for ext in ("shp", "shx", "dbf", "prj")}
    members['Feld "Nord"; Süd, 2023.csv'] = real / "csiro-pyprecag-yield-csv" / "area2_yield_ISO-8859-1.csv"
    upload = make_zip(tmp_path / "upload.zip", members)
    batch = alice.post(f"{BASE}/batch", params={"leafUserId": "grower-1", "provider": "AgLeader"},
                       files={"file": ("Ernte_Müller_2023.zip", upload.read_bytes(), "application/zip")}).json()
    assert batch["fileName"] == "Ernte_Müller_2023.zip"
    _process(Storage(tmp_path / "data"), alice, batch["id"])

    saved = {}
    for file_id in alice.get(f"{BASE}/batch/{batch['id']}").json()["leafFiles"]:
        record = alice.get(f"{BASE}/files/{file_id}").json()
        download = alice.get(record["downloadOriginalFile"].replace(server.url, ""))
        header = download.headers["content-disposition"]
        assert header.isascii() and header.startswith("attachment; ")
        exact, plain = _saved_as(header)
        saved[exact] = plain
        assert exact == f"{record['fileName']}.zip"
        assert sorted(zipfile.ZipFile(io.BytesIO(download.content)).namelist()) == \
            sorted(m for m in members if m.startswith(record["fileName"] + "."))
        if record["fileName"] == "収穫":
            parquet = alice.get(f"{BASE}/files/{file_id}/standardGeoparquet/file")
            assert _saved_as(parquet.headers["content-disposition"]) == (f"{file_id}-standard.parquet",) * 2
    assert saved == {"収穫.zip": "__.zip", 'Feld "Nord"; Süd, 2023.zip': "Feld _Nord_; Sud, 2023.zip"}
    assert "content-disposition" not in alice.get(record["originalFile"].replace(server.url, "")).headers


def test_auth_owners_and_bad_requests(real: Path, server: Server, tmp_path: Path) -> None:
    anonymous, alice, bob = server.client(), server.client(ALICE), server.client(BOB)
    assert anonymous.get(f"{BASE}/files").status_code == 401
    assert server.client({"Authorization": "Bearer nope"}).get(f"{BASE}/batch").status_code == 401
    with open(real / MONTANA / JD_WHEAT_ZIP, "rb") as fh:
        batch = alice.post(f"{BASE}/batch", params={"leafUserId": "grower-1", "provider": "JohnDeere"},
                           files={"file": (JD_WHEAT_ZIP, fh)}).json()
    assert alice.get(f"{BASE}/batch/{batch['id']}").status_code == 200
    assert bob.get(f"{BASE}/batch/{batch['id']}").status_code == 404
    assert bob.get(f"{BASE}/batch").json() == []
    # alice's leafUserId is, for bob, an id like any unused one: the same answers, and his own user if he uses it
    for user in ("grower-1", "never-used"):
        answer = bob.get(f"{BASE}/files/uncoveredFiles", params={"leafUserId": user})
        assert answer.status_code == 200 and answer.json() == {"files": []}
    assert bob.post(f"{BASE}/batch", params={"leafUserId": "grower-1", "provider": "Other"},
                    files={"file": ("x.zip", make_zip(tmp_path / "x.zip", {"a.txt": "x"}).read_bytes())}).status_code == 200
    assert [b["leafUserId"] for b in alice.get(f"{BASE}/batch").json()] == ["grower-1"]

    for params, message in (({"size": 101}, "between 1 and 100"), ({"sort": "nope,asc"}, "cannot sort"),
                            ({"createdTime": "last week"}, "ISO 8601")):
        response = alice.get(f"{BASE}/files", params=params)
        assert response.status_code == 400 and message in response.json()["message"]
    not_zip = alice.post(f"{BASE}/batch", params={"leafUserId": "g", "provider": "Other"},
                         files={"file": ("notes.zip", b"hello, not a zip")})
    assert not_zip.status_code == 400 and "must be a .zip" in not_zip.json()["message"]
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("noise.bin", os.urandom(6_000_000))
    too_big = alice.post(f"{BASE}/batch", params={"leafUserId": "g", "provider": "Other"}, files={"file": ("big.zip", big.read_bytes())})
    assert too_big.status_code == 400 and "larger than the 5000000 bytes" in too_big.json()["message"]
    missing = alice.post(f"{BASE}/batch", files={"file": ("a.zip", make_zip(tmp_path / "a.zip", {"a": "b"}).read_bytes())})
    assert missing.status_code == 400 and "leafUserId and provider are required" in missing.json()["message"]
    assert not list((tmp_path / "data" / "inbox").glob(".*.part"))  # refused uploads leave nothing behind


def test_fields_and_configs_over_http(real: Path, server: Server) -> None:
    alice = server.client(ALICE)
    boundary = gpd.read_file(real / "carpentries-ohio-planting-nh3" / "boundary.gpkg").to_crs(4326)
    added = alice.post("/services/fields/api/users/grower-9/fields", json=json.loads(boundary.to_json()))
    assert added.status_code == 200 and len(added.json()) == 1
    assert alice.get("/services/fields/api/users/grower-9/fields").json()[0]["id"] == added.json()[0]["id"]
    patched = alice.patch("/services/config/api/configs/grower-9", json={"unitMeasurement": "METRIC"})
    assert patched.json()["unitMeasurement"] == "METRIC"
    assert alice.get("/services/config/api/configs").json()["unitMeasurement"] == "DEFAULT"
    assert alice.patch("/services/config/api/configs", json={"unitMeasurement": "FURLONGS"}).status_code == 400


def test_upload_memory_stays_small(tmp_path: Path) -> None:
    """Streams a 1 GiB zip to the server and reads the server's peak resident memory."""
    size = int(os.environ.get("LEAF_UPLOAD_TEST_BYTES", 2**30))
    server = Server(tmp_path / "data")
    try:
        boundary = "leafdagsterboundary"
        chunk = b"\0" * (1 << 20)
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.zip\"\r\n"
                "Content-Type: application/zip\r\n\r\n").encode() + b"PK\x03\x04"
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body():
            yield head
            sent = 4
            while sent < size:
                piece = chunk[: min(len(chunk), size - sent)]
                sent += len(piece)
                yield piece
            yield tail

        before = server.peak_rss_mb()
        response = server.client(ALICE).post(f"{BASE}/batch", params={"leafUserId": "g", "provider": "Other"},
                                             content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 200, response.text
        assert response.json()["size"] == size
        peak = server.peak_rss_mb()
        print(f"upload of {size / 2**20:.0f} MiB: server peak RSS {before:.0f} MiB before, {peak:.0f} MiB after")
        assert peak < 200
    finally:
        server.stop()
