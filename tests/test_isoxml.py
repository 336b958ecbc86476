"""ISOXML TaskData on the real sets: published values, operation types, point counts, values.

Expected values are recomputed here without the reader: the TLG binaries are walked with plain `struct`
following the record layout of ISO 11783-10 (docs isoxml.md 3.3), headers read with ElementTree, and
each DLV column forward-filled and scaled with factors written in this file.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leaf_dagster.errors import ReaderError
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.ingest.safe_zip import extract_archive
from leaf_dagster.model import DetectedFile
from leaf_dagster.readers import read_machine_file
from leaf_dagster.readers.isoxml import parse_header, decode
from leaf_dagster.standard.standardize import standardize

from .tlg_oracle import count_working, read_tlg

KRONE = "isoxml-cci-krone-forage-harvester/ValidTimeLogs"
CNH = "isoxml-cnh-planter-aircart"
TOPCON = "isoxml-topcon-caseih-planter-xfr/AFE.zip"
DEUTZ = "isoxml-topcon-deutz-tractor-xfr-small"
KVERNELAND = "isoxml-kverneland-imt-seeding-nested-zips"


# ---------------------------------------------------------------- an independent reader, plain struct

def struct_read(header_path: Path, binary_path: Path) -> tuple[list[tuple[int, str]], list[dict]]:
    """(DLVs as (DDI, element), records) with each record {"ptn": {...}, "time": (ms, days), "values": {i: v}}."""
    tlg = read_tlg(header_path, binary_path)
    return [(d, e) for d, e, _ in tlg.dlvs], [{"ptn": r.ptn, "time": r.time, "values": r.values} for r in tlg.records]


def filled(records: list[dict], index: int) -> np.ndarray:
    out, last = [], np.nan
    for rec in records:
        last = rec["values"].get(index, last)
        out.append(last)
    return np.asarray(out, dtype=float)


def dlv_index(dlvs: list[tuple[int, str]], ddi: int, element: str) -> int:
    return dlvs.index((ddi, element))


def read_all(root: Path) -> dict[str, tuple[DetectedFile, object]]:
    return {f.layer: (f, read_machine_file(f)) for f in detect_machine_files(root) if f.file_format == "ISO11783"}


def unzip(archive: Path, target: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(target)
    return target


# ---------------------------------------------------------------- published values (isoxml.md 7.2)

def test_published_values_forage_harvester(real: Path) -> None:
    folder = real / KRONE
    header = parse_header((folder / "TLG00001.xml").read_bytes(), "TLG00001")
    log = decode(header, (folder / "TLG00001.bin").read_bytes())
    assert log.count == 4716 and log.trailing_bytes == 0
    index = {s.ddi: s.index for s in header.dlvs if s.element == "DET-1"}
    assert log.logged(index[141]) == 4716
    assert log.logged(index[148]) == 560
    assert date(1980, 1, 1) + timedelta(days=int(log.time_days[1])) == date(2020, 1, 2)

    header2 = parse_header((folder / "TLG00002.xml").read_bytes(), "TLG00002")
    log2 = decode(header2, (folder / "TLG00002.bin").read_bytes())
    _, values = log2.entries(next(s.index for s in header2.dlvs if s.ddi == 90))
    assert int(values[-1]) - int(values[0]) == 242461
    # the same from the plain struct walk
    dlvs, records = struct_read(folder / "TLG00002.xml", folder / "TLG00002.bin")
    logged = [r["values"][dlv_index(dlvs, 90, "DET-1")] for r in records if dlv_index(dlvs, 90, "DET-1") in r["values"]]
    assert logged[-1] - logged[0] == 242461


def test_topcon_deutz_matches_parsed_json(real: Path, tmp_path: Path) -> None:
    folder = unzip(real / DEUTZ / "2021-04-09T15_33_26_taskdata.zip", tmp_path) / "TASKDATA"
    reference = json.loads((real / DEUTZ / "parsed.json").read_text())["timeLogs"]
    header = parse_header((folder / "TLG00001.XML").read_bytes(), "TLG00001")
    log = decode(header, (folder / "TLG00001.BIN").read_bytes())
    assert log.count == len(reference) == 207
    keys = {f"{s.ddi:04X}_{s.element}": s.index for s in header.dlvs}
    columns = {key: log.column(i, fill=False) for key, i in keys.items()}
    compared = 0
    for i, ref in enumerate(reference):
        pos = ref["position"]
        assert log.ptn["north"][i] == round(pos["PositionNorth"] * 1e7)
        assert log.ptn["east"][i] == round(pos["PositionEast"] * 1e7)
        assert log.ptn["up"][i] == pos["PositionUp"]
        assert log.ptn["status"][i] == int(pos["PositionStatus"])
        assert log.ptn["pdop"][i] == round(pos["PDOP"] * 10) and log.ptn["hdop"][i] == round(pos["HDOP"] * 10)
        assert log.ptn["satellites"][i] == pos["NumberOfSatellites"]
        assert log.ptn["gps_time"][i] == pos["GpsUtcTime"] and log.ptn["gps_date"][i] == pos["GpsUtcDate"]
        for key, value in ref["values"].items():
            assert columns[key][i] == value, (i, key)
            compared += 1
        assert sum(not np.isnan(c[i]) for c in columns.values()) == len(ref["values"])
        # the JSON's time has the old 1970 epoch bug of its writer: exactly 3652 days early
        ours = np.datetime64("1980-01-01", "ms") + int(log.time_days[i]) * np.timedelta64(86_400_000, "ms") \
            + np.timedelta64(int(log.time_ms[i]), "ms")
        theirs = np.datetime64(ref["time"].rstrip("Z"), "ms")
        assert ours - theirs == np.timedelta64(3652, "D")
    assert compared == 140


# ---------------------------------------------------------------- every real set, through the reader

def test_forage_harvester_every_task(real: Path) -> None:
    found = read_all(real / KRONE)
    assert len(found) == 19 and all(layer.endswith("|harvested") for layer in found)
    assert sum(len(table.frame) for _, table in found.values()) == 61314
    detected, table = found["TSK14|harvested"]  # two time logs: TLG00019 + TLG00020
    assert table.hints["timeLogs"] == ["TLG00019", "TLG00020"]
    frames = [struct_read(real / KRONE / f"{n}.xml", real / KRONE / f"{n}.bin") for n in ("TLG00019", "TLG00020")]
    assert len(table.frame) == sum(len(r) for _, r in frames)
    frame = table.frame
    assert table.dialect == "STANDARD" and table.hints["operation"] == "harvested"
    assert str(frame["timestamp"].dtype).startswith("datetime64")
    # logs in time order: TLG00019's records first
    assert frame["timestamp"].iloc[0] < frame["timestamp"].iloc[len(frames[0][1])]

    def column(ddi: int, element: str = "DET-1") -> np.ndarray:
        return np.concatenate([filled(r, dlv_index(d, ddi, element)) for d, r in frames])

    assert frame["wetMassPerArea"].mean() == pytest.approx(np.nanmean(column(84)) * 1e-5)  # mg/m2 -> t/ha
    assert frame["harvestMoisture"].mean() == pytest.approx(np.nanmean(column(99)) / 10_000)  # ppm -> %
    assert frame["cropFlow"].mean() == pytest.approx(np.nanmean(column(87)) * 3.6e-6)  # mg/s -> t/h
    assert frame["equipmentWidth"].mean() == pytest.approx(np.nanmean(column(67, "DET-123456789")) / 1000)
    on = column(141)
    assert (frame["recordingStatus"] == "On").sum() == int((on == 1).sum())
    assert table.units["wetMassPerArea"] == "t/ha" and table.units["cropFlow"] == "t/h"
    # totals: per-record differences sum to last - first of each log
    for name, ddi, scale in (("wetMass", 90, 1.0), ("fuelUsed", 148, 1e-3)):
        expected = sum((np.nanmax(filled(r, dlv_index(d, ddi, "DET-1"))) - np.nanmin(filled(r, dlv_index(d, ddi, "DET-1")))) * scale
                       for d, r in frames)
        assert frame[name].sum() == pytest.approx(expected)
    moved = sum(np.nanmax(filled(r, dlv_index(d, 117, "DET-1"))) - np.nanmin(filled(r, dlv_index(d, 117, "DET-1")))
                + np.nanmax(filled(r, dlv_index(d, 118, "DET-1"))) - np.nanmin(filled(r, dlv_index(d, 118, "DET-1")))
                for d, r in frames) / 1000
    assert frame["distance"].sum() >= moved * 0.999
    assert table.hints["machinery"][0]["brand"] == "Krone"
    assert any("GPS" in n or "terminal clock" in n for n in table.notes)
    result = standardize(table)
    assert result.operation_type == "harvested" and not result.missing


def test_forage_harvester_lon_lat(real: Path) -> None:
    _, table = read_all(real / KRONE)["TSK1|harvested"]
    dlvs, records = struct_read(real / KRONE / "TLG00001.xml", real / KRONE / "TLG00001.bin")
    assert len(table.frame) == len(records) == 4716
    assert table.frame.geometry.x.to_numpy() == pytest.approx([r["ptn"]["B"] * 1e-7 for r in records])
    assert table.frame.geometry.y.to_numpy() == pytest.approx([r["ptn"]["A"] * 1e-7 for r in records])
    assert table.frame.crs.to_epsg() == 4326


@pytest.fixture(scope="module")
def cnh(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cnh")
    for name in ("Another-single-ACP.zip", "MultipleActualCulturalPractices.zip"):
        unzip(real / CNH / name, root / Path(name).stem)
    return root


def test_cnh_planter_and_aircart(cnh: Path) -> None:
    single = cnh / "Another-single-ACP"
    found = read_all(single)
    layers = set(found)
    # one task of the Valoterra planter yields a planted and an applied machine file
    assert {"TSK-8|planted", "TSK-8|applied"} <= layers
    planted, applied = found["TSK-8|planted"][1], found["TSK-8|applied"][1]
    assert planted.hints["operation"] == "planted" and applied.hints["operation"] == "applied"
    assert planted.hints["products"] == ["Corn_PF"] and applied.hints["products"] == ["56E"]
    assert set(planted.frame["product"]) == {"Corn_PF"}
    # the planter logs only setpoints for seed and fertilizer (DDI 11, 6): no actual rate is made up
    assert "seedRate" not in planted.frame and "appliedRate" not in applied.frame
    dlvs, records = struct_read(single / "TLG00003.XML", single / "TLG00003.BIN")
    assert len(planted.frame) == len(applied.frame) == len(records)
    assert planted.frame["seedRateTarget"].mean() == pytest.approx(np.nanmean(filled(records, dlv_index(dlvs, 11, "DET-655"))) * 10)
    assert applied.frame["appliedRateTarget"].mean() == pytest.approx(np.nanmean(filled(records, dlv_index(dlvs, 6, "DET-656"))) / 100)
    assert planted.units["seedRateTarget"] == "seeds/ha" and applied.units["appliedRateTarget"] == "kg/ha"

    # air cart seeding by mass (DDI 7, kg/ha) and a sprayer by volume (DDI 2, L/ha)
    seeding = found["TSK-14|planted"][1]
    dlvs, records = struct_read(single / "TLG00006.XML", single / "TLG00006.BIN")
    assert len(seeding.frame) == len(records)
    assert seeding.units["seedRate"] == "kg/ha"
    assert seeding.frame["seedRate"].mean() == pytest.approx(np.nanmean(filled(records, dlv_index(dlvs, 7, "DET-644"))) / 100)
    assert seeding.hints["products"] == ["Wheat_PF"]
    spraying = found["TSK-22|applied"][1]
    dlvs, records = struct_read(single / "TLG00011.XML", single / "TLG00011.BIN")
    assert spraying.units["appliedRate"] == "L/ha"
    # DDI 2 logged in mm3/m2 (0.01 L/ha), 100x the dictionary's step: see test_terminal_totals
    assert spraying.frame["appliedRate"].mean() == pytest.approx(np.nanmean(filled(records, dlv_index(dlvs, 2, "DET-685"))) * 1e-2)
    assert spraying.frame["product"].unique().tolist() == ["Herbicide_PF"]
    result = standardize(spraying)
    assert result.operation_type == "applied" and not result.missing
    # GPS date and time are logged: times are UTC from GPS
    gps = records[0]["ptn"]
    first = np.datetime64("1980-01-01", "ms") + gps["I"] * np.timedelta64(86_400_000, "ms") + np.timedelta64(gps["H"], "ms")
    assert spraying.frame["timestamp"].iloc[0] == pd.Timestamp(first, tz="UTC")
    assert any("GPS UTC" in n for n in spraying.notes)

    # every record of the 15 time logs is read once per operation of its task
    per_task: dict[str, int] = {}
    for layer, (_, table) in found.items():
        per_task[layer.split("|")[0]] = len(table.frame)
    assert sum(per_task.values()) == 4879
    # the same logs with a trimmed TASKDATA.XML in a sub-folder: the same machine files
    other = read_all(cnh / "MultipleActualCulturalPractices")
    assert set(other) == layers
    assert all(len(other[k][1].frame) == len(found[k][1].frame) for k in layers)


def test_cnh_extra_files_are_members_not_machine_files(cnh: Path) -> None:
    found = detect_machine_files(cnh / "Another-single-ACP")
    assert found and all(f.file_format == "ISO11783" for f in found)
    names = {m.name for m in found[0].members}
    assert {"TASKDATA.XML", "LINKLIST.XML", "IMPL.JSN", "COV-3.BIN", "TLG00000.XML", "TLG00000.BIN"} <= names
    assert all(f.primary.name == "TASKDATA.XML" for f in found)


def test_topcon_planter_xfr_not_named_taskdata(real: Path, tmp_path: Path) -> None:
    folder = unzip(real / TOPCON, tmp_path) / "SingleLayer_TASKDATA"
    found = read_all(tmp_path)
    assert set(found) == {"TSK4|planted", "TSK4|applied"}
    logs = [struct_read(folder / f"TLG0000{i}.XML", folder / f"TLG0000{i}.BIN") for i in (1, 2, 3)]
    assert [len(r) for _, r in logs] == [3633, 3633, 3633]  # 10,899 records: one set of records split over 3 logs
    planted, applied = found["TSK4|planted"][1], found["TSK4|applied"][1]
    assert len(planted.frame) == len(applied.frame) == 3633
    assert any("joined record by record" in n for n in planted.notes)
    (d1, r1), (d2, r2), (d3, r3) = logs
    assert planted.frame["seedRate"].mean() == pytest.approx(np.nanmean(filled(r2, dlv_index(d2, 12, "DET-8"))) * 10)
    assert planted.frame["speed"].mean() == pytest.approx(np.nanmean(filled(r2, dlv_index(d2, 397, "DET-1"))) / 1000)
    assert planted.frame["heading"].mean() == pytest.approx(np.nanmean(filled(r2, dlv_index(d2, 144, "DET-1"))) / 1000)
    # singulation is logged per row unit: the mean over the row units that have logged a value
    rows = [filled(r1, dlv_index(d1, 415, f"DET-{n}")) for n in range(86, 108)]
    rows += [filled(r2, dlv_index(d2, 415, f"DET-{n}")) for n in (108, 109)]
    rows += [filled(r3, dlv_index(d3, 415, f"DET-{n}")) for n in range(78, 86)]
    with np.errstate(all="ignore"), _quiet():
        expected = np.nanmean(np.vstack(rows), axis=0) / 10_000
    assert planted.frame["singulation"].to_numpy() == pytest.approx(expected, nan_ok=True)
    assert planted.units["downForce"] == "N" and planted.units["singulation"] == "percentage"
    assert applied.frame["appliedRate"].mean() == pytest.approx(np.nanmean(filled(r3, dlv_index(d3, 2, "DET-9"))) * 1e-4)
    assert applied.units["appliedRate"] == "L/ha"
    assert planted.frame["elevation"].mean() == pytest.approx(np.mean([r["ptn"]["C"] for r in r1]) / 1000)
    assert planted.hints["machinery"][0]["name"].startswith("Case IH 2150S")
    assert {m["type"] for m in planted.hints["machinery"]} >= {"implement"}
    for table in (planted, applied):
        assert standardize(table).operation_type == table.hints["operation"]


class _quiet:
    """nanmean over rows that no row unit has logged yet warns; those rows are NaN on both sides."""

    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)


def test_tractor_only_is_an_unsupported_operation(real: Path, tmp_path: Path) -> None:
    unzip(real / DEUTZ / "2021-04-09T15_33_26_taskdata.zip", tmp_path)
    found = read_all(tmp_path)
    assert list(found) == ["TSK-1|datacollection"]
    table = found["TSK-1|datacollection"][1]
    assert table.hints["operation"] not in ("harvested", "planted", "applied", "tillage")
    assert len(table.frame) == 207
    assert table.hints["machinery"][0]["name"] == "8250-8280 TTV"
    result = standardize(table)
    assert not result.supported and result.operation_type == "datacollection"
    # GPS date + time give UTC: the first record is 15:28:03.799 on 2021-04-09 (GpsUtcTime 55683799 ms)
    assert str(table.frame["timestamp"].iloc[0]) == "2021-04-09 15:28:03.799000+00:00"


@pytest.mark.parametrize("archive", ["SingleDPD.zip", "MultiSubFolder.zip", "MultiSubFolderAndMac.zip"])
def test_kverneland_nested_zip_layouts(real: Path, tmp_path: Path, archive: str) -> None:
    extract_archive(real / KVERNELAND / archive, tmp_path / "x")
    found = [f for f in detect_machine_files(tmp_path / "x")]
    assert [(f.file_format, f.layer) for f in found] == [("ISO11783", "TSK1|planted")]
    table = read_machine_file(found[0])
    assert len(table.frame) == 373
    folder = found[0].primary.parent
    dlvs, records = struct_read(folder / "TLG00001.XML", folder / "TLG00001.BIN")
    assert table.frame["seedRate"].mean() == pytest.approx(np.nanmean(filled(records, dlv_index(dlvs, 12, "DET-452"))) * 10)
    assert table.frame["seedRateTarget"].mean() == pytest.approx(np.nanmean(filled(records, dlv_index(dlvs, 11, "DET-452"))) * 10)
    assert table.frame["equipmentWidth"].mean() == pytest.approx(np.nanmean(filled(records, dlv_index(dlvs, 67, "DET-452"))) / 1000)
    # PTN H is logged but 0 in every record: no GPS time, so the terminal clock dates the records (not midnight)
    assert any("PTN H" in n and "terminal clock" in n for n in table.notes)
    assert table.frame["timestamp"].nunique() > 300


# ---------------------------------------------------------------- detection and errors

def _copy_set(real: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in (real / KRONE).iterdir():
        if path.name in ("TASKDATA.XML", "TLG00001.xml", "TLG00001.bin"):
            shutil.copy(path, target / path.name.lower())
    return target


def test_detection_claims_the_folder(real: Path, tmp_path: Path) -> None:
    folder = _copy_set(real, tmp_path / "card" / "Taskdata")
    (folder / "stray.csv").write_text("lat,lon\n1,2\n")
    (tmp_path / "card" / "elsewhere.csv").write_text("lat,lon\n1,2\n")
    found = detect_machine_files(tmp_path)
    iso = [f for f in found if f.file_format == "ISO11783"]
    # only TLG00001 is present: the other 18 tasks are listed as unreadable, not dropped
    assert [f.layer for f in iso if not f.layer.endswith("|unreadable")] == ["TSK1|harvested"]
    assert len(iso) == 19
    assert {m.name for m in iso[0].members} == {"taskdata.xml", "tlg00001.xml", "tlg00001.bin", "stray.csv"}
    assert [f.name for f in found if f.file_format == "CSV"] == ["elsewhere"]


def test_missing_binary_and_logs_are_reported(real: Path, tmp_path: Path) -> None:
    folder = _copy_set(real, tmp_path / "t")
    (folder / "tlg00001.bin").unlink()
    found = detect_machine_files(tmp_path)
    layers = {f.layer for f in found}
    assert "TSK1|harvested" in layers  # the header alone tells the operation
    with pytest.raises(ReaderError, match="binary named by the task is missing"):
        read_machine_file(next(f for f in found if f.layer == "TSK1|harvested"))
    unreadable = [f for f in found if f.layer.endswith("|unreadable")]
    assert unreadable  # tasks whose time logs are not there at all are still listed
    with pytest.raises(ReaderError, match="missing"):
        read_machine_file(unreadable[0])


def test_taskdata_without_logged_task_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "TASKDATA"
    folder.mkdir()
    (folder / "TaskData.xml").write_text('<?xml version="1.0"?><ISO11783_TaskData VersionMajor="4" VersionMinor="2">'
                                        '<TSK A="TSK1" B="Plan" G="1"/></ISO11783_TaskData>')
    found = detect_machine_files(tmp_path)
    assert len(found) == 1 and found[0].file_format == "ISO11783"
    with pytest.raises(ReaderError, match="no task in this TaskData has a time log"):
        read_machine_file(found[0])


def test_bad_xml_and_truncated_header(real: Path, tmp_path: Path) -> None:
    folder = _copy_set(real, tmp_path / "t")
    (folder / "tlg00001.xml").write_bytes((folder / "tlg00001.xml").read_bytes()[:120])
    found = [f for f in detect_machine_files(tmp_path) if f.layer.startswith("TSK1|")]
    with pytest.raises(ReaderError, match="not valid XML"):
        read_machine_file(found[0])
    broken = tmp_path / "b" / "TASKDATA"
    broken.mkdir(parents=True)
    (broken / "TASKDATA.XML").write_text('<?xml version="1.0"?><ISO11783_TaskData VersionMajor="4"><TSK A="T"')
    found = detect_machine_files(tmp_path / "b")
    assert len(found) == 1
    with pytest.raises(ReaderError, match="not valid XML"):
        read_machine_file(found[0])


def test_truncated_last_record_is_dropped(real: Path, tmp_path: Path) -> None:
    folder = _copy_set(real, tmp_path / "t")
    data = (folder / "tlg00001.bin").read_bytes()
    (folder / "tlg00001.bin").write_bytes(data[:-3])
    detected = next(f for f in detect_machine_files(tmp_path) if f.layer == "TSK1|harvested")
    table = read_machine_file(detected)
    assert len(table.frame) == 4715
    assert any("truncated last record" in n for n in table.notes)


# ---------------------------------------------------------------- through the Dagster pipeline

def test_pipeline_sprayer_and_tractor_uploads(real: Path, tmp_path: Path) -> None:
    import dagster as dg

    from leaf_dagster.defs.in_process import process_upload
    from leaf_dagster.storage import Storage

    storage = Storage(tmp_path / "data")
    with dg.instance_for_test() as instance:
        cnh = process_upload(real / CNH / "Another-single-ACP.zip", storage, instance, leaf_user_id="grower-1",
                             provider="Other")
        tractor = process_upload(real / DEUTZ / "2021-04-09T15_33_26_taskdata.zip", storage, instance,
                                 leaf_user_id="grower-1", provider="Other")
    files = {f["fileName"]: f for f in cnh["files"]}
    assert {"20220919 Aussaat 25.77ha with... planted", "20220919 Aussaat 25.77ha with... applied"} <= set(files)
    sprayer = files["14.39ha Field applied"]
    assert sprayer["status"] == "processed", sprayer["steps"]
    assert sprayer["operationType"] == "applied" and 0 < sprayer["pointCount"] <= 731
    standard = storage.read_geoparquet("standard", sprayer["id"])
    assert (standard["appliedRate"].dropna() > 0).all() and standard["area"].notna().any()
    assert str(standard["timestamp"].dtype).startswith("datetime64")
    # the planter logged only setpoints: Leaf's required seedRate is missing, and the file says so
    planted = files["20220919 Aussaat 25.77ha with... planted"]
    assert "missing required properties: seedRate" in json.dumps(planted["steps"])
    (only,) = tractor["files"]
    assert only["status"] != "processed"
    assert "unsupported operation type: datacollection" in json.dumps(only["steps"])


# ---------------------------------------------------------------- working points against the plain struct walk

def _working_count(folder: Path, logs: list[str], elements: list[str]) -> int:
    """Positioned records with the named element's work state (DDI 141) on, counted by `tlg_oracle`."""
    total = 0
    for name in logs:
        header = next(p for p in folder.iterdir() if p.name.upper() == f"{name}.XML")
        binary = next(p for p in folder.iterdir() if p.name.upper() == f"{name}.BIN")
        tlg = read_tlg(header, binary)
        states = [(141, e) for e in elements if tlg.has(141, e)]
        total += count_working(tlg, states) if states else 0
    return total


def _standard_working(table: object) -> int:
    frame = standardize(table).frame
    return int((frame["recordingStatus"] == "On").sum())


def test_forage_harvester_working_points_every_task(real: Path) -> None:
    found = read_all(real / KRONE)
    for layer, (_, table) in found.items():
        assert standardize(table).operation_type == "harvested"
        assert _standard_working(table) == _working_count(real / KRONE, table.hints["timeLogs"], ["DET-1"]), layer


@pytest.mark.parametrize("archive, layer, element, operation", [
    ("isoxml-cnh-planter-aircart/Another-single-ACP.zip", "TSK-22|applied", "DET-667", "applied"),
    ("isoxml-cnh-planter-aircart/Another-single-ACP.zip", "TSK-8|planted", "DET-655", "planted"),
    ("isoxml-cnh-planter-aircart/Another-single-ACP.zip", "TSK-8|applied", "DET-656", "applied"),
    ("isoxml-cnh-planter-aircart/Another-single-ACP.zip", "TSK-6|planted", "DET-644", "planted"),
    ("isoxml-cnh-planter-aircart/Another-single-ACP.zip", "TSK-3|applied", "DET-3000142", "applied"),
    (TOPCON, "TSK4|planted", "DET-8", "planted"),
    (TOPCON, "TSK4|applied", "DET-9", "applied"),
    (f"{KVERNELAND}/SingleDPD.zip", "TSK1|planted", "DET-452", "planted"),
])
def test_working_points_match_the_struct_walk(real: Path, tmp_path: Path, archive: str, layer: str, element: str,
                                              operation: str) -> None:
    extract_archive(real / archive, tmp_path / "x")
    found = {f.layer: f for f in detect_machine_files(tmp_path / "x")}
    table = read_machine_file(found[layer])
    assert standardize(table).operation_type == operation
    folder = found[layer].primary.parent
    expected = _working_count(folder, table.hints["timeLogs"], [element])
    assert expected > 0 and _standard_working(table) == expected
