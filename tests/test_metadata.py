"""The preview shown with the raw, standard and filtered steps in the UI: the first rows of the file as read."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from leaf_dagster.defs.metadata import preview

from .conftest import JD_WHEAT_ZIP, MONTANA


def _rows(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()]


def test_the_preview_shows_the_first_rows_of_a_real_export_as_read(real: Path) -> None:
    read = gpd.read_file(f"zip://{real / MONTANA / JD_WHEAT_ZIP}")
    frame = read[[read.geometry.name, *read.columns.drop(read.geometry.name)]].copy()  # 14 columns, points first
    frame.loc[1, "VARIETY"] = None
    frame.loc[2, "VARIETY"] = "W" * 50

    header, rule, *rows = _rows(preview(frame).value)

    shown = list(frame.columns[:12])
    assert header == shown and len(rule) == len(shown) and len(rows) == 5
    for number, row in enumerate(rows):
        for column, cell in zip(shown, row):
            value = frame[column].iloc[number]
            if column == frame.geometry.name:
                kind, coordinates = cell.split(" (")  # WKT at six decimals
                x, y = (float(c) for c in coordinates.split()[:2])
                assert kind == "POINT Z" and (x, y) == (pytest.approx(value.x, abs=1e-6), pytest.approx(value.y, abs=1e-6))
            elif pd.isna(value):
                assert cell == ""
            elif isinstance(value, str):
                assert cell == value[:40]
            else:  # numbers as the Markdown table writes them (six significant digits)
                assert float(cell) == pytest.approx(float(value), rel=1e-5)
    assert rows[1][shown.index("VARIETY")] == "" and rows[2][shown.index("VARIETY")] == "W" * 40
    assert rows[0][shown.index("VARIETY")] == "Brawl CLP" and "IsoTime" not in header


def test_the_preview_shows_every_kind_of_cell_a_reader_hands_over() -> None:
    """GDAL list fields arrive as arrays, binary fields as bytes; missing values of every kind show blank, and
    two columns of one name both show."""
    frame = pd.DataFrame({
        "sections": [np.array([1, 2, 3]), np.array([], dtype=int)],
        "blob": [b"raw", None],
        "count": pd.array([7, None], dtype="Int64"),
        "when": pd.to_datetime(["2019-08-16 18:52:48", None]),
        "attrs": [{"a": 1}, [1, 2]],
        "name": ["x" * 45, float("nan")],
    })
    frame.insert(1, "name", ["first", "second"], allow_duplicates=True)

    header, _, first, second = _rows(preview(frame).value)

    assert header == ["sections", "name", "blob", "count", "when", "attrs", "name"]
    assert first == ["[1 2 3]", "first", "raw", "7", "2019-08-16 18:52:48", "{'a': 1}", "x" * 40]
    assert second == ["[]", "second", "", "", "", "[1, 2]", ""]
