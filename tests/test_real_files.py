"""Every real shapefile, GeoPackage and CSV/text set, ingested through the whole Dagster pipeline.

Each set is uploaded as a zip and processed by the same assets the daemon runs. The checks recompute
values straight from the source columns (read here with pyogrio/pandas, converted with plain factors
written in the test) and compare them with the standard output.
"""

from __future__ import annotations

import math
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest

from leaf_dagster.config import save
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.status import STEP_ORDER
from leaf_dagster.storage import Storage

from .conftest import JD_OATS, JD_WHEAT, MONTANA, make_zip

FT2_PER_AC = 43560.0
M2_PER_FT2 = 0.09290304
M2_PER_IN2 = 0.00064516
JD_SEEDING = "FarmerC Hill Farms-FarmerC Hill Farms-Millview-Wheat (Hrd Rd Spr) seeding"


class Processed:
    """All real sets processed once into one data directory."""

    def __init__(self, real: Path, root: Path):
        self.real = real
        self.storage = Storage(root / "data")
        # Ingestion is checked point for point against the source, so Leaf's cleanup of invalid points is
        # off here (tests/test_derived.py covers it with the defaults).
        save(self.storage, {"cleanupStandardGeojson": False})
        self.sources = root / "sources"
        uploads = [real / MONTANA / p.name for p in sorted((real / MONTANA).glob("*.zip"))]
        uploads.append(make_zip(root / "up" / "protein.zip", {"SEC 1 WEST_SN1228_2019.csv": real / MONTANA / "SEC 1 WEST_SN1228_2019.csv"}))
        for folder in ("yieldcleanr-agleader-text", "csiro-pyprecag-yield-csv", "carpentries-ohio-planting-nh3"):
            files = {p.name: p for p in sorted((real / folder).iterdir()) if p.name != "SOURCE.md"}
            uploads.append(make_zip(root / "up" / f"{folder}.zip", files))
        with dg.instance_for_test() as instance:
            self.results = [process_upload(u, self.storage, instance, leaf_user_id="grower-1", provider="Other")
                            for u in uploads]
        self.files = {f["fileName"]: f for r in self.results for f in r["files"]}

    def file(self, name: str) -> dict:
        return self.files[name]

    def standard(self, name: str) -> gpd.GeoDataFrame:
        return self.storage.read_geoparquet("standard", self.files[name]["id"])

    def source(self, zip_name: str, member_suffix: str = ".shp") -> gpd.GeoDataFrame:
        """Read a source shapefile straight from its zip, independently of the pipeline."""
        folder = self.sources / zip_name
        if not folder.exists():
            with zipfile.ZipFile(self.real / MONTANA / f"{zip_name}.zip") as zf:
                zf.extractall(folder)
        shp = next(p for p in folder.rglob(f"*{member_suffix}") if "__MACOSX" not in p.parts)
        return pyogrio.read_dataframe(shp)


@pytest.fixture(scope="module")
def done(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Processed:
    return Processed(real, tmp_path_factory.mktemp("real"))


def _processed(done: Processed, name: str, operation: str, points: int) -> gpd.GeoDataFrame:
    f = done.file(name)
    assert f["status"] == "processed", f["steps"]
    assert f["operationType"] == operation
    assert f["pointCount"] == points
    assert list(f["steps"]) == STEP_ORDER
    frame = done.standard(name)
    assert len(frame) == points
    return frame


def _present(frame: pd.DataFrame, *props: str) -> None:
    for prop in props:
        assert prop in frame.columns and frame[prop].notna().any(), prop


HARVEST_REQUIRED = ("crop", "harvestMoisture", "wetMass", "dryMass", "wetMassPerArea", "dryMassPerArea",
                    "area", "distance", "timestamp")


def test_john_deere_wheat_yield(done: Processed) -> None:
    std = _processed(done, JD_WHEAT, "harvested", 18400)
    _present(std, *HARVEST_REQUIRED, "wetVolume", "dryVolume", "wetVolumePerArea", "dryVolumePerArea")
    src = done.source(JD_WHEAT)
    # John Deere's defaults (no metadata JSON in this export): WetMass lb/ac, DISTANCE/SWATHWIDTH ft.
    assert std["wetMassPerArea"].mean() == pytest.approx(src["WetMass"].mean(), rel=1e-9)
    area_ac = src["SWATHWIDTH"] * src["DISTANCE"] / FT2_PER_AC
    assert std["wetMass"].sum() == pytest.approx((src["WetMass"] * area_ac).sum(), rel=1e-6)
    assert std["area"].sum() == pytest.approx((src["SWATHWIDTH"] * src["DISTANCE"]).sum() * M2_PER_FT2, rel=1e-9)
    # VRYIELDVOL is dry bu/ac; wheat weighs 60 lb/bu.
    assert std["dryMassPerArea"].mean() == pytest.approx(src["VRYIELDVOL"].mean() * 60, rel=1e-9)
    assert std["crop"].unique().tolist() == ["wheat"]  # "Wheat (Hrd Rd Wtr)" in the export name: Leaf's wheat
    first = pd.Timestamp(src["IsoTime"].min())
    assert std["timestamp"].min() == first
    assert done.file(JD_WHEAT)["startTime"] == "2019-08-16T18:52:48.000Z"


def test_john_deere_oats_units_from_metadata_json(done: Processed) -> None:
    std = _processed(done, JD_OATS, "harvested", 97383)
    _present(std, *HARVEST_REQUIRED)
    src = done.source(JD_OATS)
    record = done.storage.records.get("files", done.file(JD_OATS)["id"])
    assert record["units"]["wetMassPerArea"] == "lb/ac"  # "lb1ac-1" in the Deere-Metadata.json
    assert record["units"]["dryVolumePerArea"] == "bu/ac"  # "bu1ac-1"
    assert record["units"]["elevation"] == "ft"
    assert std["wetMassPerArea"].mean() == pytest.approx(src["WetMass"].mean(), rel=1e-9)
    # oats: 32 lb/bu
    assert std["wetVolumePerArea"].mean() == pytest.approx(src["WetMass"].mean() / 32, rel=1e-9)
    assert std["harvestMoisture"].mean() == pytest.approx(src["Moisture"].mean(), rel=1e-9)
    assert std["originalOperationType"].unique().tolist() == ["Harvest"]
    assert std["crop"].unique().tolist() == ["oats"]


def test_john_deere_seeding_with_shortened_column_names(done: Processed) -> None:
    std = _processed(done, JD_SEEDING, "planted", 23047)
    _present(std, "crop", "seedRate", "seedRateTarget", "area", "distance")
    src = done.source(JD_SEEDING)
    record = done.storage.records.get("files", done.file(JD_SEEDING)["id"])
    assert record["units"]["seedRate"] == "lb/ac"
    assert std["seedRate"].mean() == pytest.approx(src["AppldRt"].mean(), rel=1e-9)
    assert std["seedRateTarget"].mean() == pytest.approx(src["TargtRt"].mean(), rel=1e-9)
    assert std["area"].sum() == pytest.approx((src["SWATHWI"] * src["DISTANC"]).sum() * M2_PER_FT2, rel=1e-9)
    assert std["crop"].unique().tolist() == ["wheat"]  # CropToken WHEAT_HRD_RD_SPR, Crop id 25


def _polygon_area(src: gpd.GeoDataFrame) -> float:
    assert src.crs is not None and src.crs.is_projected  # UTM 12N: areas straight from the source
    return float(src.geometry.area.sum())


def test_as_applied_polygons_john_deere_style(done: Processed) -> None:
    name = "FarmerB_AA1617_POLY_AA_N_sec35middle"
    std = _processed(done, name, "applied", 5802)
    _present(std, "appliedRate", "products", "area", "timestamp")
    src = done.source(name)
    assert std["appliedRate"].mean() == pytest.approx(src["vrappratev"].mean(), rel=1e-9)
    assert std["area"].sum() == pytest.approx(_polygon_area(src), rel=1e-3)
    assert {p[0]["name"] for p in std["products"]} == {"unknown"}
    # every point lies on its own polygon (distance 0, allowing for the WGS84 round trip)
    distance = std.geometry.to_crs(src.crs).distance(src.geometry.reset_index(drop=True))
    assert distance.max() < 0.01


def test_as_applied_polygons_sms_urea(done: Processed) -> None:
    name = "FarmerI_AA16_AA_N_2016_henrys"
    std = _processed(done, name, "applied", 2360)
    _present(std, "appliedRate", "products", "area")
    src = done.source(name)
    assert std["appliedRate"].sum() == pytest.approx(src["rt_apd_ms_"].sum(), rel=1e-9)
    assert {p[0]["name"] for p in std["products"]} == {"Urea"}
    assert std["area"].sum() == pytest.approx(_polygon_area(src), rel=1e-3)
    # no time in this export: honest nulls, and the file says so
    assert std["timestamp"].isna().all()
    assert "the source has no usable time" in done.storage.records.get("files", done.file(name)["id"])["notes"]


def test_sms_yield_postgis_abbreviations(done: Processed) -> None:
    name = "FarmerI_YL18_YLD_2018_henrys"
    std = _processed(done, name, "harvested", 31276)
    _present(std, *HARVEST_REQUIRED, "wetVolumePerArea", "dryVolumePerArea")
    src = done.source(name)
    assert std["wetMassPerArea"].mean() == pytest.approx(src["yld_mss_w"].mean(), rel=1e-9)
    assert std["dryVolumePerArea"].mean() == pytest.approx(src["yld_vl_d"].mean(), rel=1e-9)
    # the monitor's own mass flow: grain mass = flow (lb/s) x duration (s) must match yield x area
    flow_mass = (src["crp_flw_m"] * src["durtn_s"]).sum()
    assert std["wetMass"].sum() == pytest.approx(flow_mass, rel=0.01)
    assert std["speed"].mean() == pytest.approx(src["spd_mp_"].mean(), rel=1e-9)
    assert std["crop"].unique().tolist() == ["wheat"]


def test_yield_editor_output(done: Processed) -> None:
    name = "FarmerB_YE_YLD_2014_sec1west"
    std = _processed(done, name, "harvested", 47872)
    _present(std, *HARVEST_REQUIRED)
    src = done.source(name)
    assert std["dryVolumePerArea"].mean() == pytest.approx(src["yield"].mean(), rel=1e-9)
    wet = src["yield"] * 60 * (100 - 13.5) / (100 - src["moistur"])  # winter wheat: 60 lb/bu, 13.5 %
    assert std["wetMassPerArea"].mean() == pytest.approx(wet.mean(), rel=1e-9)
    assert std["area"].sum() == pytest.approx((src["swth_w_"] * src["dist_in"]).sum() * M2_PER_IN2, rel=1e-9)
    excel_day0 = datetime(1899, 12, 30, tzinfo=timezone.utc)
    first = excel_day0 + timedelta(days=float(src["gps_tim"].min()))
    assert abs((std["timestamp"].min() - pd.Timestamp(first)).total_seconds()) <= 0.0011  # stored in ms


def test_protein_analyser_csv_is_not_machine_data(done: Processed) -> None:
    f = done.file("SEC 1 WEST_SN1228_2019")
    assert f["status"] == "failed"
    assert f["steps"]["standardGeojson"] == {"status": "failed", "message": "unsupported operation type: unknown"}
    record = done.storage.records.get("files", f["id"])
    assert "grain-quality analyser" in record["evidence"]


@pytest.mark.parametrize("name", ["henrys_bbox", "millview_bbox", "sec1east_bbox", "sec1west_bbox", "sec35mid_bbox",
                                  "area1_onebox_94mga54", "area2_onebox_94mga54", "boundary", "abline", "trial"])
def test_boundaries_and_designs_are_not_operations(done: Processed, name: str) -> None:
    f = done.file(name)
    assert f["status"] == "failed"
    assert f["steps"]["originalFile"]["status"] == "processed"
    assert f["steps"]["rawGeojson"]["status"] == "processed"
    assert f["steps"]["standardGeojson"]["message"] == "unsupported operation type: unknown"


def _agleader_text(done: Processed, name: str) -> pd.DataFrame:
    return pd.read_csv(done.real / "yieldcleanr-agleader-text" / f"{name}.txt", header=None, encoding="latin-1")


@pytest.mark.parametrize("name,points,crop", [("sample1", 21917, "soybeans"), ("sample2", 36869, "corn"),
                                              ("sample3", 31815, "corn"), ("sample4", 19495, "corn, white")])
def test_agleader_text(done: Processed, name: str, points: int, crop: str) -> None:
    std = _processed(done, name, "harvested", points)
    _present(std, *HARVEST_REQUIRED[:-1])
    src = _agleader_text(done, name)
    flow, interval, distance, swath, moisture = src[2], src[4], src[5], src[6], src[7]
    # grain mass per point = flow (lb/s) x interval (s); the standard output spreads it over distance x swath
    assert np.nansum(std["wetMass"]) == pytest.approx((flow * interval)[distance * swath > 0].sum(), rel=1e-6)
    assert std["area"].sum() == pytest.approx((distance * swath).sum() * M2_PER_IN2, rel=1e-9)
    assert std["harvestMoisture"].mean() == pytest.approx(moisture.mean(), rel=1e-9)
    assert std["crop"].unique().tolist() == [crop]


def test_agleader_text_gps_time(done: Processed) -> None:
    std = done.standard("sample1")
    src = _agleader_text(done, "sample1")
    # GPS seconds since 1980-01-06; GPS ran 15 s ahead of UTC in 2010
    first = datetime(1980, 1, 6, tzinfo=timezone.utc) + timedelta(seconds=int(src[3].iloc[0]) - 15)
    assert std["timestamp"].iloc[0] == pd.Timestamp(first)
    # the other samples carry a relative counter: no invented dates
    assert done.standard("sample2")["timestamp"].isna().all()


def test_sms_csv_latin1_metric(done: Processed) -> None:
    name = "area2_yield_ISO-8859-1"
    std = _processed(done, name, "harvested", 1543)
    _present(std, *HARVEST_REQUIRED)
    src = pd.read_csv(done.real / "csiro-pyprecag-yield-csv" / f"{name}.csv", encoding="latin-1")
    record = done.storage.records.get("files", done.file(name)["id"])
    assert record["units"]["dryMassPerArea"] == "t/ha"
    assert std["dryMassPerArea"].mean() == pytest.approx(src["Yld Mass(Dry)(tonne/ha)"].mean(), rel=1e-9)
    assert std["area"].sum() == pytest.approx((src["Swth Wdth(m)"] * src["Distance(m)"]).sum(), rel=1e-9)
    # no crop column: the crop is unknown, so it has no standard moisture and dry repeats wet (Leaf's rule)
    assert std["crop"].unique().tolist() == ["unknown"]
    assert np.allclose(std["wetMassPerArea"], std["dryMassPerArea"])
    tonnes = (src["Yld Mass(Dry)(tonne/ha)"] * src["Swth Wdth(m)"] * src["Distance(m)"] / 10_000).sum()
    assert std["dryMass"].sum() == pytest.approx(tonnes, rel=1e-9)


def test_unknown_monitor_csv_without_units_fails_honestly(done: Processed) -> None:
    f = done.file("area1_yield_ascii_wgs84")
    assert f["operationType"] == "harvested"
    assert f["status"] == "failed"
    assert f["steps"]["standardGeojson"]["message"] == (
        "missing required properties: harvestMoisture, wetMass, dryMass, wetMassPerArea, dryMassPerArea")
    # the step's failure details say why: nothing states the units, and no moisture, width or crop is there
    record = done.storage.records.get("files", f["id"])
    lacks = record["steps"]["standardGeojson"]["details"]["missing_inputs"]
    assert lacks == record["missingInputs"]
    assert "bu/ac, t/ha" in lacks["unit of 'Yield'"]
    assert {"harvestMoisture", "crop", "equipmentWidth"} <= set(lacks)
    raw = done.storage.read_geoparquet("raw", f["id"])
    assert len(raw) == 14756
    src = pd.read_csv(done.real / "csiro-pyprecag-yield-csv" / "area1_yield_ascii_wgs84.csv")
    assert raw["Yield"].mean() == pytest.approx(src["Yield"].mean(), rel=1e-9)
    assert raw.geometry.x.mean() == pytest.approx(src["Lon"].mean(), rel=1e-12)


def test_ohio_planting_geopackage(done: Processed) -> None:
    std = _processed(done, "asplanted", "planted", 6382)
    _present(std, "crop", "seedRate", "seedRateTarget", "variety", "area")
    src = pyogrio.read_dataframe(done.real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg")
    assert std["seedRate"].mean() == pytest.approx(src["Rt_Apd_Ct_"].mean(), rel=1e-9)
    assert std["seedRateTarget"].mean() == pytest.approx(src["Tgt_Rate_k"].mean() * 1000, rel=1e-9)
    assert std["area"].sum() == pytest.approx((src["Swth_Wdth_"] * src["Distance_f"]).sum() * M2_PER_FT2, rel=1e-9)
    assert std["crop"].unique().tolist() == ["corn"]  # DEKALB "DKC" hybrid
    assert std["variety"].unique().tolist() == ["DKC61-54rib"]


def test_ohio_nh3_geopackage(done: Processed) -> None:
    std = _processed(done, "asapplied", "applied", 9913)
    _present(std, "appliedRate", "products", "area")
    src = pyogrio.read_dataframe(done.real / "carpentries-ohio-planting-nh3" / "asapplied.gpkg")
    assert std["appliedRate"].mean() == pytest.approx(src["Rt_Apd_Ms_"].mean(), rel=1e-9)
    assert {p[0]["name"] for p in std["products"]} == {"NH3"}
    assert std["speed"].max() == pytest.approx(src["Speed_mph_"].max(), rel=1e-9)
    assert math.isclose(std.geometry.x.mean(), src.geometry.x.mean(), rel_tol=1e-12)


def test_sql_catalog_sees_every_file(done: Processed) -> None:
    from leaf_dagster.catalog import query

    columns, rows = query(done.storage, "select operationType, count(*) from files where status = 'processed' "
                                        "group by 1 order by 1")
    assert dict(rows) == {"applied": 3, "harvested": 9, "planted": 2}
    _, rows = query(done.storage, "select count(*) from standard_points where operationType = 'planted'")
    assert rows[0][0] == 6382 + 23047
