"""Damaged shapefiles say so, built from the real John Deere wheat export (18,400 points): a .dbf whose header
lies about its record count, a truncated .dbf, damaged field descriptors, a truncated .shx. GDAL reads each of
them without complaint and returns a fraction of the points."""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import dagster as dg
import pyogrio
import pytest

from leaf_dagster.config import save
from leaf_dagster.errors import ConfigError, DamagedShapefile
from leaf_dagster.errors import CONVERSION_FAILED
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.readers import read_machine_file
from leaf_dagster.readers.shapefile_integrity import read_dbf_header, shapefile_problems
from leaf_dagster.storage import Storage

from .conftest import JD_WHEAT, JD_WHEAT_ZIP, MONTANA

POINTS = 18_400  # SOURCE.md: 18,400 PointZ


@pytest.fixture
def wheat(real: Path, tmp_path: Path) -> Path:
    """The export's members, extracted to a folder the test may damage."""
    folder = tmp_path / "wheat"
    with zipfile.ZipFile(real / MONTANA / JD_WHEAT_ZIP) as zf:
        for info in zf.infolist():
            if not info.filename.startswith("__MACOSX") and not info.is_dir():
                (folder / Path(info.filename).name).parent.mkdir(parents=True, exist_ok=True)
                (folder / Path(info.filename).name).write_bytes(zf.read(info))
    return folder


def members(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def dbf(folder: Path) -> Path:
    return folder / f"{JD_WHEAT}.dbf"


def patch(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


def truncate_to_records(path: Path, records: int) -> int:
    """Cut the .dbf after `records` whole records; returns the records left, from the header's own sizes."""
    header, _ = read_dbf_header(path)
    assert header is not None
    path.write_bytes(path.read_bytes()[: header.header_bytes + records * header.record_bytes])
    return (path.stat().st_size - header.header_bytes) // header.record_bytes


def test_the_real_export_is_intact(wheat: Path) -> None:
    header, problems = read_dbf_header(dbf(wheat))
    assert problems == [] and header is not None
    assert header.records == POINTS and header.record_bytes == 216  # 13 fields + the deletion flag
    assert shapefile_problems(members(wheat)) == []
    (found,) = detect_machine_files(wheat)
    assert read_machine_file(found).point_count == POINTS


def test_a_header_that_lies_about_its_record_count(wheat: Path) -> None:
    patch(dbf(wheat), 4, struct.pack("<I", 59))
    assert len(pyogrio.read_dataframe(wheat / f"{JD_WHEAT}.shp")) == 59  # what GDAL silently returns
    (found,) = detect_machine_files(wheat)
    with pytest.raises(DamagedShapefile) as caught:
        read_machine_file(found)
    assert caught.value.problems == [
        f"the .dbf is longer than its header says: its header declares 59 records, the file holds {POINTS}"]
    assert str(caught.value).startswith(f"{JD_WHEAT}.shp: damaged shapefile: ")


def test_a_truncated_dbf(wheat: Path) -> None:
    left = truncate_to_records(dbf(wheat), 6027)
    assert left == 6027 and len(pyogrio.read_dataframe(wheat / f"{JD_WHEAT}.shp", use_arrow=True)) == left
    assert shapefile_problems(members(wheat)) == [
        f"the .dbf is truncated: its header declares {POINTS} records, the file holds {left}",
        f"the .dbf holds {left} records but the .shx indexes {POINTS} shapes"]


def test_a_dbf_cut_inside_a_record(wheat: Path) -> None:
    truncate_to_records(dbf(wheat), 100)
    with dbf(wheat).open("ab") as fh:
        fh.write(b" 12.5")
    assert shapefile_problems(members(wheat))[0] == "the .dbf is cut inside a record (5 bytes after 100 whole records)"


@pytest.mark.parametrize("offset,data,problem", [
    (8, struct.pack("<H", 449 + 32), f"the .dbf header is damaged ({POINTS - 1} of {POINTS - 1} records do not "
                                     "start where the header places them)"),
    (10, struct.pack("<H", 200), "the .dbf header is damaged (records of 200 bytes, its 13 fields need 216)"),
    (32, bytes(32), "the .dbf header is damaged (field 1 of 13 has no valid name or type)"),
    (4, bytes(28), "the .dbf header is damaged (header length 0 bytes, file 3974849 bytes)"),
])
def test_damaged_dbf_headers(wheat: Path, offset: int, data: bytes, problem: str) -> None:
    patch(dbf(wheat), offset, data)
    assert shapefile_problems(members(wheat))[0] == problem


def test_a_truncated_shx_and_shp(wheat: Path) -> None:
    shx = wheat / f"{JD_WHEAT}.shx"
    shx.write_bytes(shx.read_bytes()[:-800])
    shp = wheat / f"{JD_WHEAT}.shp"
    shp.write_bytes(shp.read_bytes()[:-44])
    assert shapefile_problems(members(wheat)) == [
        "the .shp is truncated: its header declares 809700 bytes, the file has 809656",
        "the .shx is truncated: its header declares 147300 bytes, the file has 146500"]


def test_renamed_members_are_checked_the_same(wheat: Path) -> None:
    for member in members(wheat):
        member.rename(wheat / f"renamed{member.suffix.upper()}")
    truncate_to_records(wheat / "renamed.DBF", 10)
    (found,) = detect_machine_files(wheat)
    with pytest.raises(DamagedShapefile, match="the file holds 10"):
        read_machine_file(found)


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for member in members(folder):
            zf.write(member, member.name)
    return target


def test_a_damaged_upload_fails_conversion_with_the_reason(wheat: Path, tmp_path: Path,
                                                          instance: dg.DagsterInstance) -> None:
    left = truncate_to_records(dbf(wheat), 6027)
    storage = Storage(tmp_path / "data")
    result = process_upload(zip_folder(wheat, tmp_path / "damaged.zip"), storage, instance, leaf_user_id="g",
                            provider="JohnDeere")
    (file,) = result["files"]
    assert file["status"] == "failed"
    assert file["steps"]["rawGeojson"] == {"status": "failed", "message": CONVERSION_FAILED}
    details = storage.records.get("files", file["id"])["steps"]["rawGeojson"]["details"]
    assert f"the .dbf is truncated: its header declares {POINTS} records, the file holds {left}" in details["reason"]
    assert result["batch"]["status"] == "FAILED"
    assert intact_check(instance, storage, file["id"])[:2] == (False, dg.AssetCheckSeverity.WARN)

    # the user asks for such files to be read anyway: processed, with the damage in the notes and a warning
    save(storage, {"acceptDamagedShapefiles": True}, leaf_user_id="g")
    shutil.rmtree(storage.root / "batches")
    again = process_upload(zip_folder(wheat, tmp_path / "damaged-again.zip"), storage, instance, leaf_user_id="g",
                           provider="JohnDeere")
    (file,) = again["files"]
    assert file["status"] == "processed"
    raw = storage.records.get("files", file["id"])["raw"]
    assert raw["recordCount"] == left
    assert raw["warnings"] == [f"damaged shapefile read anyway (acceptDamagedShapefiles): the .dbf is truncated: "
                               f"its header declares {POINTS} records, the file holds {left}",
                               f"damaged shapefile read anyway (acceptDamagedShapefiles): the .dbf holds {left} "
                               f"records but the .shx indexes {POINTS} shapes"]
    assert raw["warnings"][0] in raw["notes"]
    assert intact_check(instance, storage, file["id"]) == (False, dg.AssetCheckSeverity.WARN, "; ".join(raw["warnings"]))


def intact_check(instance: dg.DagsterInstance, storage: Storage, file_id: str) -> tuple:
    """The source_intact check of the file's latest run: (passed, severity, description)."""
    run_id = storage.records.get("files", file_id)["lastRunId"]
    (entry,) = [e for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
                if e.dagster_event.event_specific_data.check_name == "source_intact"]
    evaluation = entry.dagster_event.event_specific_data
    return evaluation.passed, evaluation.severity, evaluation.description


def test_the_setting_is_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="acceptDamagedShapefiles must be true or false"):
        save(Storage(tmp_path), {"acceptDamagedShapefiles": "yes"})


def test_a_byte_13_inside_a_field_descriptor_is_no_end_of_the_list(wheat: Path) -> None:
    """0x0D ends the list of fields only at the start of a descriptor: a field with 13 decimals (or a width or
    offset of 13, as ArcGIS's N(13,11) fields have) is an ordinary header."""
    header, _ = read_dbf_header(dbf(wheat))
    assert header is not None
    patch(dbf(wheat), 32 + 17, bytes([13]))  # the first field's decimal count
    assert read_dbf_header(dbf(wheat))[1] == []
    assert shapefile_problems(members(wheat)) == []
    assert len(pyogrio.read_dataframe(wheat / f"{JD_WHEAT}.shp")) == POINTS


def test_every_real_shapefile_is_intact(real: Path, real2: Path, tmp_path: Path) -> None:
    """No false alarm on any shapefile of the corpus, zipped or not."""
    for archive in [*real.rglob("*.zip"), *real2.rglob("*.zip")]:
        with zipfile.ZipFile(archive) as zf:
            if any(n.lower().endswith(".shp") for n in zf.namelist()):
                zf.extractall(tmp_path / archive.stem)
    shapefiles = [p for root in (real, real2, tmp_path) for p in root.rglob("*") if p.suffix.lower() == ".shp"
                  and not p.name.startswith("._") and "__MACOSX" not in p.parts]  # macOS resource forks
    assert len(shapefiles) >= 20
    for shp in shapefiles:
        assert shapefile_problems(sorted(shp.parent.glob(shp.stem + ".*"))) == [], shp.name
