"""Fields, merges, retries, batch status and file listing (the query layer and its CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely

from leaf_dagster.config import save
from leaf_dagster.fields import add_boundaries, list_fields
from leaf_dagster.objects import uncovered_files
from leaf_dagster.errors import MergeError, QueryError
from leaf_dagster.objects import batch_status
from leaf_dagster.defs.in_process import merge_files, process_upload, retry_batch
from leaf_dagster.query import FILE_SORT_FIELDS, list_batches, list_files
from leaf_dagster.storage import Storage

from .conftest import JD_WHEAT, MONTANA, RECORD_STORES, REPO, make_zip, records_in

YE = "FarmerB_YE_YLD_2014_sec1west"
YL18 = "FarmerI_YL18_YLD_2018_henrys"
BOUNDARIES = ["sec1west_bbox", "sec1east_bbox", "sec35mid_bbox", "millview_bbox", "henrys_bbox"]


class World:
    def __init__(self, real: Path, root: Path):
        self.real, self.root = real, root
        self.storage = Storage(root / "data")
        save(self.storage, {"enableOutsideFieldGeojson": True}, leaf_user_id="mt")
        self.instance_cm = dg.instance_for_test()
        self.instance = self.instance_cm.__enter__()
        for name in BOUNDARIES:
            add_boundaries(self.storage, "mt", real / MONTANA / f"{name}.zip")
        self.results = {}
        for name in (JD_WHEAT, YE, YL18):
            self.results[name] = process_upload(real / MONTANA / f"{name}.zip", self.storage, self.instance,
                                                leaf_user_id="mt", provider="JohnDeere" if name == JD_WHEAT else "AgLeader")
        planting = make_zip(root / "ohio.zip", {"asplanted.gpkg": real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg"})
        self.results["ohio-mt"] = process_upload(planting, self.storage, self.instance, leaf_user_id="mt", provider="AgLeader")
        self.results["ohio-oh"] = process_upload(planting, self.storage, self.instance, leaf_user_id="oh", provider="Other")

    def file(self, key: str) -> dict:
        return self.storage.records.get("files", self.results[key]["files"][0]["id"])


@pytest.fixture(scope="module", params=RECORD_STORES)
def world(real: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """The files and fields every test here reads, with the records in SQLite and again in PostgreSQL."""
    with records_in(request.param):
        w = World(real, tmp_path_factory.mktemp("query"))
        yield w
        w.instance_cm.__exit__(None, None, None)


def _boundary(world: World, name: str) -> gpd.GeoDataFrame:
    folder = world.root / "b" / name
    with zipfile.ZipFile(world.real / MONTANA / f"{name}.zip") as zf:
        zf.extractall(folder)
    return pyogrio.read_dataframe(next(p for p in folder.rglob("*.shp") if "__MACOSX" not in p.parts)).to_crs(4326)


def test_fields_match_the_right_files(world: World) -> None:
    fields = {f["name"].split(" #")[0]: f for f in list_fields(world.storage, "mt")}
    by_source: dict[str, set[str]] = {}
    for f in list_fields(world.storage, "mt"):
        by_source.setdefault(f["name"].split(" #")[0], set()).update(f["files"])
    assert world.file(JD_WHEAT)["id"] in by_source["sec1west_bbox"]
    assert world.file(YE)["id"] in by_source["sec1west_bbox"]
    assert world.file(YL18)["id"] in by_source["henrys_bbox"]
    assert world.file(JD_WHEAT)["fields"] == [f["id"] for f in list_fields(world.storage, "mt")
                                               if f["name"].startswith("sec1west_bbox")]
    assert not by_source["millview_bbox"] and not by_source["sec35mid_bbox"]
    assert len(fields) == 5  # boundary files; sec35mid_bbox holds two polygons


def test_a_file_far_from_every_field_is_uncovered(world: World) -> None:
    assert uncovered_files(world.storage, "mt") == [world.file("ohio-mt")["id"]]


def test_outside_field_points_are_exactly_those_outside_every_boundary(world: World) -> None:
    boundaries = pd.concat([_boundary(world, n) for n in BOUNDARIES])
    union = shapely.union_all(boundaries.geometry.to_numpy())
    for key in (JD_WHEAT, YE, YL18):
        record = world.file(key)
        points = world.storage.read_geoparquet("standard", record["id"])
        inside = shapely.contains_xy(union, points.geometry.x.to_numpy(), points.geometry.y.to_numpy()) | \
            shapely.touches(union, points.geometry.to_numpy())
        assert record["outsideField"]["featureCount"] == int((~inside).sum())
        geojson = gpd.read_file(world.storage.root / record["outsideField"]["path"])
        assert len(geojson) == int((~inside).sum())
    assert world.file("ohio-mt")["outsideField"]["featureCount"] == 6382  # all of it: far from every field


def test_adding_a_boundary_later_updates_existing_files(world: World) -> None:
    assert uncovered_files(world.storage, "oh") == [world.file("ohio-oh")["id"]]
    (field,) = add_boundaries(world.storage, "oh", world.real / "carpentries-ohio-planting-nh3" / "boundary.gpkg")
    assert uncovered_files(world.storage, "oh") == []
    assert world.file("ohio-oh")["fields"] == [field["id"]]


def test_merge_two_harvest_files(world: World) -> None:
    a, b = world.file(JD_WHEAT), world.file(YE)
    merged = merge_files(world.storage, world.instance, [a["id"], b["id"]])
    assert merged["status"] == "processed" and merged["origin"] == "merged" and merged["sources"] == [a["id"], b["id"]]
    assert merged["pointCount"] == a["pointCount"] + b["pointCount"]
    sa = world.storage.records.section("files", a["id"], "summary")["summary"]["properties"]
    sb = world.storage.records.section("files", b["id"], "summary")["summary"]["properties"]
    sm = world.storage.records.section("files", merged["id"], "summary")["summary"]["properties"]
    for key in ("totalWetMass", "totalDryMass", "totalDryVolume", "totalArea"):
        assert sa[key]["unit"] == sb[key]["unit"] == sm[key]["unit"]
        assert sm[key]["value"] == pytest.approx(sa[key]["value"] + sb[key]["value"], rel=1e-9), key


@pytest.mark.parametrize("case,rule", [("types", "same operationType"), ("users", "same leafUserId"),
                                       ("one", "two or more"), ("missing", "not found")])
def test_merge_refusals_name_the_rule(world: World, case: str, rule: str) -> None:
    ids = {"types": [world.file(JD_WHEAT)["id"], world.file("ohio-mt")["id"]],
           "users": [world.file("ohio-mt")["id"], world.file("ohio-oh")["id"]],
           "one": [world.file(JD_WHEAT)["id"]], "missing": [world.file(JD_WHEAT)["id"], "nope"]}[case]
    with pytest.raises(MergeError, match=rule):
        merge_files(world.storage, world.instance, ids)


@pytest.mark.usefixtures("records_store")
def test_retry_reprocesses_only_what_failed(real: Path, tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    upload = make_zip(tmp_path / "mixed.zip", {
        "area2.csv": real / "csiro-pyprecag-yield-csv" / "area2_yield_ISO-8859-1.csv",
        "planted.gpkg": real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg"})
    with dg.instance_for_test() as instance:
        first = process_upload(upload, storage, instance, leaf_user_id="rt", provider="Other")
        by_name = {f["fileName"]: f for f in first["files"]}
        good, bad = by_name["planted"], by_name["area2"]
        assert good["status"] == "processed" and bad["status"] == "failed"
        status = batch_status(storage, storage.records.get("batches", first["batch"]["id"]))
        assert status["converted"]["leafFiles"] == [good["id"]]
        assert status["failed"]["standardGeojson"]["leafFiles"] == [bad["id"]]
        assert status["failed"]["standardGeojson"]["message"] == "no points passed the filter"

        # the cause: this CSV names no crop; accept unknown crops for this user, then retry
        from leaf_dagster.config import DEFAULT_CLEANUP_RULES

        save(storage, {"cleanupRules": {k: v for k, v in DEFAULT_CLEANUP_RULES.items() if k != "crop"}}, leaf_user_id="rt")
        good_before = storage.records.get("files", good["id"])["updatedTime"]
        result = retry_batch(storage, instance, first["batch"]["id"])
        runs = {fid: len(instance.get_runs(dg.RunsFilter(job_name="process_file", tags={"dagster/partition": fid})))
                for fid in (good["id"], bad["id"])}
    assert runs == {good["id"]: 0, bad["id"]: 1}  # both ran in the upload's run, the failed one again on its own
    assert [f["id"] for f in result["files"]] == [bad["id"]]
    assert storage.records.get("files", good["id"])["updatedTime"] == good_before
    assert storage.records.get("files", bad["id"])["status"] == "processed"
    assert result["batch"]["status"] == "PROCESSED"
    assert batch_status(storage, storage.records.get("batches", first["batch"]["id"]))["failed"] == {}


def _all(world: World) -> list[dict]:
    return [r for r in world.storage.records.many("files")]


@pytest.mark.parametrize("name,value,predicate", [
    ("leafUserId", "oh", lambda r: r["leafUserId"] == "oh"),
    ("provider", "JohnDeere", lambda r: r["provider"] == "JohnDeere"),
    ("status", "processed", lambda r: r["status"] == "processed"),
    ("origin", "uploaded", lambda r: r["origin"] == "uploaded"),
    ("operationType", "planted", lambda r: r.get("operationType") == "planted"),
    ("fileFormat", "GEOPACKAGE", lambda r: r["fileFormat"] == "GEOPACKAGE"),
    ("minArea", "100000", lambda r: (r.get("areaM2") or 0) >= 100000),
    ("startTime", "2017-01-01T00:00:00.000Z", lambda r: r.get("startTime") and r["startTime"] >= "2017-01-01"),
    ("operationStartTime", "2017-01-01T00:00:00.000Z", lambda r: r.get("startTime") and r["startTime"] >= "2017-01-01"),
    ("endTime", "2018-01-01T00:00:00.000Z", lambda r: r.get("endTime") and r["endTime"] <= "2018-01-01"),
    ("operationEndTime", "2018-01-01T00:00:00.000Z", lambda r: r.get("endTime") and r["endTime"] <= "2018-01-01"),
    ("createdTime", "2000-01-01T00:00:00Z", lambda r: True),
    ("updatedTime", "2999-01-01T00:00:00Z", lambda r: False),
    ("standard", "true", lambda r: (r.get("steps") or {}).get("standardGeojson", {}).get("status") == "processed"),
    ("organizationId", "430701", lambda r: False),
    ("providerFileId", "x", lambda r: False),
])
def test_every_list_filter(world: World, name: str, value: str, predicate) -> None:
    expected = sorted(r["id"] for r in _all(world) if predicate(r))
    page = list_files(world.storage, size=100, **{name: value})
    assert sorted(f["id"] for f in page.items) == expected and page.total == len(expected)


def test_id_filters(world: World) -> None:
    record = world.file(YE)
    assert [f["id"] for f in list_files(world.storage, fileId=record["id"]).items] == [record["id"]]
    assert [f["id"] for f in list_files(world.storage, batchId=record["batchId"]).items] == [record["id"]]


@pytest.mark.parametrize("field", FILE_SORT_FIELDS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_sort_orders(world: World, field: str, direction: str) -> None:
    records = _all(world)
    present = [r for r in records if r.get(field) is not None]
    absent = [r for r in records if r.get(field) is None]
    ordered = sorted(sorted(present, key=lambda r: r["id"]), key=lambda r: r[field], reverse=direction == "desc")
    ordered += sorted(absent, key=lambda r: r["id"])
    page = list_files(world.storage, size=100, sort=[f"{field},{direction}"])
    got = [f.get(field) for f in page.items]
    assert got == [r.get(field) for r in ordered]


def test_multi_key_sort_and_pages(world: World) -> None:
    records = sorted(_all(world), key=lambda r: (r["leafUserId"], -int(r.get("sizeInBytes") or 0)))
    everything = list_files(world.storage, size=100, sort=["leafUserId,asc", "sizeInBytes,desc"]).items
    assert [f["id"] for f in everything] == [r["id"] for r in records]
    total = len(records)
    pages = [list_files(world.storage, page=p, size=2, sort=["leafUserId", "sizeInBytes,desc"]) for p in range(total // 2 + 2)]
    assert [f["id"] for p in pages for f in p.items] == [r["id"] for r in records]
    assert [len(p.items) for p in pages] == [2] * (total // 2) + [total % 2] * (total % 2) + [0] * (2 - total % 2)
    assert all(p.total == total for p in pages)
    assert len(list_files(world.storage).items) == min(20, total)  # default size
    assert list_files(world.storage, size=100, page=1).items == []


@pytest.mark.parametrize("kwargs,message", [
    ({"sort": ["nope,asc"]}, "cannot sort by 'nope'"), ({"sort": ["id,sideways"]}, "asc or desc"),
    ({"size": 101}, "between 1 and 100"), ({"size": 0}, "between 1 and 100"), ({"page": -1}, "page must be"),
    ({"page": "x"}, "whole numbers"), ({"createdTime": "yesterday"}, "ISO 8601"),
    ({"startTime": "2024-13-45T00:00:00Z"}, "not a valid date"), ({"status": "done"}, "status must be one of"),
    ({"operationType": "mowing"}, "operationType must be"), ({"minArea": "big"}, "minArea must be"),
    ({"standard": "maybe"}, "standard must be true or false")])
def test_bad_list_parameters(world: World, kwargs: dict, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        list_files(world.storage, **kwargs)


def test_batch_listing(world: World) -> None:
    batches = list_batches(world.storage, size=100)
    assert batches.total == 5
    assert {b["leafUserId"] for b in list_batches(world.storage, leafUserId="oh").items} == {"oh"}
    newest_first = list_batches(world.storage, size=100, sort=["uploadTimestamp,desc"]).items
    assert [b["uploadTimestamp"] for b in newest_first] == sorted((b["uploadTimestamp"] for b in newest_first), reverse=True)
    with pytest.raises(QueryError):
        list_batches(world.storage, status="DONE")


def _cli(world: World, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"LEAF_DATA_DIR": str(world.storage.root)}
    return subprocess.run([sys.executable, "-m", "leaf_dagster.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)


def test_cli_mirrors_the_endpoints(world: World) -> None:
    record = world.file(JD_WHEAT)
    listed = json.loads(_cli(world, "files", "list", "--leafUserId", "mt", "--operationType", "harvested", "--json").stdout)
    assert listed["totalCount"] == len([r for r in _all(world) if r["leafUserId"] == "mt"
                                        and r.get("operationType") == "harvested"])
    assert json.loads(_cli(world, "files", "units", record["id"], "--json").stdout)["wetMassPerArea"] == "lb/ac"
    summary = json.loads(_cli(world, "files", "summary", record["id"], "--json").stdout)
    assert summary["type"] == "Feature" and summary["geometry"]["type"] == "MultiPolygon"
    assert json.loads(_cli(world, "files", "uncovered", "--leaf-user-id", "mt", "--json").stdout) == \
        {"files": [world.file("ohio-mt")["id"]]}
    outside = json.loads(_cli(world, "files", "outside-field", record["id"], "--json").stdout)
    assert outside["featureCount"] == record["outsideField"]["featureCount"]
    status = json.loads(_cli(world, "batch", "status", record["batchId"], "--json").stdout)
    assert status["converted"]["leafFiles"] == [record["id"]]
    assert json.loads(_cli(world, "batch", "show", record["batchId"], "--json").stdout)["leafFiles"] == [record["id"]]
    fields = json.loads(_cli(world, "fields", "list", "--leaf-user-id", "mt", "--json").stdout)
    assert len(fields) == 6  # sec35mid_bbox holds two polygons
    bad = _cli(world, "files", "list", "--size", "101")
    assert bad.returncode == 2 and "between 1 and 100" in bad.stderr
    refused = _cli(world, "files", "merge", record["id"], world.file("ohio-mt")["id"])
    assert refused.returncode == 2 and "same operationType" in refused.stderr
