"""A PointTable holds its points encoded and a subset as a row mask: the frames it builds back are the frame
it was made from (2D points, 3D points, missing and empty geometries), its subsets are that frame's rows."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from leaf_dagster.model import PointTable


def _frame(points: list[object]) -> gpd.GeoDataFrame:
    n = len(points)
    frame = pd.DataFrame({"speed": np.linspace(0.0, 3.0, n), "crop": ["wheat"] * n,
                          "elevation": [np.nan] * (n - 1) + [812.5]})
    frame.insert(1, "geometry", gpd.GeoSeries(points, crs="EPSG:4326"))  # not the last column
    return gpd.GeoDataFrame(frame, geometry="geometry")


KINDS = {
    "2D points": [shapely.Point(-111.0 + i * 1e-5, 45.5 + i * 1e-5) for i in range(6)],
    "3D points": [shapely.Point(-111.0, 45.5 + i * 1e-5, 1000.0 + i) for i in range(6)],
    "missing and empty": [shapely.Point(-111.0, 45.5), None, shapely.Point(), shapely.Point(-111.1, 45.6),
                          shapely.Point(-111.2, 45.7), shapely.Point(-111.3, 45.8)],
}


@pytest.mark.parametrize("kind", KINDS)
def test_frame_round_trip(kind: str) -> None:
    frame = _frame(KINDS[kind])
    table = PointTable.of(frame, {"speed": "m/s"})
    assert table.point_count == 6
    assert table.properties.columns.tolist() == ["speed", "crop", "elevation"]
    back = table.frame
    assert back.columns.tolist() == frame.columns.tolist() and back.crs == frame.crs
    pd.testing.assert_frame_equal(pd.DataFrame(back.drop(columns="geometry")), pd.DataFrame(frame.drop(columns="geometry")))
    assert back.geometry.to_wkb().tolist() == frame.geometry.to_wkb().tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_subset_is_the_kept_rows(kind: str) -> None:
    frame = _frame(KINDS[kind])
    table = PointTable.of(frame, {})
    keep = np.array([True, False, True, True, False, True])
    part = table.subset(keep)
    assert part.properties is table.properties  # the values are shared, not copied
    expected = frame[keep].reset_index(drop=True)
    assert part.point_count == 4
    assert part.frame.geometry.to_wkb().tolist() == expected.geometry.to_wkb().tolist()
    pd.testing.assert_frame_equal(part.columns, pd.DataFrame(expected.drop(columns="geometry")))
    assert part.values("speed").tolist() == expected["speed"].tolist()
    # a subset of a subset keeps rows of the first one
    inner = part.subset(np.array([False, True, False, True]))
    assert inner.values("speed").tolist() == expected["speed"].iloc[[1, 3]].tolist()
    assert inner.head(1)["speed"].tolist() == expected["speed"].iloc[[1]].tolist()
    assert table.subset(np.ones(6, dtype=bool)).keep is None  # all kept: the table itself
    none = table.subset(np.zeros(6, dtype=bool))
    assert none.point_count == 0 and none.geometry[2] == [] and len(none.frame) == 0




@pytest.mark.parametrize("kind", KINDS)
def test_chunks_joined_are_the_table(kind: str) -> None:
    """What the standard step does with its chunks: each encoded as it is made, then joined, gives the table
    the whole frame makes (values, column order, geometry place, WKB and types)."""
    frame = _frame(KINDS[kind])
    whole = PointTable.of(frame, {"speed": "m/s"})
    parts = [PointTable.of(frame.iloc[start:start + 4].reset_index(drop=True), {}) for start in (0, 4)]
    joined = PointTable.joined(parts, {"speed": "m/s"})
    assert parts == []  # the chunks are the table's now
    assert joined.units == {"speed": "m/s"} and joined.position == whole.position == 1
    pd.testing.assert_frame_equal(joined.properties, whole.properties)
    assert joined.geometry[0].to_pylist() == whole.geometry[0].to_pylist()
    np.testing.assert_array_equal(joined.geometry[1], whole.geometry[1])
    assert joined.geometry[2] == whole.geometry[2]
    assert joined.frame.geometry.to_wkb().tolist() == frame.geometry.to_wkb().tolist()


def test_chunks_with_other_columns_are_joined_as_concat_joins_them() -> None:
    frame = _frame(KINDS["2D points"])
    first = PointTable.of(frame.iloc[:3].reset_index(drop=True), {})
    second = PointTable.of(frame.iloc[3:].drop(columns="crop").reset_index(drop=True), {})
    joined = PointTable.joined([first, second], {})
    assert joined.properties.columns.tolist() == ["speed", "crop", "elevation"]
    assert joined.properties["crop"].isna().tolist() == [False] * 3 + [True] * 3
    assert joined.frame.columns.tolist() == ["speed", "crop", "elevation", "geometry"]  # the geometry last
    assert joined.frame.geometry.to_wkb().tolist() == frame.geometry.to_wkb().tolist()
