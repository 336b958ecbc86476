"""Real files changed the way real files differ, read through the readers and the standardiser.

Each variant of a real vector, CSV or text set (names in upper or lower case, cut to 10 characters,
shortened by R or PostGIS, in another language, columns reordered, no `.prj`, no metadata JSON, another
delimiter or encoding, a unit converted with its header changed) must give the same standard values as
the original. The expected values are computed here from the source columns with plain factors, never
taken from the pipeline. Every real vector, CSV and text set of both corpora has variants here or in
tests/test_headerless_text.py (the Ag Leader text). The issue-11 classes are built from real files too: an Ag Leader text set saved
as a shapefile by a researcher (class 2), the same columns as a research CSV with short names (class 3),
an as-applied export stripped to its target rate (class 5), a yield file with only a dry volume (class 6).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest

from leaf_dagster.errors import ReaderError
from leaf_dagster.files import FileSteps
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.model import StandardResult
from leaf_dagster.readers import read_machine_file
from leaf_dagster.standard.standardize import standardize

from .conftest import JD_OATS, JD_WHEAT, MONTANA

M2_PER_FT2 = 0.09290304
M2_PER_IN2 = 0.00064516
FT2_PER_AC = 43560.0
M_PER_FT = 0.3048
LB_PER_KG = 1 / 0.45359237
KG_HA_PER_LB_AC = 0.45359237 / (M2_PER_FT2 * FT2_PER_AC / 10_000)
JD2016 = "jd-opscenter-shapefile-exports-2016"
HARVEST_2016 = "Merriweather Farms-JT-01-Soybeans"


def standard_of(folder: Path) -> StandardResult:
    """Detect the one machine file in `folder`, read it and standardise it, as the pipeline's steps do."""
    found = [d for d in detect_machine_files(folder) if not d.unsupported_reason]
    assert len(found) == 1, [d.name for d in found]
    return standardize(read_machine_file(found[0]))


def processed(result: StandardResult, operation: str, points: int) -> gpd.GeoDataFrame:
    assert FileSteps.schema_failure(result) is None, (result.evidence, result.missing, result.missing_inputs)
    assert result.operation_type == operation
    assert len(result.frame) == points
    return result.frame


def write_shapefile(frame: gpd.GeoDataFrame, folder: Path, name: str, prj: bool = True,
                    metadata: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame = frame.set_geometry(frame.geometry.force_2d())  # the JD exports' Z and M are NaN
    pyogrio.write_dataframe(frame, folder / f"{name}.shp", encoding="UTF-8")
    if not prj:
        (folder / f"{name}.prj").unlink()
    if metadata is not None:
        (folder / f"{name}-Deere-Metadata.json").write_text(json.dumps(metadata))
    return folder


def r_abbreviate(name: str, length: int = 7) -> str:
    """R's abbreviate(): drop lower-case vowels from the right, then lower-case letters, then cut."""
    chars = list(name)
    for pattern in ("[aeiou]", "[a-z]"):
        for i in range(len(chars) - 1, 0, -1):
            if len(chars) <= length:
                break
            if re.fullmatch(pattern, chars[i]):
                del chars[i]
    return "".join(chars)[:length]


def postgis_style(name: str) -> str:
    """Lower case, each word's later vowels dropped, words joined by '_' (`WetMass` -> `wt_mss`)."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)
    return "_".join(w[0].lower() + re.sub(r"[aeiou]", "", w[1:].lower()) for w in words)


# ---------------------------------------------------------------- John Deere Operations Center exports

@pytest.fixture(scope="module")
def jd_sources(real: Path, real2: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[gpd.GeoDataFrame, dict | None]]:
    """Source frames (read straight with pyogrio) and metadata JSON of the John Deere exports."""
    root = tmp_path_factory.mktemp("jd")
    out: dict[str, tuple[gpd.GeoDataFrame, dict | None]] = {}
    zips = {"wheat": real / MONTANA / f"{JD_WHEAT}.zip"}
    zips.update({kind: real2 / JD2016 / f"Export From MyJohnDeere - {kind.title()}.zip"
                 for kind in ("harvest", "seeding", "application")})
    for kind, path in zips.items():
        with zipfile.ZipFile(path) as zf:
            zf.extractall(root / kind)
        for shp in sorted((root / kind).rglob("*.shp")):
            if "__MACOSX" in shp.parts:
                continue
            sidecar = shp.with_name(shp.stem + "-Deere-Metadata.json")
            key = kind if kind != "application" else shp.stem.split("-")[-1].strip()
            out[key] = (pyogrio.read_dataframe(shp), json.loads(sidecar.read_text()) if sidecar.exists() else None)
    return out


def _harvest_oracle(src: pd.DataFrame) -> dict[str, float]:
    area_ft2 = src["SWATHWIDTH"] * src["DISTANCE"]
    return {"area": float(area_ft2.sum() * M2_PER_FT2), "wetMassPerArea": float(src["WetMass"].mean()),
            "dryVolumePerArea": float(src["VRYIELDVOL"].mean()), "harvestMoisture": float(src["Moisture"].mean()),
            "wetMass": float((src["WetMass"] * area_ft2 / FT2_PER_AC).sum())}


def check_harvest(std: gpd.GeoDataFrame, units: dict[str, str], oracle: dict[str, float]) -> None:
    assert std["area"].sum() == pytest.approx(oracle["area"], rel=1e-9)
    assert std["harvestMoisture"].mean() == pytest.approx(oracle["harvestMoisture"], rel=1e-9)
    assert units["wetMassPerArea"] == "lb/ac" and units["dryVolumePerArea"] == "bu/ac" and units["wetMass"] == "lb"
    assert std["wetMassPerArea"].mean() == pytest.approx(oracle["wetMassPerArea"], rel=1e-9)
    assert std["dryVolumePerArea"].mean() == pytest.approx(oracle["dryVolumePerArea"], rel=1e-9)
    assert std["wetMass"].sum() == pytest.approx(oracle["wetMass"], rel=1e-6)


def test_jd_2016_originals_match_source_oracles(real2: Path, tmp_path: Path) -> None:
    """The JD sample exports as shipped: SOURCE.md's oracle values (computed from the DBF columns)."""
    for name, kind, points in (("Harvest", "harvested", 40960), ("Seeding", "planted", 55285)):
        folder = tmp_path / name
        with zipfile.ZipFile(real2 / JD2016 / f"Export From MyJohnDeere - {name}.zip") as zf:
            zf.extractall(folder)
        std = processed(result := standard_of(folder), kind, points)
        if kind == "harvested":
            assert std["dryVolumePerArea"].mean() == pytest.approx(78.0504, abs=1e-4)
            assert std["area"].sum() / (M2_PER_FT2 * FT2_PER_AC) == pytest.approx(25.1820, abs=1e-4)
            assert std["dryVolume"].sum() == pytest.approx(1941.63, abs=0.01)
            assert std["wetMass"].sum() == pytest.approx(116863.43, abs=0.01)
            assert std["harvestMoisture"].mean() == pytest.approx(12.8338, abs=1e-4)
        else:
            assert result.units["seedRate"] == "seeds/ac"
            assert std["seedRate"].mean() == pytest.approx(137553.3029, abs=1e-4)
            assert std["area"].sum() / (M2_PER_FT2 * FT2_PER_AC) == pytest.approx(24.9568, abs=1e-4)
            planted = std["seedRate"] * std["area"] / (M2_PER_FT2 * FT2_PER_AC)
            assert planted.sum() == pytest.approx(3_464_804, abs=1)


@pytest.mark.parametrize("layer,mean,area_ac,total", [
    ("Corn Rescue Use 1", 13.4946, 31.1008, 398.42), ("Priaxor Fastac Use 1", 15.3426, 22.1785, 336.38),
    ("SB 2 PowerMax only Use 1", 19.0895, 2.2935, 39.87), ("Sonic Tilled Use 1", 13.4715, 26.3774, 353.37)])
def test_jd_2016_application_layers(jd_sources: dict, tmp_path: Path, layer: str, mean: float, area_ac: float,
                                    total: float) -> None:
    src, metadata = jd_sources[layer]
    std = processed(result := standard_of(write_shapefile(src, tmp_path, f"Merriweather Farms-JT-01-{layer}",
                                                         metadata=metadata)), "applied", len(src))
    assert result.units["appliedRate"] == "gal/ac"
    assert std["appliedRate"].mean() == pytest.approx(mean, abs=1e-4)
    ac = std["area"] / (M2_PER_FT2 * FT2_PER_AC)
    assert ac.sum() == pytest.approx(area_ac, abs=1e-4)
    assert (std["appliedRate"] * ac).sum() == pytest.approx(total, abs=0.01)


def _rename(frame: gpd.GeoDataFrame, how) -> gpd.GeoDataFrame:
    return frame.rename(columns={c: how(c) for c in frame.columns if c != frame.geometry.name})


_GERMAN = {"DISTANCE": "Distanz", "SWATHWIDTH": "Arbeitsbreite", "Moisture": "Feuchte", "Elevation": "Hoehe",
           "Heading": "Richtung", "VARIETY": "Sorte", "Time": "Zeit", "WetMass": "Nassertrag", "Crop": "Kultur"}
_SPANISH = {"DISTANCE": "Distancia", "SWATHWIDTH": "Ancho", "Moisture": "Humedad", "Elevation": "Altitud",
            "Heading": "Rumbo", "VARIETY": "Variedad", "VRYIELDVOL": "Rendimiento", "Crop": "Cultivo"}


def _json_renamed(metadata: dict | None, how) -> dict | None:
    if metadata is None:
        return None
    copy = json.loads(json.dumps(metadata))
    for attribute in copy["DataAttributes"]:
        attribute["Name"] = how(attribute["Name"])
    return copy


HARVEST_VARIANTS = {
    "upper case": lambda f, j: (_rename(f, str.upper), j, True),
    "lower case": lambda f, j: (_rename(f, str.lower), j, True),
    "R abbreviations": lambda f, j: (_rename(f, r_abbreviate), j, True),
    "PostGIS shortening": lambda f, j: (_rename(f, postgis_style), j, True),
    "German names": lambda f, j: (_rename(f, lambda c: _GERMAN.get(c, c)), _json_renamed(j, lambda c: _GERMAN.get(c, c)), True),
    "Spanish names": lambda f, j: (_rename(f, lambda c: _SPANISH.get(c, c)), _json_renamed(j, lambda c: _SPANISH.get(c, c)), True),
    "columns reordered": lambda f, j: (f[list(reversed(f.columns.drop("geometry"))) + ["geometry"]], j, True),
    "no .prj": lambda f, j: (f, j, False),
    "no metadata JSON": lambda f, j: (f, None, True),
}


def test_jd_harvest_as_geojson_with_object_and_list_properties(jd_sources: dict, tmp_path: Path) -> None:
    """The Montana wheat export saved as GeoJSON by a tool that adds an object and a list to every feature
    (GDAL reads them as a JSON field and a list field): read, and the same standard values."""
    src, _ = jd_sources["wheat"]
    collection = json.loads(src.set_geometry(src.geometry.force_2d()).to_json())
    for feature in collection["features"]:
        feature["properties"]["Controller"] = {"serial": "PC12345", "firmware": [5, 2]}
        feature["properties"]["SectionStates"] = [1, 1, 0, 1]
    (tmp_path / f"{JD_WHEAT}.geojson").write_text(json.dumps(collection))

    result = standard_of(tmp_path)

    std = processed(result, "harvested", len(src))
    check_harvest(std, result.units, _harvest_oracle(src))
    (detected,) = detect_machine_files(tmp_path)
    raw = read_machine_file(detected).frame  # the added properties kept as they were written
    assert raw["Controller"].iloc[-1] == {"serial": "PC12345", "firmware": [5, 2]}
    assert list(raw["SectionStates"].iloc[0]) == [1, 1, 0, 1]


@pytest.mark.parametrize("variant", list(HARVEST_VARIANTS))
@pytest.mark.parametrize("kind", ["wheat", "harvest"])
def test_jd_harvest_variants(jd_sources: dict, tmp_path: Path, kind: str, variant: str) -> None:
    """Montana wheat (no JSON, as exported) and the 2016 soybean harvest (with JSON), changed."""
    src, metadata = jd_sources[kind]
    frame, sidecar, prj = HARVEST_VARIANTS[variant](src.copy(), metadata)
    name = JD_WHEAT if kind == "wheat" else HARVEST_2016
    result = standard_of(write_shapefile(frame, tmp_path, name, prj=prj, metadata=sidecar))
    std = processed(result, "harvested", len(src))
    check_harvest(std, result.units, _harvest_oracle(src))
    assert result.units["area"] == "m2"


def test_jd_harvest_unit_converted_with_its_header(jd_sources: dict, tmp_path: Path) -> None:
    """DISTANCE and SWATHWIDTH rewritten in metres under names that say so; WetMass in kg/ha: same values."""
    src, _ = jd_sources["wheat"]
    frame = src.copy()
    frame["DIST_M"] = frame.pop("DISTANCE") * M_PER_FT
    frame["SWATH_M"] = frame.pop("SWATHWIDTH") * M_PER_FT
    frame["WET_KG_HA"] = frame.pop("WetMass") * KG_HA_PER_LB_AC
    result = standard_of(write_shapefile(frame.set_geometry("geometry"), tmp_path, JD_WHEAT))
    std = processed(result, "harvested", len(src))
    oracle = _harvest_oracle(src)
    assert result.units["distance"] == "m" and result.units["wetMassPerArea"] == "kg/ha"
    assert std["area"].sum() == pytest.approx(oracle["area"], rel=1e-9)
    assert std["wetMassPerArea"].mean() / KG_HA_PER_LB_AC == pytest.approx(oracle["wetMassPerArea"], rel=1e-9)
    assert std["dryVolumePerArea"].mean() == pytest.approx(oracle["dryVolumePerArea"], rel=1e-9)


@pytest.mark.parametrize("variant", ["no metadata JSON", "R abbreviations", "upper case", "columns reordered"])
def test_jd_seeding_variants(jd_sources: dict, tmp_path: Path, variant: str) -> None:
    """Seeds per acre are the only unit 137,553 fits as a seed rate, so the JSON is not needed."""
    src, metadata = jd_sources["seeding"]
    frame, sidecar, prj = HARVEST_VARIANTS[variant](src.copy(), metadata)
    result = standard_of(write_shapefile(frame, tmp_path, HARVEST_2016, prj=prj, metadata=sidecar))
    check_seeding(result, src, ("AppliedRate", "TargetRate", "SWATHWIDTH", "DISTANCE"), "seeds/ac", "soybeans")


def check_seeding(result: StandardResult, src: pd.DataFrame, columns: tuple[str, str, str, str], unit: str,
                  crop: str) -> None:
    """Seed rate, target and area (width x distance in feet) as the source's columns give them."""
    applied, target, width, distance = columns
    std = processed(result, "planted", len(src))
    assert result.units["seedRate"] == unit
    assert std["seedRate"].mean() == pytest.approx(src[applied].mean(), rel=1e-9)
    assert std["seedRateTarget"].mean() == pytest.approx(src[target].mean(), rel=1e-9)
    assert std["area"].sum() == pytest.approx((src[width] * src[distance]).sum() * M2_PER_FT2, rel=1e-9)
    assert std["crop"].unique().tolist() == [crop]


def test_jd_application_without_its_json_says_what_the_rate_unit_could_be(jd_sources: dict, tmp_path: Path) -> None:
    """13.5 is a plausible rate in lb/ac and in gal/ac: without the sidecar nothing says which, so no guess."""
    src, _ = jd_sources["Priaxor Fastac Use 1"]
    result = standard_of(write_shapefile(src, tmp_path, "Merriweather Farms-JT-01-Priaxor Fastac Use 1"))
    assert result.operation_type == "applied"
    assert FileSteps.schema_failure(result) == "missing required properties: appliedRate, products"
    reason = result.missing_inputs["unit of 'AppliedRat'"]  # the .dbf keeps 10 characters
    assert "gal/ac" in reason and "lb/ac" in reason
    assert len(result.frame) == len(src)


# ---------------------------------------------------------------- SMS, Yield Editor and GeoPackage sets

@pytest.fixture(scope="module")
def montana(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("montana")
    for stem in ("FarmerI_YL18_YLD_2018_henrys", "FarmerB_YE_YLD_2014_sec1west"):
        with zipfile.ZipFile(real / MONTANA / f"{stem}.zip") as zf:
            zf.extractall(root / stem)
    return root


def _single_shp(folder: Path) -> Path:
    return next(p for p in folder.rglob("*.shp") if "__MACOSX" not in p.parts)


@pytest.mark.parametrize("variant", ["upper case", "lower case", "columns reordered", "no .prj"])
def test_sms_postgis_yield_variants(montana: Path, tmp_path: Path, variant: str) -> None:
    src = pyogrio.read_dataframe(_single_shp(montana / "FarmerI_YL18_YLD_2018_henrys"))
    frame, _, prj = HARVEST_VARIANTS[variant](src.copy(), None)
    result = standard_of(write_shapefile(frame, tmp_path, "FarmerI_YL18_YLD_2018_henrys", prj=prj))
    std = processed(result, "harvested", len(src))
    assert std["wetMassPerArea"].mean() == pytest.approx(src["yld_mss_w"].mean(), rel=1e-9)
    assert std["wetMass"].sum() == pytest.approx((src["crp_flw_m"] * src["durtn_s"]).sum(), rel=0.01)
    assert std["area"].sum() == pytest.approx((src["dstnc_f"] * src["swth_w_"]).sum() * M2_PER_FT2, rel=1e-9)
    assert std["speed"].mean() == pytest.approx(src["spd_mp_"].mean(), rel=1e-9)


@pytest.mark.parametrize("variant", ["upper case", "columns reordered", "no .prj"])
def test_yield_editor_variants(montana: Path, tmp_path: Path, variant: str) -> None:
    """UTM coordinates without a .prj cannot be placed: the reader says so instead of guessing a zone."""
    src = pyogrio.read_dataframe(_single_shp(montana / "FarmerB_YE_YLD_2014_sec1west"))
    frame, _, prj = HARVEST_VARIANTS[variant](src.copy(), None)
    folder = write_shapefile(frame, tmp_path, "FarmerB_YE_YLD_2014_sec1west", prj=prj)
    if not prj:
        with pytest.raises(ReaderError, match="no CRS"):
            standard_of(folder)
        return
    result = standard_of(folder)
    std = processed(result, "harvested", len(src))
    assert result.units["equipmentWidth"] == "in" and result.units["distance"] == "in"
    assert std["dryVolumePerArea"].mean() == pytest.approx(src["yield"].mean(), rel=1e-9)
    assert std["area"].sum() == pytest.approx((src["swth_w_"] * src["dist_in"]).sum() * M2_PER_IN2, rel=1e-9)
    assert std["harvestMoisture"].mean() == pytest.approx(src["moistur"].mean(), rel=1e-9)


@pytest.mark.parametrize("variant", ["upper case", "lower case", "columns reordered"])
def test_ohio_geopackage_variants(real: Path, tmp_path: Path, variant: str) -> None:
    for name, operation in (("asplanted", "planted"), ("asapplied", "applied")):
        src = pyogrio.read_dataframe(real / "carpentries-ohio-planting-nh3" / f"{name}.gpkg")
        frame, _, _ = HARVEST_VARIANTS[variant](src.copy(), None)
        (tmp_path / name).mkdir()
        pyogrio.write_dataframe(frame, tmp_path / name / f"{name}.gpkg")
        std = processed(standard_of(tmp_path / name), operation, len(src))
        area = pd.Series(src.filter(regex="(?i)swth_wdth_").iloc[:, 0] * src.filter(regex="(?i)distance_f").iloc[:, 0])
        assert std["area"].sum() == pytest.approx(area.sum() * M2_PER_FT2, rel=1e-9)
        assert std["speed"].mean() == pytest.approx(src["Speed_mph_"].mean(), rel=1e-9)
        if operation == "planted":
            assert std["seedRate"].mean() == pytest.approx(src["Rt_Apd_Ct_"].mean(), rel=1e-9)
            assert std["seedRateTarget"].mean() == pytest.approx(src["Tgt_Rate_k"].mean() * 1000, rel=1e-9)
        else:
            assert std["appliedRate"].mean() == pytest.approx(src["Rt_Apd_Ms_"].mean(), rel=1e-9)


def _planting_geojson(src: gpd.GeoDataFrame, folder: Path, change: Any) -> Path:
    """The Ohio as-planted points as a GeoJSON some other writer made: `change(index, feature)` edits each."""
    collection = json.loads(src.to_json())
    for index, feature in enumerate(collection["features"]):
        change(index, feature)
    folder.mkdir()
    (folder / "asplanted.geojson").write_text(json.dumps(collection))
    return folder


def _one_point_multipoint(index: int, feature: dict) -> None:
    if index % 3 == 0:
        feature["geometry"] = {"type": "MultiPoint", "coordinates": [feature["geometry"]["coordinates"]]}


def _rate_not_applicable(index: int, feature: dict) -> None:
    if index % 10 == 0:
        feature["properties"]["Rt_Apd_Ct_"] = "n/a"


def test_ohio_planting_as_geojson_from_other_writers(real: Path, tmp_path: Path) -> None:
    """Every third point written as a multi-point of one point reads as the same points (not as records
    without a position); a rate column holding "n/a" in some features reads as text, its numbers kept."""
    src = pyogrio.read_dataframe(real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg")

    std = processed(standard_of(_planting_geojson(src, tmp_path / "multi", _one_point_multipoint)), "planted", len(src))
    assert (std.geometry.geom_type == "Point").all()
    assert std.geometry.x.to_numpy() == pytest.approx(src.geometry.x.to_numpy(), abs=1e-12)
    assert std.geometry.y.to_numpy() == pytest.approx(src.geometry.y.to_numpy(), abs=1e-12)
    assert std["seedRate"].mean() == pytest.approx(src["Rt_Apd_Ct_"].mean(), rel=1e-9)

    std = processed(standard_of(_planting_geojson(src, tmp_path / "na", _rate_not_applicable)), "planted", len(src))
    kept = src["Rt_Apd_Ct_"].where(src.index % 10 != 0)
    assert std["seedRate"].isna().sum() == kept.isna().sum()
    assert std["seedRate"].mean() == pytest.approx(kept.mean(), rel=1e-9)


def test_ohio_planting_dissolved_or_without_positions_fails_saying_why(real: Path, tmp_path: Path) -> None:
    """Points dissolved into multi-points share one record's values, and features without a geometry have no
    position: both are refused with the reason, not read as something else."""
    src = pyogrio.read_dataframe(real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg")

    def dissolved(index: int, feature: dict) -> None:
        if index < 10:
            feature["geometry"] = {"type": "MultiPoint", "coordinates": [feature["geometry"]["coordinates"]] * 3}

    with pytest.raises(ReaderError, match=r"10 features are multi-points of several points \(up to 3\)"):
        standard_of(_planting_geojson(src, tmp_path / "dissolved", dissolved))
    with pytest.raises(ReaderError, match=f"has no position: all {len(src)} features have an empty geometry"):
        standard_of(_planting_geojson(src, tmp_path / "none", lambda _, feature: feature.update(geometry=None)))


def test_ohio_planting_shapefile_whose_cpg_names_the_wrong_encoding(real: Path, tmp_path: Path) -> None:
    """Re-saved in the Windows code page with its .cpg still saying UTF-8: the text is read as Windows-1252,
    with a note saying so, rather than failing the file on bytes pandas cannot take."""
    src = pyogrio.read_dataframe(real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg")
    text = next(c for c in src.columns if c != "geometry" and str(src[c].dtype) in ("object", "str"))
    frame = src.assign(**{text: "Maïs DKC61-54 Ébène"})
    pyogrio.write_dataframe(frame, tmp_path / "asplanted.shp", encoding="cp1252")
    (tmp_path / "asplanted.cpg").write_text("UTF-8")
    assert "Maïs".encode("cp1252") in (tmp_path / "asplanted.dbf").read_bytes()

    found = [d for d in detect_machine_files(tmp_path) if not d.unsupported_reason]
    source = read_machine_file(found[0])

    assert (source.frame[text[:10]] == "Maïs DKC61-54 Ébène").all()
    assert any("is not the UTF-8 its .cpg names, and its language driver (0x00) names Windows ANSI or nothing: "
               "read as CP1252" in n for n in source.notes)
    std = processed(standardize(source), "planted", len(src))
    assert std["seedRate"].mean() == pytest.approx(src["Rt_Apd_Ct_"].mean(), rel=1e-9)

    dbf = bytearray((tmp_path / "asplanted.dbf").read_bytes())
    dbf[29] = 0xC9  # the language driver of Windows Cyrillic: the bytes are no Windows-1252 text to guess
    (tmp_path / "asplanted.dbf").write_bytes(bytes(dbf))
    with pytest.raises(ReaderError, match=r"language driver \(0xc9\) names another code page"):
        read_machine_file(found[0])


# ---------------------------------------------------------------- the SMS CSV

AREA2 = "area2_yield_ISO-8859-1"


@pytest.fixture(scope="module")
def area2(real: Path) -> pd.DataFrame:
    return pd.read_csv(real / "csiro-pyprecag-yield-csv" / f"{AREA2}.csv", encoding="latin-1")


def _check_area2(result: StandardResult, src: pd.DataFrame) -> None:
    std = processed(result, "harvested", len(src))
    assert std["area"].sum() == pytest.approx((src["Swth Wdth(m)"] * src["Distance(m)"]).sum(), rel=1e-9)
    assert result.units["dryMassPerArea"] == "t/ha"
    assert std["dryMassPerArea"].mean() == pytest.approx(src["Yld Mass(Dry)(tonne/ha)"].mean(), rel=1e-9)
    tonnes = (src["Yld Mass(Dry)(tonne/ha)"] * src["Swth Wdth(m)"] * src["Distance(m)"] / 10_000).sum()
    assert std["dryMass"].sum() == pytest.approx(tonnes, rel=1e-9)


@pytest.mark.parametrize("variant", ["utf-8", "semicolons and decimal commas", "tabs", "columns reordered",
                                     "upper case", "French names", "Excel's Unicode text"])
def test_sms_csv_variants(area2: pd.DataFrame, tmp_path: Path, variant: str) -> None:
    frame = area2.copy()
    sep, decimal, encoding = ",", ".", "latin-1"
    if variant == "utf-8":
        encoding = "utf-8"
    elif variant == "semicolons and decimal commas":
        sep, decimal = ";", ","
    elif variant == "tabs":
        sep = "\t"
    elif variant == "Excel's Unicode text":  # UTF-16 with a byte-order mark, tab-separated
        sep, encoding = "\t", "utf-16"
    elif variant == "columns reordered":
        frame = frame[list(reversed(frame.columns))]
    elif variant == "upper case":
        frame.columns = [c[: c.rindex("(")].upper() + c[c.rindex("("):] if c.endswith(")") else c.upper()
                         for c in frame.columns]
    elif variant == "French names":
        frame = frame.rename(columns={"Distance(m)": "Distance(m)", "Swth Wdth(m)": "Largeur(m)",
                                      "Track(deg)": "Cap(deg)", "Duration(s)": "Durée(s)", "Elevation(m)": "Altitude(m)",
                                      "Moisture(%)": "Humidité(%)", "Crop Flw(M)(tonne/h)": "Débit(tonne/h)",
                                      "Yld Mass(Dry)(tonne/ha)": "Rendement Sec(tonne/ha)"})
    frame.to_csv(tmp_path / f"{AREA2}.csv", sep=sep, decimal=decimal, encoding=encoding, index=False)
    _check_area2(standard_of(tmp_path), area2)


def test_sms_csv_unit_converted_with_its_header(area2: pd.DataFrame, tmp_path: Path) -> None:
    frame = area2.copy()
    frame["Distance(ft)"] = frame.pop("Distance(m)") / M_PER_FT
    frame["Yld Mass(Dry)(lb/ac)"] = frame.pop("Yld Mass(Dry)(tonne/ha)") * 1000 / KG_HA_PER_LB_AC
    frame.to_csv(tmp_path / f"{AREA2}.csv", index=False, encoding="latin-1")
    result = standard_of(tmp_path)
    std = processed(result, "harvested", len(frame))
    assert result.units["distance"] == "ft" and result.units["dryMassPerArea"] == "lb/ac"
    assert std["area"].sum() == pytest.approx((area2["Swth Wdth(m)"] * area2["Distance(m)"]).sum(), rel=1e-9)
    tonnes = (area2["Yld Mass(Dry)(tonne/ha)"] * area2["Swth Wdth(m)"] * area2["Distance(m)"] / 10_000).sum()
    assert result.units["dryMass"] == "lb"
    assert std["dryMass"].sum() / LB_PER_KG / 1000 == pytest.approx(tonnes, rel=1e-9)


def test_sms_csv_saved_as_a_shapefile_gets_its_units_from_the_values(area2: pd.DataFrame, tmp_path: Path) -> None:
    """Written to a shapefile the headers lose their units and are cut to 10 characters (`Yld_Mass_D`). The
    SMS convention would read feet; the values say metres: flow x interval equals yield x area only in t/h,
    t/ha, m and m."""
    frame = area2.copy()
    frame.columns = [re.sub(r"[^A-Za-z0-9]+", "_", re.sub(r"\([^()]*\)$", "", c)).strip("_") for c in frame.columns]
    gdf = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["Longitude"], frame["Latitude"]), crs="EPSG:4326")
    result = standard_of(write_shapefile(gdf, tmp_path, AREA2))
    assert result.units["distance"] == "m" and result.units["equipmentWidth"] == "m"
    assert result.units["cropFlow"] == "t/h"
    assert any("flow x interval matches" in n for n in result.notes)
    _check_area2(result, area2)


# ---------------------------------------------------------------- Ag Leader text: classes 2 and 3

@pytest.fixture(scope="module")
def sample1(real: Path) -> pd.DataFrame:
    """The header-less Ag Leader text set, columns named by the format's layout (read independently here)."""
    src = pd.read_csv(real / "yieldcleanr-agleader-text" / "sample1.txt", header=None)
    src.columns = ["lon", "lat", "flow", "gps_time", "interval", "distance", "swath", "moisture", "status", "pass",
                   "serial", "field", "load", "crop", "variety", "altitude"]
    return src


@pytest.mark.parametrize("name,sep,encoding", [("sample1", "\t", "utf-8"), ("sample2", ";", "latin-1"),
                                               ("sample3", ",", "utf-8-sig"), ("sample4", "|", "cp1252")])
def test_agleader_text_with_a_header_of_units(real: Path, tmp_path: Path, name: str, sep: str, encoding: str) -> None:
    """Each Ag Leader text set exported with a header that states units, another delimiter and encoding,
    columns reordered: grain mass = flow x interval, area = distance x swath, as in the header-less original."""
    src = pd.read_csv(real / "yieldcleanr-agleader-text" / f"{name}.txt", header=None, encoding="latin-1")
    table = pd.DataFrame({"Moisture(%)": src[7], "Swath(in)": src[6], "Distance(in)": src[5], "Interval(s)": src[4],
                          "Flow(lb/s)": src[2], "Latitude": src[1], "Longitude": src[0], "Crop": src[13].str.strip()})
    (tmp_path / f"{name}.csv").write_text(table.to_csv(sep=sep, index=False), encoding=encoding)
    result = standard_of(tmp_path)
    std = processed(result, "harvested", len(src))
    flow, interval, distance, swath = src[2], src[4], src[5], src[6]
    assert result.units["distance"] == "in" and result.units["cropFlow"] == "lb/s"
    assert std["wetMass"].sum() == pytest.approx((flow * interval)[distance * swath > 0].sum(), rel=1e-6)
    assert std["area"].sum() == pytest.approx((distance * swath).sum() * M2_PER_IN2, rel=1e-9)
    assert std["harvestMoisture"].mean() == pytest.approx(src[7].mean(), rel=1e-9)


SOY_LB_PER_BU, SOY_STD_MOISTURE = 60.0, 13.0


def _dry_bu_ac(src: pd.DataFrame) -> pd.Series:
    """What a researcher's DRY_BU_AC column holds: flow x interval over the swath's area, at 13 % moisture."""
    acres = src["distance"] * src["swath"] * M2_PER_IN2 / (M2_PER_FT2 * FT2_PER_AC)
    wet_lb_ac = (src["flow"] * src["interval"] / acres).where(acres > 0)
    return wet_lb_ac * (100 - src["moisture"]) / (100 - SOY_STD_MOISTURE) / SOY_LB_PER_BU


def test_class2_converted_table_shapefile(sample1: pd.DataFrame, tmp_path: Path) -> None:
    """Ag Leader columns saved as a shapefile, values quoted text, no .prj. Inches, not the SMS feet: the
    swath of 288 would be 88 m in feet, and flow x interval equals yield x area only in lb/s, in and in."""
    src = sample1
    quoted = lambda s: '"' + s.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v)) + '"'  # noqa: E731
    table = pd.DataFrame({"FLOW": quoted(src["flow"]), "CYCLES": quoted(src["interval"].astype(float)),
                          "DISTANCE": quoted(src["distance"]), "SWATH": quoted(src["swath"]),
                          "MOISTURE": quoted(src["moisture"]), "DRY_BU_AC": quoted(_dry_bu_ac(src).round(4).fillna(0)),
                          "CROP": quoted(src["crop"].str.strip())})
    gdf = gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(src["lon"], src["lat"]), crs="EPSG:4326")
    result = standard_of(write_shapefile(gdf, tmp_path, "yield 2010 converted", prj=False))
    std = processed(result, "harvested", len(src))
    assert result.units["distance"] == "in" and result.units["equipmentWidth"] == "in"
    assert result.units["cropFlow"] == "lb/s" and result.units["dryVolumePerArea"] == "bu/ac"
    assert std["area"].sum() == pytest.approx((src["distance"] * src["swath"]).sum() * M2_PER_IN2, rel=1e-9)
    assert std["harvestMoisture"].mean() == pytest.approx(src["moisture"].mean(), rel=1e-9)
    assert std["crop"].unique().tolist() == ["soybeans"]
    lb = (_dry_bu_ac(src).round(4).fillna(0) * SOY_LB_PER_BU * src["distance"] * src["swath"] * M2_PER_IN2
          / (M2_PER_FT2 * FT2_PER_AC)).sum()
    assert std["dryMass"].sum() == pytest.approx(lb, rel=1e-6)
    assert any("flow x interval matches" in n for n in result.notes)


def _research_csv(src: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({names.get(k, k): v for k, v in {
        "long": src["lon"], "lat": src["lat"], "mass": src["flow"] * src["interval"], "time": src["gps_time"],
        "seconds": src["interval"], "dist": src["distance"], "moist": src["moisture"], "elev": src["altitude"],
        **({"swath": src["swath"], "crop": src["crop"].str.strip()} if "swath" in names else {})}.items()})


def test_class3_plain_research_csv_fails_saying_what_is_missing(sample1: pd.DataFrame, tmp_path: Path) -> None:
    """`long, lat, mass, time, seconds, dist, moist, elev`: a harvest (grain mass, moisture), but with no width
    there is no area, nothing names the crop, and pounds and kilograms fit the masses alike."""
    _research_csv(sample1, {}).to_csv(tmp_path / "plot7.csv", index=False)
    result = standard_of(tmp_path)
    assert result.operation_type == "harvested"
    assert len(result.frame) == len(sample1)
    assert FileSteps.schema_failure(result).startswith("missing required properties: ")
    assert "wetMassPerArea" in result.missing and set(result.frame["crop"]) == {"unknown"}
    assert {"crop", "equipmentWidth", "unit of 'mass'"} <= set(result.missing_inputs)
    assert "fit lb, kg" in result.missing_inputs["unit of 'mass'"]
    assert result.frame["harvestMoisture"].mean() == pytest.approx(sample1["moisture"].mean(), rel=1e-9)


def test_class3_research_csv_with_units_in_its_names(sample1: pd.DataFrame, tmp_path: Path) -> None:
    names = {"mass": "mass_lb", "dist": "dist_in", "swath": "swath_in", "elev": "elev_ft"}
    _research_csv(sample1, names).to_csv(tmp_path / "plot7.csv", index=False, sep=";")
    result = standard_of(tmp_path)
    std = processed(result, "harvested", len(sample1))
    src = sample1
    assert result.units["wetMass"] == "lb" and result.units["distance"] == "in"
    assert std["wetMass"].sum() == pytest.approx((src["flow"] * src["interval"]).sum(), rel=1e-9)
    assert std["area"].sum() == pytest.approx((src["distance"] * src["swath"]).sum() * M2_PER_IN2, rel=1e-9)
    wet = 60.0  # soybeans: lb per bushel
    assert std["wetVolume"].sum() == pytest.approx((src["flow"] * src["interval"]).sum() / wet, rel=1e-9)


# ---------------------------------------------------------------- classes 5 and 6

def test_class5_stripped_as_applied_export(jd_sources: dict, tmp_path: Path) -> None:
    """Only the target rate is left: 'as-applied' in the name makes it an application, which then fails
    for the applied rate it lacks; without the name it is a prescription, not an operation."""
    src, _ = jd_sources["Priaxor Fastac Use 1"]
    stripped = gpd.GeoDataFrame({"TargetRate": src["TargetRate"]}, geometry=src.geometry, crs=src.crs)
    result = standard_of(write_shapefile(stripped, tmp_path / "named", "Field 01 Priaxor as-applied"))
    assert result.operation_type == "applied"
    assert "'asapplied' in the file name" in result.evidence
    assert FileSteps.schema_failure(result) == "missing required properties: appliedRate, products"
    assert "only the target rate 'TargetRate'" in result.missing_inputs["appliedRate"]
    assert len(result.frame) == len(src)
    unnamed = standard_of(write_shapefile(stripped, tmp_path / "unnamed", "Field 01 Priaxor"))
    assert unnamed.operation_type == "unknown" and "prescription" in unnamed.evidence


def test_class6_dry_volume_only_names_the_missing_inputs(jd_sources: dict, tmp_path: Path) -> None:
    src, _ = jd_sources["wheat"]
    only = gpd.GeoDataFrame({"VRYIELDVOL": src["VRYIELDVOL"]}, geometry=src.geometry, crs=src.crs)
    result = standard_of(write_shapefile(only, tmp_path, "sec 1 west dry volume"))
    assert result.operation_type == "harvested"
    assert FileSteps.schema_failure(result) == (
        "missing required properties: harvestMoisture, wetMass, dryMass, wetMassPerArea, dryMassPerArea")
    lacks = result.missing_inputs
    assert {"crop", "harvestMoisture", "equipmentWidth", "distance"} <= set(lacks)
    assert "dry mass from dry volume" in lacks["crop"]
    assert "area" in lacks["equipmentWidth"]
    assert result.frame["dryVolumePerArea"].mean() == pytest.approx(src["VRYIELDVOL"].mean(), rel=1e-9)


def test_unlabelled_metric_columns_with_a_cancelling_flow_fail_rather_than_guess(area2: pd.DataFrame,
                                                                                tmp_path: Path) -> None:
    """The SMS CSV with every unit label removed and its flow written in kg/s: feet of width with t/h of flow
    balance the grain-flow check as well as metres with kg/s (3.28 against 3.6). Only the habit of writing
    one unit system would prefer the metric reading, which is no evidence: the units stay open and the file
    fails naming both readings, instead of carrying areas that may be 3.28 times off."""
    frame = area2.copy()
    frame["Crop Flw(M)(tonne/h)"] = frame["Crop Flw(M)(tonne/h)"] / 3.6
    frame.columns = [re.sub(r"\([^)]*\)", "", c).strip() for c in frame.columns]
    frame.to_csv(tmp_path / f"{AREA2}.csv", index=False)
    result = standard_of(tmp_path)
    assert result.operation_type == "harvested" and len(result.frame) == len(area2)
    assert "area" not in result.units and "equipmentWidth" not in result.units
    for column, units in (("Swth Wdth", "m, ft"), ("Distance", "m, ft"), ("Crop Flw", "kg/s, t/h")):
        reason = result.missing_inputs[f"unit of '{column}'"]
        assert f"fit {units} alike" in reason and "one unit system" in reason
    assert FileSteps.schema_failure(result).startswith("missing required properties: ")
    # the yield itself is stated in t/ha by its name and kept
    assert result.frame["dryMassPerArea"].mean() == pytest.approx(area2["Yld Mass(Dry)(tonne/ha)"].mean(), rel=1e-9)


# ---------------------------------------------------------------- a volume yield with no crop

HENRYS = "FarmerI_YL18_YLD_2018_henrys"


def _henrys_unlabelled(montana: Path, crop: bool) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """The SMS yield export cut to its flow, distance, interval, swath and moisture, its dry bushels per acre
    renamed `yield` (no unit in the name) and, unless `crop`, its product (Wheat) removed."""
    src = pyogrio.read_dataframe(_single_shp(montana / HENRYS))
    table = pd.DataFrame({"dstnc_f": src["dstnc_f"], "durtn_s": src["durtn_s"], "swth_w_": src["swth_w_"],
                          "crp_flw_m": src["crp_flw_m"], "mostr__": src["mostr__"], "yield": src["yld_vl_d"]})
    if crop:
        table["product"] = src["product"]
    return src, table


def _implied_lb_per_bu(src: pd.DataFrame) -> float:
    """Grain weighed by the monitor's flow (lb/s x s) over the bushels the yield column puts on the same area."""
    acres = src["dstnc_f"] * src["swth_w_"] / FT2_PER_AC
    return float((src["crp_flw_m"] * src["durtn_s"]).sum() / (src["yld_vl_d"] * acres).sum())


def test_unlabelled_bushels_with_no_crop_are_not_read_as_tonnes(montana: Path, tmp_path: Path) -> None:
    """Read as t/ha (cm of swath, t/h of flow) the unlabelled 50 bu/ac balance the grain flow within the loose
    tolerance a crop-less dry yield gets: 53 t/ha of wheat. As bushels, the flow weighs them at 60 lb/bu, a
    grain's weight: the values now fit both readings, and the SMS writer's convention (bu/ac, lb/s, ft)
    decides, saying so. The crop stays unknown, so the dry mass is missing and the file fails for it."""
    src, table = _henrys_unlabelled(montana, crop=False)
    gdf = gpd.GeoDataFrame(table, geometry=src.geometry, crs=src.crs)
    result = standard_of(write_shapefile(gdf, tmp_path, HENRYS))
    assert result.units["dryVolumePerArea"] == "bu/ac" and "dryMassPerArea" not in result.units
    assert result.units["cropFlow"] == "lb/s" and result.units["equipmentWidth"] == "ft"
    assert result.frame["dryVolumePerArea"].mean() == pytest.approx(src["yld_vl_d"].mean(), rel=1e-9)
    assert result.frame["area"].sum() == pytest.approx((src["dstnc_f"] * src["swth_w_"]).sum() * M2_PER_FT2, rel=1e-9)
    density = _implied_lb_per_bu(src)
    assert 59 < density < 61  # wheat
    assert f"evidence: grain flow x interval over volume yield x distance x width gives {density:.1f} lb/bu, a " \
           "grain's weight per bushel (20-80)" in result.notes
    assert "'yield' read as bu/ac from the writer's convention (the values fit t/ha as well)" in result.notes
    assert FileSteps.schema_failure(result) == (
        "missing required properties: wetMass, dryMass, wetMassPerArea, dryMassPerArea")
    assert "dry mass from dry volume" in result.missing_inputs["crop"]


def test_unlabelled_bushels_with_no_crop_and_no_writer_fail_with_the_reasons(montana: Path, tmp_path: Path) -> None:
    """The same columns as a plain CSV (no writer whose convention could decide): bushels and tonnes fit alike,
    so neither is taken; the failure names both."""
    src, table = _henrys_unlabelled(montana, crop=False)
    table["lon"], table["lat"] = src.geometry.x, src.geometry.y
    table.to_csv(tmp_path / "henrys 2018.csv", index=False)
    result = standard_of(tmp_path)
    assert result.operation_type == "harvested" and len(result.frame) == len(src)
    assert not {"dryVolumePerArea", "dryMassPerArea", "cropFlow", "equipmentWidth", "area"} & set(result.units)
    for column, units in (("yield", ("bu/ac", "t/ha")), ("crp_flw_m", ("lb/s", "t/h")), ("swth_w_", ("ft", "cm"))):
        reason = result.missing_inputs[f"unit of '{column}'"]
        assert "alike" in reason and all(u in reason for u in units), reason
    assert FileSteps.schema_failure(result) == (
        "missing required properties: wetMass, dryMass, wetMassPerArea, dryMassPerArea")
    assert result.frame["harvestMoisture"].mean() == pytest.approx(src["mostr__"].mean(), rel=1e-9)


def test_unlabelled_bushels_with_their_crop_balance_exactly(montana: Path, tmp_path: Path) -> None:
    """The control: with the product (Wheat) kept, 60 lb/bu makes the grain-flow balance exact, the file is
    processed and every mass follows from the source columns."""
    src, table = _henrys_unlabelled(montana, crop=True)
    result = standard_of(write_shapefile(gpd.GeoDataFrame(table, geometry=src.geometry, crs=src.crs), tmp_path, HENRYS))
    std = processed(result, "harvested", len(src))
    assert result.units["dryVolumePerArea"] == "bu/ac" and result.units["dryMassPerArea"] == "lb/ac"
    assert std["dryMassPerArea"].mean() == pytest.approx(src["yld_vl_d"].mean() * 60, rel=1e-9)
    acres = src["dstnc_f"] * src["swth_w_"] / FT2_PER_AC
    assert std["dryMass"].sum() == pytest.approx((src["yld_vl_d"] * 60 * acres).sum(), rel=1e-6)
    assert std["wetMass"].sum() == pytest.approx((src["crp_flw_m"] * src["durtn_s"]).sum(), rel=0.03)
    assert std["crop"].unique().tolist() == ["wheat"]


# ---------------------------------------------------------------- sets that had no variants yet

JD_SEEDING_MILLVIEW = "FarmerC Hill Farms-FarmerC Hill Farms-Millview-Wheat (Hrd Rd Spr) seeding"


def _extracted(real: Path, root: Path, stem: str) -> tuple[gpd.GeoDataFrame, dict | None]:
    """A Montana zip's shapefile (read with pyogrio) and its Deere metadata JSON, if it has one."""
    if not (root / stem).exists():
        with zipfile.ZipFile(real / MONTANA / f"{stem}.zip") as zf:
            zf.extractall(root / stem)
    shp = _single_shp(root / stem)
    sidecars = [p for p in (root / stem).rglob("*Deere-Metadata.json") if "__MACOSX" not in p.parts]
    return pyogrio.read_dataframe(shp), json.loads(sidecars[0].read_text()) if sidecars else None


@pytest.fixture(scope="module")
def montana_more(real: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return real, tmp_path_factory.mktemp("montana-more")


@pytest.mark.parametrize("variant", ["upper case", "lower case", "columns reordered", "no metadata JSON"])
def test_jd_seeding_with_r_names_variants(montana_more: tuple[Path, Path], tmp_path: Path, variant: str) -> None:
    """The Millview seeding export (names cut by R to 7 characters, so its JSON names no longer match): the
    rates are lb/ac as the JSON states. Without the JSON, about 100 fits lb/ac of wheat seed as well as
    thousands of seeds or gallons per acre: the file fails naming them, with its points and areas kept."""
    src, metadata = _extracted(*montana_more, JD_SEEDING_MILLVIEW)
    frame, sidecar, prj = HARVEST_VARIANTS[variant](src.copy(), metadata)
    result = standard_of(write_shapefile(frame, tmp_path, JD_SEEDING_MILLVIEW, prj=prj, metadata=sidecar))
    if sidecar is None:
        assert result.operation_type == "planted" and len(result.frame) == len(src)
        assert FileSteps.schema_failure(result) == "missing required properties: seedRate"
        reason = result.missing_inputs["unit of 'AppldRt'"]
        assert "lb/ac" in reason and "kseeds/ac" in reason and "gal/ac" in reason
        assert result.frame["area"].sum() == pytest.approx((src["SWATHWI"] * src["DISTANC"]).sum() * M2_PER_FT2,
                                                           rel=1e-9)
        return
    check_seeding(result, src, ("AppldRt", "TargtRt", "SWATHWI", "DISTANC"), "lb/ac", "wheat")


@pytest.mark.parametrize("variant", ["lower case", "no metadata JSON"])
def test_jd_oats_variants(montana_more: tuple[Path, Path], tmp_path: Path, variant: str) -> None:
    src, metadata = _extracted(*montana_more, JD_OATS)
    frame, sidecar, prj = HARVEST_VARIANTS[variant](src.copy(), metadata)
    result = standard_of(write_shapefile(frame, tmp_path, JD_OATS, prj=prj, metadata=sidecar))
    std = processed(result, "harvested", len(src))
    assert result.units["wetMassPerArea"] == "lb/ac"
    assert std["wetMassPerArea"].mean() == pytest.approx(src["WetMass"].mean(), rel=1e-9)
    assert std["wetVolumePerArea"].mean() == pytest.approx(src["WetMass"].mean() / 32, rel=1e-9)  # oats: 32 lb/bu
    assert std["harvestMoisture"].mean() == pytest.approx(src["Moisture"].mean(), rel=1e-9)
    assert std["area"].sum() == pytest.approx((src["SWATHWIDTH"] * src["DISTANCE"]).sum() * M2_PER_FT2, rel=1e-9)
    assert std["crop"].unique().tolist() == ["oats"]


@pytest.mark.parametrize("variant", ["upper case", "lower case", "columns reordered"])
@pytest.mark.parametrize("stem,rate,product", [("FarmerB_AA1617_POLY_AA_N_sec35middle", "vrappratev", "unknown"),
                                               ("FarmerI_AA16_AA_N_2016_henrys", "rt_apd_ms_", "Urea")])
def test_as_applied_polygon_variants(montana_more: tuple[Path, Path], tmp_path: Path, stem: str, rate: str,
                                     product: str, variant: str) -> None:
    """The two as-applied polygon exports (UTM 12N): rate, polygon areas and products as in the original."""
    src, _ = _extracted(*montana_more, stem)
    frame, _, prj = HARVEST_VARIANTS[variant](src.copy(), None)
    result = standard_of(write_shapefile(frame, tmp_path, stem, prj=prj))
    std = processed(result, "applied", len(src))
    assert std["appliedRate"].sum() == pytest.approx(src[rate].sum(), rel=1e-9)
    assert std["area"].sum() == pytest.approx(float(src.geometry.area.sum()), rel=1e-3)
    assert {p[0]["name"] for p in std["products"]} == {product}
    assert std.geometry.x.mean() == pytest.approx(float(src.geometry.to_crs("EPSG:4326").centroid.x.mean()), abs=1e-4)


@pytest.mark.parametrize("variant", ["upper case", "columns reordered", "R abbreviations"])
@pytest.mark.parametrize("layer", ["Corn Rescue Use 1", "SB 2 PowerMax only Use 1"])
def test_jd_2016_application_variants(jd_sources: dict, tmp_path: Path, layer: str, variant: str) -> None:
    """Tank-mix application layers renamed with their JSON: gal/ac as the JSON states, values from the DBF."""
    src, metadata = jd_sources[layer]
    frame, sidecar, prj = HARVEST_VARIANTS[variant](src.copy(), metadata)
    result = standard_of(write_shapefile(frame, tmp_path, f"Merriweather Farms-JT-01-{layer}", prj=prj,
                                         metadata=sidecar))
    std = processed(result, "applied", len(src))
    assert result.units["appliedRate"] == "gal/ac"
    assert std["appliedRate"].mean() == pytest.approx(src["AppliedRate"].mean(), rel=1e-9)
    acres = src["SWATHWIDTH"] * src["DISTANCE"] / FT2_PER_AC
    assert (std["area"] / (M2_PER_FT2 * FT2_PER_AC)).sum() == pytest.approx(acres.sum(), rel=1e-9)
    assert (std["appliedRate"] * std["area"]).sum() / (M2_PER_FT2 * FT2_PER_AC) == pytest.approx(
        (src["AppliedRate"] * acres).sum(), rel=1e-9)


AREA1 = "area1_yield_ascii_wgs84"


@pytest.mark.parametrize("variant", ["original", "semicolons and decimal commas", "upper case", "columns reordered"])
def test_unknown_monitor_csv_variants_fail_alike(real: Path, tmp_path: Path, variant: str) -> None:
    """The CSV of an unknown Australian monitor: no unit anywhere, no moisture, no crop. Every variant is a
    harvest that fails for the same missing properties, and keeps the source's numbers in its points."""
    src = pd.read_csv(real / "csiro-pyprecag-yield-csv" / f"{AREA1}.csv")
    frame, sep, decimal = src.copy(), ",", "."
    if variant == "semicolons and decimal commas":
        sep, decimal = ";", ","
    elif variant == "upper case":
        frame.columns = [c.upper() for c in frame.columns]
    elif variant == "columns reordered":
        frame = frame[list(reversed(frame.columns))]
    frame.to_csv(tmp_path / f"{AREA1}.csv", sep=sep, decimal=decimal, index=False)
    (detected,) = detect_machine_files(tmp_path)
    source = read_machine_file(detected)
    result = standardize(source)
    assert result.operation_type == "harvested"
    assert FileSteps.schema_failure(result) == (
        "missing required properties: harvestMoisture, wetMass, dryMass, wetMassPerArea, dryMassPerArea")
    assert {"harvestMoisture", "crop", "equipmentWidth"} <= set(result.missing_inputs)
    assert "bu/ac, t/ha" in next(v for k, v in result.missing_inputs.items() if k.lower() == "unit of 'yield'")
    std = result.frame
    assert len(std) == len(src)
    assert std.geometry.x.mean() == pytest.approx(src["Lon"].mean(), rel=1e-12)
    assert std.geometry.y.mean() == pytest.approx(src["Lat"].mean(), rel=1e-12)
    raw_yield = source.frame[next(c for c in source.frame.columns if c.lower() == "yield")]
    assert pd.to_numeric(raw_yield).mean() == pytest.approx(src["Yield"].mean(), rel=1e-9)
