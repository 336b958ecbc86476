"""The steps' GeoParquet writer (`geoparquet.GeoParquetWriter`) against GeoPandas' own `to_parquet` with the same
settings: the same `geo` metadata, schema and values, for points (encoded with numpy), rectangles (WKB from
their rings), other geometries and missing ones, and an empty table."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from leaf_dagster.files import CRS84
from leaf_dagster.geoparquet import column_types, GeoParquetWriter, rectangle_geometry, slice_geometry, wkb_geometry


def _frames(n: int = 50) -> dict[str, gpd.GeoDataFrame]:
    rng = np.random.default_rng(7)
    x, y = -109.2 + rng.random(n) / 100, 46.0 + rng.random(n) / 100
    attributes = {"file_id": ["f"] * n, "value": rng.random(n), "name": pd.array(["a", "b"] * (n // 2), dtype="string"),
                  "timestamp": pd.date_range("2024-08-01", periods=n, freq="s", tz="UTC").astype("datetime64[ms, UTC]")}
    points = shapely.points(x, y)
    mixed = np.array([shapely.buffer(p, 1e-4) if i % 3 else p for i, p in enumerate(points)], dtype=object)
    mixed[4] = None
    return {"points": gpd.GeoDataFrame(attributes, geometry=points, crs=CRS84),
            "mixed": gpd.GeoDataFrame(attributes, geometry=mixed, crs=CRS84),
            "empty": gpd.GeoDataFrame(attributes, geometry=points, crs=CRS84).iloc[:0]}


def _same_file(ours: Path, theirs: Path) -> None:
    a, b = pq.read_table(ours), pq.read_table(theirs)
    assert a.schema.equals(b.schema, check_metadata=False)
    assert [f.metadata for f in a.schema] == [f.metadata for f in b.schema]  # geoarrow.wkb and its CRS
    meta_a, meta_b = pq.read_metadata(ours).metadata, pq.read_metadata(theirs).metadata  # where GeoParquet puts `geo`
    assert json.loads(meta_a[b"geo"]) == json.loads(meta_b[b"geo"])
    assert json.loads(meta_a[b"pandas"]) == json.loads(meta_b[b"pandas"])
    assert a.equals(b)  # values, WKB bytes and covering boxes included
    pd.testing.assert_frame_equal(gpd.read_parquet(ours), gpd.read_parquet(theirs))


@pytest.mark.parametrize("kind", ["points", "mixed", "empty"])
def test_tables_match_geopandas(tmp_path: Path, kind: str) -> None:
    frame = _frames()[kind]
    frame.to_parquet(tmp_path / "theirs.parquet", index=False, compression="zstd", write_covering_bbox=True,
                     schema_version="1.1.0")
    with GeoParquetWriter(tmp_path / "ours.parquet", CRS84) as writer:  # the whole table as one chunk
        writer.write(pd.DataFrame(frame), wkb_geometry(frame.geometry.to_numpy()))
    _same_file(tmp_path / "ours.parquet", tmp_path / "theirs.parquet")


def test_rectangles_match_shapely_polygons(tmp_path: Path) -> None:
    frame = _frames()["points"]
    x, y = shapely.get_x(frame.geometry.values), shapely.get_y(frame.geometry.values)
    d = 1e-4
    rings = np.stack([np.stack([x + d, y], -1), np.stack([x, y + d], -1), np.stack([x - d, y], -1),
                      np.stack([x, y - d], -1), np.stack([x + d, y], -1)], axis=1)
    polygons = frame.set_geometry(shapely.polygons(rings), crs=CRS84)
    polygons.to_parquet(tmp_path / "theirs.parquet", index=False, compression="zstd", write_covering_bbox=True,
                        schema_version="1.1.0")
    with GeoParquetWriter(tmp_path / "ours.parquet", CRS84) as writer:
        writer.write(pd.DataFrame(frame), rectangle_geometry(rings))
    _same_file(tmp_path / "ours.parquet", tmp_path / "theirs.parquet")


@pytest.mark.parametrize("kind", ["points", "mixed", "empty"])
@pytest.mark.parametrize("chunk", [7, 1000])
def test_writer_in_chunks_matches_geopandas(tmp_path: Path, kind: str, chunk: int) -> None:
    """A table written a few rows at a time (the types and bbox of the `geo` metadata gathered over the
    chunks, a chunk with no geometry among them) is GeoPandas' file, row groups aside."""
    frame = _frames()[kind]
    frame.to_parquet(tmp_path / "theirs.parquet", index=False, compression="zstd", write_covering_bbox=True,
                     schema_version="1.1.0")
    geometry = wkb_geometry(frame.geometry.to_numpy())
    with GeoParquetWriter(tmp_path / "ours.parquet", CRS84) as writer:
        for start in range(0, max(len(frame), 1), chunk):
            stop = min(start + chunk, len(frame))
            part = frame.iloc[start:stop]  # the even chunks encode their own rows, the odd ones a slice
            writer.write(pd.DataFrame(part), wkb_geometry(part.geometry.to_numpy()) if start // chunk % 2 == 0
                         else slice_geometry(geometry, start, stop))
    if len(frame) > chunk:
        assert pq.ParquetFile(tmp_path / "ours.parquet").num_row_groups > 1
    _same_file(tmp_path / "ours.parquet", tmp_path / "theirs.parquet")


def test_columns_missing_in_the_first_chunk_keep_the_whole_tables_types(tmp_path: Path) -> None:
    """A column that is empty in the first chunk (text, or products as lists of records with fields that
    appear only later) takes the type the whole column gives, as GeoPandas writes it at once."""
    frame = _frames()["points"].iloc[:20].copy()
    frame["note"] = [None] * 9 + ["late"] * 11
    frame["products"] = [None] * 9 + [[{"name": "urea"}]] * 5 + [[{"name": "seed", "rate": 1.5}]] * 6
    frame.to_parquet(tmp_path / "theirs.parquet", index=False, compression="zstd", write_covering_bbox=True,
                     schema_version="1.1.0")
    geometry = wkb_geometry(frame.geometry.to_numpy())
    types = column_types(pd.DataFrame(frame), 7)
    assert set(types) == {"products"}  # the text column is typed by pandas already
    with GeoParquetWriter(tmp_path / "ours.parquet", CRS84, types=types) as writer:
        for start in range(0, len(frame), 7):
            writer.write(pd.DataFrame(frame.iloc[start:start + 7]), slice_geometry(geometry, start, start + 7))
    ours, theirs = pq.read_table(tmp_path / "ours.parquet"), pq.read_table(tmp_path / "theirs.parquet")
    assert ours.schema.equals(theirs.schema, check_metadata=False) and ours.equals(theirs.replace_schema_metadata(
        ours.schema.metadata))  # the pandas metadata is the first chunk's, which saw no products
    pd.testing.assert_frame_equal(gpd.read_parquet(tmp_path / "ours.parquet"), gpd.read_parquet(tmp_path / "theirs.parquet"))


@pytest.mark.parametrize("failing", [1, 3])
def test_a_chunk_the_writer_thread_fails_on_is_the_writers_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  failing: int) -> None:
    """Chunks are written by the writer's own thread: a chunk that fails there (the disk full, say) fails the
    write or the close that follows it, not silently, whether it is the last chunk or not."""
    frame = _frames()["points"]
    written: list[int] = []
    original = pq.ParquetWriter.write_table

    def write_table(self: pq.ParquetWriter, table: pa.Table, *args: object, **kwargs: object) -> None:
        written.append(len(table))
        if len(written) == failing:
            raise OSError("No space left on device")
        original(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_table)
    with pytest.raises(OSError, match="No space left"):
        with GeoParquetWriter(tmp_path / "ours.parquet", CRS84) as writer:
            for start in range(0, 3 * 5, 5):
                part = frame.iloc[start:start + 5]
                writer.write(pd.DataFrame(part), wkb_geometry(part.geometry.to_numpy()))
    assert len(written) == failing  # nothing is written after the failed chunk
