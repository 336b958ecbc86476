"""The ground each point covers: one oriented rectangle (swath) per point.

A point covers its working width across the direction of travel and the distance travelled since the
previous point along it (the point is logged at the end of that stretch). Missing pieces are filled the
way the data allows: heading from consecutive positions, length from the point's area and width, width
from Leaf's 30 ft fallback. Swaths are kept as arrays in a metric CRS; polygons are built only for the
polygon output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from collections.abc import Iterator
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from ..geoparquet import point_xy
from ..standard.units import convert, is_known

if TYPE_CHECKING:
    from ..model import PointTable

FALLBACK_WIDTH_M = 9.144  # 30 ft, Leaf's working width when none is known


@dataclass(frozen=True)
class Swaths:
    """Per point, in metres in `crs`: front-centre (x, y), unit travel direction (ux, uy), width, length."""

    crs: CRS
    x: np.ndarray
    y: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    width: np.ndarray
    length: np.ndarray

    @cached_property
    def valid(self) -> np.ndarray:
        """Whether each swath has an extent (computed once: the steps, the grid and the burn all ask)."""
        return np.isfinite(self.x) & np.isfinite(self.y) & np.isfinite(self.ux) & (self.length > 0) & (self.width > 0)

    def corner_columns(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The x and the y of the corners front-right, front-left, back-left, back-right, an array of each."""
        hw = self.width / 2.0
        bx, by = self.x - self.ux * self.length, self.y - self.uy * self.length
        rx, ry = self.uy * hw, -self.ux * hw  # to the right of travel
        return [self.x + rx, self.x - rx, bx - rx, bx + rx], [self.y + ry, self.y - ry, by - ry, by + ry]

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per swath xmin, ymin, xmax, ymax (computed once, element-wise over the four corners' columns: no
        (n, 4, 2) array of them to build and read across)."""
        (x0, x1, x2, x3), (y0, y1, y2, y3) = self.corner_columns()
        return (np.minimum(np.minimum(x0, x1), np.minimum(x2, x3)), np.minimum(np.minimum(y0, y1), np.minimum(y2, y3)),
                np.maximum(np.maximum(x0, x1), np.maximum(x2, x3)), np.maximum(np.maximum(y0, y1), np.maximum(y2, y3)))


def metres(frame: pd.DataFrame, units: dict[str, str], prop: str) -> np.ndarray | None:
    """A length property's values in metres, or None when the frame lacks it or its unit is unknown."""
    if prop not in frame.columns or not is_known(units.get(prop)):
        return None
    return np.asarray(convert(frame[prop].to_numpy(dtype=float), units[prop], "m"), dtype=float)


def has_heading(frame: pd.DataFrame) -> bool:
    """Whether swaths point the way the heading column says (any heading logged), not from point to point: one
    decision for the whole file, so its chunks' polygons and its swaths agree."""
    return "heading" in frame.columns and bool(frame["heading"].notna().any())


def projected_xy(frame: gpd.GeoDataFrame, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """The points' coordinates in `crs`, as arrays: the numbers of GeoSeries.to_crs without a geometry per point."""
    lon, lat = shapely.get_x(frame.geometry.values._data), shapely.get_y(frame.geometry.values._data)
    return Transformer.from_crs(frame.crs, crs, always_xy=True).transform(lon, lat)


def metric_crs(geo: gpd.GeoDataFrame | gpd.GeoSeries) -> CRS:
    """The WGS 84 UTM zone holding the centre of the bounds of lon/lat geometries: the zone GeoPandas'
    `estimate_utm_crs` picks, from the longitude's 6-degree band instead of a query of PROJ's database,
    which takes about a fifth of a second and ran several times per file. Other CRSs are left to it."""
    if geo.crs is None or not geo.crs.is_geographic:
        return geo.estimate_utm_crs()
    minx, miny, maxx, maxy = geo.total_bounds
    lon, lat = (minx + maxx) / 2.0, (miny + maxy) / 2.0
    if not (np.isfinite(lon) and np.isfinite(lat)):
        raise RuntimeError("Unable to determine UTM CRS")
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return _utm(32600 + zone if lat >= 0 else 32700 + zone)


@lru_cache(maxsize=None)
def _utm(epsg: int) -> CRS:
    return CRS.from_epsg(epsg)


# The properties a swath is made from, besides its point.
SWATH_COLUMNS = ("equipmentWidth", "area", "distance", "heading")


def table_xy(table: PointTable) -> tuple[np.ndarray, np.ndarray, CRS]:
    """A point table's rows projected to their metric CRS (`metric_crs`), and that CRS, from the coordinates
    its encoded points carry: no geometry object per point (building a million of them takes longer than
    the arithmetic the steps do with them)."""
    lon, lat = point_xy(table.points)  # of every row, kept or not: no copy of a subset's encoded points
    if table.keep is not None:
        lon, lat = lon[table.keep], lat[table.keep]
    # what `metric_crs` reads of the points: their bounds, which for points are their coordinates' extent
    placed = np.isfinite(lon).any()  # none placed: no extent, and `metric_crs` says so
    extent = shapely.box(*(np.nanmin(lon), np.nanmin(lat), np.nanmax(lon), np.nanmax(lat)) if placed else [np.nan] * 4)
    crs = metric_crs(gpd.GeoSeries([extent], crs=table.crs))
    x, y = Transformer.from_crs(table.crs, crs, always_xy=True).transform(lon, lat)
    return x, y, crs


def table_swaths(table: PointTable, units: dict[str, str]) -> Swaths:
    """The swath of every row of a point table, in its metric CRS (`_swaths`)."""
    properties = table.properties[[c for c in SWATH_COLUMNS if c in table.properties.columns]]
    return _swaths(*table_xy(table), properties if table.keep is None else properties[table.keep], units)


def _swaths(x: np.ndarray, y: np.ndarray, crs: CRS, properties: pd.DataFrame, units: dict[str, str],
            heading: bool | None = None, before: tuple[float, float] | None = None) -> Swaths:
    """The swath of every point at `x`, `y` (in the metric `crs`) with these `properties`, a row per point.
    Its direction is the heading column's when `heading` (by default: when the rows have headings), else the
    way from the point before; for rows that are a chunk of a file, `before` is the file's point before them
    (x, y in `crs`), so the chunks get the directions of the whole file."""
    n = len(properties)
    width = metres(properties, units, "equipmentWidth")
    area = properties["area"].to_numpy(dtype=float) if "area" in properties.columns else np.full(n, np.nan)
    if width is None:
        width = np.where(np.isfinite(area) & (area > 0), np.sqrt(area), FALLBACK_WIDTH_M)
    width = np.where(np.isfinite(width) & (width > 0), width, FALLBACK_WIDTH_M)
    length = metres(properties, units, "distance")
    if length is None:
        length = np.where(np.isfinite(area) & (area > 0), area / width, width)
    length = np.where(np.isfinite(length), length, 0.0)
    if heading is None:
        heading = has_heading(properties)
    if heading:
        theta = np.radians(properties["heading"].to_numpy(dtype=float))
    else:
        x0, y0 = (np.nan, np.nan) if before is None else before
        theta = np.arctan2(np.diff(x, prepend=x0), np.diff(y, prepend=y0))
        if n > 1 and before is None:
            theta[0] = theta[1]
    return Swaths(crs, x, y, np.sin(theta), np.cos(theta), width, length)


def point_rectangles(table: PointTable, units: dict[str, str],
                     rows_per_chunk: int) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """The polygon output, `rows_per_chunk` of the table's rows at a time: each chunk's rows, those of them whose
    swath has an extent (positions in the chunk), and each one's closed ring (m, 5, 2) in the table's CRS. The
    points are projected once and the directions are the whole table's, so the chunks make the rectangles
    one chunk would. Corners are projected back as arrays: no polygon object per point (the writer encodes
    the rings as WKB directly)."""
    x, y, crs = table_xy(table)
    properties = table.properties[[c for c in SWATH_COLUMNS if c in table.properties.columns]]
    if table.keep is not None:
        properties = properties[table.keep]
    heading = has_heading(properties)
    to_table = Transformer.from_crs(crs, table.crs, always_xy=True)
    for start in range(0, len(x), rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        s = _swaths(x[chunk], y[chunk], crs, properties.iloc[chunk], units, heading,
                    (x[start - 1], y[start - 1]) if start else None)
        valid = s.valid
        rows = np.flatnonzero(valid)
        rings = np.empty((len(rows), 5, 2))
        for corner, (cx, cy) in enumerate(zip(*s.corner_columns())):  # a corner of every swath at a time
            if len(rows) < len(valid):
                cx, cy = cx[rows], cy[rows]
            rings[:, corner, 0], rings[:, corner, 1] = to_table.transform(cx, cy)
        rings[:, 4] = rings[:, 0]
        yield chunk, rows, rings
