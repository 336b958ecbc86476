"""Filtered points, summary, units, images, polygons and configurations, on real harvest files.

Everything runs with Leaf's default configuration unless a test sets a user's configuration, and every
figure is recomputed here from the standard points (or the source) with code independent of the pipeline.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from PIL import Image

from leaf_dagster.catalog import query
from leaf_dagster.config import save
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.storage import Storage

from .conftest import JD_OATS, JD_WHEAT, MONTANA, make_zip

HARVEST = {JD_WHEAT: "sec1west_bbox", JD_OATS: "millview_bbox", "FarmerI_YL18_YLD_2018_henrys": "henrys_bbox",
           "FarmerB_YE_YLD_2014_sec1west": "sec1west_bbox", "sample1": None, "sample4": None}
FT = 0.3048


class Derived:
    def __init__(self, real: Path, root: Path):
        self.real = real
        self.storage = Storage(root / "data")
        self.root = root
        save(self.storage, {"enablePolygonOutput": True})
        save(self.storage, {"unitMeasurement": "METRIC"}, leaf_user_id="metric-user")
        save(self.storage, {"unitMeasurement": "IMPERIAL"}, leaf_user_id="imperial-user")
        uploads = [real / MONTANA / f"{name}.zip" for name in HARVEST if name.startswith(("Farmer",))]
        uploads.append(make_zip(root / "text.zip", {f"{n}.txt": real / "yieldcleanr-agleader-text" / f"{n}.txt"
                                                    for n in ("sample1", "sample4")}))
        uploads.append(make_zip(root / "csv.zip", {"area2.csv": real / "csiro-pyprecag-yield-csv" / "area2_yield_ISO-8859-1.csv"}))
        self.files: dict[tuple[str, str], dict] = {}
        with dg.instance_for_test() as instance:
            for upload in uploads:
                for f in process_upload(upload, self.storage, instance, leaf_user_id="grower", provider="Other")["files"]:
                    self.files[("grower", f["fileName"])] = f
            for user in ("metric-user", "imperial-user"):
                for f in process_upload(real / MONTANA / f"{JD_WHEAT}.zip", self.storage, instance, leaf_user_id=user,
                                        provider="JohnDeere")["files"]:
                    self.files[(user, f["fileName"])] = f

    def id(self, name: str, user: str = "grower") -> str:
        return self.files[(user, name)]["id"]

    def standard(self, name: str, user: str = "grower") -> gpd.GeoDataFrame:
        return self.storage.read_geoparquet("standard", self.id(name, user))

    def record(self, name: str, user: str = "grower") -> dict:
        return self.storage.records.get("files", self.id(name, user))

    def summary(self, name: str, user: str = "grower") -> dict:
        return self.storage.records.section("files", self.id(name, user), "summary")["summary"]

    def boundary_area(self, bbox: str) -> float:
        with zipfile.ZipFile(self.real / MONTANA / f"{bbox}.zip") as zf:
            zf.extractall(self.root / bbox)
        shp = next(p for p in (self.root / bbox).rglob("*.shp") if "__MACOSX" not in p.parts)
        frame = pyogrio.read_dataframe(shp)
        return float(frame.to_crs(frame.estimate_utm_crs()).area.sum())


@pytest.fixture(scope="module")
def d(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Derived:
    return Derived(real, tmp_path_factory.mktemp("derived"))


def _rectangles(std: gpd.GeoDataFrame, units: dict) -> gpd.GeoSeries:
    """Each point's swath, built here from first principles: width across, distance back along heading."""
    to_m = {"ft": FT, "m": 1.0, "in": 0.0254}
    utm = std.estimate_utm_crs()
    p = std.geometry.to_crs(utm)
    w = std["equipmentWidth"].to_numpy() * to_m[units["equipmentWidth"]]
    length = std["distance"].to_numpy() * to_m[units["distance"]]
    h = np.radians(std["heading"].to_numpy()) if "heading" in std else None
    if h is None:
        dx, dy = np.diff(p.x, prepend=np.nan), np.diff(p.y, prepend=np.nan)
        h = np.arctan2(dx, dy)
        h[0] = h[1]
    x, y = p.x.to_numpy(), p.y.to_numpy()
    lines = shapely.linestrings(np.stack([np.stack([x - np.sin(h) * length, y - np.cos(h) * length], -1),
                                          np.stack([x, y], -1)], axis=1))
    swaths = shapely.buffer(lines, w / 2, cap_style="flat")
    return gpd.GeoSeries(np.where(length > 0, swaths, None), crs=utm)


@pytest.mark.parametrize("name", list(HARVEST))
def test_summary_totals_and_coverage(d: Derived, name: str) -> None:
    std, record, summary = d.standard(name), d.record(name), d.summary(name)
    props = summary["properties"]
    for column, key in (("wetMass", "totalWetMass"), ("dryMass", "totalDryMass"), ("dryVolume", "totalDryVolume"),
                        ("area", "totalArea"), ("distance", "totalDistance")):
        assert props[key]["value"] == pytest.approx(std[column].sum(), rel=1e-3), key
        assert props[key]["unit"] == record["units"][column]
    for column in ("harvestMoisture", "wetMassPerArea", "dryVolumePerArea", "equipmentWidth"):
        assert props[column]["avg"] == pytest.approx(std[column].mean(), rel=1e-3), column
        assert props[column]["min"] == pytest.approx(std[column].min(), rel=1e-9)
        assert props[column]["max"] == pytest.approx(std[column].max(), rel=1e-9)
    assert props["crop"] == sorted(std["crop"].unique())
    assert props["startTime"] == record["startTime"]

    geometry = shapely.geometry.shape(summary["geometry"])
    assert geometry.geom_type == "MultiPolygon"
    swaths = _rectangles(std, record["units"])
    union = float(shapely.union_all(swaths.dropna().to_numpy()).area)
    no_overlap = float(swaths.area.sum())
    coverage = props["coverageArea"]["value"]
    assert coverage == pytest.approx(union, rel=0.10)
    assert coverage <= no_overlap * 1.02
    if HARVEST[name]:
        assert coverage < d.boundary_area(HARVEST[name])
    outline = gpd.GeoSeries([geometry], crs=4326).to_crs(swaths.crs).iloc[0]
    assert outline.area == pytest.approx(coverage, rel=0.05)


def test_cleanup_counts_follow_the_default_rules(d: Derived, real: Path) -> None:
    src = pyogrio.read_dataframe(f"/vsizip/{real / MONTANA / JD_OATS}.zip/{JD_OATS}.shp")
    valid = (src["Moisture"] > 0) & (src["Moisture"] < 100) & (src["WetMass"] > 0) & (src["DISTANCE"] * src["SWATHWIDTH"] > 0)
    assert d.record(JD_OATS)["pointCount"] == int(valid.sum()) < len(src)


def test_all_points_failing_cleanup(d: Derived) -> None:
    # this SMS CSV names no crop, and Leaf's default rules drop points whose crop is unknown
    status = d.record("area2")["steps"]
    assert status["standardGeojson"]["status"] == "failed"
    assert status["standardGeojson"]["message"] == "no points passed the filter"
    for step in ("filteredGeojson", "summary", "units", "propertiesPNGs", "zippedPNGs"):
        assert status[step]["status"] == "skipped"


def test_filtered_points(d: Derived) -> None:
    std = d.standard("FarmerI_YL18_YLD_2018_henrys")
    filtered = d.storage.read_geoparquet("filtered", d.id("FarmerI_YL18_YLD_2018_henrys"))
    speed_ok = std["speed"] * 0.44704 >= 0.5  # mi/h -> m/s
    v = std.loc[speed_ok, "wetVolumePerArea"]
    inlier = (std["wetVolumePerArea"] - v.mean()).abs() <= 3 * v.std(ddof=0)
    assert len(filtered) == int((speed_ok & inlier).sum()) < len(std)
    assert (filtered["speed"] * 0.44704 >= 0.5).all()


def test_imperial_and_metric_agree(d: Derived) -> None:
    metric, imperial = d.standard(JD_WHEAT, "metric-user"), d.standard(JD_WHEAT, "imperial-user")
    mu, iu = d.record(JD_WHEAT, "metric-user")["units"], d.record(JD_WHEAT, "imperial-user")["units"]
    assert (mu["wetMassPerArea"], iu["wetMassPerArea"]) == ("t/ha", "lb/ac")
    assert (mu["distance"], iu["distance"]) == ("m", "ft")
    assert (mu["dryVolume"], iu["dryVolume"]) == ("m3", "bu")
    lb_ac_in_t_ha = 0.45359237 / 1000 / (43560 * FT * FT / 10_000)
    assert np.allclose(metric["wetMassPerArea"], imperial["wetMassPerArea"] * lb_ac_in_t_ha, rtol=1e-9)
    assert np.allclose(metric["distance"], imperial["distance"] * FT, rtol=1e-9)
    assert np.allclose(metric["dryVolume"], imperial["dryVolume"] * 0.03523907016688, rtol=1e-9)
    assert np.allclose(metric["area"], imperial["area"] * 43560 * FT * FT / 10_000, rtol=1e-9)  # ha vs ac
    ms, ims = d.summary(JD_WHEAT, "metric-user")["properties"], d.summary(JD_WHEAT, "imperial-user")["properties"]
    assert ms["totalWetMass"]["value"] == pytest.approx(ims["totalWetMass"]["value"] * 0.45359237 / 1000, rel=1e-9)
    assert ms["totalWetMass"]["unit"] == "t" and ims["totalWetMass"]["unit"] == "lb"
    for user in ("metric-user", "imperial-user"):
        frame = d.standard(JD_WHEAT, user)
        _, rows = query(d.storage, f"select property, unit from units where fileId = '{d.id(JD_WHEAT, user)}'")
        numeric = {c for c in frame.columns if c != "file_id" and pd.api.types.is_numeric_dtype(frame[c])} - {"sectionId"}
        assert numeric <= dict(rows).keys()


def test_property_png_colours_and_georeference(d: Derived) -> None:
    file_id = d.id(JD_WHEAT)
    images = {i["property"]: i for i in d.storage.records.section("files", file_id, "images")["images"]}
    image = images["wetMassPerArea"]
    png = d.storage.root / image["path"]
    rgba = np.asarray(Image.open(png).convert("RGBA"))
    filtered = d.storage.read_geoparquet("filtered", file_id)
    values = filtered["wetMassPerArea"].to_numpy()
    assert image["min"] == values.min() and image["max"] == values.max()
    opaque = rgba[..., 3] == 255
    assert (rgba[~opaque, 3] == 0).all() and (~opaque).any()  # no-value pixels fully transparent
    colours = {tuple(c) for c in rgba[opaque][:, :3]}
    assert (200, 0, 0) in colours and (0, 130, 0) in colours  # ramp ends: minimum red, maximum green
    tree = ET.parse(str(png) + ".aux.xml")
    gt = [float(v) for v in tree.findtext("GeoTransform").split(",")]
    from pyproj import CRS

    crs = CRS.from_wkt(tree.findtext("SRS"))
    pts = filtered.geometry.to_crs(crs)
    col = ((pts.x - gt[0]) / gt[1]).astype(int)
    row = ((pts.y - gt[3]) / gt[5]).astype(int)
    assert col.between(0, rgba.shape[1] - 1).all() and row.between(0, rgba.shape[0] - 1).all()
    # the pixel under each point's swath is painted (points sit on the front edge of their swath)
    assert opaque[row.clip(0, rgba.shape[0] - 1), col.clip(0, rgba.shape[1] - 1)].mean() > 0.8
    with zipfile.ZipFile(d.storage.images_dir(file_id) / "images.zip") as zf:
        assert {f"{p}.png" for p in images} | {f"{p}.png.aux.xml" for p in images} == set(zf.namelist())


def test_polygon_output(d: Derived) -> None:
    file_id = d.id(JD_WHEAT)
    polygons = d.storage.read_geoparquet("polygons", file_id)
    std = d.standard(JD_WHEAT)
    assert len(polygons) == int((std["distance"] > 0).sum())
    utm = polygons.estimate_utm_crs()
    expected = (std.loc[std["distance"] > 0, "equipmentWidth"] * std.loc[std["distance"] > 0, "distance"]).to_numpy() * FT * FT
    assert np.allclose(polygons.to_crs(utm).area.to_numpy(), expected, rtol=1e-3)
    assert {"wetMassPerArea", "harvestMoisture", "timestamp"} <= set(polygons.columns)
    import pyarrow.parquet as pq

    for table in ("standard", "polygons"):
        geo = json.loads(pq.read_metadata(d.storage.parquet_path(table, file_id)).metadata[b"geo"])
        column = geo["columns"][geo["primary_column"]]
        assert geo["version"] == "1.1.0" and "bbox" in column["covering"]
        assert column["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}


def test_sql_views(d: Derived) -> None:
    for view in ("filtered_points", "summaries", "units", "images", "polygons", "standard_points", "file_status"):
        _, rows = query(d.storage, f"select count(*) from {view}")
        assert rows[0][0] > 0, view
    _, rows = query(d.storage, "select count(distinct step) from file_status")
    assert rows[0][0] == 8


def test_configuration_change_applies_on_rematerialisation(d: Derived, real: Path, tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    upload = real / MONTANA / f"{JD_WHEAT}.zip"
    with dg.instance_for_test() as instance:
        before = process_upload(upload, storage, instance, leaf_user_id="u", provider="JohnDeere")["files"][0]
        save(storage, {"cleanupStandardGeojson": False}, leaf_user_id="u")
        from leaf_dagster.defs.in_process import load_definitions
        from leaf_dagster.defs.run_status import record_file_status

        job = load_definitions(storage).resolve_job_def("process_file")
        assert job.execute_in_process(partition_key=before["id"], instance=instance).success
        after = record_file_status(instance, storage, before["id"])
    assert before["pointCount"] < after["pointCount"] == 18400


def test_metric_crs_is_the_zone_geopandas_estimates(real: Path) -> None:
    """The UTM zone from the longitude band equals GeoPandas' estimate (a query of PROJ's database) for fields
    all over the world, both hemispheres and zone edges, and for the real harvest files."""
    from leaf_dagster.derived.geometry import metric_crs

    rng = np.random.default_rng(7)
    lons = np.concatenate([rng.uniform(-179.9, 179.9, 100), np.arange(-177.0, 180.0, 6.0) + 0.01])
    lats = np.concatenate([rng.uniform(-79.0, 83.0, 100), rng.uniform(-60.0, 70.0, 60)])
    for lon, lat in zip(lons, lats):
        field = gpd.GeoSeries([shapely.box(lon - 0.004, lat - 0.003, lon + 0.004, lat + 0.003)], crs=4326)
        assert metric_crs(field) == field.estimate_utm_crs(), (lon, lat)
    for name in (JD_WHEAT, JD_OATS):
        with zipfile.ZipFile(real / MONTANA / f"{name}.zip") as zf:
            shp = next(n for n in zf.namelist() if n.endswith(".shp"))
        frame = gpd.read_file(f"zip://{real / MONTANA / name}.zip!{shp}")
        assert metric_crs(frame) == frame.estimate_utm_crs()
