"""Crop resolution: names in several languages, John Deere crop ids learnt from the corpus, the file's own
figures; a John Deere yield export without its metadata JSON; a merged file's list of crops; the
non-blocking plausibility check as Dagster records it.

Expected values are recomputed here from the source DBF columns (pyogrio) with Leaf's formulas written out.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import dagster as dg
import numpy as np
import pyogrio
import pytest
from dagster._core.event_api import PartitionKeyFilter

from leaf_dagster.catalog import query
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.defs.in_process import merge_files, process_upload
from leaf_dagster.readers import read_machine_file
from leaf_dagster.standard import crops
from leaf_dagster.standard.standardize import standardize
from leaf_dagster.storage import Storage

from .conftest import MONTANA, make_zip

JD_HARVEST_ZIP = "jd-opscenter-shapefile-exports-2016/Export From MyJohnDeere - Harvest.zip"
JD_STEM = "Merriweather Farms-JT-01-Soybeans"
SOYBEANS_LB_PER_BU = 60.0  # Leaf's crop table


@pytest.mark.parametrize("name,leaf", [
    ("Raps", "rapeseed"), ("Potatis", "potatoes"), ("Weizen", "wheat"), ("Gerste", "barley"), ("Mais", "corn"),
    ("Maïs", "corn"), ("MAÏS", "corn"), ("Hvete", "wheat"), ("soja", "soybeans"), ("blé", "wheat"), ("BLE", "wheat"),
    ("trigo", "wheat"), ("milho", "corn"), ("Höstvete", "winter wheat"), ("cebada", "barley"), ("avoine", "oats"),
    ("wheat (hrd rd wtr)", "wheat"), ("WHEAT_HRD_RD_SPR", "wheat"), ("Wheat (Hrd Rd Spr)", "wheat"),
    ("CORN WHITE", "corn, white"), ("Soybeans", "soybeans"), ("OATS", "oats"), ("maize", "corn"), ("ww", "winter wheat"),
])
def test_names_in_any_language_resolve_to_leaf_names(name: str, leaf: str) -> None:
    crop, evidence = crops.resolve_crop(name)
    assert crop == leaf and name in evidence
    assert crops.fold(crop) in crops.table()  # always one of Leaf's own names


@pytest.mark.parametrize("name", ["Brawl CLP", "174", "", "Tank Mix"])
def test_non_crops_are_not_guessed(name: str) -> None:
    crop, evidence = crops.resolve_crop(name)
    assert crop is None and "not a crop" in evidence


def test_name_table_keeps_leaf_figures() -> None:
    """Every translation points at a Leaf crop; a synonym of a Leaf name never changes density or moisture."""
    table = crops.table()
    for key, (leaf, _) in crops.names().items():
        assert crops.fold(leaf) in table, leaf
        if key in table and crops.names()[key][1] != "a monitor abbreviation":
            a, b = table[key], table[crops.fold(leaf)]
            assert (a.density_lb_per_bu, a.standard_moisture_pct) == (b.density_lb_per_bu, b.standard_moisture_pct), key


def _deere_sets(roots: list[Path], tmp: Path) -> list[tuple[str, dict, set[str]]]:
    """(zip, metadata JSON, the shapefile's Crop values) for every Deere-Metadata.json in the corpora."""
    found = []
    for root in roots:
        for archive in sorted(root.rglob("*.zip")):
            with zipfile.ZipFile(archive) as zf:
                if not any(n.endswith("-Deere-Metadata.json") and "__MACOSX" not in n for n in zf.namelist()):
                    continue
                folder = tmp / archive.stem
                zf.extractall(folder)
            for meta in folder.rglob("*-Deere-Metadata.json"):
                if "__MACOSX" in meta.parts:
                    continue
                dbf = meta.with_name(meta.name.replace("-Deere-Metadata.json", ".dbf"))
                table = pyogrio.read_dataframe(dbf, read_geometry=False)
                codes = {str(int(v)) for v in table["Crop"].dropna().unique()} if "Crop" in table.columns else set()
                found.append((archive.name, json.loads(meta.read_text(encoding="utf-8-sig")), codes))
    return found


def test_john_deere_code_table_is_what_the_corpus_says(real: Path, real2: Path, tmp_path: Path) -> None:
    sets = [s for s in _deere_sets([real, real2], tmp_path) if s[2]]
    assert len(sets) == 4  # Oats, Wheat seeding (real); Soybeans harvest and seeding (real2)
    learnt = set()
    for archive, meta, codes in sets:
        for code in codes:
            hit = crops.resolve_code(crops.JOHN_DEERE, code)
            assert hit is not None, (archive, code)
            assert hit.crop.name == crops.resolve_crop(meta["CropToken"])[0], (archive, code)
            assert meta["CropToken"] in hit.evidence
            learnt.add(code)
    # the one entry not backed by a metadata JSON is backed by its export's name (Client-Farm-Field-Crop)
    assert set(c for _, c in crops.codes()) - learnt == {"26"}
    wheat_dbf = pyogrio.read_dataframe(_extract(real / MONTANA / "FarmerB Farms Inc.-FarmerB Family LLC-sec 1 west-Wheat "
                                                "(Hrd Rd Wtr)-1.zip", tmp_path / "w", ".dbf"), read_geometry=False)
    assert set(wheat_dbf["Crop"].unique()) == {26}
    assert crops.resolve_code(crops.JOHN_DEERE, 26).crop.name == crops.resolve_crop("Wheat (Hrd Rd Wtr)")[0]


def _extract(archive: Path, folder: Path, suffix: str) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    return next(p for p in folder.rglob(f"*{suffix}") if "__MACOSX" not in p.parts)


def test_crop_from_the_file_name_and_from_the_files_own_numbers() -> None:
    hit, _ = crops.from_file_name("Merriweather Farms-JT-01-Soybeans")
    assert hit.crop.name == "soybeans"
    assert crops.from_file_name("FarmerB_YE_YLD_2014_sec1west") == (None, None)
    none, reason = crops.from_file_name("2019 corn then soybeans")
    assert none is None and "several crops" in reason
    # 60 lb/bu at 13.5 % standard moisture: only wheat classes in Leaf's table, so wheat
    hit, _ = crops.infer_crop(crops.Figures(60.0, 13.5, "test"))
    assert hit.crop.name == "wheat" and hit.evidence.startswith("inferred")
    # 60 lb/bu at 13 %: soybeans and lentils alike, so the numbers do not decide
    none, reason = crops.infer_crop(crops.Figures(60.01, 13.0, "test"))
    assert none is None and "lentils" in reason and "soybeans" in reason


def test_figures_of_an_sms_export_give_wheat(real: Path, tmp_path: Path) -> None:
    """Ag Leader SMS yield with wet/dry mass and volume: density and standard moisture from its own columns."""
    src = pyogrio.read_dataframe(_extract(real / MONTANA / "FarmerI_YL18_YLD_2018_henrys.zip", tmp_path, ".dbf"),
                                 read_geometry=False)
    figures = crops.file_figures(src["yld_mss_w"].to_numpy(), src["yld_vl_w"].to_numpy(), src["yld_mss_d"].to_numpy(),
                                 src["yld_vl_d"].to_numpy(), src["mostr__"].to_numpy())
    assert figures.density_lb_per_bu == pytest.approx(float(np.median(src["yld_mss_w"] / src["yld_vl_w"])), abs=0.01)
    shrunk = (src["yld_mss_d"] / src["yld_mss_w"] - 1).abs() > 1e-4
    standard = 100 - (100 - src["mostr__"][shrunk]) * src["yld_mss_w"][shrunk] / src["yld_mss_d"][shrunk]
    assert figures.standard_moisture_pct == pytest.approx(float(standard.median()), abs=0.1)
    hit, _ = crops.infer_crop(figures)
    assert hit.crop.name == "wheat"  # the export's product column says "Wheat"


class Harvests:
    """The real2 John Deere soybean harvest as exported, without its metadata JSON, without it and renamed,
    and with its widths multiplied by ten; and a corn text export to merge with. Leaf's default cleanup is on."""

    def __init__(self, real: Path, real2: Path, root: Path):
        self.storage = Storage(root / "data")
        original = real2 / JD_HARVEST_ZIP
        folder = root / "jd"
        with zipfile.ZipFile(original) as zf:
            zf.extractall(folder)
        self.dbf = pyogrio.read_dataframe(folder / "doc" / f"{JD_STEM}.dbf", read_geometry=False)
        shp = {p.suffix: p for p in (folder / "doc").iterdir() if p.stem == JD_STEM}
        no_json = make_zip(root / "up" / "no-json.zip", {f"doc/{JD_STEM}{s}": p for s, p in shp.items()})
        renamed = make_zip(root / "up" / "renamed.zip", {f"harvest_export{s}": p for s, p in shp.items()})
        wide = pyogrio.read_dataframe(shp[".shp"])
        wide["SWATHWIDTH"] = wide["SWATHWIDTH"] * 10
        wide = wide.set_geometry(wide.geometry.force_2d())  # GDAL writes no NaN Z
        (root / "wide").mkdir()
        pyogrio.write_dataframe(wide, root / "wide" / "wide_export.shp")
        wide_zip = make_zip(root / "up" / "wide.zip", {p.name: p for p in (root / "wide").iterdir()})
        corn = make_zip(root / "up" / "corn.zip", {"sample3.txt": real / "yieldcleanr-agleader-text" / "sample3.txt"})
        self.instance_cm = dg.instance_for_test()
        self.instance = self.instance_cm.__enter__()
        self.files = {}
        for key, upload in (("original", original), ("no-json", no_json), ("renamed", renamed), ("wide", wide_zip),
                            ("corn", corn)):
            result = process_upload(upload, self.storage, self.instance, leaf_user_id="g", provider="JohnDeere")
            (self.files[key],) = result["files"]

    def record(self, key: str) -> dict:
        return self.storage.records.get("files", self.files[key]["id"])

    def standard(self, key: str):
        return self.storage.read_geoparquet("standard", self.files[key]["id"])


@pytest.fixture(scope="module")
def harvests(real: Path, real2: Path, tmp_path_factory: pytest.TempPathFactory):
    h = Harvests(real, real2, tmp_path_factory.mktemp("harvests"))
    yield h
    h.instance_cm.__exit__(None, None, None)


@pytest.mark.parametrize("key", ["no-json", "renamed"])
def test_deere_export_without_metadata_keeps_its_crop(harvests: Harvests, key: str) -> None:
    src = harvests.dbf
    record = harvests.record(key)
    assert record["status"] == "processed", record.get("steps")
    assert record["crops"] == ["soybeans"]
    assert any("174 is the John Deere crop id of SOYBEANS" in n for n in record["notes"])
    # Leaf's default cleanup keeps points with a moisture in (0, 100), positive wet mass (so a positive area) and
    # a known crop: with crop 174 resolved every such point stays.
    area = src["SWATHWIDTH"] * src["DISTANCE"]
    kept = (src["Moisture"] > 0) & (src["Moisture"] < 100) & (src["WetMass"] > 0) & (area > 0)
    assert record["pointCount"] == int(kept.sum())
    std = harvests.standard(key)
    # VRYIELDVOL is the monitor's own dry bu/ac; soybeans weigh 60 lb/bu (Leaf's table), so dry lb/ac follow
    assert std["dryVolumePerArea"].mean() == pytest.approx(src["VRYIELDVOL"][kept].mean(), rel=1e-9)
    assert std["dryMassPerArea"].mean() == pytest.approx((src["VRYIELDVOL"][kept] * SOYBEANS_LB_PER_BU).mean(), rel=1e-9)
    assert std["wetMassPerArea"].mean() == pytest.approx(src["WetMass"][kept].mean(), rel=1e-9)
    assert std["wetVolumePerArea"].mean() == pytest.approx((src["WetMass"][kept] / SOYBEANS_LB_PER_BU).mean(), rel=1e-9)
    assert not np.allclose(std["dryMassPerArea"], std["wetMassPerArea"])  # a crop, so dry is not wet
    # the same standard values as the export with its metadata JSON
    original = harvests.standard("original")
    assert len(std) == len(original)
    assert std["dryMassPerArea"].to_numpy() == pytest.approx(original["dryMassPerArea"].to_numpy(), rel=1e-12)


def test_merged_file_lists_its_crops(harvests: Harvests) -> None:
    a, b = harvests.files["original"], harvests.files["corn"]
    assert harvests.record("corn")["crops"] == ["corn"]
    merged = merge_files(harvests.storage, harvests.instance, [a["id"], b["id"]])
    assert merged["status"] == "processed"
    assert merged["crops"] == ["corn", "soybeans"]
    std = harvests.storage.read_geoparquet("standard", merged["id"])
    assert std["crop"].value_counts().to_dict() == {"corn": harvests.record("corn")["pointCount"],
                                                    "soybeans": harvests.record("original")["pointCount"]}


def _plausibility(harvests: Harvests, key: str):
    file_id = harvests.files[key]["id"]
    check = dg.AssetCheckKey(dg.AssetKey("standardGeojson"), "plausibility")
    records = harvests.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [check], partition_filter=PartitionKeyFilter(key=file_id))
    evaluation = records[check].event.dagster_event.event_specific_data
    return evaluation, harvests.record(key)


def test_plausibility_warns_without_stopping_the_file(harvests: Harvests) -> None:
    ok, record = _plausibility(harvests, "original")
    assert ok.passed and ok.severity == dg.AssetCheckSeverity.WARN
    width_m = float(np.median(harvests.dbf["SWATHWIDTH"])) * 6 * 0.3048  # six 5 ft sections logged at once
    assert ok.metadata["working_width_m"].value == pytest.approx(width_m, rel=0.01)
    spacing = ok.metadata["pass_spacing_m"].value
    assert 0.8 < width_m / spacing < 1.25  # a combine's passes lie about a header width apart
    wide, record = _plausibility(harvests, "wide")
    assert record["status"] == "processed"  # a warning, not a failure
    assert not wide.passed and wide.severity == dg.AssetCheckSeverity.WARN
    assert wide.metadata["width_to_spacing"].value == pytest.approx(10 * width_m / spacing, rel=0.05)
    assert "between neighbouring passes" in wide.description
    assert record["plausibility"]["findings"] == [wide.description]
    _, rows = query(harvests.storage, "select cast(json_extract(plausibility, '$.figures.width_to_spacing') as double) "
                                      f"from files where id = '{record['id']}'")
    assert rows[0][0] == wide.metadata["width_to_spacing"].value  # the figures are in SQL too


def test_an_application_is_not_given_the_crop_its_product_is_named_after(real2: Path, tmp_path: Path) -> None:
    """'Corn Rescue' is a tank mix sprayed on the Merriweather soybeans: the file name names the product."""
    with zipfile.ZipFile(real2 / "jd-opscenter-shapefile-exports-2016" / "Export From MyJohnDeere - Application.zip") as zf:
        zf.extractall(tmp_path)
    (detected,) = [d for d in detect_machine_files(tmp_path) if "Corn Rescue" in d.name]
    source = read_machine_file(detected)
    source.hints["fileName"] = detected.name
    result = standardize(source)
    assert result.operation_type == "applied" and result.crop is None and "crop" not in result.frame.columns


def test_crop_inferred_when_nothing_names_it(real: Path, tmp_path: Path) -> None:
    """The Ag Leader SMS yield export without its product column ("Wheat") and under a neutral name: the last
    step of the chain infers wheat from the file's own figures and says so; values are the original's."""
    with zipfile.ZipFile(real / MONTANA / "FarmerI_YL18_YLD_2018_henrys.zip") as zf:
        zf.extractall(tmp_path)
    (detected,) = detect_machine_files(tmp_path)
    original = standardize(read_machine_file(detected))
    source = read_machine_file(detected)
    source.frame = source.frame.drop(columns=["product"])
    source.hints["fileName"] = "export 7"
    result = standardize(source)
    assert result.crop == original.crop == "wheat"
    assert any(n.startswith("crop wheat, inferred: wet mass / wet volume = 60.0 lb/bu") for n in result.notes)
    for prop in ("dryMassPerArea", "wetVolumePerArea", "dryMass"):
        assert result.frame[prop].to_numpy() == pytest.approx(original.frame[prop].to_numpy(), rel=1e-12, nan_ok=True)
