"""Two API owners on one server: configurations, fields and user ids kept apart, identifiers that could
steer a path refused, no 500 on hostile requests, unfinished uploads cleaned up, no server paths shown."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import dagster as dg
import geopandas as gpd
import httpx
import pytest

from leaf_dagster.catalog import refresh_catalog
from leaf_dagster.errors import InvalidIdentifier, PathOutsideDataDir, public_message
from leaf_dagster.identifiers import check_id
from leaf_dagster.storage import DATA_DIR_ENV, Storage

from .conftest import JD_WHEAT_ZIP, MONTANA, make_zip
from .sensor_loop import SensorLoop
from .test_api import ALICE, BASE, BOB, Server

CONFIG = "/services/config/api/configs"
FIELDS = "/services/fields/api/users"
TRAVERSAL = "../../../secret"


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path / "data", max_upload=5_000_000)
    yield s
    s.stop()


def _settle(storage: Storage) -> None:
    for upload in storage.inbox.glob("*.zip"):  # as if written a while ago: the inbox sensor takes it
        os.utime(upload, (time.time() - 60, time.time() - 60))


def _run_pipeline(storage: Storage, instance: dg.DagsterInstance, ticks: int = 10) -> None:
    loop = SensorLoop(instance, storage)
    _settle(storage)
    for _ in range(ticks):
        if not loop.tick():
            break


def _upload(client: httpx.Client, path: Path, user: str, provider: str = "JohnDeere") -> dict:
    with open(path, "rb") as fh:
        response = client.post(f"{BASE}/batch", params={"leafUserId": user, "provider": provider},
                               files={"file": (path.name, fh, "application/zip")})
    assert response.status_code == 200, response.text
    return response.json()


def _raw(server: Server, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    """A request whose path is sent exactly as written (httpx would remove a `..` segment first)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(method, path, body=body, headers={**(headers or {}), "Content-Length": str(len(body))})
    response = connection.getresponse()
    payload = json.loads(response.read() or b"null")
    connection.close()
    return response.status, payload


def _error(response: httpx.Response, status: int = 400) -> str:
    """The API's one error shape; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "message"} and body["status"] == status and body["message"], body
    return body["message"]


def _boundary_geojson(real: Path, name: str = "sec1west_bbox") -> dict:
    with zipfile.ZipFile(real / MONTANA / f"{name}.zip") as zf:
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"leaf-boundary-{os.getpid()}-{name}"
        zf.extractall(folder)
    shp = next(p for p in folder.rglob("*.shp") if "__MACOSX" not in p.parts)
    return json.loads(gpd.read_file(shp).to_crs(4326).to_json())


def test_identifier_rule() -> None:
    for good in ("grower-7", "2d1b3c4e-0f1a-4b2c-9d3e-5f6a7b8c9d0e", "ops@farm.example", "a", "A_b.c-d"):
        assert check_id("leafUserId", good) == good
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a\0b", "a b", "x" * 129, "-x", "é"):
        with pytest.raises(InvalidIdentifier, match="leafUserId"):
            check_id("leafUserId", bad)
    storage = Storage("/nonexistent-data")
    with pytest.raises(InvalidIdentifier):
        storage.user_path("alice", "..", "config.json")
    with pytest.raises(PathOutsideDataDir):
        storage.owner_path("alice", "..", "bob", "config.json")  # a part that is not an id still stays inside


def test_owner_configurations_are_separate(server: Server) -> None:
    alice, bob = server.client(ALICE), server.client(BOB)
    assert bob.patch(CONFIG, json={"enableGeoparquetOutput": False}).json()["enableGeoparquetOutput"] is False
    assert alice.get(CONFIG).json()["enableGeoparquetOutput"] is True
    assert bob.get(CONFIG).json()["enableGeoparquetOutput"] is False
    alice.patch(CONFIG, json={"unitMeasurement": "IMPERIAL"})
    assert bob.get(CONFIG).json()["unitMeasurement"] == "DEFAULT"

    # alice's user: bob's answers for that id are exactly his answers for an id nobody uses
    alice.patch(f"{CONFIG}/grower-1", json={"operationsOutliersLimit": 5})
    assert alice.get(f"{CONFIG}/grower-1").json()["operationsOutliersLimit"] == 5
    used, unused = bob.get(f"{CONFIG}/grower-1"), bob.get(f"{CONFIG}/never-used")
    assert used.status_code == unused.status_code == 200 and used.json() == unused.json() == bob.get(CONFIG).json()
    # bob's own grower-1 is his: alice's stays as she set it
    bob.patch(f"{CONFIG}/grower-1", json={"operationsOutliersLimit": 1})
    assert alice.get(f"{CONFIG}/grower-1").json()["operationsOutliersLimit"] == 5
    assert _error(alice.patch(CONFIG, json={"enableGeoparquetOutput": "no"})) == \
        "enableGeoparquetOutput must be true or false, not \"no\""


def test_pipeline_applies_the_batch_owners_configuration_and_fields(real: Path, server: Server, tmp_path: Path) -> None:
    """bob's configuration and boundary for "grower-1" never touch alice's "grower-1", in the pipeline too."""
    alice, bob = server.client(ALICE), server.client(BOB)
    # bob: metric units, and a cleanup rule no harvest point passes; a field over the same ground as alice's file
    bob.patch(CONFIG, json={"unitMeasurement": "METRIC"})
    bob.patch(f"{CONFIG}/grower-1", json={"cleanupRules": {"wetMass": [{"operator": "LT", "value": 0.0}]}})
    (bob_field,) = bob.post(f"{FIELDS}/grower-1/fields", json=_boundary_geojson(real)).json()
    assert alice.get(f"{FIELDS}/grower-1/fields").json() == []

    storage = Storage(tmp_path / "data")
    alice_batch = _upload(alice, real / MONTANA / JD_WHEAT_ZIP, "grower-1")
    bob_batch = _upload(bob, real / MONTANA / JD_WHEAT_ZIP, "grower-1")
    with dg.instance_for_test() as instance:
        _run_pipeline(storage, instance)
        (alice_file,) = alice.get(f"{BASE}/batch/{alice_batch['id']}").json()["leafFiles"]
        (bob_file,) = bob.get(f"{BASE}/batch/{bob_batch['id']}").json()["leafFiles"]

        # alice's file: Leaf's defaults (imperial units as the file gives them), processed, no field attached
        record = alice.get(f"{BASE}/files/{alice_file}").json()
        assert record["status"] == "processed" and record["fields"] == []
        assert alice.get(f"{BASE}/files/{alice_file}/units").json()["wetMassPerArea"] == "lb/ac"
        assert alice.get(f"{BASE}/files/uncoveredFiles", params={"leafUserId": "grower-1"}).json() == {"files": [alice_file]}
        # bob's file of the same zip: his rule removed every point, his units are metric
        status = bob.get(f"{BASE}/files/{bob_file}/status").json()
        assert status["standardGeojson"] == {"status": "failed", "message": "no points passed the filter"}
        assert storage.records.get("files", bob_file)["unitMeasurement"] == "METRIC"
        assert bob.get(f"{FIELDS}/grower-1/fields").json()[0]["files"] == []  # alice's file is not his

        # alice adds the same boundary: her own field attaches to her file, bob's field id is not hers
        (alice_field,) = alice.post(f"{FIELDS}/grower-1/fields", json=_boundary_geojson(real)).json()
        assert alice_field["id"] != bob_field["id"]
        assert alice.get(f"{BASE}/files/{alice_file}").json()["fields"] == [alice_field["id"]]
        assert alice.get(f"{FIELDS}/grower-1/fields").json()[0]["files"] == [alice_file]
        assert [f["id"] for f in bob.get(f"{FIELDS}/grower-1/fields").json()] == [bob_field["id"]]


def _outside_data(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "data")


def test_traversal_ids_are_refused(real: Path, server: Server, tmp_path: Path) -> None:
    alice = server.client(ALICE)
    zipped = make_zip(tmp_path / "up" / "a.zip", {"a.txt": "x"}).read_bytes()
    before = _outside_data(tmp_path)
    query = alice.post(f"{BASE}/batch", params={"leafUserId": TRAVERSAL, "provider": "Other"},
                       files={"file": ("a.zip", zipped)})
    assert "leafUserId '../../../secret' is not valid" in _error(query)
    form = alice.post(f"{BASE}/batch", data={"leafUserId": TRAVERSAL, "provider": "Other"}, files={"file": ("a.zip", zipped)})
    assert "is not valid" in _error(form)

    headers = {**ALICE, "Content-Type": "application/json"}
    body = json.dumps(_boundary_geojson(real)).encode()
    for method, path in (("POST", f"{FIELDS}/../fields"), ("GET", f"{FIELDS}/../fields"), ("PATCH", f"{CONFIG}/.."),
                         ("GET", f"{CONFIG}/.."), ("POST", f"{FIELDS}/.secret/fields")):
        status, payload = _raw(server, method, path, body if method != "GET" else b"", headers)
        assert status == 400 and payload["status"] == 400 and "leafUserId" in payload["message"], (method, path, payload)
    assert _error(alice.get(f"{BASE}/files/uncoveredFiles", params={"leafUserId": "a/b"}))

    data = tmp_path / "data"
    assert _outside_data(tmp_path) == before
    assert not (data / "fields").exists() and not list(data.glob("*.geojson")) and not (data / "owners").exists()
    assert not [p for p in (data / "inbox").iterdir()]  # nothing stored for a refused upload, no .part left


def test_inbox_sidecar_with_a_bad_user_fails_the_batch(real: Path, storage: Storage, instance: dg.DagsterInstance,
                                                       tmp_path: Path) -> None:
    """A hand-written sidecar naming a user outside the data directory: the batch fails, nothing is read there."""
    secret = tmp_path / "secret"  # where owners/local/users/../../../secret/ would lead
    secret.mkdir()
    (secret / "config.json").write_text(json.dumps({"unitMeasurement": "METRIC", "cleanupStandardGeojson": False}))
    storage.inbox.mkdir(parents=True)
    for name, user in (("traversal", TRAVERSAL), ("listed", ["a", "b"])):
        make_zip(storage.inbox / f"{name}.zip", {JD_WHEAT_ZIP: real / MONTANA / JD_WHEAT_ZIP})
        (storage.inbox / f"{name}.json").write_text(json.dumps({"leafUserId": user, "provider": "JohnDeere",
                                                                "batchId": "../../lake/x"}))
    _run_pipeline(storage, instance)
    batches = {b["fileName"]: b for b in storage.records.many("batches")}
    assert set(batches) == {"traversal.zip", "listed.zip"}
    for name, batch in batches.items():
        assert batch["status"] == "FAILED" and batch["leafFiles"] == [], batch
        assert "leafUserId" in batch["statusDetails"] and "is not valid" in batch["statusDetails"]
    assert not storage.records.many("files")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "secret"]
    assert sorted(p.name for p in secret.iterdir()) == ["config.json"]
    assert not list(storage.inbox.glob("*.zip"))  # taken out of the inbox, not left to be picked up again


def test_inbox_sidecar_provider_is_one_of_leafs(real: Path, storage: Storage, instance: dg.DagsterInstance) -> None:
    """A sidecar's provider is checked like the API's: Leaf's spelling kept whatever the case, else the batch
    fails naming the allowed providers and no file is read."""
    storage.inbox.mkdir(parents=True)
    for name, provider in (("known", "johndeere"), ("unknown", "Deere Ops")):
        make_zip(storage.inbox / f"{name}.zip", {JD_WHEAT_ZIP: real / MONTANA / JD_WHEAT_ZIP})
        (storage.inbox / f"{name}.json").write_text(json.dumps({"leafUserId": "grower-1", "provider": provider}))
    _run_pipeline(storage, instance)
    batches = {b["fileName"]: b for b in storage.records.many("batches")}
    assert batches["known.zip"]["status"] == "PROCESSED" and batches["known.zip"]["provider"] == "JohnDeere"
    refused = batches["unknown.zip"]
    assert refused["status"] == "FAILED" and refused["leafFiles"] == []
    assert refused["statusDetails"].startswith("provider must be one of Other, Leaf,")
    assert refused["statusDetails"].endswith("not 'Deere Ops'")
    assert [r["batchId"] for r in storage.records.many("files")] == [batches["known.zip"]["id"]]


def _multipart(parts: list[tuple[str, bytes, bytes | None]], boundary: str = "leafboundary") -> tuple[bytes, dict]:
    """Parts in the order given: (field name, content, raw filename or None)."""
    body = b""
    for name, content, filename in parts:
        disposition = f'form-data; name="{name}"'.encode() + (b'; filename="' + filename + b'"' if filename is not None else b"")
        body += f"--{boundary}\r\n".encode() + b"Content-Disposition: " + disposition + b"\r\n\r\n" + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_former_server_errors_are_400s(server: Server, tmp_path: Path) -> None:
    alice = server.client(ALICE)
    zipped = make_zip(tmp_path / "up" / "a.zip", {"a.txt": "x"}).read_bytes()

    # form fields after the file part are read like those before it
    body, headers = _multipart([("file", zipped, b"late.zip"), ("leafUserId", b"grower-2", None), ("provider", b"Other", None)])
    late = alice.post(f"{BASE}/batch", content=body, headers=headers)
    assert late.status_code == 200 and late.json()["leafUserId"] == "grower-2" and late.json()["fileName"] == "late.zip"
    # file names: long ones up to 255 bytes are kept as the user's name, longer ones and control characters refused
    for name, expected in ((b"n" * 251 + b".zip", 200), (b"n" * 300 + b".zip", 400), (b"a\x00b.zip", 400),
                           (b"a\nb.zip", 400), ("\u00e9t\u00e9.zip".encode(), 200)):
        body, headers = _multipart([("file", zipped, name)])
        response = alice.post(f"{BASE}/batch", params={"leafUserId": "g", "provider": "Other"}, content=body, headers=headers)
        if expected == 200:
            assert response.status_code == 200 and response.json()["fileName"] == name.decode(), response.text
        else:
            assert "file name" in _error(response)
    # a page past every integer SQL knows: an empty page
    huge = str(2**63 - 1)
    for path in ("/files", "/batch", "/files/outsideFieldGeojson"):
        response = alice.get(f"{BASE}{path}", params={"page": huge})
        assert response.status_code == 200, response.text
        assert response.json() in ([], {"operations": []})
    assert "page" in _error(alice.get(f"{BASE}/files", params={"page": "-1"}))
    # FastAPI's own validation, unknown routes and auth answer in the same shape
    assert _error(alice.patch(CONFIG, json=[1, 2])).startswith("body")
    assert _error(alice.patch(CONFIG, content=b"{not json", headers={"Content-Type": "application/json"}))
    _error(alice.get("/services/nothing/here"), 404)
    _error(server.client().get(f"{BASE}/files"), 401)
    _error(server.client().get(f"{BASE}/files", headers={"Authorization": "Bearer \u00e9".encode("latin-1")}), 401)
    _error(alice.get(f"{BASE}/files/not-a-uuid"), 404)


def _hold_catalog(path: Path, seconds: float, reopen_every: float | None) -> subprocess.Popen:
    """Another process holding leaf.duckdb read-write for `seconds` (reopening it every `reopen_every`)."""
    script = f"""
import time, duckdb
end = time.time() + {seconds}
while time.time() < end:
    con = duckdb.connect({str(path)!r})
    print("held", flush=True)
    time.sleep({reopen_every or seconds})
    con.close()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("reopen_every", [None, 0.3])
def test_lists_never_wait_for_the_catalog_lock(server: Server, tmp_path: Path, reopen_every: float | None) -> None:
    alice = server.client(ALICE)
    zipped = make_zip(tmp_path / "up" / "a.zip", {"a.txt": "x"}).read_bytes()
    alice.post(f"{BASE}/batch", params={"leafUserId": "g", "provider": "Other"}, files={"file": ("a.zip", zipped)})
    storage = Storage(tmp_path / "data")
    refresh_catalog(storage)
    holder = _hold_catalog(storage.catalog_path, 8, reopen_every)
    try:
        answers = [alice.get(f"{BASE}/batch").status_code for _ in range(60)]
    finally:
        holder.kill()
        holder.wait()
    assert answers == [200] * 60
    storage.catalog_path.write_bytes(b"not a DuckDB file")  # lists do not open the catalog file at all
    assert alice.get(f"{BASE}/batch").status_code == 200


def _parts(storage: Storage) -> list[str]:
    return sorted(p.name for p in storage.inbox.glob(".*.part"))


class SlowUpload(threading.Thread):
    """An upload that sends its head, then waits for `release` before sending the rest."""

    def __init__(self, server: Server, release: threading.Event, size: int = 200_000):
        super().__init__(daemon=True)
        self.server, self.release, self.size = server, release, size
        self.status: int | str | None = None

    def run(self) -> None:
        boundary = "slowboundary"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.zip"\r\n\r\n').encode()

        def body():
            yield head + b"PK\x03\x04" + b"\0" * 1000
            self.release.wait(60)
            yield b"\0" * self.size
            yield f"\r\n--{boundary}--\r\n".encode()

        try:
            response = self.server.client(ALICE).post(
                f"{BASE}/batch", params={"leafUserId": "g", "provider": "Other"}, content=body(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            self.status = response.status_code
        except httpx.HTTPError as exc:
            self.status = type(exc).__name__


def _wait_for(condition, seconds: float = 20) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_unfinished_uploads_are_removed_but_never_a_live_one(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    storage.inbox.mkdir(parents=True)
    (storage.inbox / ".0123abcd.part").write_bytes(b"PK\x03\x04" + b"\0" * 4096)  # left by an API killed earlier
    first = Server(storage.root)
    servers = [first]
    try:
        assert _parts(storage) == []  # removed at start
        release = threading.Event()
        live = SlowUpload(first, release)
        live.start()
        assert _wait_for(lambda: len(_parts(storage)) == 1)
        servers.append(Server(storage.root))  # a second API on the same data directory sweeps at its start
        assert len(_parts(storage)) == 1  # ... but the live upload's .part is locked: kept
        release.set()
        live.join(60)
        assert live.status == 200 and _parts(storage) == []

        # kill -9 mid-upload: the .part stays until an API starts again (or sweeps, every minute)
        stuck = SlowUpload(first, threading.Event())
        stuck.start()
        assert _wait_for(lambda: len(_parts(storage)) == 1)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        stuck.join(30)
        assert len(_parts(storage)) == 1
        servers.append(Server(storage.root))
        assert _parts(storage) == []
    finally:
        for s in servers:
            s.stop()


def test_a_stalled_upload_is_refused_after_the_idle_timeout(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    server = Server(storage.root, LEAF_API_UPLOAD_IDLE_SECONDS="1")
    try:
        release = threading.Event()
        stalled = SlowUpload(server, release)
        stalled.start()
        assert _wait_for(lambda: len(_parts(storage)) == 1)
        assert _wait_for(lambda: not _parts(storage), 10)  # refused after 1 s of silence, its .part removed
        release.set()
        stalled.join(30)
        assert stalled.status in (400, "WriteError", "RemoteProtocolError", "ReadError")
        assert not list(storage.inbox.glob("*.zip"))
    finally:
        server.stop()


def test_failures_show_the_users_names_and_no_server_paths(real: Path, server: Server, tmp_path: Path) -> None:
    alice = server.client(ALICE)
    storage = Storage(tmp_path / "data")
    garbage = b"not a shapefile at all " * 20
    shapes = make_zip(tmp_path / "up" / "broken-shapes.zip", {"yield.shp": garbage, "yield.shx": garbage, "yield.dbf": garbage})
    broken = tmp_path / "up" / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 64)  # looks like a zip, is not one
    shapes_batch = _upload(alice, shapes, "grower-3", "Other")
    broken_batch = _upload(alice, broken, "grower-3", "Other")
    with dg.instance_for_test() as instance:
        _run_pipeline(storage, instance)

    failed = alice.get(f"{BASE}/batch/{broken_batch['id']}").json()
    assert failed["status"] == "FAILED" and failed["statusDetails"].startswith("broken.zip"), failed
    stored = storage.records.get("batches", broken_batch["id"])["storedName"]
    assert stored not in failed["statusDetails"] and stored.removesuffix(".zip") not in json.dumps(failed)

    (file_id,) = alice.get(f"{BASE}/batch/{shapes_batch['id']}").json()["leafFiles"]
    record = storage.records.get("files", file_id)
    raw = record["steps"]["rawGeojson"]
    assert raw["status"] == "failed" and raw["message"] == "Failed to convert file on provider batch processing"
    assert "yield.shp" in raw["details"]["reason"], raw  # the reason names the file, not where it lies
    shown = json.dumps([record["steps"], storage.records.section("files", file_id, "status"),
                        alice.get(f"{BASE}/batch/{shapes_batch['id']}/status").json(),
                        alice.get(f"{BASE}/files/{file_id}").json(), failed])
    assert str(tmp_path) not in shown and "original/" not in shown and "/batches/" not in shown, shown


def test_a_data_directory_with_spaces_is_cut_from_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path pattern stops at white space; the data directory's own prefix is removed before it."""
    root = tmp_path / "leaf data"
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    message = public_message(f"cannot open {root}/files/ab/original/yield.shp: not a shapefile (lb/ac)")
    assert message == "cannot open yield.shp: not a shapefile (lb/ac)"
