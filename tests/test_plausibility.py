"""The plausibility figures on every real set, and on real files with one thing broken.

Every real file that standardises must be plausible (the one exception is named with its reason); breaking
one thing (widths x 10, times moved into 2030, speeds x 20, yields x 100) must be found, with the figure
that shows it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from leaf_dagster.derived.plausibility import assess
from leaf_dagster.errors import ReaderError
from leaf_dagster.ingest.detect import detect_machine_files
from leaf_dagster.model import StandardResult
from leaf_dagster.readers import read_machine_file
from leaf_dagster.standard.standardize import standardize

# SOURCE.md: "The date 27/11/2032 looks shifted for anonymity" -- a future date the check must report.
SHIFTED_INTO_THE_FUTURE = "area2_yield_ISO-8859-1"


def _unpacked(corpus: Path, root: Path) -> list[Path]:
    folders = []
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        target = root / corpus.name / folder.name
        target.mkdir(parents=True)
        for path in folder.rglob("*"):
            if path.suffix.lower() == ".zip":
                with zipfile.ZipFile(path) as zf:
                    zf.extractall(target / path.stem)
        folders += [folder, target]
    return folders


@pytest.fixture(scope="module")
def standard_files(real: Path, real2: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, StandardResult]:
    """Every machine file of both corpora that reaches a standard output, by name."""
    root = tmp_path_factory.mktemp("plausible")
    out: dict[str, StandardResult] = {}
    for folder in _unpacked(real, root) + _unpacked(real2, root):
        for detected in detect_machine_files(folder):
            if detected.unsupported_reason:
                continue
            try:
                source = read_machine_file(detected)
            except ReaderError:
                continue  # files the readers refuse are tested elsewhere
            source.hints.setdefault("fileName", detected.name)
            result = standardize(source)
            if result.supported and not result.missing and result.frame is not None and len(result.frame):
                out[f"{detected.name}|{detected.layer or ''}|{result.operation_type}"] = result
    return out


def test_every_real_file_is_plausible(standard_files: dict[str, StandardResult]) -> None:
    assert len(standard_files) >= 40
    measured = 0
    for name, result in standard_files.items():
        found = assess(result.frame, result.units, result.crop)
        if name.startswith(SHIFTED_INTO_THE_FUTURE):
            assert found.findings == ["the time span ends 2032-11-27, in the future"]
            continue
        assert found.passed, (name, found.findings, found.figures)
        if found.figures.get("width_to_spacing") is not None:
            measured += 1
    assert measured >= 35  # most files show their passes; the ratio is measured, not skipped


def _jd_harvest(standard_files: dict[str, StandardResult]) -> StandardResult:
    return next(r for n, r in standard_files.items() if n.startswith("Merriweather Farms-JT-01-Soybeans|")
                and r.operation_type == "harvested")


def _broken(result: StandardResult, **changes) -> gpd.GeoDataFrame:
    frame = result.frame.copy()
    for column, change in changes.items():
        frame[column] = change(frame[column])
    return frame


def test_widths_ten_times_too_wide(standard_files: dict[str, StandardResult]) -> None:
    result = _jd_harvest(standard_files)
    good = assess(result.frame, result.units, result.crop)
    # six 5 ft sections per instant: the header is 30 ft = 9.144 m, and the passes lie about that far apart
    assert good.figures["working_width_m"] == pytest.approx(9.144, abs=0.01)
    assert good.figures["width_to_spacing"] == pytest.approx(1.0, abs=0.1)
    bad = assess(_broken(result, equipmentWidth=lambda w: w * 10), result.units, result.crop)
    assert bad.figures["width_to_spacing"] == pytest.approx(10 * good.figures["width_to_spacing"], rel=0.01)
    assert bad.figures["pass_spacing_m"] == good.figures["pass_spacing_m"]  # positions alone
    assert bad.findings == [f"working width 91.4 m is {bad.figures['width_to_spacing']:.2f} times the "
                            f"{good.figures['pass_spacing_m']:.1f} m between neighbouring passes"]


def test_times_moved_into_2030(standard_files: dict[str, StandardResult]) -> None:
    result = _jd_harvest(standard_files)
    moved = _broken(result, timestamp=lambda t: t + pd.DateOffset(years=14))  # 2016 -> 2030
    now = pd.Timestamp("2026-11-30", tz="UTC")
    found = assess(moved, result.units, result.crop, now=now)
    assert found.findings == ["the time span ends 2030-09-19, in the future"]
    assert assess(result.frame, result.units, result.crop, now=now).passed


def test_impossible_speeds(standard_files: dict[str, StandardResult]) -> None:
    result = next(r for n, r in standard_files.items() if n.startswith("sample2|"))
    # sample2 has no speed column: the standardiser derives it from distance (in) / interval (s)
    src = result.frame
    assert assess(src, result.units, result.crop).figures["speed_share_over_15_m_s"] == 0.0
    fast = assess(_broken(result, speed=lambda s: s * 20), result.units, result.crop)
    share = float((src["speed"] * 20 > 15).mean())
    assert fast.figures["speed_share_over_15_m_s"] == pytest.approx(share, abs=1e-4)
    assert share > 0.1 and fast.findings == [f"{share:.1%} of the speeds logged exceed 15 m/s, faster than any "
                                             "field machine"]


def test_yields_above_the_crop_record(standard_files: dict[str, StandardResult]) -> None:
    result = _jd_harvest(standard_files)
    good = assess(result.frame, result.units, result.crop)
    lb_ac_to_t_ha = 0.45359237 / 1000 / 0.40468564224
    median = float(np.nanmedian(result.frame["dryMassPerArea"][result.frame["dryMassPerArea"] > 0])) * lb_ac_to_t_ha
    assert result.units["dryMassPerArea"] == "lb/ac"
    assert good.figures["median_dry_yield_t_ha"] == pytest.approx(median, abs=0.01)
    bad = assess(_broken(result, dryMassPerArea=lambda v: v * 100), result.units, result.crop)
    assert bad.findings == [f"the median dry yield {median * 100:.1f} t/ha is above the 14 t/ha record for soybeans"]


def test_a_kind_of_grain_has_the_grains_record(standard_files: dict[str, StandardResult]) -> None:
    """`durum wheat` and `winter wheat` are judged against wheat's record; silage, a forage, is not."""
    result = _jd_harvest(standard_files)
    broken = _broken(result, dryMassPerArea=lambda v: v * 100)
    for kind in ("durum wheat", "winter wheat"):
        (finding,) = assess(broken, result.units, kind).findings
        assert "above the 18 t/ha record" in finding
    assert assess(broken, result.units, "silage corn").findings == []
