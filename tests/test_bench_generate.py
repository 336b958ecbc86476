"""The benchmark's generated inputs are what they claim: JD-style harvest shapefiles, deterministic for a seed.

Small sizes only; nothing here is timed (performance lives in `leaf-dagster bench`).
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest

from benchmarks.generate import (
    COLUMNS,
    FIRST_SECTION_ID,
    HARVEST_NAME,
    M_PER_DEG_LAT,
    SECTIONS,
    batch_names,
    harvest_frame,
    write_batch_zip,
    write_harvest_zip,
)
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.readers import read_machine_file


def test_harvest_frame_has_jd_columns_and_plausible_values():
    frame = harvest_frame(2_003, seed=7)
    assert len(frame) == 2_003
    assert list(frame.columns) == [*COLUMNS, "geometry"]
    assert frame.crs.to_epsg() == 4326
    assert set(frame.geom_type) == {"Point"} and frame.geometry.has_z.all()
    for column in ("SECTIONID", "Crop", "Machine"):
        assert frame[column].dtype == np.int32
    assert set(frame["SECTIONID"]) == set(range(FIRST_SECTION_ID, FIRST_SECTION_ID + SECTIONS))
    assert frame["VRYIELDVOL"].between(0, 200).all() and frame["VRYIELDVOL"].median() > 30
    assert np.allclose(frame["WetMass"], frame["VRYIELDVOL"] * 60.01)
    assert frame["Moisture"].between(0, 25).all()
    assert frame["DISTANCE"].between(2.5, 8).all()  # ft per second, about 1.5 m/s
    assert frame["Time"].str.fullmatch(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M").all()
    assert frame["IsoTime"].str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z").all()
    # Time is IsoTime to the second, on a 12-hour clock
    iso = pd.to_datetime(frame["IsoTime"].str[:19])
    local = pd.to_datetime(frame["Time"], format="%m/%d/%Y %I:%M:%S %p")
    assert (iso == local).all()
    # one timestamp for every section of the header
    assert frame.groupby("IsoTime")["SECTIONID"].nunique().max() == SECTIONS


def test_harvest_frame_lays_out_serpentine_passes():
    frame = harvest_frame(40_000, seed=3)
    lat0 = frame.geometry.y.min()
    x = (frame.geometry.x - frame.geometry.x.min()) * M_PER_DEG_LAT * math.cos(math.radians(lat0))
    y = (frame.geometry.y - lat0) * M_PER_DEG_LAT
    centre = frame["SECTIONID"].isin([FIRST_SECTION_ID + 3, FIRST_SECTION_ID + 4])
    # passes 10 m apart: the centre of the header sits near the middle of a 10 m strip
    strips = np.round((x[centre] - 5) / 10)
    assert np.abs(x[centre] - 5 - strips * 10).max() < 1.5
    assert strips.nunique() > 5
    # northbound and southbound passes alternate
    headings = frame["Heading"]
    assert ((headings < 20) | (headings > 340)).any() and headings.between(160, 200).any()
    # about 1.5 m between consecutive seconds of one section
    one = frame[frame["SECTIONID"] == FIRST_SECTION_ID]
    step = np.hypot(np.diff(x[one.index]), np.diff(y[one.index]))
    assert 1.2 < np.median(step) < 1.8
    assert y.max() - y.min() > 50


def test_harvest_frame_is_deterministic_for_a_seed():
    a, b, c = harvest_frame(1_000, seed=11), harvest_frame(1_000, seed=11), harvest_frame(1_000, seed=12)
    pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"))
    assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all()
    assert not np.allclose(a["VRYIELDVOL"], c["VRYIELDVOL"])


def test_harvest_zip_is_a_readable_jd_export(tmp_path: Path):
    archive, shp = write_harvest_zip(tmp_path, 1_600, seed=5)
    assert archive.name == f"{HARVEST_NAME}.zip"
    assert HARVEST_NAME.split("-")[3] == "Wheat"  # Client-Farm-Field-Crop-n, where the reader finds the crop
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == sorted(f"{HARVEST_NAME}{ext}" for ext in (".dbf", ".prj", ".shp", ".shx"))
    info = pyogrio.read_info(shp)
    assert info["features"] == 1_600
    assert info["geometry_type"] == "Point Z"
    assert info["crs"] == "EPSG:4326"
    assert list(info["fields"]) == COLUMNS
    assert "GEOGCS" in shp.with_suffix(".prj").read_text()
    read = pyogrio.read_dataframe(shp, use_arrow=True)
    expected = harvest_frame(1_600, seed=5)
    np.testing.assert_allclose(read["VRYIELDVOL"], expected["VRYIELDVOL"], rtol=1e-12)
    assert (read["IsoTime"] == expected["IsoTime"]).all()


def test_harvest_zip_is_deterministic(tmp_path: Path):
    _, first = write_harvest_zip(tmp_path / "a", 800, seed=9)
    _, second = write_harvest_zip(tmp_path / "b", 800, seed=9)
    assert first is not None and second is not None
    assert first.read_bytes() == second.read_bytes()  # .shp: the geometry, byte for byte
    dbf_a, dbf_b = first.with_suffix(".dbf").read_bytes(), second.with_suffix(".dbf").read_bytes()
    assert dbf_a[4:] == dbf_b[4:]  # bytes 1-3 are the DBF's "last updated" date


def test_generated_export_reads_as_john_deere_wheat(tmp_path: Path):
    _, shp = write_harvest_zip(tmp_path, 240, seed=1)
    assert shp is not None
    [detected] = detect_machine_files(shp.parent)
    source = read_machine_file(detected)
    assert source.dialect == "JOHN_DEERE"
    assert source.hints.get("crop") == "Wheat"
    assert len(source.frame) == 240


@pytest.mark.parametrize("files, points", [(3, 40)])
def test_batch_zip_holds_the_small_exports(tmp_path: Path, files: int, points: int):
    archive = write_batch_zip(tmp_path, files=files, points=points, seed=2)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "x")
    assert len(names) == 4 * files
    stems = sorted({Path(n).stem for n in names})
    assert stems == sorted(batch_names(files))
    assert all(re.fullmatch(r"[^-]+-[^-]+-Field \d{3}-Wheat-1", s) for s in stems)
    for stem in stems:
        assert pyogrio.read_info(tmp_path / "x" / f"{stem}.shp")["features"] == points


def test_cli_hands_bench_options_to_the_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    from leaf_dagster.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick", "--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_cli_bench_without_the_benchmarks_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """An installed wheel has no benchmarks/: one line on stderr and exit code 2, no traceback."""
    from leaf_dagster import cli

    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "leaf_dagster" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: the benchmarks are not installed")
