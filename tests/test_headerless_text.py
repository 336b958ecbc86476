"""Header-less Ag Leader text: layouts chosen by column types, time epochs chosen by evidence, damaged copies.

Every variant is built here from the real 16-column `sample1.txt` (yieldcleanr-agleader-text) the way real
files differ: the 17-column "Advanced Ag Leader Format" (GPS status, PDOP and altitude after the grain, as the
GPS 2000/2100 manuals order them; no variety), Unix seconds instead of GPS seconds, cut lines, UTF-16 with CRLF,
Windows-1252. Each must give the same standard values as the original, checked against values computed here
from the source columns.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leaf_dagster.errors import EpochUndecided, ReaderError
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.readers import read_machine_file
from leaf_dagster.standard import times
from leaf_dagster.standard.standardize import standardize

M2_PER_IN2 = 0.00064516
GPS_TO_UNIX_2010 = 315_964_800 - 15  # GPS epoch in Unix seconds, less the 15 leap seconds of 2010
TEXT = "yieldcleanr-agleader-text"


@pytest.fixture(scope="module")
def rows(real: Path) -> list[list[str]]:
    with (real / TEXT / "sample1.txt").open(newline="", encoding="ascii") as fh:
        return list(csv.reader(fh))


def _write(path: Path, rows: list[list[str]], *, encoding: str = "utf-8", newline: str = "\n") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator=newline).writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def _standard(folder: Path):
    (detected,) = detect_machine_files(folder)
    assert detected.file_format == "AGLEADER_TEXT"
    source = read_machine_file(detected)
    result = standardize(source)
    assert result.operation_type == "harvested" and not result.missing
    return source, result


def _expected(rows: list[list[str]]) -> dict[str, float]:
    """Wet mass (flow lb/s x interval s where the point has an area), area (distance x swath, in²) and the first
    time (GPS seconds less 15 leap seconds) straight from the source values."""
    src = pd.DataFrame(rows)
    flow, interval, distance, swath = (src[i].astype(float) for i in (2, 4, 5, 6))
    gps = src[3].astype(int)
    return {"points": len(src), "wet_lb": float((flow * interval)[distance * swath > 0].sum()),
            "area_m2": float((distance * swath).sum() * M2_PER_IN2), "moisture": float(src[7].astype(float).mean()),
            "first": pd.Timestamp(datetime(1980, 1, 6, tzinfo=timezone.utc) + timedelta(seconds=int(gps.iloc[0]) - 15)),
            "altitude_ft": float(src[15].astype(float).mean())}


def _same_values(result, expected: dict[str, float]) -> None:
    std = result.frame
    assert len(std) == expected["points"]
    assert np.nansum(std["wetMass"]) == pytest.approx(expected["wet_lb"], rel=1e-6)
    assert std["area"].sum() == pytest.approx(expected["area_m2"], rel=1e-9)
    assert std["harvestMoisture"].mean() == pytest.approx(expected["moisture"], rel=1e-9)
    assert std["timestamp"].iloc[0] == expected["first"]
    assert std["elevation"].mean() == pytest.approx(expected["altitude_ft"], rel=1e-9)
    assert std["crop"].unique().tolist() == ["soybeans"]


def test_seventeen_columns_advanced_format(rows: list[list[str]], tmp_path: Path) -> None:
    # grain, then GPS status (2 = differential fix), PDOP, altitude; the 17-column layout has no variety
    seventeen = [r[:14] + ["2", "1.8", r[15]] for r in rows]
    _write(tmp_path / "advanced.txt", seventeen)
    source, result = _standard(tmp_path)
    assert source.point_count == len(rows)
    assert "17 columns" in source.notes[0]
    assert source.frame["gps_status"].eq(2).all() and source.frame["pdop"].eq(1.8).all()
    _same_values(result, _expected(rows))


def test_fifteen_columns_with_altitude(rows: list[list[str]], tmp_path: Path) -> None:
    """Without the variety, a varying number after the grain is an altitude, not a variety."""
    _write(tmp_path / "no-variety.txt", [r[:14] + [r[15]] for r in rows])
    source, result = _standard(tmp_path)
    assert "15 columns with altitude" in source.notes[0]
    _same_values(result, _expected(rows))


@pytest.mark.parametrize("where", ["file name", "load label"])
def test_unix_seconds_with_a_year(rows: list[list[str]], tmp_path: Path, where: str) -> None:
    unix = [r[:3] + [str(int(r[3]) + GPS_TO_UNIX_2010)] + r[4:] for r in rows]
    if where == "load label":
        unix = [r[:12] + ["L1: harvest 2010"] + r[13:] for r in unix]
    _write(tmp_path / ("soybeans-2010.txt" if where == "file name" else "soybeans.txt"), unix)
    source, result = _standard(tmp_path)
    assert "unix_time" in source.frame.columns
    assert any("Unix seconds" in n and "2010" in n and where in n for n in source.notes)
    _same_values(result, _expected(rows))


def test_epoch_by_what_is_possible(rows: list[list[str]]) -> None:
    """The real GPS seconds read as Unix seconds fall in 2000; the same instants in Unix seconds read as GPS
    seconds fall in 2020, which is in the future for a file read in 2015."""
    gps = pd.Series([int(r[3]) for r in rows])
    choice = times.choose_epoch(gps, "GPS", {})
    assert choice.epoch == "GPS" and "2000-10-10" in choice.evidence  # both possible: the documented epoch
    unix = gps + GPS_TO_UNIX_2010
    choice = times.choose_epoch(unix, "GPS", {}, now=pd.Timestamp("2015-01-01", tz="UTC"))
    assert choice.epoch == "Unix" and "in the future" in choice.evidence
    with pytest.raises(EpochUndecided, match="2015"):
        times.choose_epoch(gps, "GPS", {2015: "the file name"})  # neither 2010 (GPS) nor 2000 (Unix)
    counter = times.choose_epoch(pd.Series([59242, 157420]), "GPS", {})
    assert counter.epoch is None and "relative counter" in counter.evidence


def test_a_year_that_fits_no_reading_fails_with_the_reason(real: Path, tmp_path: Path) -> None:
    (tmp_path / "soybeans 2015.txt").write_bytes((real / TEXT / "sample1.txt").read_bytes())
    (detected,) = detect_machine_files(tmp_path)
    with pytest.raises(ReaderError, match="2015.*fits neither"):
        read_machine_file(detected)


def test_cut_lines_are_dropped_and_counted(rows: list[list[str]], tmp_path: Path) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    lines = buffer.getvalue().splitlines(keepends=True)
    middle = len(lines) // 2
    lines[middle] = lines[middle][: len(lines[middle]) // 2] + "\n"  # a line cut in the middle of the file
    lines[-1] = lines[-1].rstrip("\n")[:-4]  # the copy stopped inside the last altitude
    (tmp_path / "cut.txt").write_text("".join(lines))
    source, result = _standard(tmp_path)
    kept = rows[:middle] + rows[middle + 1:-1]
    assert source.point_count == len(rows) - 2
    assert any(n.startswith(f"2 of {len(rows)} lines dropped") for n in source.notes)
    _same_values(result, _expected(kept))


@pytest.mark.parametrize("encoding,newline", [("utf-16", "\r\n"), ("cp1252", "\r\n"), ("utf-8-sig", "\n")])
def test_other_encodings_and_line_ends(rows: list[list[str]], tmp_path: Path, encoding: str, newline: str) -> None:
    variety = "Précoce F9891"  # an accented variety name survives the round trip in every encoding
    _write(tmp_path / "enc.txt", [r[:14] + [variety, r[15]] for r in rows], encoding=encoding, newline=newline)
    source, result = _standard(tmp_path)
    assert source.frame["variety"].unique().tolist() == [variety]
    _same_values(result, _expected(rows))


def test_a_width_without_a_layout_is_named(rows: list[list[str]], tmp_path: Path) -> None:
    _write(tmp_path / "eighteen.txt", [r + ["0", "0"] for r in rows[:100]])
    (detected,) = detect_machine_files(tmp_path)
    assert detected.file_format == "AGLEADER_TEXT"
    with pytest.raises(ReaderError, match="has 18 columns"):
        read_machine_file(detected)


@pytest.mark.parametrize("name,layout", [("sample1", "16 columns"), ("sample2", "15 columns with variety"),
                                         ("sample3", "15 columns with variety"), ("sample4", "15 columns with variety")])
def test_real_files_layouts(real: Path, tmp_path: Path, name: str, layout: str) -> None:
    (tmp_path / f"{name}.txt").write_bytes((real / TEXT / f"{name}.txt").read_bytes())
    source, _ = _standard(tmp_path)
    assert layout in source.notes[0]
    src = pd.read_csv(real / TEXT / f"{name}.txt", header=None, encoding="latin-1")
    assert source.point_count == len(src)
    if name == "sample4":  # "4238": a number that is the same all through a load is a variety, not an altitude
        assert source.frame["variety"].astype(str).unique().tolist() == ["4238", "4239"]


def test_a_model_number_in_a_name_is_no_year() -> None:
    """Ag Leader's GPS 2000 monitor and Trimble's YM-2000 name files too: a number glued to letters is a model."""
    assert times.years_in({"the file name": ["GPS2000_field7", "YM2000 export", "harvest_2019-10-02"]}) == {
        2019: "the file name 'harvest_2019-10-02'"}


def test_a_numeric_variety_that_changes_between_loads_is_no_altitude(real: Path, tmp_path: Path) -> None:
    """sample4's 15th column is a numeric variety code: 4238 in load L1, 4239 in L2. A copy that starts 200
    lines before the load change puts both loads in the sniffed lines; the column changes only from one load
    to the next, never within one, so it is a variety, not an altitude of 4238 ft."""
    lines = (real / TEXT / "sample4.txt").read_text(encoding="latin-1").splitlines(keepends=True)
    src = pd.read_csv(real / TEXT / "sample4.txt", header=None, encoding="latin-1")
    first_l2 = int(src.index[src[12].str.startswith("L2")][0])
    start = first_l2 - 200
    (tmp_path / "sample4 from load change.txt").write_text("".join(lines[start:]), encoding="latin-1")
    source, result = _standard(tmp_path)
    assert "15 columns with variety" in source.notes[0]
    part = src.iloc[start:].reset_index(drop=True)
    std = result.frame
    assert len(std) == len(part)
    assert "elevation" not in std.columns
    assert std["variety"].tolist() == part[14].astype(str).tolist()
    assert std["variety"].iloc[:200].unique().tolist() == ["4238"] and std["variety"].iloc[200:].unique().tolist() == ["4239"]
    flow, interval, distance, swath = part[2], part[4], part[5], part[6]
    assert np.nansum(std["wetMass"]) == pytest.approx((flow * interval)[distance * swath > 0].sum(), rel=1e-6)
    assert std["area"].sum() == pytest.approx((distance * swath).sum() * M2_PER_IN2, rel=1e-9)
    assert std["harvestMoisture"].mean() == pytest.approx(part[7].mean(), rel=1e-9)
    assert std["crop"].unique().tolist() == ["corn, white"]
