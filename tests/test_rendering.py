"""The swath burn, the property colouring and the PNG encoding, each against a plain computation of its own:
shapely's point-in-rectangle test per pixel, the ramp applied pixel by pixel, and Pillow's and GDAL's decoders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from PIL import Image
from pyproj import CRS

from leaf_dagster.derived.geometry import Swaths
from leaf_dagster.derived.images import colours, png_bytes, render
from leaf_dagster.derived import raster
from leaf_dagster.derived.raster import Grid, burn_index, grid_for


def _swaths(n: int, seed: int) -> Swaths:
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, 2 * np.pi, n)
    width = rng.choice([0.7, 1.25, 3.0, 9.144], n)
    length = rng.uniform(0.3, 6.0, n)
    length[::17] = 0.0  # no extent: never burnt
    width[5::97], length[5::97] = 75.0, 90.0  # outliers (a width in the wrong unit): boxes past BIG_BOX_PIXELS
    return Swaths(CRS.from_epsg(32612), rng.uniform(0, 40, n), rng.uniform(0, 40, n), np.sin(theta), np.cos(theta),
                  width, length)


@pytest.fixture(params=["pixel offsets", "big boxes"])
def burn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The burn as it runs, and with every box taken as big (`raster._burn_big`): each must give the pixels."""
    if request.param == "big boxes":
        monkeypatch.setattr(raster, "BIG_BOX_PIXELS", 0)


@pytest.mark.usefixtures("burn_path")
def test_burn_keeps_the_latest_swath_covering_each_pixel_centre() -> None:
    s = _swaths(400, 7)
    grid = grid_for(s)
    index = burn_index(s, grid)
    rows, cols = np.indices((grid.height, grid.width))
    centres = shapely.points(grid.transform.c + (cols.ravel() + 0.5) * grid.resolution,
                             grid.transform.f - (rows.ravel() + 0.5) * grid.resolution)
    expected = np.full(len(centres), -1)
    xs, ys = s.corner_columns()
    for row in np.flatnonzero(s.valid):  # in point order: a later swath takes the pixels it covers
        expected[shapely.covers(shapely.Polygon([(x[row], y[row]) for x, y in zip(xs, ys)]), centres)] = row
    assert (expected >= 0).sum() > 1000
    assert np.array_equal(index.ravel(), expected)


@pytest.mark.usefixtures("burn_path")
def test_burn_leaves_out_what_lies_outside_the_grid() -> None:
    s = _swaths(200, 11)
    whole = grid_for(s)
    part = Grid(whole.crs, Affine(1.0, 0, whole.transform.c + 10, 0, -1.0, whole.transform.f - 5), 20, 15)
    assert np.array_equal(burn_index(s, part), burn_index(s, whole)[5:20, 10:30])


def test_render_colours_each_pixel_by_its_point() -> None:
    rng = np.random.default_rng(3)
    values = np.repeat(rng.uniform(2.0, 9.0, 300), rng.integers(1, 9, 300))  # runs of one value, as sections log
    values[rng.choice(len(values), 40, replace=False)] = np.nan
    index = rng.integers(-1, len(values), (30, 50)).astype(np.int32)
    rgba, low, high = render(values, index)
    known = values[np.isfinite(values)]
    assert (low, high) == (known.min(), known.max())
    owner = values[np.where(index >= 0, index, 0)]
    painted = (index >= 0) & np.isfinite(owner)
    assert np.array_equal(rgba[..., 3], np.where(painted, 255, 0))
    assert (rgba[~painted] == 0).all()
    assert np.array_equal(rgba[painted][:, :3], colours((owner[painted] - low) / (high - low)))


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_png_decodes_to_the_same_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    rgba[5:20, 3:40] = (10, 200, 30, 255)  # runs of one colour
    rgba[25:] = 0
    data = png_bytes(rgba)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), rgba)
    (tmp_path / "image.png").write_bytes(data)
    with rasterio.open(tmp_path / "image.png") as image:
        assert np.array_equal(np.moveaxis(image.read(), 0, -1), rgba)
