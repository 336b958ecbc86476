"""The ISOXML record stream: damaged framing, no-fix records and implausible swaths, and the choice of clock.

Each case is a real card, or a real card changed by byte edits made here, so the expected outcome is known
from the construction (records kept = the original count minus the records broken; times equal to the
original card's UTC times; ...) or from the counts and times in the sets' SOURCE.md. Record starts of the
untouched logs come from the walk along the record lengths, checked against the published record counts.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.model import SourceTable
from leaf_dagster.readers import read_machine_file
from leaf_dagster.readers.isoxml import decode, parse_header
from leaf_dagster.readers.isoxml.framing import walk
from leaf_dagster.readers.isoxml.tlg import TlgData, TlgHeader

KRONE = "isoxml-cci-krone-forage-harvester/ValidTimeLogs"  # 4716 records in TLG00001 (published by isoxml-dotnet)
KRONE_RECORDS = 4716
TRIMBLE = "isoxml-trimble-fmx-ym2000-potato-v1"  # TLG00002: 257 records, TLG00003: 363 (SOURCE.md)
BALER = "isoxml-krone-smartconnect-comprima-baler/4fc231c3-b989-4831-968b-fc86c9aeb744.zip"
BIGX = "isoxml-krone-smartconnect-bigx-forage-harvester/5c0ad7b4-598f-45c3-a0c1-47e781a6c51f.zip"
CNH = "isoxml-cnh-planter-aircart/Another-single-ACP.zip"
DAYS_TO_2149 = (pd.Timestamp("2149-01-01") - pd.Timestamp("1980-01-01")).days
DAY_MS = 86_400_000


# ---------------------------------------------------------------- helpers

def krone_card(real: Path, target: Path) -> Path:
    """TASKDATA.XML + TLG00001 of the KRONE forage harvester (task TSK1) in a folder of its own."""
    target.mkdir(parents=True)
    for name in ("TASKDATA.XML", "TLG00001.xml", "TLG00001.bin"):
        shutil.copy(real / KRONE / name, target / name)
    return target


def starts_of(header: TlgHeader, raw: bytes) -> list[int]:
    starts, end = walk(raw, header.fixed_size, 0, len(raw) + 1)
    assert end == len(raw)
    return starts


def krone_log(folder: Path) -> tuple[TlgHeader, bytes, list[int]]:
    header = parse_header((folder / "TLG00001.xml").read_bytes(), "TLG00001")
    raw = (folder / "TLG00001.bin").read_bytes()
    starts = starts_of(header, raw)
    assert len(starts) == KRONE_RECORDS
    return header, raw, starts


def field_offset(header: TlgHeader, name: str) -> int:
    return header.layout.dtype.fields[name][1]


def read_task(folder: Path, layer: str) -> SourceTable:
    detected = next(f for f in detect_machine_files(folder) if f.layer == layer)
    return read_machine_file(detected)


def edited(raw: bytes, edits: dict[int, bytes]) -> bytes:
    out = bytearray(raw)
    for position, value in edits.items():
        out[position:position + len(value)] = value
    return bytes(out)


# ---------------------------------------------------------------- class 6: damaged framing

def test_damaged_count_byte_drops_only_that_record(real: Path, tmp_path: Path) -> None:
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    original = decode(header, raw)
    fixed = header.fixed_size
    broken = [500, 1700, 3333]
    edits = {starts[k] + fixed: bytes([raw[starts[k] + fixed] + 1]) for k in broken}  # one value too many
    damaged = decode(header, edited(raw, edits))
    assert damaged.count == KRONE_RECORDS - len(broken)
    assert damaged.rejected_records >= len(broken) and damaged.resyncs == len(broken)
    kept = np.setdiff1d(np.arange(KRONE_RECORDS), broken)
    for name in ("north", "east", "status"):
        assert np.array_equal(damaged.ptn[name], original.ptn[name][kept])
    assert np.array_equal(damaged.time_ms, original.time_ms[kept])
    # the bytes of the broken records are all that was skipped
    lengths = np.diff(np.append(starts, len(raw)))
    assert damaged.skipped_bytes == int(lengths[broken].sum())


def test_damaged_card_gives_no_garbage_points(real: Path, tmp_path: Path) -> None:
    """Before resynchronisation, one damaged count byte turned the rest of this log into points far away in
    other years; now the reader returns the sound records only and says what it skipped."""
    clean = read_task(krone_card(real, tmp_path / "clean"), "TSK1|harvested").frame
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    position = starts[2000] + header.fixed_size
    (folder / "TLG00001.bin").write_bytes(edited(raw, {position: bytes([raw[position] + 3])}))
    table = read_task(folder, "TSK1|harvested")
    frame = table.frame
    assert len(frame) == KRONE_RECORDS - 1
    x, y = frame.geometry.x, frame.geometry.y
    assert x.between(clean.geometry.x.min(), clean.geometry.x.max()).all()
    assert y.between(clean.geometry.y.min(), clean.geometry.y.max()).all()
    assert frame["timestamp"].between(clean["timestamp"].min(), clean["timestamp"].max()).all()
    assert any("TLG00001: damaged records" in n and "1 stretch skipped" in n for n in table.notes)


def test_garbage_between_records_is_skipped(real: Path, tmp_path: Path) -> None:
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    original = decode(header, raw)
    junk = b"\xff" * 37
    damaged = decode(header, raw[:starts[1234]] + junk + raw[starts[1234]:])
    assert damaged.count == KRONE_RECORDS
    assert damaged.skipped_bytes == len(junk) and damaged.resyncs == 1
    assert np.array_equal(damaged.ptn["north"], original.ptn["north"])
    assert np.array_equal(damaged.entry_value, original.entry_value)


def test_dlv_index_beyond_header_rejects_the_record(real: Path, tmp_path: Path) -> None:
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    fixed = header.fixed_size
    k = next(i for i in range(100, KRONE_RECORDS) if raw[starts[i] + fixed] > 0)
    damaged = decode(header, edited(raw, {starts[k] + fixed + 1: bytes([len(header.dlvs) + 5])}))
    assert damaged.count == KRONE_RECORDS - 1
    assert damaged.skipped_bytes == starts[k + 1] - starts[k]
    assert (damaged.entry_dlv < len(header.dlvs)).all()


def test_record_out_of_time_is_rejected(real: Path, tmp_path: Path) -> None:
    """A record whose date jumps to 2081 (framing intact) is out of line with its neighbours."""
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    original = decode(header, raw)
    k = 3000
    days = int(original.time_days[k]) + 22_000
    damaged = decode(header, edited(raw, {starts[k] + 4: days.to_bytes(2, "little")}))
    assert damaged.count == KRONE_RECORDS - 1
    assert int(damaged.time_days.max()) == int(original.time_days.max())


@pytest.mark.parametrize("accepted", [1, 2])
def test_records_dated_years_off_after_the_first_sound_ones_are_rejected(real: Path, tmp_path: Path,
                                                                         accepted: int) -> None:
    """The first `accepted` records are sound, the next names a DLV beyond the header (the walk stops there), and
    the three after it are dated 22,000 days late (framing intact). Resynchronisation looks for records in time
    order after the last accepted one, so it resumes at the first sound record after them: the three are never
    accepted (without that anchor they start a sound run and, the majority around them, pass every later check)."""
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    original = decode(header, raw)
    fixed = header.fixed_size
    bad = accepted
    assert raw[starts[bad] + fixed] > 0  # the record has a DLV index to damage
    edits = {starts[bad] + fixed + 1: bytes([len(header.dlvs) + 5])}
    late = [bad + 1, bad + 2, bad + 3]
    for k in late:
        edits[starts[k] + field_offset(header, "time_days")] = (int(original.time_days[k]) + 22_000).to_bytes(2, "little")
    damaged = decode(header, edited(raw, edits))
    kept = np.setdiff1d(np.arange(KRONE_RECORDS), [bad, *late])
    assert damaged.count == len(kept) and damaged.resyncs == 1
    assert np.array_equal(damaged.time_days, original.time_days[kept])
    assert np.array_equal(damaged.time_ms, original.time_ms[kept])
    assert np.array_equal(damaged.ptn["north"], original.ptn["north"][kept])


def test_many_damaged_stretches(real: Path, tmp_path: Path) -> None:
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    fixed = header.fixed_size
    broken = list(range(150, KRONE_RECORDS - 10, 150))  # 31 records, each claiming two values more than it has
    damaged = decode(header, edited(raw, {starts[k] + fixed: bytes([raw[starts[k] + fixed] + 2]) for k in broken}))
    assert damaged.count == KRONE_RECORDS - len(broken)
    assert damaged.resyncs == len(broken)


# ---------------------------------------------------------------- class 4: no-fix records, implausible swaths

def test_record_at_zero_zero_is_dropped_before_distances(real: Path, tmp_path: Path) -> None:
    clean = read_task(krone_card(real, tmp_path / "clean"), "TSK1|harvested")
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    k = 2500
    record = bytearray(raw[starts[k]:starts[k + 1]])
    record[field_offset(header, "north"):field_offset(header, "north") + 8] = bytes(8)  # latitude 0, longitude 0
    (folder / "TLG00001.bin").write_bytes(raw[:starts[k + 1]] + bytes(record) + raw[starts[k + 1]:])
    assert decode(header, (folder / "TLG00001.bin").read_bytes()).count == KRONE_RECORDS + 1
    table = read_task(folder, "TSK1|harvested")
    frame = table.frame
    assert len(frame) == KRONE_RECORDS
    assert frame["distance"].max() == pytest.approx(clean.frame["distance"].max())
    assert frame["distance"].sum() == pytest.approx(clean.frame["distance"].sum(), rel=1e-9)
    assert frame.total_bounds == pytest.approx(clean.frame.total_bounds)
    assert any("1 of 4717 records have no usable fix" in n and "1 with position 0 / 0" in n for n in table.notes)


def test_status_no_fix_dropped_and_simulated_flagged(real: Path, tmp_path: Path) -> None:
    folder = krone_card(real, tmp_path / "card")
    header, raw, starts = krone_log(folder)
    status = field_offset(header, "status")
    no_fix, simulated = [10, 11, 12, 4000], list(range(200, 220))
    edits = {starts[k] + status: b"\x00" for k in no_fix} | {starts[k] + status: b"\x08" for k in simulated}
    (folder / "TLG00001.bin").write_bytes(edited(raw, edits))
    table = read_task(folder, "TSK1|harvested")
    assert len(table.frame) == KRONE_RECORDS - len(no_fix)
    assert any("4 of 4716 records have no usable fix" in n and "4 with PTN status 0 (no GPS fix)" in n
               for n in table.notes)
    assert any("20 records carry a simulated fix (PTN status 8)" in n for n in table.notes)


def test_status_not_available_keeps_positions(real: Path, tmp_path: Path) -> None:
    """KRONE CCI writes status 15 ('not available') in every record of sound logs: all records stay."""
    table = read_task(krone_card(real, tmp_path / "card"), "TSK1|harvested")
    assert len(table.frame) == KRONE_RECORDS
    assert not any("usable fix" in n for n in table.notes)


def test_simulator_hops_are_no_swaths(real: Path, tmp_path: Path) -> None:
    """The CNH card's positions hop between Iowa and Lower Saxony (a simulator): before, one planter task
    covered 7,141 km; those steps now count no distance."""
    with zipfile.ZipFile(real / CNH) as zf:
        zf.extractall(tmp_path / "cnh")
    table = read_task(tmp_path / "cnh", "TSK-14|planted")
    frame = table.frame
    assert len(frame) == 174
    assert frame["distance"].max() < 100
    assert any("1 steps between consecutive fixes are too long to be swaths" in n and "7,141.4 km" in n
               for n in table.notes)
    # the steps that remain are the planter's own: nothing near the 2,000+ km hops
    assert frame["distance"].sum() < 1000


# ---------------------------------------------------------------- class 5: which clock

@pytest.fixture
def trimble(real2: Path, tmp_path: Path) -> Path:
    target = tmp_path / "trimble"
    shutil.copytree(real2 / TRIMBLE, target)
    return target


def trimble_logs(folder: Path) -> list[tuple[Path, TlgHeader, bytes, list[int]]]:
    out = []
    for name, records in (("TLG00002", 257), ("TLG00003", 363)):
        header = parse_header((folder / f"{name}.xml").read_bytes(), name)
        raw = (folder / f"{name}.bin").read_bytes()
        starts = starts_of(header, raw)
        assert len(starts) == records
        out.append((folder / f"{name}.bin", header, raw, starts))
    return out


def rewrite_gps(folder: Path, time_of_day: bytes | None, date: bytes | None, records: slice = slice(None)) -> None:
    for path, header, raw, starts in trimble_logs(folder):
        edits: dict[int, bytes] = {}
        for start in starts[records]:
            if time_of_day is not None:
                edits[start + field_offset(header, "gps_time")] = time_of_day
            if date is not None:
                edits[start + field_offset(header, "gps_date")] = date
        path.write_bytes(edited(raw, edits))


def test_trimble_uses_gps_utc(trimble: Path) -> None:
    table = read_task(trimble, "TSK-2|harvested")
    times = table.frame["timestamp"]
    assert len(times) == 620
    # the terminal clock of SOURCE.md (09:59:03.555) runs 17.6 s ahead of GPS UTC
    assert times.iloc[0] == pd.Timestamp("2016-06-16 09:58:45.920", tz="UTC")
    assert any(n.startswith("time from GPS UTC date and time (PTN H, I)") for n in table.notes)


def test_garbage_gps_date_keeps_utc_times(trimble: Path, tmp_path: Path) -> None:
    original = read_task(trimble, "TSK-2|harvested").frame["timestamp"]
    rewrite_gps(trimble, None, DAYS_TO_2149.to_bytes(2, "little"))
    table = read_task(trimble, "TSK-2|harvested")
    assert table.frame["timestamp"].equals(original)
    assert any("257 records with an implausible GPS date (PTN I) use their GPS time of day on the terminal's date"
               in n for n in table.notes)


def test_no_gps_time_takes_the_terminal_clock(trimble: Path) -> None:
    rewrite_gps(trimble, b"\xff\xff\xff\xff", b"\xff\xff")
    table = read_task(trimble, "TSK-2|harvested")
    times = table.frame["timestamp"]
    # SOURCE.md: TLG00002 09:59:03.555 -> 10:04:05.377, TLG00003 10:16:45.758 -> 10:22:49.876
    assert times.iloc[0] == pd.Timestamp("2016-06-16 09:59:03.555", tz="UTC")
    assert times.iloc[256] == pd.Timestamp("2016-06-16 10:04:05.377", tz="UTC")
    assert times.iloc[257] == pd.Timestamp("2016-06-16 10:16:45.758", tz="UTC")
    assert times.iloc[-1] == pd.Timestamp("2016-06-16 10:22:49.876", tz="UTC")
    assert any("terminal clock (TimeStart) read as UTC" in n and "PTN H" in n for n in table.notes)


def test_terminal_zone_from_task_times(trimble: Path) -> None:
    rewrite_gps(trimble, b"\xff\xff\xff\xff", b"\xff\xff")
    taskdata = trimble / "TaskData.xml"
    text = taskdata.read_bytes()
    for stamp in (b"2016-06-16T09:59:03", b"2016-06-16T10:04:18", b"2016-06-16T10:16:45", b"2016-06-16T10:22:51"):
        assert stamp in text
        text = text.replace(stamp + b'"', stamp + b'+02:00"')
    taskdata.write_bytes(text)
    table = read_task(trimble, "TSK-2|harvested")
    assert table.frame["timestamp"].iloc[0] == pd.Timestamp("2016-06-16 07:59:03.555", tz="UTC")
    assert any("local time at UTC+02:00" in n for n in table.notes)


def test_gps_lost_half_way_uses_the_measured_offset(trimble: Path) -> None:
    original = read_task(trimble, "TSK-2|harvested").frame["timestamp"]
    rewrite_gps(trimble, bytes(4), None, slice(150, None))  # GPS time 0 (not set) from record 150 of each log
    table = read_task(trimble, "TSK-2|harvested")
    times = table.frame["timestamp"]
    gps_kept = np.r_[0:150, 257:257 + 150]
    assert times.iloc[gps_kept].equals(original.iloc[gps_kept])
    # the rest: terminal clock shifted by the median GPS - terminal offset (-17.4 to -17.6 s on this card)
    assert (times - original).abs().max() < pd.Timedelta(seconds=0.3)
    for records in (257 - 150, 363 - 150):
        assert any(f"{records} records without a plausible GPS time use the terminal clock" in n for n in table.notes)


def move_terminal_clock(folder: Path, hours: int) -> None:
    """Set the Trimble card's terminal clock (TimeStart) to another zone: every record's time + `hours`."""
    for path, header, raw, starts in trimble_logs(folder):
        edits: dict[int, bytes] = {}
        for start in starts:
            ms = int.from_bytes(raw[start:start + 4], "little") + int.from_bytes(raw[start + 4:start + 6], "little") * DAY_MS
            ms += hours * 3_600_000
            edits[start] = (ms % DAY_MS).to_bytes(4, "little")
            edits[start + 4] = (ms // DAY_MS).to_bytes(2, "little")
        path.write_bytes(edited(raw, edits))


def zone_in_task_times(folder: Path, zone: str) -> None:
    taskdata = folder / "TaskData.xml"
    text = taskdata.read_bytes()
    for stamp in (b"2016-06-16T09:59:03", b"2016-06-16T10:04:18", b"2016-06-16T10:16:45", b"2016-06-16T10:22:51"):
        text = text.replace(stamp + b'"', stamp + zone.encode() + b'"')
    taskdata.write_bytes(text)


@pytest.mark.parametrize("hours", [13, 14, -12])
def test_gps_time_of_day_on_the_utc_day_of_a_far_zone(trimble: Path, hours: int) -> None:
    """A terminal at UTC+13/+14 (Tonga, Kiribati) or UTC-12 logs a time of day 11-14 h from GPS UTC: the GPS time
    of day, with its date garbage, belongs on the UTC day of the terminal clock, which is not the terminal's
    nearest day. The day comes from the records whose GPS date is fine, else from the task's zone."""
    original = read_task(trimble, "TSK-2|harvested").frame["timestamp"]
    move_terminal_clock(trimble, hours)
    rewrite_gps(trimble, None, DAYS_TO_2149.to_bytes(2, "little"), slice(100, None))  # GPS date bad from record 100
    partly = read_task(trimble, "TSK-2|harvested")
    assert partly.frame["timestamp"].equals(original)
    assert any("157 records with an implausible GPS date" in n for n in partly.notes)
    rewrite_gps(trimble, None, DAYS_TO_2149.to_bytes(2, "little"))  # no record has a usable GPS date now
    zone_in_task_times(trimble, f"{hours:+03d}:00")
    zoned = read_task(trimble, "TSK-2|harvested")
    assert zoned.frame["timestamp"].equals(original)
    assert any("257 records with an implausible GPS date" in n for n in zoned.notes)


def test_gps_time_of_day_fitting_two_days_is_not_guessed(trimble: Path) -> None:
    """At UTC+14 with no GPS date and no zone anywhere, GPS 14 h behind the terminal could as well be 10 h
    ahead of it (UTC-10): the GPS time is not used, and the terminal clock is read as UTC, as the note says."""
    move_terminal_clock(trimble, 14)
    rewrite_gps(trimble, None, DAYS_TO_2149.to_bytes(2, "little"))
    table = read_task(trimble, "TSK-2|harvested")
    # SOURCE.md: the terminal clock starts at 09:59:03.555 (here moved by 14 h)
    assert table.frame["timestamp"].iloc[0] == pd.Timestamp("2016-06-16 23:59:03.555", tz="UTC")
    assert any("fits two days in every record" in n and "read as UTC" in n for n in table.notes)


@pytest.mark.parametrize(("card", "layer", "records", "first", "last", "zone"), [
    # SOURCE.md: local times 07:21:13 -> 16:40:28, TIM/ASP strings at +01:00
    (BALER, "TSK-1|baling", 23_463, "2020-10-28 06:21:13", "2020-10-28 15:40:28", "+01:00"),
    # SOURCE.md: 06:13:57 (TLG00001) -> 22:05 (TLG00003), TIM strings at +02:00 (October 13, summer time)
    (BIGX, "TSK-1|harvested", 55_484, "2020-10-13 04:13:57", "2020-10-13 20:05:01", "+02:00"),
])
def test_krone_local_clock_comes_out_in_utc(real2: Path, tmp_path: Path, card: str, layer: str, records: int,
                                            first: str, last: str, zone: str) -> None:
    with zipfile.ZipFile(real2 / card) as zf:
        zf.extractall(tmp_path / "card")
    table = read_task(tmp_path / "card", layer)
    times = table.frame["timestamp"]
    assert len(times) == records
    assert times.min().floor("s") == pd.Timestamp(first, tz="UTC")
    assert times.max().floor("s") == pd.Timestamp(last, tz="UTC")
    assert any(f"local time at UTC{zone}" in n for n in table.notes)


def test_terminal_clock_without_zone_is_kept_and_said(real2: Path) -> None:
    """Fendt logs only its terminal clock and writes no zone anywhere: the times stay as logged (SOURCE.md:
    TLG00001 10:42:14 -> 13:49:01), and the note says they were read as UTC."""
    table = read_task(real2 / "isoxml-agco-fendt-ideal-combine-tim", "TSK-3|harvested")
    times = table.frame["timestamp"]
    assert len(times) == 86_774
    assert times.min().floor("s") == pd.Timestamp("2019-07-30 10:42:14", tz="UTC")
    assert times.max().floor("s") == pd.Timestamp("2019-07-30 13:49:01", tz="UTC")
    assert any("read as UTC: no GPS time is logged and the task's times carry no zone" in n for n in table.notes)


def test_stuck_gps_time_takes_the_terminal_clock(real: Path, tmp_path: Path) -> None:
    """On the CNH card the GPS time freezes at 18:02:30.450 for the last 5 records of a task while the terminal
    clock runs on for four more minutes: those records are dated by the terminal clock shifted to GPS."""
    with zipfile.ZipFile(real / CNH) as zf:
        zf.extractall(tmp_path / "cnh")
    table = read_task(tmp_path / "cnh", "TSK-14|planted")
    times = table.frame["timestamp"]
    assert times.is_monotonic_increasing and times.iloc[-5:].is_unique
    assert times.iloc[-6] == pd.Timestamp("2022-10-18 18:02:30.450", tz="UTC")
    assert times.iloc[-1] - times.iloc[-6] > pd.Timedelta(minutes=4)
    assert any("5 records without a plausible GPS time use the terminal clock" in n for n in table.notes)


def test_benchmark_card_with_a_no_fix_record(tmp_path: Path) -> None:
    """The card `leaf-dagster bench` times (benchmarks.isoxml): its no-fix record is dropped and
    every swath stays in the generated field (the speed itself is measured by the benchmark, not here)."""
    from benchmarks.isoxml import write_card

    with zipfile.ZipFile(write_card(tmp_path, 1200, 600)) as zf:
        zf.extractall(tmp_path / "card")
    table = read_task(tmp_path / "card", "TSK-1|harvested")
    assert len(table.frame) == 1199
    assert any("1 of 1200 records have no usable fix" in n for n in table.notes)
    west, south, east, north = table.frame.total_bounds
    assert 8.02 < west < east < 8.04 and 52.35 < south < north < 52.37
    assert table.frame["distance"].max() < 15


@settings(max_examples=200, deadline=4000, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
# record 11's time 655 s late, then a DLV index beyond the header in record 12: the search for the next sound
# record was anchored on record 11's time and skipped 55 records until the clock caught up
@example(flips=[(528, 47), (618, 12)])
# the first record 226 days early, then a bad DLV index in the second: the search anchored on that first record
# finds nothing in time order, and is repeated without the anchor
@example(flips=[(4, 0), (82, 12)])
def test_damaged_log_returns_only_records_that_pass(flips: list[tuple[int, int]]) -> None:
    """Whatever bytes are damaged, every returned record passes the checks, and each damaged byte costs at
    most a few records (the record it hit, the one before if its length was the damage, and the next)."""
    from benchmarks.tlg import HEADER, generate

    header = parse_header(HEADER.encode(), "TLG00001")
    data = bytearray(generate(300, seed=5))
    for position, value in flips:
        data[position % len(data)] = value
    log = decode(header, bytes(data))
    assert log.count >= 300 - 3 * len(flips)
    assert (log.time_ms <= 86_401_000).all() and np.isin(log.ptn["status"], [0, 1, 2, 3, 4, 5, 6, 7, 8, 14, 15]).all()
    assert (np.abs(log.ptn["north"].astype(np.int64)) <= 900_000_000).all()
    assert (log.entry_dlv < len(header.dlvs)).all()
    assert np.bincount(log.entry_record, minlength=log.count).max(initial=0) <= len(header.dlvs)
    # the generated log runs one record a second from 2021-04-09 10:00: no returned time is a day away from it
    times = log.time_days.astype(np.int64) * 86_400_000 + log.time_ms.astype(np.int64)
    start = 15_074 * 86_400_000 + 36_000_000
    assert ((times > start - 86_400_000) & (times < start + 300_000 + 86_400_000)).all()


def test_each_damaged_byte_costs_at_most_its_neighbourhood() -> None:
    """Every byte of a record (each field: times, position, status, DOPs, count, DLV indices and values) set to
    a few other values, alone and together with every fifth byte of the record one or two further on (the
    fifth from a shift that moves with the first byte, so every byte of the second record meets many of the
    first): every record but the damaged ones and their neighbours (before and after) comes back unchanged."""
    from benchmarks.tlg import HEADER, generate

    header = parse_header(HEADER.encode(), "TLG00001")
    raw = generate(300, seed=5)
    starts = [int(start) for start in starts_of(header, raw)] + [len(raw)]
    log = decode(header, raw)

    def records(log: TlgData) -> list[tuple[int, ...]]:
        fields = [log.time_ms, log.time_days] + [log.ptn[name] for name in header.ptn_binary]
        return list(zip(*(f.tolist() for f in fields)))

    original = records(log)
    assert len(set(original)) == 300

    def check(flips: list[tuple[int, int]]) -> None:
        data = bytearray(raw)
        for position, value in flips:
            data[position] = value
        kept = set(records(decode(header, bytes(data))))
        hit = {int(np.searchsorted(starts, position, side="right")) - 1 for position, _ in flips}
        lost = {k for k, record in enumerate(original) if record not in kept}
        assert lost <= {k + d for k in hit for d in (-1, 0, 1)}, (flips, sorted(lost))

    def others(byte: int) -> list[int]:
        return sorted({byte ^ 0x01, byte ^ 0x10, byte ^ 0x80, 0x00, 0xFF} - {byte})

    damaged = [0, 4, 11, 148]  # the first record, one with few before it, two in the middle
    assert [(starts[k + 1] - starts[k] - 31) // 5 for k in damaged] == [2, 6, 1, 0]  # DLV values in each
    for k in damaged:
        for offset in range(starts[k + 1] - starts[k]):
            position = starts[k] + offset
            for value in others(raw[position]):
                check([(position, value)])
            for further in (1, 2):
                seconds = range(starts[k + further] + offset % 5, starts[k + further + 1], 5)
                for step, other in enumerate(seconds):
                    values = others(raw[other])
                    check([(position, others(raw[position])[step % 4]), (other, values[offset % len(values)])])
