"""ISOXML cards of the second real corpus (real2), and cards derived from real ones for each class of
card that read wrong before (issue 10): section-only work states, rates on bins, counters that lie,
machines that are not harvests, values stored in their presentation's units.

Independent numbers come from `tlg_oracle` (a plain struct walk of the TLG binaries) and from the
terminals' own TIM totals as quoted in each set's SOURCE.md. Summaries are computed the way the
pipeline does it: standardize, Leaf's default cleanup, build_summary.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from shapely import MultiPolygon

from leaf_dagster.config import DEFAULTS
from leaf_dagster.derived.filters import cleanup_mask
from leaf_dagster.derived.summary import build_summary
from leaf_dagster.errors import ReaderError
from leaf_dagster.files import NO_POINTS, FileSteps
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.model import SourceTable
from leaf_dagster.readers import read_machine_file
from leaf_dagster.readers.isoxml import load_taskdata, parse_header
from leaf_dagster.readers.isoxml.points import ground_records, moved_counter
from leaf_dagster.readers.isoxml.scaling import MOISTURE_RANGE, scale_choice
from leaf_dagster.standard.standardize import standardize

from .tlg_oracle import count_working, read_tlg, write_tlg

FENDT = "isoxml-agco-fendt-ideal-combine-tim"
TRIMBLE = "isoxml-trimble-fmx-ym2000-potato-v1"
BALER = "isoxml-krone-smartconnect-comprima-baler/4fc231c3-b989-4831-968b-fc86c9aeb744.zip"
RAKE = "isoxml-krone-smartconnect-swadro-rake-bigm-mower/186abefa-91f5-4f02-8927-62092bb5020c.zip"
MOWER = "isoxml-krone-smartconnect-swadro-rake-bigm-mower/1fe5b512-088b-45d8-848a-9cfc61ad19e4.zip"
MOWER_V0 = "isoxml-krone-mower-anonymised-v0/ecdc65b8-0d93-4804-8234-5948624e2f52.zip"
BIGX_V4 = "isoxml-krone-smartconnect-bigx-forage-harvester/5c0ad7b4-598f-45c3-a0c1-47e781a6c51f.zip"
BIGX_V3 = "isoxml-krone-smartconnect-bigx-forage-harvester/b49660be-0749-4e1f-90cc-a3cc6800a305.zip"


def read_all(root: Path) -> dict[str, SourceTable | ReaderError]:
    out: dict[str, SourceTable | ReaderError] = {}
    for found in detect_machine_files(root):
        if found.file_format != "ISO11783":
            continue
        try:
            out[found.layer] = read_machine_file(found)
        except ReaderError as exc:
            out[found.layer] = exc
    return out


def unzip(archive: Path, target: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(target)
    return target


def summary_of(table: SourceTable, rules: dict | None = None) -> tuple[dict, int]:
    """(summary properties, kept points) the way the pipeline makes them (DEFAULT units, Leaf's cleanup)."""
    result = standardize(table)
    keep = cleanup_mask(result.frame, rules or DEFAULTS["cleanupRules"])
    frame = result.frame[keep]
    summary = build_summary(frame, result.units, {"operationType": result.operation_type}, MultiPolygon(), 0.0)
    return summary["properties"], len(frame)


def working(table: SourceTable) -> int:
    return int((standardize(table).frame["recordingStatus"] == "On").sum())


# ---------------------------------------------------------------- Fendt IDEAL combine (TIM totals)

@pytest.fixture(scope="module")
def fendt(real2: Path) -> dict[str, SourceTable | ReaderError]:
    return read_all(real2 / FENDT)


def test_fendt_raps_totals_match_the_terminal(real2: Path, fendt: dict) -> None:
    table = fendt["TSK-3|harvested"]
    assert standardize(table).operation_type == "harvested"
    # positioned records whose header (DET-7, the header DVC's function element) says it is working
    tlg = read_tlg(real2 / FENDT / "TLG00001.xml", real2 / FENDT / "TLG00001.bin")
    assert len(tlg.records) == 86_774  # SOURCE.md, "Records"
    assert working(table) == count_working(tlg, [(0x8D, "DET-7")]) == 74_132
    summary, kept = summary_of(table)
    assert kept > 0 and summary["crop"] == ["rapeseed"]
    assert table.frame["crop"].iloc[0] == "Raps"  # the source string is kept in the raw records
    # SOURCE.md, TIM totals table, row TSK-3 "Raps": 28,786 kg, 66,170 m2
    # the card logs mass in kg (DDI 90's unit), which Leaf's DEFAULT unit system keeps
    assert summary["totalWetMass"]["unit"] == "kg"
    assert summary["totalWetMass"]["value"] == pytest.approx(28_786, rel=0.02)
    assert summary["totalArea"]["value"] == pytest.approx(66_170, rel=0.05)
    # average moisture 0x0106 = 119,374 ppm (11.94 %) in the same row
    assert summary["harvestMoisture"]["avg"] == pytest.approx(11.94, abs=0.5)


def test_fendt_teat_has_no_crop_but_its_measures_match(real2: Path, fendt: dict) -> None:
    table = fendt["TSK-1|harvested"]
    tlg = read_tlg(real2 / FENDT / "TLG00003.xml", real2 / FENDT / "TLG00003.bin")
    assert len(tlg.records) == 64_145
    assert working(table) == count_working(tlg, [(0x8D, "DET-7")])
    # no crop type and a task name that is no crop: Leaf's cleanup drops every point
    assert summary_of(table)[1] == 0
    frame = table.frame
    on = (frame["recordingStatus"] == "On").to_numpy()
    # SOURCE.md TIM row TSK-1 "Teat": 17,147 kg, 47,440 m2
    assert frame["wetMass"].sum() == pytest.approx(17_147, rel=0.02)
    assert (frame["distance"] * frame["equipmentWidth"])[on].sum() == pytest.approx(47_440, rel=0.05)


def test_fendt_missing_binary_is_reported(fendt: dict) -> None:
    error = fendt["TSK-2|harvested"]
    assert isinstance(error, ReaderError) and "TLG00002.BIN" in str(error) and "missing" in str(error)


def test_fendt_traps(real2: Path, fendt: dict) -> None:
    data = load_taskdata(real2 / FENDT / "TASKDATA.XML")
    # DET ids are numbered across two DVCs
    assert data.device_of("DET-7").id == "DVC-2" and data.device_of("DET-4").id == "DVC-1"
    # width: the header's own actual width (DET-7, DDI 0x0043) is the sum of its sections that are on, as the
    # condensed work state 0x00A1 tells them, with the sections' DPT widths (783/784 mm; 10,970 mm in all)
    table = fendt["TSK-3|harvested"]
    assert table.frame["equipmentWidth"].max() == pytest.approx(10.970)
    tlg = read_tlg(real2 / FENDT / "TLG00001.xml", real2 / FENDT / "TLG00001.bin")
    section_widths = [783, 784, 783, 784, 783, 784, 784, 783, 784, 783, 784, 783, 784, 784]  # DPT 1016..1055
    logged, condensed = tlg.filled(0x43, "DET-7"), tlg.filled(0xA1, "DET-7")
    for i in range(0, len(tlg.records), 997):
        if condensed[i] is None or logged[i] is None:
            continue
        on = [(int(condensed[i]) & 0xFFFFFFFF) >> (2 * k) & 3 == 1 for k in range(14)]
        assert logged[i] == sum(w for w, o in zip(section_widths, on) if o)
    assert any(n.startswith("equipmentWidth: DDI 67 of DET-7") for n in table.notes)
    # the DVP of 0x005A is a g -> lb factor on a kg DDI: our mass follows the DDI, it is not 1000x off
    combine = data.devices["DVC-1"]
    dvp = combine.presentation(data.elements["DET-4"], 0x5A)
    assert dvp is not None and dvp.unit == "lb" and dvp.scale == pytest.approx(0.00220462)
    assert table.frame["wetMass"].sum() == pytest.approx(28_786, rel=0.02)
    # DFFE PGN-based DLVs carry D/E/F and never occur in the binary
    header = parse_header((real2 / FENDT / "TLG00001.xml").read_bytes(), "TLG00001")
    pgn = [s for s in header.dlvs if s.ddi == 0xDFFE]
    assert len(pgn) == 4
    tlg = read_tlg(real2 / FENDT / "TLG00001.xml", real2 / FENDT / "TLG00001.bin")
    assert all(not tlg.logged(0xDFFE, s.element) for s in pgn)


# ---------------------------------------------------------------- Trimble FmX potato harvester

def test_trimble_potato(real2: Path) -> None:
    found = read_all(real2 / TRIMBLE)
    empty = found["TSK-1|harvested"]
    assert isinstance(empty, ReaderError) and "recorded nothing" in str(empty)
    table = found["TSK-2|harvested"]
    records = [read_tlg(real2 / TRIMBLE / f"{n}.xml", real2 / TRIMBLE / f"{n}.bin") for n in ("TLG00002", "TLG00003")]
    assert [len(t.records) for t in records] == [257, 363]
    assert len(table.frame) == sum(count_working(t, []) for t in records) == 620  # all positioned, no work state
    result = standardize(table)
    assert result.operation_type == "harvested" and result.crop == "potatoes"
    # moisture 0x0063 is 10000 (1.00 %) in every record: a placeholder, not a measurement
    assert "harvestMoisture" not in table.frame and "harvestMoisture" in result.missing
    assert any("placeholder" in n for n in table.notes)
    # Latin-1 with the label ISO8859-1, lower-case DDIs, fixed DLV values in the TLG header
    data = load_taskdata(real2 / TRIMBLE / "TaskData.xml")
    assert any(p.unit == "µm" for p in data.devices["DVC-2"].dvp.values())
    header = parse_header((real2 / TRIMBLE / "TLG00002.xml").read_bytes(), "TLG00002")
    assert {(s.ddi, s.fixed) for s in header.dlvs if s.fixed is not None} >= {(0xE110, 8000), (0x0079, 720824)}


def test_trimble_proprietary_yield_is_a_mass_without_a_usable_area(real2: Path) -> None:
    """e10c 'Delta grain' sums to the task's total (e114) but the area it covers gives an impossible yield,
    so the reader does not make a yield of the proprietary DDIs."""
    tlg = read_tlg(real2 / TRIMBLE / "TLG00002.xml", real2 / TRIMBLE / "TLG00002.bin")
    grain_kg = sum(tlg.logged(0xE10C, "DET-1")) * 1e-6  # DVP 404: 2.20462e-06 lb per raw unit = mg
    assert grain_kg == pytest.approx(5307, rel=0.02)  # SOURCE.md TIM: TLG00002 e114 = 5307
    # 0x0074 = 148 m2 in the same TIM: 5.3 t on 148 m2 is 358 t/ha, not a potato yield (under ~100 t/ha)
    assert grain_kg / 148 * 10 > 300
    assert not {"wetMassPerArea", "dryMassPerArea"} & set(read_all(real2 / TRIMBLE)["TSK-2|harvested"].frame.columns)


def _latency_card(source: Path, target: Path, latency_ms: int, counter: bool, in_device: bool) -> Path:
    """A copy of the Trimble potato card that declares DDI 143 (actual value latency): as a fixed value in its
    time log headers, or (`in_device`) as a property (DPT) of the combine's device element; with `counter`,
    the logs are rewritten with a yield total counter (DDI 90) added too."""
    shutil.copytree(source, target)
    if in_device:
        tree = ET.parse(target / "TaskData.xml")
        dvc = next(d for d in tree.getroot().iter("DVC") if any(e.get("A") == "DET-1" for e in d.findall("DET")))
        ET.SubElement(next(e for e in dvc.findall("DET") if e.get("A") == "DET-1"), "DOR", {"A": "999"})
        ET.SubElement(dvc, "DPT", {"A": "999", "B": "008F", "C": str(latency_ms), "D": "Yield delay"})
        tree.write(target / "TaskData.xml", encoding="ISO-8859-1", xml_declaration=True)
    for name in ("TLG00002", "TLG00003"):
        header, binary = target / f"{name}.xml", target / f"{name}.bin"
        tlg = read_tlg(header, binary)
        if not in_device:
            tlg.dlvs.append((0x8F, "DET-1", latency_ms))
        if counter:
            tlg.dlvs.append((0x5A, "DET-1", None))
            for i, record in enumerate(tlg.records[::5]):
                record.values[len(tlg.dlvs) - 1] = 10 * i
        write_tlg(tlg, header, binary)
    return target


@pytest.mark.parametrize(("latency_ms", "counter", "in_device"),
                         [(-3000, False, False), (2000, False, False), (-3000, True, False), (-3000, False, True)])
def test_yield_values_shift_by_the_declared_latency(real2: Path, tmp_path: Path, latency_ms: int, counter: bool,
                                                    in_device: bool) -> None:
    """DDI 143 "Physical Actual Value Time Latency" (ISO 11783-11): a value communicated at t was physically
    true at t + latency (negative for a yield sensor behind the header), and nobody shifts the logs but the
    reader. So the crop flow shown at a record logged at t is the one logged at t - latency (the oracle's
    last record at or before that time; none when that time lies outside the log), with or without a yield
    counter."""
    card = _latency_card(real2 / TRIMBLE, tmp_path / "card", latency_ms, counter, in_device)
    table = read_all(card)["TSK-2|harvested"]
    expected, unshifted, counted = [], [], []
    first = 0  # the log's first row in the frame
    for name in ("TLG00002", "TLG00003"):
        tlg = read_tlg(card / f"{name}.xml", card / f"{name}.bin")
        times = [r.ptn["I"] * 86_400_000 + r.ptn["H"] for r in tlg.records]  # GPS UTC, as the reader dates them
        flow = [np.nan if v is None else v * 3.6e-6 for v in tlg.filled(0x57, "DET-1")]  # mg/s -> t/h

        def ground(t: int) -> int | None:  # the last record at or before time t; None outside the log
            return max(k for k, u in enumerate(times) if u <= t) if times[0] <= t <= times[-1] else None

        for t, own in zip(times, flow):
            source = ground(t - latency_ms)
            expected.append(np.nan if source is None else flow[source])
            unshifted.append(own)
        if counter:  # each counter value on the record of the ground it measured: (frame row, kg since the first)
            index = tlg.index(0x5A, "DET-1")
            placed = {ground(t + latency_ms): r.values[index] for t, r in zip(times, tlg.records) if index in r.values}
            placed.pop(None, None)  # measured for ground outside the log
            start = placed[min(placed)]
            counted += [(first + row, value - start) for row, value in placed.items()]
        first += len(times)
    frame = table.frame
    assert len(frame) == len(expected) == 620
    assert frame["cropFlow"].to_numpy() == pytest.approx(expected, nan_ok=True)
    moved = ~np.isclose(np.asarray(expected), np.asarray(unshifted), equal_nan=True)
    assert moved.sum() > 100  # the shift is visible on this card: the flow changes from second to second
    word = "later" if latency_ms < 0 else "earlier"
    # the records whose values would come from outside the log: at its end for a negative latency, else its start
    ends = int(np.isnan(expected).sum() - np.isnan(unshifted).sum())
    assert ends > 0
    assert any(f"values logged {abs(latency_ms) / 1000:g} s {word}" in n and "DDI 143" in n
               and ("(DPT)" in n) == in_device and f"{ends} records at the ends of the logs have none" in n
               for n in table.notes)
    if counter:  # the mass comes from the counter, moved by the latency too: its running sum meets each value
        assert table.hints["ddi"]["wetMass"] == 0x5A
        mass = frame["wetMass"].to_numpy()
        running = np.concatenate([np.cumsum(mass[:257]), np.cumsum(mass[257:])])
        rows, kg = zip(*counted)
        assert running[list(rows)] == pytest.approx(kg)
        # the value logged on the first record measured ground before the log and is dropped; the next one,
        # logged on record 5, lands 3 s earlier (records come about once a second)
        assert 0 < counted[0][0] < 5


def test_a_latency_longer_than_the_log_moves_nothing(real2: Path, tmp_path: Path) -> None:
    """The Trimble potato card declaring a DDI 143 latency of -1 day, longer than either of its time logs: no
    value was logged for the ground of any record, so the values stay where they were logged (crop flow and
    yield counter alike) and a note per log says why."""
    latency_ms = -86_400_000
    card = _latency_card(real2 / TRIMBLE, tmp_path / "card", latency_ms, counter=True, in_device=False)
    table = read_all(card)["TSK-2|harvested"]
    flow, counted, first = [], [], 0
    for name in ("TLG00002", "TLG00003"):
        tlg = read_tlg(card / f"{name}.xml", card / f"{name}.bin")
        times = [r.ptn["I"] * 86_400_000 + r.ptn["H"] for r in tlg.records]  # GPS UTC, as the reader dates them
        assert times[-1] - times[0] < abs(latency_ms)
        flow += [np.nan if v is None else v * 3.6e-6 for v in tlg.filled(0x57, "DET-1")]  # mg/s -> t/h
        index = tlg.index(0x5A, "DET-1")
        logged = [(row, r.values[index]) for row, r in enumerate(tlg.records) if index in r.values]
        counted += [(first + row, value - logged[0][1]) for row, value in logged]
        first += len(times)
        assert any("latency DDI 143 of DET-1" in n and f"is {latency_ms / 1000:g} s, longer than the "
                   f"{(times[-1] - times[0]) / 1000:g} s the time log {name} spans" in n for n in table.notes)
    frame = table.frame
    assert frame["cropFlow"].to_numpy() == pytest.approx(flow, nan_ok=True)
    mass = frame["wetMass"].to_numpy()
    running = np.concatenate([np.cumsum(mass[:257]), np.cumsum(mass[257:])])
    rows, kg = zip(*counted)
    assert running[list(rows)] == pytest.approx(kg)
    assert not any("values logged" in n for n in table.notes)


def test_latency_leaves_no_value_for_ground_outside_the_log() -> None:
    """Four records a second apart: a value moved by the latency to a time before the first record or after the
    last has no record; one landing exactly on an end belongs to it."""
    ms = np.array([0.0, 1000.0, 2000.0, 3000.0])
    assert ground_records(ms, np.array([-1.0, 0.0, 999.0, 3000.0, 3000.5])).tolist() == [-1, 0, 0, 3, -1]
    counter = np.array([10.0, np.nan, 20.0, 30.0])
    # sensor behind the header (-1.5 s): 10 measured ground before the log; 20 and 30 the first two records
    assert moved_counter(counter, ms, -1500.0) == pytest.approx([20.0, 30.0, np.nan, np.nan], nan_ok=True)
    # communicated ahead (+1 s): 30 belongs to ground after the last record
    assert moved_counter(counter, ms, 1000.0) == pytest.approx([np.nan, 10.0, np.nan, 20.0], nan_ok=True)
    # the whole log's length: only the ends meet; longer: nothing is left
    assert moved_counter(counter, ms, -3000.0) == pytest.approx([30.0, np.nan, np.nan, np.nan], nan_ok=True)
    assert np.isnan(moved_counter(counter, ms, 3001.0)).all()


# ---------------------------------------------------------------- KRONE: machines that are not harvests

@pytest.mark.parametrize("archive, operation, records", [
    (BALER, "baling", 23_463), (RAKE, "swathing", 28_609), (MOWER, "mowing", 17_913), (MOWER_V0, "mowing", 2_684)])
def test_krone_named_operations(real2: Path, tmp_path: Path, archive: str, operation: str, records: int) -> None:
    folder = unzip(real2 / archive, tmp_path)
    found = read_all(folder)
    (layer,) = found
    table = found[layer]
    assert layer.endswith(f"|{operation}") and not isinstance(table, ReaderError)
    logs = sorted({p.stem for p in folder.rglob("*") if p.suffix.lower() == ".bin" and p.stat().st_size})
    oracle = sum(len(read_tlg(next(folder.rglob(f"{n}.[xX][mM][lL]")), next(folder.rglob(f"{n}.[bB][iI][nN]"))).records)
                 for n in logs)
    assert len(table.frame) == oracle == records  # SOURCE.md record counts
    result = standardize(table)
    assert not result.supported and FileSteps.schema_failure(result) == f"unsupported operation type: {operation}"


@pytest.mark.parametrize("archive, total_area", [
    # SOURCE.md "Independently computable oracles": last TIM 0x0074 (task-cumulative)
    (RAKE, 289_000), (MOWER, 72_812),
    # SOURCE.md "Oracles": last 0x0074 in TLG0002
    (MOWER_V0, 9_800),
])
def test_krone_worked_area_matches_the_terminal(real2: Path, tmp_path: Path, archive: str, total_area: int) -> None:
    """Width x distance over the working records: the machine's own width (mower units overlap, so the sum of
    their widths would be 12-16 % too much) and its work state."""
    (table,) = read_all(unzip(real2 / archive, tmp_path)).values()
    frame = table.frame
    on = (frame["recordingStatus"] == "On").to_numpy()
    assert (frame["distance"] * frame["equipmentWidth"])[on].sum() == pytest.approx(total_area, rel=0.05)


def test_baler_without_cultural_practice_is_still_baling(real2: Path, tmp_path: Path) -> None:
    folder = unzip(real2 / BALER, tmp_path)
    taskdata = folder / "TASKDATA.XML"
    text = taskdata.read_text(encoding="utf-8")
    assert 'B="00B3" C="5"' in text
    taskdata.write_text(text.replace('B="00B3" C="5"', 'B="015E" C="9"'), encoding="utf-8")  # DDI 179 gone
    (layer,) = read_all(folder)
    assert layer.endswith("|baling")  # bale DDIs, although it logs yield totals 0x005A / 0x005B


def test_bigm_mower_empty_log_is_skipped(real2: Path, tmp_path: Path) -> None:
    table = read_all(unzip(real2 / MOWER, tmp_path))["TSK-1|mowing"]
    assert any("TLG00009" in n and "0 bytes" in n for n in table.notes)


# ---------------------------------------------------------------- KRONE BiG X forage harvester

def test_bigx_v41_forage_harvest(real2: Path, tmp_path: Path) -> None:
    folder = unzip(real2 / BIGX_V4, tmp_path)
    table = read_all(folder)["TSK-1|harvested"]
    tlgs = [read_tlg(folder / f"TLG0000{i}.xml", folder / f"TLG0000{i}.bin") for i in (1, 2, 3)]
    assert sum(len(t.records) for t in tlgs) == len(table.frame) == 55_484
    assert working(table) == sum(count_working(t, [(0x8D, "DET-1")]) for t in tlgs if t.has(0x8D, "DET-1"))
    frame = table.frame
    # SOURCE.md: final TIM 0x005A = 2,995,723 kg, 0x0074 = 403,520 m2, 0x0094 = 1,602,000 mL
    assert frame["wetMass"].sum() == pytest.approx(2_995_723, rel=1e-6)
    assert frame["fuelUsed"].sum() == pytest.approx(1_602, rel=1e-6)
    on = (frame["recordingStatus"] == "On").to_numpy()
    assert (frame["distance"] * frame["equipmentWidth"])[on].sum() == pytest.approx(403_520, rel=0.05)
    # 0x00B7 "Trockenmasse" is 100x 0x005A: not read as a dry mass
    assert "dryMass" not in frame and 183 not in table.hints["ddi"].values()
    # no crop moisture is logged: Leaf's required harvestMoisture is missing, and said so
    assert standardize(table).missing == ["harvestMoisture"]


def test_bigx_v33_road_transfer_is_no_work(real2: Path, tmp_path: Path) -> None:
    folder = unzip(real2 / BIGX_V3, tmp_path)
    found = read_all(folder)
    assert set(found) == {"TSK-1|harvested", "TSK-2|harvested"}
    assert sum(len(t.frame) for t in found.values()) == 44_481  # SOURCE.md
    for table in found.values():
        result = standardize(table)
        assert result.operation_type == "harvested" and not result.missing
        assert cleanup_mask(result.frame, DEFAULTS["cleanupRules"]).sum() == 0
        assert any(n.startswith("no work recorded") for n in table.notes)
        result.cleaned_out = True
        assert FileSteps.schema_failure(result) == NO_POINTS


# ---------------------------------------------------------------- classes 1-3 and 8 on cards derived from real ones

CNH_ZIP = "isoxml-cnh-planter-aircart/Another-single-ACP.zip"
SECTIONS = [f"DET-{n}" for n in range(668, 684)]  # the sprayer's 16 sections, in element-number order


@pytest.fixture
def sprayer(real: Path, tmp_path: Path) -> Path:
    """The CNH sprayer task (TSK-22, TLG00011) with the other tasks removed."""
    folder = unzip(real / CNH_ZIP, tmp_path / "card")
    root = ET.parse(folder / "TASKDATA.XML").getroot()
    for task in root.findall("TSK"):
        if task.get("A") != "TSK-22":
            root.remove(task)
    ET.ElementTree(root).write(folder / "TASKDATA.XML", encoding="utf-8", xml_declaration=True)
    return folder


def _sprayer_table(folder: Path) -> SourceTable:
    return read_all(folder)["TSK-22|applied"]


def test_class1_work_state_only_on_sections(sprayer: Path) -> None:
    original = _sprayer_table(sprayer)
    tlg = read_tlg(sprayer / "TLG00011.XML", sprayer / "TLG00011.BIN")
    condensed = tlg.filled(0xA1, "DET-667")
    # the sections' own states, decoded from the device's condensed work state; the device's DDI 141 goes
    state = tlg.index(0x8D, "DET-667")
    tlg.dlvs[state] = (0x8D, SECTIONS[0], None)
    first_new = len(tlg.dlvs)
    tlg.dlvs += [(0x8D, s, None) for s in SECTIONS[1:]]
    for record, value in zip(tlg.records, condensed):
        record.values.pop(state, None)
        if value is None:
            continue
        bits = [(int(value) & 0xFFFFFFFF) >> (2 * i) & 3 for i in range(16)]
        record.values[state] = bits[0]
        for i, bit in enumerate(bits[1:]):
            record.values[first_new + i] = bit
    tlg.dlvs[tlg.index(0xA1, "DET-667")] = (0xE999, "DET-667", None)  # the condensed state is no longer logged
    tlg.dlvs[tlg.index(0x43, "DET-667")] = (0xE998, "DET-667", None)  # nor the device's working width
    write_tlg(tlg, sprayer / "TLG00011.XML", sprayer / "TLG00011.BIN")

    table = _sprayer_table(sprayer)
    rewritten = read_tlg(sprayer / "TLG00011.XML", sprayer / "TLG00011.BIN")
    expected = count_working(rewritten, [(0x8D, s) for s in SECTIONS])
    assert expected > 0 and working(table) == expected
    assert working(original) >= expected * 0.9  # what the device-level state said, give or take
    # width: the logged widths (0x0043) of the sections that are on, summed
    widths = [rewritten.filled(0x43, s) for s in SECTIONS]
    states = [rewritten.filled(0x8D, s) for s in SECTIONS]
    on_width = [sum(w[i] or 0 for w, st in zip(widths, states) if st[i] == 1) / 1000
                if any(st[i] is not None for st in states) else np.nan for i in range(len(rewritten.records))]
    assert table.frame["equipmentWidth"].to_numpy() == pytest.approx(on_width, nan_ok=True)
    summary, kept = summary_of(table)
    assert kept > 0 and summary["totalArea"]["value"] > 0 and summary["totalApplied"]["value"] > 0


def test_class2_rates_on_two_bins(sprayer: Path) -> None:
    original = _sprayer_table(sprayer)
    root = ET.parse(sprayer / "TASKDATA.XML").getroot()
    device = next(d for d in root.findall("DVC") if d.get("A") == "DVC-37")
    parent = next(e for e in device.findall("DET") if e.get("A") == "DET-667").get("B")
    for n, (element, number) in enumerate((("DET-9001", "9001"), ("DET-9002", "9002"))):
        ET.SubElement(device, "DET", {"A": element, "B": number, "C": "3", "D": f"Bin {n + 2}", "E": number, "F": parent})
    ET.SubElement(root, "PDT", {"A": "PDT-9001", "B": "Adjuvant"})
    task = root.find("TSK")
    original_pan = task.find("PAN")
    for element, product in (("DET-9001", original_pan.get("A")), ("DET-9002", "PDT-9001")):
        pan = ET.SubElement(task, "PAN", {"A": product, "E": element})
        pan.append(original_pan.find("ASP"))
    task.remove(original_pan)
    ET.ElementTree(root).write(sprayer / "TASKDATA.XML", encoding="utf-8", xml_declaration=True)
    tlg = read_tlg(sprayer / "TLG00011.XML", sprayer / "TLG00011.BIN")
    rate = tlg.index(2, "DET-685")
    tlg.dlvs[rate] = (2, "DET-667", None)  # the device-level rate logs 0
    tlg.dlvs += [(2, "DET-9001", None), (2, "DET-9002", None)]
    first, second = len(tlg.dlvs) - 2, len(tlg.dlvs) - 1
    for record in tlg.records:
        if rate in record.values:
            value = record.values[rate]
            record.values[rate] = 0
            record.values[first] = value * 7 // 10
            record.values[second] = value - value * 7 // 10
    write_tlg(tlg, sprayer / "TLG00011.XML", sprayer / "TLG00011.BIN")

    table = _sprayer_table(sprayer)
    assert table.frame["appliedRate"].to_numpy() == pytest.approx(original.frame["appliedRate"].to_numpy(), nan_ok=True)
    summary, kept = summary_of(table)
    before, kept_before = summary_of(original)
    assert kept == kept_before > 11
    assert summary["tankMix"] is True
    products = {p["name"]: p for p in summary["products"]}
    assert set(products) == {"Herbicide_PF", "Adjuvant"}
    assert products["Herbicide_PF"]["rate"]["value"] == pytest.approx(before["appliedRate"]["avg"] * 0.7, rel=0.01)
    assert summary["totalApplied"]["value"] == pytest.approx(before["totalApplied"]["value"], rel=1e-6)


KRONE_CCI = "isoxml-cci-krone-forage-harvester/ValidTimeLogs"


@pytest.fixture
def forage(real: Path, tmp_path: Path) -> Path:
    """The CCI KRONE forage harvester's first task (TSK1, TLG00001) alone."""
    folder = tmp_path / "card"
    folder.mkdir()
    for name in ("TASKDATA.XML", "TLG00001.xml", "TLG00001.bin"):
        shutil.copy(real / KRONE_CCI / name, folder / name)
    return folder


def test_class3_distance_counter_holding_times(forage: Path) -> None:
    original = read_all(forage)["TSK1|harvested"]
    tlg = read_tlg(forage / "TLG00001.xml", forage / "TLG00001.bin")
    effective, time = tlg.index(117, "DET-1"), tlg.index(119, "DET-1")
    for record in tlg.records:
        record.values.pop(effective, None)
        if time in record.values:
            record.values[effective] = record.values[time]  # seconds where millimetres belong
    write_tlg(tlg, forage / "TLG00001.xml", forage / "TLG00001.bin")
    table = read_all(forage)["TSK1|harvested"]
    assert any("does not hold a distance" in n for n in table.notes)
    on = (table.frame["recordingStatus"] == "On").to_numpy()
    area = (table.frame["distance"] * table.frame["equipmentWidth"])[on].sum()
    before = (original.frame["distance"] * original.frame["equipmentWidth"])[on].sum()
    # against the card's own total area counter (DDI 116): the same order, not 1000x smaller
    counted = [v for v in tlg.logged(116, "DET-1")]
    assert area == pytest.approx(counted[-1] - counted[0], rel=0.25)
    assert area == pytest.approx(before, rel=0.25)


def test_class8_moisture_in_presentation_units(forage: Path) -> None:
    original = read_all(forage)["TSK1|harvested"]
    tlg = read_tlg(forage / "TLG00001.xml", forage / "TLG00001.bin")
    moisture = tlg.index(99, "DET-1")
    for record in tlg.records:
        if moisture in record.values:
            record.values[moisture] = round(record.values[moisture] / 1000)  # ppm -> 0.1 % steps
    write_tlg(tlg, forage / "TLG00001.xml", forage / "TLG00001.bin")
    root = ET.parse(forage / "TASKDATA.XML").getroot()
    device = next(d for d in root.findall("DVC") if any(e.get("A") == "DET-1" for e in d.findall("DET")))
    det = next(e for e in device.findall("DET") if e.get("A") == "DET-1")
    refs = {o.get("A") for o in det.findall("DOR")}
    dpd = next(p for p in device.findall("DPD") if p.get("A") in refs and int(p.get("B"), 16) == 99)
    ET.SubElement(device, "DVP", {"A": "9099", "B": "0", "C": "0.1", "D": "1", "E": "%"})
    dpd.set("F", "9099")
    ET.ElementTree(root).write(forage / "TASKDATA.XML", encoding="utf-8", xml_declaration=True)
    table = read_all(forage)["TSK1|harvested"]
    assert any("value presentation" in n and "0.1" in n for n in table.notes)
    assert table.frame["harvestMoisture"].to_numpy() == pytest.approx(original.frame["harvestMoisture"].to_numpy(),
                                                                      abs=0.06, nan_ok=True)


def test_scaling_follows_the_ddi_unless_impossible() -> None:
    from leaf_dagster.readers.isoxml.taskdata import Presentation

    grain = np.array([118_462.0, 120_000.0])  # Fendt 0x0063, ppm: 11.8 %
    assert scale_choice(99, grain, Presentation(0, 0.1, 1, "%"), MOISTURE_RANGE) == (1e-4, None)
    old_writer = np.array([155.0, 160.0])  # 15.5 % in 0.1 % steps
    factor, note = scale_choice(99, old_writer, Presentation(0, 0.1, 1, "%"), MOISTURE_RANGE)
    assert factor == 0.1 and "value presentation" in note
    factor, note = scale_choice(99, old_writer, Presentation(0, 0.1, 1, "lb"), MOISTURE_RANGE)
    assert factor == 1e-4 and "kept as logged" in note


def test_trimble_variant_reencoded_and_renamed(real2: Path, tmp_path: Path) -> None:
    """The same card re-encoded as UTF-8 with upper-case file names reads the same."""
    folder = tmp_path / "TASKDATA"
    folder.mkdir()
    for path in (real2 / TRIMBLE).iterdir():
        if path.name == "TaskData.xml":
            text = path.read_bytes().decode("latin-1").replace('encoding="ISO8859-1"', 'encoding="UTF-8"')
            (folder / "TASKDATA.XML").write_text(text, encoding="utf-8")
        elif path.suffix in (".xml", ".bin"):
            shutil.copy(path, folder / path.name.upper())
    variant = read_all(tmp_path)["TSK-2|harvested"]
    original = read_all(real2 / TRIMBLE)["TSK-2|harvested"]
    assert len(variant.frame) == len(original.frame) == 620
    assert variant.frame["cropFlow"].to_numpy() == pytest.approx(original.frame["cropFlow"].to_numpy(), nan_ok=True)
    assert standardize(variant).crop == "potatoes"
