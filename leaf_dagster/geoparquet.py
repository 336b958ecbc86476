"""GeoParquet 1.1 tables built straight in Arrow, with the columns, values and `geo` metadata that
`GeoDataFrame.to_parquet(schema_version="1.1.0", write_covering_bbox=True)` writes (tested against it in
tests/test_geoparquet.py); the `geo` metadata is in the file's key-value metadata, not in the Arrow schema.

Points and swath rectangles, millions per file, are encoded as WKB with numpy, with no geometry object per
row; other geometries are encoded by shapely. The steps write their tables through this (`files.FileSteps`).
"""

from __future__ import annotations

import functools
import json
import warnings
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from .background import OneBehind

Geometry = tuple[pa.ChunkedArray, np.ndarray, list[str]]  # WKB, bounds (n, 4: xmin ymin xmax ymax), types
_WKB_POINT = np.dtype([("order", "u1"), ("kind", "<u4"), ("xy", "<f8", (2,))])
_WKB_RING = np.dtype([("order", "u1"), ("kind", "<u4"), ("rings", "<u4"), ("points", "<u4"), ("xy", "<f8", (5, 2))])
_WKB_CHUNK = 1 << 20  # rows per Arrow chunk: its int32 offsets stay far from overflowing
_TYPE_NAMES = ["Point", "LineString", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon",
               "GeometryCollection"]


def _fixed_wkb(records: np.ndarray) -> pa.ChunkedArray:
    """Fixed-size WKB records (a numpy structured array) as an Arrow binary column, without a copy per row."""
    size = records.dtype.itemsize
    chunks = []
    for start in range(0, len(records), _WKB_CHUNK):
        part = records[start:start + _WKB_CHUNK]
        offsets = np.arange(0, (len(part) + 1) * size, size, dtype=np.int32)
        chunks.append(pa.Array.from_buffers(pa.binary(), len(part), [None, pa.py_buffer(offsets), pa.py_buffer(part)]))
    return pa.chunked_array(chunks, pa.binary())


def rectangle_geometry(rings: np.ndarray) -> Geometry:
    """Closed 4-corner rings (m, 5, 2) as WKB polygons."""
    records = np.empty(len(rings), _WKB_RING)
    records["order"], records["kind"], records["rings"], records["points"] = 1, 3, 1, 5
    records["xy"] = rings
    corner = [rings[:, i] for i in range(4)]  # element-wise over the corners: faster than along the short axis
    low, high = functools.reduce(np.minimum, corner), functools.reduce(np.maximum, corner)
    bounds = np.column_stack([low, high])
    return _fixed_wkb(records), bounds, ["Polygon"] if len(rings) else []


def wkb_geometry(geometries: np.ndarray) -> Geometry:
    """Shapely geometries as ISO WKB: points (every row a 2D point) encoded with numpy, others by shapely."""
    kinds = shapely.get_type_id(geometries)
    if len(geometries) and (kinds == 0).all() and not shapely.has_z(geometries).any() \
            and not shapely.is_empty(geometries).any():
        x, y = shapely.get_x(geometries), shapely.get_y(geometries)
        records = np.empty(len(geometries), _WKB_POINT)
        records["order"], records["kind"] = 1, 1
        records["xy"][:, 0], records["xy"][:, 1] = x, y
        return _fixed_wkb(records), np.column_stack([x, y, x, y]), ["Point"]
    kinds = np.where(shapely.has_z(geometries), kinds + 8, kinds)
    names = sorted({(_TYPE_NAMES[k % 8] + (" Z" if k >= 8 else "")) for k in np.unique(kinds) if k >= 0})
    wkb = pa.chunked_array([pa.array(shapely.to_wkb(geometries, flavor="iso"), pa.binary())], pa.binary())
    return wkb, shapely.bounds(geometries), names


def slice_geometry(geometry: Geometry, start: int, stop: int) -> Geometry:
    """Rows `start` to `stop` of an encoded geometry column (its types stay those of the whole column)."""
    wkb, bounds, types = geometry
    return wkb.slice(start, stop - start), bounds[start:stop], types


def concat_geometry(parts: list[Geometry]) -> Geometry:
    """Encoded columns one after the other (their WKB chunks kept as they are), with the types of them all."""
    if not parts:
        return pa.chunked_array([], pa.binary()), np.empty((0, 4)), []
    wkb = pa.chunked_array([chunk for part in parts for chunk in part[0].chunks], pa.binary())
    bounds = np.concatenate([part[1] for part in parts]) if len(parts) > 1 else parts[0][1]
    return wkb, bounds, sorted(set().union(*(part[2] for part in parts)))


def geometry_objects(geometry: Geometry) -> np.ndarray:
    """The shapely geometries of an encoded column (`wkb_geometry`'s inverse): 2D points straight from their
    bounds, which are their coordinates, anything else decoded from its WKB."""
    wkb, bounds, types = geometry
    if types == ["Point"] and not np.isnan(bounds[:, :2]).any():
        return shapely.points(bounds[:, 0], bounds[:, 1])
    return shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))


def point_xy(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """The x and y of every row of an encoded column, as `shapely.get_x` / `get_y` give them: a column of points
    (2D or 3D) straight from their bounds, with no geometry object per row (NaN for an empty point, whose bounds
    are NaN)."""
    wkb, bounds, types = geometry
    if set(types) <= {"Point", "Point Z"}:
        return bounds[:, 0], bounds[:, 1]
    objects = geometry_objects(geometry)
    return shapely.get_x(objects), shapely.get_y(objects)


def take_geometry(geometry: Geometry, rows: np.ndarray) -> Geometry:
    """The rows of an encoded column at the positions `rows` (or where a boolean `rows` holds), with the types
    of those rows."""
    wkb, bounds, types = geometry
    positions = np.flatnonzero(rows) if rows.dtype == bool else rows
    taken = bounds[positions]
    if len(types) == 1 and types[0] in ("Point", "Point Z") and not np.isnan(taken[:, :2]).any():
        # points, none empty: the taken rows are points of the same kind
        return wkb.take(pa.array(positions)), taken, types if len(positions) else []
    return wkb_geometry(shapely.from_wkb(wkb.take(pa.array(positions)).to_numpy(zero_copy_only=False)))


def _without_member_ids(crs: dict[str, Any]) -> dict[str, Any]:
    """The CRS JSON without the ids of datum ensemble members (older PROJ versions do not know them; what
    GeoPandas and GDAL write in the `geo` metadata)."""
    for key, value in crs.items():
        if isinstance(value, dict):
            _without_member_ids(value)
        elif key == "members" and isinstance(value, list):
            for member in value:
                member.pop("id", None)
    return crs


def _geometry_field(name: str, crs: CRS | None) -> pa.Field:
    extension = json.dumps({"crs": crs.to_json_dict()}) if crs is not None else "{}"
    return pa.field(name, pa.binary(), metadata={"ARROW:extension:name": "geoarrow.wkb",
                                                 "ARROW:extension:metadata": extension})


def _columns_table(frame: pd.DataFrame, crs: CRS | None, geometry: Geometry, name: str) -> pa.Table:
    """`frame`'s columns with `geometry` in its column `name` and a covering `bbox` column, no `geo` metadata."""
    frame = frame.copy(deep=False)
    frame[name] = None  # an empty column in the conversion; the WKB takes its place
    table = pa.Table.from_pandas(frame, preserve_index=False)
    wkb, bounds, _ = geometry
    table = table.set_column(table.schema.get_field_index(name), _geometry_field(name, crs), wkb)
    boxes = [pa.array(bounds[:, i], pa.float64(), from_pandas=True) for i in range(4)]  # no geometry: null
    return table.append_column("bbox", pa.StructArray.from_arrays(boxes, names=["xmin", "ymin", "xmax", "ymax"]))


def total_bounds(bounds: np.ndarray) -> np.ndarray:
    """xmin, ymin, xmax, ymax over every row (NaN where no row has a geometry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bounds: no bbox, as GeoPandas
        return np.array([np.nanmin(bounds[:, 0]), np.nanmin(bounds[:, 1]), np.nanmax(bounds[:, 2]),
                         np.nanmax(bounds[:, 3])]) if len(bounds) else np.full(4, np.nan)


def _geo_metadata(crs: CRS | None, name: str, total: np.ndarray, types: list[str]) -> bytes:
    """The GeoParquet `geo` metadata of a table: its geometry column, CRS, types, bbox and covering."""
    column: dict[str, Any] = {"encoding": "WKB", "crs": _without_member_ids(crs.to_json_dict()) if crs else None,
                              "geometry_types": types}
    if np.isfinite(total).all():
        column["bbox"] = [float(v) for v in total]
    column["covering"] = {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    geo = {"primary_column": name, "columns": {name: column}, "version": "1.1.0",
           "creator": {"library": "geopandas", "version": gpd.__version__}}
    return json.dumps(geo).encode()


def column_types(frame: pd.DataFrame, first_rows: int, rows: np.ndarray | None = None) -> dict[str, pa.DataType]:
    """The Arrow types of the object columns whose first `first_rows` rows cannot tell them: all missing there,
    or nested (lists, records), whose fields only the whole column shows. A file written in chunks gets these
    from the whole table, as a file written at once would. `rows`: the positions of the table's rows in
    `frame` (None: every row)."""
    types: dict[str, pa.DataType] = {}
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object:
            continue
        head = values.iloc[:first_rows] if rows is None else values.take(rows[:first_rows])
        if pd.api.types.infer_dtype(head, skipna=True) == "string":
            continue
        kind = pa.array((values if rows is None else values.take(rows)).to_numpy(), from_pandas=True).type
        if not pa.types.is_null(kind):
            types[str(column)] = kind
    return types


class GeoParquetWriter:
    """One GeoParquet file written a chunk of rows at a time through one `pyarrow.parquet.ParquetWriter`, so
    memory holds one chunk's Arrow columns, not the whole table's.

    The `geo` metadata covers every chunk (bbox and geometry types), so it is only known when the last chunk is
    written: it goes into the file's key-value metadata at `close`, where the GeoParquet specification puts
    it (GeoPandas, DuckDB and GDAL read it there), and not into the Arrow schema stored at the first chunk.
    The first chunk fixes the columns' types; `types` gives those its rows cannot tell (`column_types`), so a
    table written in many chunks has the columns of the same table written as one.

    A chunk is compressed and written by a thread of the writer's own while the caller makes the next one
    (pyarrow lets go of the GIL as it writes): at most one chunk waits, so memory holds two chunks' columns."""

    def __init__(self, path: Any, crs: Any, name: str = "geometry", types: dict[str, pa.DataType] | None = None):
        self.path, self.name, self.types = path, name, types or {}
        self.crs = CRS.from_user_input(crs) if crs is not None else None
        self._writer: pq.ParquetWriter | None = None
        self._total = np.full(4, np.nan)
        self._types: set[str] = set()
        self._behind = OneBehind("geoparquet")

    def write(self, frame: pd.DataFrame, geometry: Geometry) -> None:
        """Append `frame`'s rows with their `geometry` (the first chunk fixes the schema)."""
        table = _columns_table(frame, self.crs, geometry, self.name)
        if self._writer is None:
            schema = table.schema.remove_metadata().with_metadata(
                {k: v for k, v in (table.schema.metadata or {}).items() if k != b"geo"})
            for column, kind in self.types.items():
                schema = schema.set(schema.get_field_index(column), pa.field(column, kind))
            # dictionary pages pay where values repeat (names, ids, times); for floats, WKB and boxes, nearly
            # unique per row, building one only to drop it costs a third of the write
            repeating = [f.name for f in schema if not (pa.types.is_floating(f.type) or pa.types.is_binary(f.type)
                                                        or pa.types.is_struct(f.type))]
            self._writer = pq.ParquetWriter(self.path, schema, compression="zstd", use_dictionary=repeating)
        table = table.replace_schema_metadata(self._writer.schema.metadata)
        if not table.schema.equals(self._writer.schema):
            table = table.cast(self._writer.schema)  # a chunk whose column pandas typed otherwise (all missing)
        self._behind.submit(self._writer.write_table, table)
        chunk = total_bounds(geometry[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self._total = np.concatenate([np.fmin(self._total[:2], chunk[:2]), np.fmax(self._total[2:], chunk[2:])])
        self._types.update(geometry[2])

    def close(self) -> None:
        """Finish the file with its `geo` metadata; a writer given no chunk writes nothing."""
        self._behind.stop()  # the chunk in flight is written first
        try:
            self._behind.wait()
        except BaseException:
            self._abandon()
            raise
        if self._writer is None:
            return
        self._writer.add_key_value_metadata(
            {"geo": _geo_metadata(self.crs, self.name, self._total, sorted(self._types)).decode()})
        self._writer.close()
        self._writer = None

    def _abandon(self) -> None:
        """Close the file unfinished (the caller's temporary file is dropped with the error); an error of the
        close itself is not raised over the one that ended the writing."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # the error being raised says what went wrong
                pass

    def __enter__(self) -> "GeoParquetWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
            return
        self._behind.stop()  # the chunk in flight ends first; the caller's error is the one raised
        self._abandon()
