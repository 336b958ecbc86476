"""Burning point rectangles onto a metre grid: the basis of the coverage polygon and the property PNGs.

Every pixel records which point covers it (the latest point wins where passes overlap), so the
coverage is the set of covered pixels and each property image is a lookup of values by that index.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS

MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class Grid:
    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

    @property
    def pixel_area(self) -> float:
        return self.resolution ** 2


def grid_for(rectangles: gpd.GeoSeries, resolution: float = 1.0) -> Grid:
    """A north-up grid over the rectangles (metric CRS) at `resolution` m, coarser if it would be huge."""
    xmin, ymin, xmax, ymax = rectangles.total_bounds
    span_x, span_y = max(xmax - xmin, resolution), max(ymax - ymin, resolution)
    while (span_x / resolution) * (span_y / resolution) > MAX_PIXELS:
        resolution *= 2
    width, height = int(np.ceil(span_x / resolution)) + 1, int(np.ceil(span_y / resolution)) + 1
    transform = Affine(resolution, 0, xmin, 0, -resolution, ymax)
    return Grid(rectangles.crs, transform, width, height)


def burn_index(rectangles: gpd.GeoSeries, grid: Grid) -> np.ndarray:
    """int32 raster of the covering point's row number (-1 where nothing covers the pixel)."""
    valid = np.flatnonzero(rectangles.notna().to_numpy())
    if len(valid) == 0:
        return np.full((grid.height, grid.width), -1, dtype=np.int32)
    geoms = rectangles.to_numpy()[valid]
    return rasterio.features.rasterize(zip(geoms, valid.astype(np.int32)), out_shape=(grid.height, grid.width),
                                       transform=grid.transform, fill=-1, dtype="int32", all_touched=False)


def covered_polygon(index: np.ndarray, grid: Grid) -> shapely.MultiPolygon:
    """The covered pixels as polygons (metric CRS)."""
    mask = (index >= 0).astype(np.uint8)
    parts = [shapely.geometry.shape(geom) for geom, value in
             rasterio.features.shapes(mask, mask=mask.astype(bool), transform=grid.transform) if value == 1]
    merged = shapely.union_all(parts) if parts else shapely.MultiPolygon()
    if isinstance(merged, shapely.Polygon):
        merged = shapely.MultiPolygon([merged])
    return merged
