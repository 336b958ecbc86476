"""Column matching, units, crops, times and format detection, on the names and values real files use."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from leaf_dagster.ingest.detect import detect_machine_files, sniff_text
from leaf_dagster.readers.delimited import split_header
from leaf_dagster.standard import crops, times
from leaf_dagster.standard.columns import match_columns, skeleton
from leaf_dagster.standard.units import convert, factor, leaf_unit


@pytest.mark.parametrize("names", [["Yld Vol(Wet)", "Yld_Vol_We", "yld_vl_w"], ["Distance", "Distance_f", "dstnc_f"],
                                   ["Swth Wdth", "Swth_Wdth_", "swth_w_"]])
def test_sms_spellings_share_one_match(names: list[str]) -> None:
    props = {next(iter(match_columns([n], "SMS", {}))) for n in names}
    assert len(props) == 1


def test_unit_suffixes_and_truncations() -> None:
    m = match_columns(["Distance_f", "Speed_mph_", "Tgt_Rate_k", "SWATHWI", "dataset"], "SMS", {})
    assert m["distance"].unit == "ft" and m["speed"].unit == "mi/hr"
    assert m["rateTarget"].scale == 1000.0
    assert "date" not in m  # "dataset" is not a date
    jd = match_columns(["AppldRt", "TargtRt", "SWATHWI", "DISTANC", "Elevatn"], "JOHN_DEERE", {})
    assert {k: v.column for k, v in jd.items()} == {"rate": "AppldRt", "rateTarget": "TargtRt",
                                                    "equipmentWidth": "SWATHWI", "distance": "DISTANC",
                                                    "elevation": "Elevatn"}
    assert skeleton("Yld Mass(Dry)") == "yldmssdry"


def test_generic_csv_gets_no_assumed_units() -> None:
    assert match_columns(["Distance"], "GENERIC", {})["distance"].unit is None


def test_dictionary_names_in_other_languages_and_unit_suffixes() -> None:
    m = match_columns(["Humidité", "Arbeitsbreite", "Rendimiento", "z_metrs", "dir_y"], "GENERIC", {})
    assert {k: v.column for k, v in m.items()} == {"harvestMoisture": "Humidité", "equipmentWidth": "Arbeitsbreite",
                                                   "dryYield": "Rendimiento", "elevation": "z_metrs"}
    assert m["elevation"].unit == "m" and m["dryYield"].unit is None  # no unit stated, none assumed
    dry = match_columns(["DRY_BU_AC"], "GENERIC", {})["dryYield"]
    assert (dry.unit, dry.unit_source) == ("bu/ac", "name")
    # a sidecar's unit for 'AppliedRate' holds for the column R shortened to 'AppldRt'
    stated = match_columns(["AppldRt"], "JOHN_DEERE", {"AppliedRate": "lb/ac"})["rate"]
    assert (stated.unit, stated.unit_source) == ("lb/ac", "stated")


@pytest.mark.parametrize("label,unit", [("tonne/ha", "t/ha"), ("bu1ac-1", "bu/ac"), ("lb1ac-1", "lb/ac"),
                                        ("prcnt", "percentage"), ("m³/s", "m3/s"), ("mph", "mi/hr"), ("%", "percentage")])
def test_unit_labels(label: str, unit: str) -> None:
    assert leaf_unit(label) == unit


def test_conversions_use_international_acre_and_us_bushel() -> None:
    assert factor("ac", "m2") == pytest.approx(0.3048 ** 2 * 43560, rel=1e-12)
    assert factor("bu/ac", "L/ha") == pytest.approx(35.23907016688 * 10000 / (0.3048 ** 2 * 43560), rel=1e-9)
    assert convert(100.0, "degF", "degC") == pytest.approx(37.7777778)


def test_headers_with_units() -> None:
    assert split_header("Yld Mass(Dry)(tonne/ha)") == ("Yld Mass(Dry)", "t/ha")
    assert split_header("Crop Flw(V)(m³/s)") == ("Crop Flw(V)", "m3/s")
    assert split_header("Yld Mass(Dry)") == ("Yld Mass(Dry)", None)


def test_crop_names() -> None:
    assert crops.lookup("WHEAT_HRD_RD_SPR").name == "wheat"  # Leaf's "wheat (hrd rd spr)": same figures as wheat
    assert crops.lookup("CORN WHITE").density_lb_per_bu == 56.57
    assert crops.lookup("ww").standard_moisture_pct == 13.5
    assert crops.lookup("Brawl CLP") is None
    assert crops.crop_from_seed_name("DKC61-54rib").name == "corn"


def test_times() -> None:
    us, _ = times.parse_datetimes(pd.Series(["8/16/2019 6:52:48 PM"]))
    assert us.iloc[0] == pd.Timestamp("2019-08-16T18:52:48Z")
    day_first, _ = times.combine_date_and_time(pd.Series(["5/03/2024", "27/11/2032"]), pd.Series(["8:04:24", "1:00:00"]))
    assert day_first.iloc[0] == pd.Timestamp("2024-03-05T08:04:24Z")
    gps, note = times.from_gps_seconds(pd.Series([59242.0, 59243.0]))
    assert gps.isna().all() and "relative counter" in note
    assert times.format_utc(pd.Timestamp("2019-08-16T18:52:48.2Z")) == "2019-08-16T18:52:48.200Z"


def test_detection_groups_and_reports(tmp_path: Path) -> None:
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "._a.shp").write_bytes(b"\x00")
    for ext in (".shp", ".SHX", ".dbf", ".prj"):
        (tmp_path / f"a{ext}").write_bytes(b"\x00")
    (tmp_path / "a-Deere-Metadata.json").write_text("{}")
    (tmp_path / "Data.cn1").mkdir()
    (tmp_path / "Data.cn1" / "index.vy1").write_bytes(b"\x00")
    (tmp_path / "x.agdata").write_bytes(b"\x00")
    (tmp_path / "notes.txt").write_text("hello")
    found = {f.name: f for f in detect_machine_files(tmp_path)}
    assert set(found) == {"a", "Data.cn1", "x.agdata"}
    assert len(found["a"].members) == 5 and found["a"].file_format == "SHAPEFILE"
    assert found["Data.cn1"].unsupported_reason == "CN1 (CNH Pro 700 / IntelliView IV) files are not supported"
    assert found["x.agdata"].file_format == "AGDATA"


def test_sniff_text(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("Longitude,Latitude,Moisture(%)\n1,2,3\n")
    (tmp_path / "t.txt").write_text('-93.2,39.2,2.9,971213672,1,24,288,9.6,1,1,2136,"F1: C1N","L1: ","Soybeans","X",1381\n')
    (tmp_path / "n.csv").write_text("a,b\n1,2\n")
    assert sniff_text(tmp_path / "h.csv") == "CSV"
    assert sniff_text(tmp_path / "t.txt") == "AGLEADER_TEXT"
    assert sniff_text(tmp_path / "n.csv") is None


def test_a_short_name_is_no_cut_of_a_longer_alias() -> None:
    """Writers cut names at 7 or 10 characters or keep most of them; `Area`, `Prod` and `Head` are whole
    words of other meanings, not `Area Count`, `Produtividade` or `Header Width`."""
    from leaf_dagster.standard.columns import match_columns

    assert match_columns(["Area", "Prod", "Head"], "GENERIC", {}) == {}
    assert match_columns(["swth_w_"], "GENERIC", {})["equipmentWidth"].column == "swth_w_"
