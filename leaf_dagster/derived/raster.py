"""Burning point swaths onto a metre grid: the basis of the coverage polygon and the property PNGs.

Every pixel records which point covers it (the latest point wins where passes overlap), so the
coverage is the set of covered pixels and each property image is a lookup of values by that index.
A pixel belongs to a swath when its centre lies inside the swath's rectangle, tested with numpy for
all the pixels of a swath's bounding box at once, for every swath of one bounding-box shape together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS

from .geometry import Swaths

MAX_PIXELS = 40_000_000
_CHUNK_CANDIDATES = 2_000_000  # candidate pixels tested per pass (bounds memory: ~10 arrays of this length)
# Boxes of more pixels than this are burnt swath by swath, their pixels as arrays: one loop turn per pixel offset
# would make a single outlier swath (a width in the wrong unit) cost millions of turns.
BIG_BOX_PIXELS = 4096


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


def grid_for(s: Swaths, resolution: float = 1.0) -> Grid:
    """A north-up grid over the swaths at `resolution` m, coarser if it would be huge."""
    valid = s.valid
    xmin, ymin, xmax, ymax = (bound[valid] for bound in s.bounds)
    xmin, ymin, xmax, ymax = xmin.min(), ymin.min(), xmax.max(), ymax.max()
    span_x, span_y = max(xmax - xmin, resolution), max(ymax - ymin, resolution)
    while (span_x / resolution) * (span_y / resolution) > MAX_PIXELS:
        resolution *= 2
    width, height = int(np.ceil(span_x / resolution)) + 1, int(np.ceil(span_y / resolution)) + 1
    return Grid(s.crs, Affine(resolution, 0, xmin, 0, -resolution, ymax), width, height)


def burn_index(s: Swaths, grid: Grid) -> np.ndarray:
    """int32 raster of the covering point's row number (-1 where nothing covers the pixel; where several
    do, the latest point's, the highest row).

    Swaths are burnt in groups of one bounding-box shape (columns x rows of pixels), and within a group a
    chunk of swaths at a time, one pixel of their boxes (a column and row offset) at a time: the arithmetic
    runs over the swaths, long arrays, not over a box's few pixels. A pixel keeps the highest row that covers
    it over all writes."""
    index = np.full((grid.height, grid.width), -1, dtype=np.int32)
    rows_valid = np.flatnonzero(s.valid)
    if len(rows_valid) == 0:
        return index
    t, res = grid.transform, grid.resolution
    xmin, ymin, xmax, ymax = (bound[rows_valid] for bound in s.bounds)
    col0 = np.floor((xmin - t.c) / res).astype(np.int64)
    row0 = np.floor((t.f - ymax) / res).astype(np.int64)
    ncols = np.floor((xmax - t.c) / res).astype(np.int64) - col0 + 1
    nrows = np.floor((t.f - ymin) / res).astype(np.int64) - row0 + 1
    col0, row0 = col0.astype(np.int32), row0.astype(np.int32)  # the grid is at most MAX_PIXELS
    owners = rows_valid.astype(np.int32)
    shape = ncols * (int(nrows.max()) + 1) + nrows
    order = np.argsort(shape, kind="stable")  # point order within a shape
    starts = np.flatnonzero(np.diff(shape[order], prepend=-1))
    flat = index.reshape(-1)
    for first, end in zip(starts, [*starts[1:], len(order)]):
        nc, nr = int(ncols[order[first]]), int(nrows[order[first]])
        if nc * nr > BIG_BOX_PIXELS:
            m = order[first:end]
            _burn_big(s, grid, flat, rows_valid[m], owners[m], col0[m], row0[m], nc, nr)
            continue
        step = max(_CHUNK_CANDIDATES // (nc * nr), 1)
        for begin in range(first, end, step):
            m = order[begin:min(begin + step, end)]
            rows = rows_valid[m]
            x, y, sx, sy = s.x[rows], s.y[rows], s.ux[rows], s.uy[rows]
            behind, half, who = -s.length[rows], s.width[rows] / 2, owners[m]
            cols = [col0[m] + i for i in range(nc)]
            dxs = [t.c + (col + 0.5) * res - x for col in cols]
            along_x, across_x = [dx * sx for dx in dxs], [dx * sy for dx in dxs]
            for j in range(nr):
                row = row0[m] + j
                dy = t.f - (row + 0.5) * res - y
                along_y, across_y = dy * sy, dy * sx
                for i, col in enumerate(cols):
                    ahead = along_x[i] + along_y  # minus the distance behind the front edge
                    across = across_x[i] - across_y
                    inside = (ahead <= 0) & (ahead >= behind) & (np.abs(across) <= half)
                    inside &= (row >= 0) & (row < grid.height) & (col >= 0) & (col < grid.width)
                    # in point order: where one write covers a pixel twice, the later (higher) row is written last
                    at = row[inside] * grid.width + col[inside]
                    flat[at] = np.maximum(flat[at], who[inside])
    return index


def _burn_big(s: Swaths, grid: Grid, flat: np.ndarray, rows: np.ndarray, who: np.ndarray, col0: np.ndarray,
              row0: np.ndarray, nc: int, nr: int) -> None:
    """`burn_index` for swaths whose boxes are `nc` x `nr` pixels, too many for a loop turn per pixel offset:
    one swath at a time in point order, its box's pixels as arrays, a block of box rows per pass (bounded
    memory); the same arithmetic, so the same pixels."""
    t, res = grid.transform, grid.resolution
    block = max(_CHUNK_CANDIDATES // nc, 1)
    for k, point in enumerate(rows):
        x, y, sx, sy = s.x[point], s.y[point], s.ux[point], s.uy[point]
        behind, half = -s.length[point], s.width[point] / 2
        col = (col0[k] + np.arange(nc, dtype=np.int32))[None, :]
        dx = t.c + (col + 0.5) * res - x
        along_x, across_x = dx * sx, dx * sy
        for j in range(0, nr, block):
            row = (row0[k] + np.arange(j, min(j + block, nr), dtype=np.int32))[:, None]
            dy = t.f - (row + 0.5) * res - y
            ahead = along_x + dy * sy
            across = across_x - dy * sx
            inside = (ahead <= 0) & (ahead >= behind) & (np.abs(across) <= half)
            inside &= (row >= 0) & (row < grid.height) & (col >= 0) & (col < grid.width)
            rr, cc = np.nonzero(inside)
            at = (row[rr, 0].astype(np.int64)) * grid.width + col[0, cc]
            flat[at] = np.maximum(flat[at], who[k])


def covered_polygon(index: np.ndarray, grid: Grid) -> shapely.MultiPolygon:
    """The covered pixels as polygons (metric CRS). Rings are built as arrays, not one shapely object per
    ring: a coverage with gaps between passes has tens of thousands of holes."""
    mask = (index >= 0).astype(np.uint8)
    rings: list[np.ndarray] = []
    owners: list[int] = []  # the polygon of each ring; its first ring is the shell, the others holes
    shapes = (geom for geom, value in rasterio.features.shapes(mask, mask=mask.astype(bool), transform=grid.transform)
              if value == 1)
    for number, geom in enumerate(shapes):
        for ring in geom["coordinates"]:
            rings.append(np.asarray(ring, dtype=float))
            owners.append(number)
    if not rings:
        return shapely.MultiPolygon()
    ring_of_point = np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
    parts = shapely.polygons(shapely.linearrings(np.concatenate(rings), indices=ring_of_point), indices=owners)
    merged = shapely.union_all(parts)
    if isinstance(merged, shapely.Polygon):
        merged = shapely.MultiPolygon([merged])
    return merged
