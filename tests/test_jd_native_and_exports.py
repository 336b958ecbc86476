"""John Deere data in real2: native GreenStar 2/3 cards (recognised, reported once per card) and the 2016
Operations Center shapefile exports (PointZ with NaN Z/M, blank ControlRate, tank mixes) through the
pipeline, checked against the SOURCE.md oracle table."""

from __future__ import annotations

import zipfile
from pathlib import Path

import dagster as dg
import pytest

from leaf_dagster import config
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.ingest.safe_zip import extract_archive
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.storage import Storage

from .conftest import make_zip

CARDS = "jd-greenstar-gs2-gs3-native-datacards"
GS2_ZIP = "GS2 - 2600 Documentation Data - Field 1.zip"
GS3_ZIP = "GS3 - 2630 Documentation Data - Field 1.zip"
GS2_MESSAGE = "John Deere GreenStar 2 (2600) files are not supported"
GS3_MESSAGE = "John Deere GreenStar 3 (2630) files are not supported"
EXPORTS = "jd-opscenter-shapefile-exports-2016"
ACRE_M2 = 4046.8564224


def _detected(archive: Path, tmp_path: Path):
    extract_archive(archive, tmp_path / "x")
    return detect_machine_files(tmp_path / "x")


def _entries(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


@pytest.mark.parametrize("archive, logs, fmt, message", [(GS2_ZIP, 23, "GS2", GS2_MESSAGE),
                                                         (GS3_ZIP, 47, "GS3", GS3_MESSAGE)])
def test_greenstar_card_is_one_machine_file(real2: Path, tmp_path: Path, archive: str, logs: int, fmt: str,
                                            message: str) -> None:
    (card,) = _detected(real2 / CARDS / archive, tmp_path)
    entries = _entries(real2 / CARDS / archive)
    assert card.file_format == fmt and card.unsupported_reason == message
    assert sum(m.suffix == ".fdd" for m in card.members) == logs
    assert len(card.members) == len(entries)  # every .fdl, .fdd and .fdr of the card


def test_greenstar_renamed_nested_and_flattened(real2: Path, tmp_path: Path) -> None:
    """Detection reads the generation from the .fdl files, so it holds when the folders are renamed, the
    card is zipped inside another zip, or the logs lie loose without their RCD layout."""
    gs3 = _entries(real2 / CARDS / GS3_ZIP)
    renamed = make_zip(tmp_path / "inner.zip", {n.replace("GS3_2630/", "card of 2013/"): b for n, b in gs3.items()})
    nested = make_zip(tmp_path / "upload.zip", {"backup/inner.zip": renamed})
    (card,) = _detected(nested, tmp_path / "nested")
    assert card.unsupported_reason == GS3_MESSAGE and card.name == "card of 2013"
    assert sum(m.suffix == ".fdl" for m in card.members) == 47

    flat = make_zip(tmp_path / "flat.zip", {f"logs/{Path(n).name}": b for n, b in gs3.items()})
    (loose,) = _detected(flat, tmp_path / "flat")
    assert loose.unsupported_reason == GS3_MESSAGE and loose.name == "logs"

    gs2 = _entries(real2 / CARDS / GS2_ZIP)
    both = make_zip(tmp_path / "both.zip", {**{f"usb/{n}": b for n, b in gs2.items()},
                                            **{f"other/{n}": b for n, b in gs3.items()}})
    cards = sorted((c.name, c.unsupported_reason) for c in _detected(both, tmp_path / "both"))
    assert cards == [("GS3_2630", GS3_MESSAGE), ("usb", GS2_MESSAGE)]


def test_greenstar_card_fails_original_file_once(real2: Path, tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    with dg.instance_for_test() as instance:
        result = process_upload(real2 / CARDS / GS2_ZIP, storage, instance, leaf_user_id="g", provider="JohnDeere")
    (card,) = result["files"]
    assert card["steps"]["originalFile"] == {"status": "failed", "message": GS2_MESSAGE}
    assert card["steps"]["rawGeojson"]["status"] == "skipped"


# ---------------------------------------------------------------- Operations Center exports, 2016

# layer -> (points, rate column, area-weighted mean rate, area in acres, total, summary total key)
ORACLE = {
    ("Harvest", "Merriweather Farms-JT-01-Soybeans"): (40960, "dryVolumePerArea", 77.1039, 25.1820, 1941.63, "totalDryVolume"),
    ("Seeding", "Merriweather Farms-JT-01-Soybeans"): (55285, "seedRate", 138832.2981, 24.9568, 3464804, "totalPlanted"),
    ("Application", "Merriweather Farms-JT-01-Corn Rescue Use 1"): (38380, "appliedRate", 12.8107, 31.1008, 398.42, "totalApplied"),
    ("Application", "Merriweather Farms-JT-01-Priaxor Fastac Use 1"): (31346, "appliedRate", 15.1668, 22.1785, 336.38, "totalApplied"),
    ("Application", "Merriweather Farms-JT-01-SB 2 PowerMax only Use 1"): (4015, "appliedRate", 17.3857, 2.2935, 39.87, "totalApplied"),
    ("Application", "Merriweather Farms-JT-01-Sonic Tilled Use 1"): (28650, "appliedRate", 13.3966, 26.3774, 353.37, "totalApplied"),
}


@pytest.fixture(scope="module")
def exports(real2: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Storage, dict[tuple[str, str], dict]]:
    """The three export zips through the pipeline with cleanup off, so every source point is kept, as in the
    oracle table (Leaf's cleanup would drop the harvest's 0-yield points)."""
    storage = Storage(tmp_path_factory.mktemp("exports") / "data")
    config.save(storage, {"cleanupStandardGeojson": False})
    files: dict[tuple[str, str], dict] = {}
    with dg.instance_for_test() as instance:
        for kind in ("Harvest", "Seeding", "Application"):
            upload = real2 / EXPORTS / f"Export From MyJohnDeere - {kind}.zip"
            for file in process_upload(upload, storage, instance, leaf_user_id="g", provider="JohnDeere")["files"]:
                files[(kind, file["fileName"])] = file
    return storage, files


@pytest.mark.parametrize("layer", list(ORACLE), ids=[f"{k}-{n.rsplit('-', 1)[-1]}" for k, n in ORACLE])
def test_opscenter_layer_matches_oracle(exports: tuple[Storage, dict], layer: tuple[str, str]) -> None:
    storage, files = exports
    points, rate, weighted_mean, acres, total, total_key = ORACLE[layer]
    file = files[layer]
    assert file["status"] == "processed" and file["pointCount"] == points
    assert file["terminalTotals"] is None  # the Deere metadata carries units and the recipe, no totals
    frame = storage.read_geoparquet("standard", file["id"])
    area_ac = frame["area"] / ACRE_M2  # SWATHWIDTH x DISTANCE, in m2 in the standard output
    assert area_ac.sum() == pytest.approx(acres, abs=5e-5)
    assert (frame[rate] * area_ac).sum() / area_ac.sum() == pytest.approx(weighted_mean, abs=5e-5)
    summary = storage.records.get("files", file["id"])["summary"]["properties"]
    assert summary[total_key]["value"] == pytest.approx(total, abs=0.006 if total < 1e4 else 0.5)


def test_opscenter_layers_with_default_cleanup(real2: Path, tmp_path: Path) -> None:
    """With Leaf's defaults the seeding layer keeps every point that has a seed rate: its total is unchanged."""
    import pyogrio

    storage = Storage(tmp_path / "data")
    upload = real2 / EXPORTS / "Export From MyJohnDeere - Seeding.zip"
    with dg.instance_for_test() as instance:
        (file,) = process_upload(upload, storage, instance, leaf_user_id="g", provider="JohnDeere")["files"]
    source = pyogrio.read_dataframe(f"/vsizip/{upload}/doc/Merriweather Farms-JT-01-Soybeans.shp")
    assert source["ControlRate"].isna().all() or (source["ControlRate"].astype(str).str.strip() == "").all()
    assert file["pointCount"] == int((source["AppliedRate"] > 0).sum())
    summary = storage.records.get("files", file["id"])["summary"]["properties"]
    assert summary["totalPlanted"]["value"] == pytest.approx(3464804, abs=0.5)
