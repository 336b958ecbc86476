"""What a Leaf client sees of the API beyond the happy path: retries that never strand a batch, validation in
Leaf's 400 shape, the names users gave, Leaf's status vocabulary for merges, and one rule for an owner's files.

One data directory with real files processed in-process (two Ohio planting files of user "g1" through the
local owner, whom the API token "t" names) serves the tests of this module; each test adds what it needs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import dagster as dg
import geopandas as gpd
import httpx
import pytest
import shapely
from fastapi.testclient import TestClient

from leaf_dagster import run_requests
from leaf_dagster.api.app import create_app
from leaf_dagster.cli import main as cli_main
from leaf_dagster.config import effective, save
from leaf_dagster.errors import ConfigError, FieldError
from leaf_dagster.fields import add_boundaries, fields_dir, list_fields
from leaf_dagster.errors import NO_VALID_FILES
from leaf_dagster.objects import STEP_ORDER
from leaf_dagster.defs.in_process import process_upload, retry_batch
from leaf_dagster.model import PROVIDERS
from leaf_dagster.storage import DATA_DIR_ENV, Storage

from .conftest import make_zip

BASE = "/services/operations/api"
FIELDS = "/services/fields/api/users"
CONFIG = "/services/config/api/configs"
OHIO = "carpentries-ohio-planting-nh3"


class World:
    """Two real planting files of g1 (outside-field output on, no boundaries yet) and a failed upload."""

    def __init__(self, real: Path, root: Path):
        self.real, self.root = real, root
        self.storage = Storage(root / "data")
        save(self.storage, {"enableOutsideFieldGeojson": True}, leaf_user_id="g1")
        self.instance_cm = dg.instance_for_test()
        self.instance = self.instance_cm.__enter__()
        planting = real / OHIO / "asplanted.gpkg"
        self.planted = [process_upload(make_zip(root / f"planting-{n}.zip", {f"planted-{n}.gpkg": planting}),
                                       self.storage, self.instance, leaf_user_id="g1", provider="AgLeader")
                        for n in (1, 2)]
        self.refused = process_upload(make_zip(root / "notes.zip", {"notes.txt": "no machine data here"}),
                                      self.storage, self.instance, leaf_user_id="g1", provider="Other")
        self.client = TestClient(create_app(self.storage, tokens={"t": "local", "b": "bob"}),
                                 headers={"Authorization": "Bearer t"})

    def body(self) -> dict:
        """The real Ohio field boundary as a GeoJSON FeatureCollection."""
        return json.loads(gpd.read_file(self.real / OHIO / "boundary.gpkg").to_crs(4326).to_json())


@pytest.fixture(scope="module")
def world(real: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("contract")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(root / "data"))
        w = World(real, root)
        yield w
    w.instance_cm.__exit__(None, None, None)


def _batch_runs(world: World) -> int:
    return world.instance.get_runs_count(dg.RunsFilter(job_name="ingest_batch"))


# -- retry is safe ---------------------------------------------------------------------------------------------
def test_retrying_a_processed_batch_returns_it_unchanged_and_says_so(world: World) -> None:
    batch_id = world.planted[0]["batch"]["id"]
    before = world.storage.records.get("batches", batch_id)
    assert before["status"] == "PROCESSED" and before["processedTimestamp"]
    response = world.client.put(f"{BASE}/batch/{batch_id}/retry")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "PROCESSED" and body["message"] == "nothing to retry: every file of the batch was processed"
    assert world.storage.records.get("batches", batch_id) == before
    assert run_requests.pending(world.storage) == []  # no run asked of the daemon

    runs = world.instance.get_runs_count()
    said: list[str] = []
    result = retry_batch(world.storage, world.instance, batch_id, progress=said.append)  # the CLI's `batch retry`
    assert result["batch"]["status"] == "PROCESSED" and result["files"] == []
    assert said == [f"batch {batch_id}: nothing to retry: every file of the batch was processed"]
    assert world.instance.get_runs_count() == runs
    assert world.storage.records.get("batches", batch_id) == before


def test_retrying_a_refused_upload_keeps_it_failed_with_its_reason(world: World) -> None:
    batch_id = world.refused["batch"]["id"]
    before = world.storage.records.get("batches", batch_id)
    assert before["status"] == "FAILED" and before["statusDetails"] == NO_VALID_FILES and not before["leafFiles"]
    body = world.client.put(f"{BASE}/batch/{batch_id}/retry").json()
    assert body["status"] == "FAILED" and body["statusDetails"] == NO_VALID_FILES
    assert body["message"] == f"nothing to retry: the upload was refused ({NO_VALID_FILES}); a retry would answer the same"
    runs = _batch_runs(world)
    assert retry_batch(world.storage, world.instance, batch_id)["batch"]["statusDetails"] == NO_VALID_FILES
    assert _batch_runs(world) == runs
    assert world.storage.records.get("batches", batch_id) == before and run_requests.pending(world.storage) == []


@pytest.mark.parametrize("batch,runs,message", [
    ({"status": "FAILED", "leafFiles": [], "statusDetails": "x.zip: the batch could not be processed (killed); retry the batch"},
     (True, []), "the upload is processed again"),
    ({"status": "RECEIVED", "leafFiles": [], "statusDetails": None}, (False, []),
     "nothing to retry: the batch is still RECEIVED; retry it once it is PROCESSED or FAILED"),
    ({"status": "FAILED", "leafFiles": [], "statusDetails": "bad", "leafUserId": "../x"}, (False, []),
     "nothing to retry: the upload was refused (leafUserId '../x' is not valid"),
])
def test_what_a_retry_runs(storage: Storage, batch: dict, runs: tuple, message: str) -> None:
    """A lost run is worth running again, a batch in progress or refused for what it holds is not."""
    plan = run_requests.retry_plan(storage, {"id": str(uuid.uuid4()), **batch})
    assert (plan.rerun_batch, plan.file_ids) == runs and plan.message.startswith(message)


# -- validation in Leaf's 400 shape ----------------------------------------------------------------------------
def _upload(world: World, tmp: Path, **kwargs) -> httpx.Response:
    data = make_zip(tmp / "u.zip", {"notes.txt": "x"}).read_bytes()
    files = kwargs.pop("files", {"file": ("u.zip", data, "application/zip")})
    return world.client.post(f"{BASE}/batch", files=files, **kwargs)


@pytest.mark.parametrize("given,stored", [("johndeere", "JohnDeere"), ("CNHI", "CNHI"), (" ravenslingshot", "RavenSlingshot")])
def test_providers_are_leafs_in_leafs_spelling(world: World, tmp_path: Path, given: str, stored: str) -> None:
    response = _upload(world, tmp_path, params={"leafUserId": "g9"}, data={"provider": given})
    assert response.status_code == 200 and response.json()["provider"] == stored
    assert world.storage.records.get("batches", response.json()["id"])["provider"] == stored


def test_an_unknown_provider_is_a_400_naming_leafs(world: World, tmp_path: Path) -> None:
    inbox = sorted(p.name for p in world.storage.inbox.iterdir())
    response = _upload(world, tmp_path, params={"leafUserId": "g9", "provider": "Deere"})
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("provider must be one of ") and message.endswith("(any case), not 'Deere'")
    assert all(name in message for name in PROVIDERS) and len(PROVIDERS) == 12
    assert sorted(p.name for p in world.storage.inbox.iterdir()) == inbox  # nothing kept
    listed = world.client.get(f"{BASE}/files", params={"provider": "AGLEADER"})
    assert listed.headers["X-Total-Count"] == "2"
    assert world.client.get(f"{BASE}/files", params={"provider": "Deere"}).json()["status"] == 400


@pytest.mark.parametrize("values,message", [
    ({"enablePolygonOutput": "yes"}, 'enablePolygonOutput must be true or false, not "yes"'),
    ({"operationsOutliersLimit": "3"}, 'operationsOutliersLimit must be a number, not "3"'),
    ({"fieldsAttachIntersection": -1}, "fieldsAttachIntersection: Input should be greater than or equal to 0, not -1"),
    ({"cropOptional": {"standardGeoJson": {"planted": {"crop": "maybe"}}}},
     "cropOptional.standardGeoJson.planted.crop: Input should be 'required' or 'optional', not \"maybe\""),
    ({"splitOperationsByField": None}, "splitOperationsByField must be true or false, not null"),
    ({"enablePolygon": True}, "unknown configuration key enablePolygon"),
])
def test_configuration_values_are_type_checked(world: World, values: dict, message: str) -> None:
    before = world.client.get(f"{CONFIG}/g1").json()
    response = world.client.patch(f"{CONFIG}/g1", json=values)
    assert response.status_code == 400 and response.json() == {"status": 400, "message": message}
    assert world.client.get(f"{CONFIG}/g1").json() == before


def test_a_wrong_form_field_is_named(world: World, tmp_path: Path) -> None:
    zipped = make_zip(tmp_path / "u.zip", {"notes.txt": "x"}).read_bytes()
    wrong = _upload(world, tmp_path, params={"leafUserId": "g9", "provider": "Other"},
                    files={"upload": ("u.zip", zipped, "application/zip")})
    assert wrong.json() == {"status": 400, "message": "the zip must be sent in the form field 'file', not 'upload'"}
    long = _upload(world, tmp_path, params={"leafUserId": "g9", "provider": "Other"}, data={"zip": "x" * 5000})
    assert long.status_code == 400 and long.json()["message"] == (
        "form field 'zip' is not one the upload takes: the zip goes in 'file', with leafUserId, provider, fileFormat "
        "as query parameters or form fields")


def test_every_required_query_parameter_missing_is_leafs_400(world: World, tmp_path: Path) -> None:
    required = [(method, path, p["name"]) for path, item in world.client.app.openapi()["paths"].items()
                for method, op in item.items() for p in op.get("parameters", []) if p["in"] == "query" and p["required"]]
    assert ("get", f"{BASE}/files/uncoveredFiles", "leafUserId") in required
    for method, path, name in required:
        response = world.client.request(method.upper(), path.replace("{file_id}", str(uuid.uuid4())))
        assert response.status_code == 400 and response.json() == {"status": 400, "message": f"{name} is required"}
    # the upload takes leafUserId and provider as query parameters or form fields
    no_provider = _upload(world, tmp_path, data={"leafUserId": "g9"})
    assert no_provider.json() == {"status": 400, "message": "provider is required (in the query or the form)"}


# -- names users gave stay -------------------------------------------------------------------------------------
def test_posted_fields_keep_their_names(world: World) -> None:
    geometry = world.body()["features"][0]["geometry"]
    feature = {"type": "Feature", "properties": {"name": "North 40"}, "geometry": geometry}
    leaf_body = {"name": "Home quarter", "geometry": geometry}
    collection = {"type": "FeatureCollection", "name": "Creek farm",
                  "features": [{"type": "Feature", "properties": {"name": "Creek"}, "geometry": geometry},
                               {"type": "Feature", "properties": {}, "geometry": geometry}]}
    names = [[f["name"] for f in world.client.post(f"{FIELDS}/names/fields", json=body).json()]
             for body in (feature, leaf_body, collection, {"type": "Feature", "properties": None, "geometry": geometry})]
    assert names == [["North 40"], ["Home quarter"], ["Creek", "Creek farm #2"], [None]]
    listed = sorted(str(f["name"]) for f in world.client.get(f"{FIELDS}/names/fields").json())
    assert listed == ["Creek", "Creek farm #2", "Home quarter", "None", "North 40"]


def test_a_field_without_a_name_has_the_name_null(world: World, capsys: pytest.CaptureFixture) -> None:
    """Beside a named field of the same body, and alone in its own: null in the API's answers and the CLI's JSON."""
    geometry = world.body()["features"][0]["geometry"]
    both = {"type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": {"name": "Creek"}, "geometry": geometry},
                         {"type": "Feature", "properties": {}, "geometry": geometry}]}
    alone = {"type": "Feature", "properties": {"name": "  "}, "geometry": geometry}
    posted = [f for body in (both, alone) for f in world.client.post(f"{FIELDS}/unnamed/fields", json=body).json()]
    assert [f["name"] for f in posted] == ["Creek", None, None]
    listed = {f["id"]: f for f in world.client.get(f"{FIELDS}/unnamed/fields").json()}
    assert [listed[f["id"]]["name"] for f in posted] == ["Creek", None, None]
    assert all("name" in f for f in listed.values())
    assert cli_main(["fields", "list", "--leaf-user-id", "unnamed", "--json"]) == 0
    printed = {f["id"]: f["name"] for f in json.loads(capsys.readouterr().out)}
    assert printed == {f["id"]: f["name"] for f in posted}


def test_a_refused_boundary_leaves_nothing_behind(world: World, tmp_path: Path) -> None:
    before = sorted(str(p.relative_to(world.storage.root)) for p in world.storage.root.rglob("*"))
    open_ring = {"type": "Polygon", "coordinates": [[[-83, 40], [-83, 40.01], [-82.99, 40.01]]]}
    response = world.client.post(f"{FIELDS}/nobody/fields", json=open_ring)
    assert response.status_code == 400 and response.json()["message"].startswith(
        "the request body: cannot be read as boundaries")
    empty = world.client.post(f"{FIELDS}/nobody/fields", json={"type": "FeatureCollection", "features": []})
    assert empty.json() == {"status": 400, "message": "the body's features must be a non-empty list of GeoJSON Features"}
    not_boundary = tmp_path / "points.geojson"
    not_boundary.write_text(json.dumps({"type": "Point", "coordinates": [-83, 40]}))
    with pytest.raises(FieldError, match="points.geojson: no polygons"):
        add_boundaries(world.storage, "nobody", not_boundary)
    assert sorted(str(p.relative_to(world.storage.root)) for p in world.storage.root.rglob("*")) == before


def test_outside_field_geojson_is_named_by_file_id_and_kind(world: World) -> None:
    file_id = world.planted[0]["files"][0]["id"]
    record = world.storage.records.get("files", file_id)
    assert record["outsideField"]["path"] == f"files/{file_id}/outside_field.geojson"
    response = world.client.get(f"{BASE}/files/{file_id}/outsideFieldGeojson/file")
    geojson = response.json()
    assert geojson["name"] == f"{file_id}-outside-field"
    assert len(geojson["features"]) == record["outsideField"]["featureCount"] == record["pointCount"]  # no fields
    assert not list(world.storage.file_dir(file_id).glob(".*"))  # no temporary file left


def test_a_file_being_merged_is_processing_with_every_step(world: World) -> None:
    ids = [result["files"][0]["id"] for result in world.planted]
    merged = world.client.post(f"{BASE}/files/merge", json={"ids": ids}).json()
    assert merged["status"] == "SENT_TO_MERGE"  # Leaf's answer to the request
    try:
        found = world.client.get(f"{BASE}/files", params={"status": "processing"}).json()["operations"]
        assert [f["id"] for f in found] == [merged["id"]] and found[0]["status"] == "processing"
        status = world.client.get(f"{BASE}/files/{merged['id']}/status").json()
        assert list(status) == STEP_ORDER and len(STEP_ORDER) == 8
        assert all(s == {"status": "processing", "message": ""} for s in status.values())
    finally:  # the other tests see only the two planted files
        with world.storage.records.connect() as con:
            con.execute("DELETE FROM files WHERE id = ?", [merged["id"]])
        for path, _ in run_requests.pending(world.storage):
            path.unlink()


# -- one rule for the files of an owner('s user) ---------------------------------------------------------------
def test_an_owners_files_are_chosen_by_one_rule(storage: Storage, capsys: pytest.CaptureFixture) -> None:
    outside = {"fields": [], "featureCount": 1, "path": "x"}
    for key, owner, user in (("a", None, "g"), ("b", "local", "g"), ("c", "bob", "g"), ("d", "local", "h")):
        fid = str(uuid.uuid5(uuid.NAMESPACE_OID, key))
        storage.records.put_facts("files", fid, {"id": fid, "leafUserId": user, "outsideField": outside,
                                            **({"apiOwnerUsername": owner} if owner else {})})
    keys = {str(uuid.uuid5(uuid.NAMESPACE_OID, k)): k for k in "abcd"}
    assert sorted(keys[r["id"]] for r in storage.records.owner_files("local", "g")) == ["a", "b"]
    assert sorted(keys[r["id"]] for r in storage.records.owner_files("local")) == ["a", "b", "d"]
    assert [keys[r["id"]] for r in storage.records.owner_files("bob")] == ["c"]
    for argv, expected in ((["--leaf-user-id", "g"], ["a", "b"]), (["--owner", "bob"], ["c"]), ([], ["a", "b", "d"])):
        assert cli_main(["files", "outside-field", "--json", *argv]) == 0
        assert sorted(keys[o["id"]] for o in json.loads(capsys.readouterr().out)) == expected


# -- a data directory of the release before API owners ---------------------------------------------------------
def test_a_data_directory_from_before_owners_keeps_its_configurations_and_boundaries(real: Path, storage: Storage) -> None:
    """config/ and fields/ at the top move under owners/: the owner-level configuration to every owner, a
    user's to the owners that uploaded for it (else the local owner), and files are matched to the moved fields."""
    root = storage.root
    (root / "config" / "users").mkdir(parents=True)
    (root / "config" / "owner.json").write_text(json.dumps({"unitMeasurement": "METRIC"}))
    (root / "config" / "users" / "g1.json").write_text(json.dumps({"enablePolygonOutput": True, "splitOperationsByField": False}))
    (root / "config" / "users" / "lone.json").write_text(json.dumps({"operationsOutliersLimit": 2}))
    (root / "config" / "api-tokens.json").write_text(json.dumps({"tok": "alice"}))
    (root / "fields" / "g1").mkdir(parents=True)
    boundary = gpd.read_file(real / OHIO / "boundary.gpkg").to_crs(4326)
    (root / "fields" / "g1" / "home.geojson").write_text(boundary.to_json())
    storage.records.put_facts("batches", "b1", {"id": "b1", "leafUserId": "g1", "apiOwnerUsername": "alice"})
    file_id = str(uuid.uuid4())  # processed by the old release, matched to the field's old id
    storage.records.put_facts("files", file_id, {"id": file_id, "leafUserId": "g1", "apiOwnerUsername": "alice",
                                            "status": "processed", "fields": ["old-field-id"], "uncovered": False})
    inside = boundary.geometry.iloc[0].centroid.buffer(0.0005)
    storage.records.put("files", file_id, "summary", {"summary": {"geometry": shapely.geometry.mapping(inside)}})
    # alice set one value for g1 in the new layout already: it wins
    save_path = storage.user_path("alice", "g1", "config.json")
    save_path.parent.mkdir(parents=True)
    save_path.write_text(json.dumps({"splitOperationsByField": True}))

    alice = effective(storage, "g1", "alice")
    assert (alice["unitMeasurement"], alice["enablePolygonOutput"], alice["splitOperationsByField"]) == ("METRIC", True, True)
    assert effective(storage, None, "local")["unitMeasurement"] == "METRIC"
    assert effective(storage, "lone", "local")["operationsOutliersLimit"] == 2
    assert effective(storage, "g1", "local")["enablePolygonOutput"] is False  # g1 was alice's user
    (field,) = list_fields(storage, "g1", "alice")
    assert field["name"] == "home" and field["files"] == [file_id]
    assert storage.records.get("files", file_id)["fields"] == [field["id"]]
    assert fields_dir(storage, "g1", "alice") == root / "owners" / "alice" / "users" / "g1" / "fields"
    assert sorted(str(p.relative_to(root)) for p in (root / "config").rglob("*")) == ["config/api-tokens.json"]
    assert not (root / "fields").exists()
    assert list_fields(storage, "g1", "local") == []


def test_an_unreadable_configuration_from_before_owners_is_kept_and_named(storage: Storage) -> None:
    legacy = storage.root / "config" / "users" / "g2.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text("{not json")
    with pytest.raises(ConfigError, match=r"^config/users/g2.json cannot be read \(Expecting property name"):
        effective(storage, "g2", "local")
    assert legacy.read_text() == "{not json"
    # another owner, or another user, is not stopped by it (nor told about it)
    assert effective(storage, "g2", "alice")["unitMeasurement"] == "DEFAULT"
    assert effective(storage, "g3", "local")["unitMeasurement"] == "DEFAULT"
