"""The ground each point covers: one oriented rectangle per point, and their union (the coverage).

A point covers its working width across the direction of travel and the distance travelled since the
previous point along it (the point is logged at the end of that stretch). Missing pieces are filled the
way the data allows: heading from consecutive positions, length from the point's area and width, width
from Leaf's 30 ft fallback.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from ..standard.units import convert, is_known

FALLBACK_WIDTH_M = 9.144  # 30 ft, Leaf's working width when none is known


def _metres(frame: gpd.GeoDataFrame, units: dict[str, str], prop: str) -> np.ndarray | None:
    if prop not in frame.columns or not is_known(units.get(prop)):
        return None
    return np.asarray(convert(frame[prop].to_numpy(dtype=float), units[prop], "m"), dtype=float)


def metric_crs(frame: gpd.GeoDataFrame) -> CRS:
    return frame.estimate_utm_crs()


def point_rectangles(frame: gpd.GeoDataFrame, units: dict[str, str], crs: CRS | None = None) -> gpd.GeoSeries:
    """One rectangle per point (in a metric CRS, returned in the frame's CRS), None where it has no extent."""
    crs = crs or metric_crs(frame)
    points = frame.geometry.to_crs(crs)
    x, y = points.x.to_numpy(), points.y.to_numpy()
    n = len(frame)
    width = _metres(frame, units, "equipmentWidth")
    area = frame["area"].to_numpy(dtype=float) if "area" in frame.columns else np.full(n, np.nan)
    if width is None:
        width = np.where(np.isfinite(area) & (area > 0), np.sqrt(area), FALLBACK_WIDTH_M)
    width = np.where(np.isfinite(width) & (width > 0), width, FALLBACK_WIDTH_M)
    length = _metres(frame, units, "distance")
    if length is None:
        length = np.where(np.isfinite(area) & (area > 0), area / width, width)
    if "heading" in frame.columns and frame["heading"].notna().any():
        theta = np.radians(frame["heading"].to_numpy(dtype=float))
    else:
        dx, dy = np.diff(x, prepend=np.nan), np.diff(y, prepend=np.nan)
        theta = np.arctan2(dx, dy)
        theta[0] = theta[1] if n > 1 else 0.0
    ux, uy = np.sin(theta), np.cos(theta)  # travel direction (heading clockwise from north)
    px, py = uy, -ux  # to the right of travel
    hw = width / 2.0
    corners = np.stack([
        np.stack([x + px * hw, y + py * hw], axis=-1),
        np.stack([x - px * hw, y - py * hw], axis=-1),
        np.stack([x - px * hw - ux * length, y - py * hw - uy * length], axis=-1),
        np.stack([x + px * hw - ux * length, y + py * hw - uy * length], axis=-1),
    ], axis=1)
    valid = np.isfinite(corners).all(axis=(1, 2)) & (length > 0)
    polygons = np.full(n, None, dtype=object)
    polygons[valid] = shapely.polygons(corners[valid])
    return gpd.GeoSeries(polygons, crs=crs).to_crs(frame.crs)
