"""Records that lie off their task's partfield (issue 10 trap): the anonymised KRONE v0 mower logged near
Shetland under a field in Lower Saxony. The reader keeps the points as logged and says how far off they are.

Distances are checked against an independent computation: the median of the positioned records read by
`tlg_oracle` (a plain struct walk of the TLG binaries), the boundary vertices read here with ElementTree, and
the haversine distance between them. The nearest vertex is at most a field's width farther than the nearest
boundary edge, and the sphere differs from the reader's ellipsoid by well under 1 %.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from leaf_dagster.model import SourceTable
from leaf_dagster.readers.isoxml import load_taskdata
from leaf_dagster.readers.isoxml.partfield import MISMATCH_KM

from .test_isoxml_real2 import MOWER_V0, RAKE, read_all, unzip
from .tlg_oracle import positioned, read_tlg

EARTH_RADIUS_KM = 6371.0088
LATITUDE_SHIFT = 5.0  # degrees north, for the derived rake card


def taskdata_of(folder: Path) -> Path:
    return next(p for p in folder.rglob("*") if p.name.upper() == "TASKDATA.XML")


def oracle_positions(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of the positioned records of every time log in `folder`."""
    north, east = [], []
    for binary in folder.rglob("*"):
        if binary.suffix.lower() != ".bin" or not binary.stat().st_size:
            continue
        header = next(binary.parent.glob(f"{binary.stem}.[xX][mM][lL]"))
        for record in read_tlg(header, binary).records:
            if positioned(record):
                north.append(record.ptn["A"] * 1e-7)
                east.append(record.ptn["B"] * 1e-7)
    return np.array(north), np.array(east)


def oracle_median(folder: Path) -> tuple[float, float]:
    lat, lon = oracle_positions(folder)
    return float(np.median(lat)), float(np.median(lon))


def boundary_vertices(taskdata: Path) -> dict[str, tuple[str, list[tuple[float, float]]]]:
    """PFD id -> (name, [(lat, lon)]) of the points of its polygons."""
    root = ET.parse(taskdata).getroot()
    return {pfd.get("A"): (pfd.get("C"), [(float(p.get("C")), float(p.get("D"))) for p in pfd.iter("PNT")])
            for pfd in root.iter("PFD")}


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def nearest_vertex(folder: Path) -> tuple[str, float]:
    """(field name, km) of the boundary vertex nearest to the records' median."""
    median = oracle_median(folder)
    return min(((name, min(haversine_km(median, v) for v in vertices))
                for name, vertices in boundary_vertices(taskdata_of(folder)).values() if vertices),
               key=lambda found: found[1])


def only_table(folder: Path) -> SourceTable:
    (table,) = read_all(folder).values()
    assert isinstance(table, SourceTable)
    return table


def off_field_notes(table: SourceTable) -> list[str]:
    return [n for n in table.notes if n.startswith("records off their partfield")]


def shift_points(taskdata: Path, dlat: float, dlon: float = 0.0) -> None:
    """Move every PNT of the card by (dlat, dlon) degrees, leaving the rest of the file byte for byte."""
    text = taskdata.read_text(encoding="utf-8")

    def moved(match: re.Match[str]) -> str:
        tag = match.group(0)
        for attr, delta in (("C", dlat), ("D", dlon)):
            tag = re.sub(rf'(\s{attr}=")(-?[0-9.]+)(")', lambda m: f"{m[1]}{float(m[2]) + delta:.9f}{m[3]}", tag)
        return tag

    shifted, count = re.subn(r"<PNT\b[^>]*>", moved, text)
    assert count
    taskdata.write_text(shifted, encoding="utf-8")


# ---------------------------------------------------------------- the anonymised KRONE v0 mower

def test_anonymised_mower_is_off_its_partfield(real2: Path, tmp_path: Path) -> None:
    folder = unzip(real2 / MOWER_V0, tmp_path)
    table = only_table(folder)
    km = table.hints["partfieldMismatchKm"]
    name, independent = nearest_vertex(folder)
    assert name == "7xb0wzaAw"  # the random PFD name the task names (TSK E="PFD-2")
    assert 1_000 < independent < 1_200 and km == pytest.approx(independent, rel=0.01)
    # SOURCE.md: boundary near 52.373 N, 7.496 E; records at 61.07-61.09 N, -1.23 to -1.20 E
    assert 1_000 < haversine_km((52.373, 7.496), (61.08, -1.215)) < 1_200
    (note,) = off_field_notes(table)
    assert f"{km:,.1f} km" in note and "'7xb0wzaAw' (PFD-2) the task names" in note
    # the points stay where they were logged (SOURCE.md: 2,684 records at 61.07-61.09 N, -1.23 to -1.20 E)
    lat, lon = oracle_positions(folder)
    assert len(table.frame) == len(lat) == 2_684
    assert np.sort(table.frame.geometry.y) == pytest.approx(np.sort(lat), abs=1e-9)
    assert np.sort(table.frame.geometry.x) == pytest.approx(np.sort(lon), abs=1e-9)
    assert round(lat.min(), 2) == 61.07 and round(lat.max(), 2) == 61.09


def test_mower_naming_no_field_is_compared_with_the_cards_fields(real2: Path, tmp_path: Path) -> None:
    folder = unzip(real2 / MOWER_V0, tmp_path)
    taskdata = taskdata_of(folder)
    text = taskdata.read_text(encoding="utf-8")
    assert ' E="PFD-2"' in text
    taskdata.write_text(text.replace(' E="PFD-2"', ""), encoding="utf-8")
    table = only_table(folder)
    (note,) = off_field_notes(table)
    assert "the task names none; nearest '7xb0wzaAw', PFD-2" in note
    assert table.hints["partfieldMismatchKm"] == pytest.approx(nearest_vertex(folder)[1], rel=0.01)


def test_mower_with_its_boundary_moved_onto_the_records_says_nothing(real2: Path, tmp_path: Path) -> None:
    """Undo the anonymiser's shift on the boundary: the same records now lie on their field."""
    folder = unzip(real2 / MOWER_V0, tmp_path)
    taskdata = taskdata_of(folder)
    (_, vertices), = boundary_vertices(taskdata).values()
    lat, lon = oracle_median(folder)
    shift_points(taskdata, lat - np.mean([v[0] for v in vertices]), lon - np.mean([v[1] for v in vertices]))
    table = only_table(folder)
    assert not off_field_notes(table) and "partfieldMismatchKm" not in table.hints
    assert nearest_vertex(folder)[1] < MISMATCH_KM


# ---------------------------------------------------------------- the KRONE Swadro rake: real positions

def test_rake_on_its_fields_says_nothing(real2: Path, tmp_path: Path) -> None:
    folder = unzip(real2 / RAKE, tmp_path)
    data = load_taskdata(taskdata_of(folder))
    assert len(data.boundaries) == 5 and sum(len(r) for rings in data.boundaries.values() for r in rings) == 59
    assert data.tasks[0].field is None  # the AUTOLOG task names no field: the card's five stand in
    table = only_table(folder)
    assert not off_field_notes(table) and "partfieldMismatchKm" not in table.hints


def test_rake_with_fields_moved_five_degrees_north(real2: Path, tmp_path: Path) -> None:
    folder = unzip(real2 / RAKE, tmp_path)
    shift_points(taskdata_of(folder), LATITUDE_SHIFT)
    table = only_table(folder)
    name, independent = nearest_vertex(folder)
    km = table.hints["partfieldMismatchKm"]
    # constructed: five degrees of latitude (556 km) less the way from the southern edge of the nearest field
    # (Bergstraße, 52.346 N) up to the records' median (52.352 N)
    assert 540 < independent < LATITUDE_SHIFT * math.pi / 180 * EARTH_RADIUS_KM
    assert km == pytest.approx(independent, rel=0.01)
    (note,) = off_field_notes(table)
    assert f"{km:,.1f} km" in note and f"nearest '{name}'" in note and "any of the card's 5 partfields" in note
    assert len(table.frame) == 28_609  # SOURCE.md record count: nothing moved or dropped
