"""Deterministic, realistic benchmark inputs: John Deere Operations Center style harvest shapefiles.

The layout copies a real JD yield export (`FarmerB Farms Inc.-FarmerB Family LLC-sec 1 west-Wheat (Hrd Rd
Wtr)-1`, 18,400 PointZ points): the same 13 columns in the same order and types, EPSG:4326, Z 0 (JD writes NaN, which GDAL refuses), one
point per header section and second. A combine drives serpentine passes 10 m apart at about 1.5 m/s with an
8-section header (8 x 4.1 ft = 10 m), turns at the headlands in about 20 s (nothing logged), and works about
10 hours a day. Yield, moisture and elevation vary smoothly over the field with noise on top; the first seconds
of each pass log zero yield and moisture while the header fills, as real monitors do.

    harvest_frame(n, seed)                       -> GeoDataFrame of n points
    write_harvest_zip(folder, n, seed, name)     -> NAME.zip holding NAME.shp/.shx/.dbf/.prj
    write_batch_zip(folder, files, points, seed) -> one upload zip with `files` small exports inside
    harvest_input(work, points, seed)            -> a harvest zip + its shapefile, as the benchmark uses them
    batch_input(work, files, points, seed)       -> the batch zip, as the benchmark uses it
"""

from __future__ import annotations

import math
import time
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

SEED = 20190816
COLUMNS = ["DISTANCE", "SWATHWIDTH", "VRYIELDVOL", "SECTIONID", "Crop", "WetMass", "Moisture", "Time", "Heading",
           "VARIETY", "Elevation", "IsoTime", "Machine"]
SHAPEFILE_EXTENSIONS = (".shp", ".shx", ".dbf", ".prj")
HARVEST_NAME = "Bench Client-Bench Farm-North Field-Wheat-1"

SECTIONS = 8                  # header sections logged per second
SECTION_WIDTH_FT = 4.1        # 8 x 4.1 ft = 10 m of header
PASS_SPACING_M = 10.0
SPEED_M_PER_S = 1.5
TURN_SECONDS = 20             # headland turn: no points logged
WORK_SECONDS_PER_DAY = 10 * 3600
FIRST_SECTION_ID = 190
JD_LANGUAGE_DRIVER = 0x58     # DBF header byte 29 in the real export (GDAL reads it as UTF-8)
JD_CROP_WHEAT = 26            # the numeric crop id JD writes for wheat
LB_PER_BU = 60.01             # WetMass / VRYIELDVOL in the real export
START = pd.Timestamp("2019-08-16T16:30:00")  # UTC, 10:30 local time in Montana
ORIGIN_LON, ORIGIN_LAT = -109.1754, 46.0323
M_PER_DEG_LAT = 111_320.0
FT = 0.3048


def _field_wave(x: np.ndarray, y: np.ndarray, phase: float) -> np.ndarray:
    """A smooth pattern in [-1, 1] over the field: soil zones a few hundred metres across."""
    return 0.6 * np.sin(x / 170.0 + phase) * np.cos(y / 230.0 - phase) + 0.4 * np.sin((x + y) / 410.0 + 2 * phase)


def _time_strings(stamps: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """JD's two time columns: `8/16/2019 6:52:48 PM` (to the second) and `2019-08-16T18:52:48.000Z`."""
    iso = np.char.add(np.datetime_as_string(stamps.to_numpy(), unit="ms"), "Z")
    hours = stamps.hour.to_numpy()
    twelve = np.where(hours % 12 == 0, 12, hours % 12)
    local = [f"{mo}/{d}/{y} {h}:{mi:02d}:{s:02d} {'PM' if hh >= 12 else 'AM'}"
             for mo, d, y, h, mi, s, hh in zip(stamps.month, stamps.day, stamps.year, twelve, stamps.minute,
                                               stamps.second, hours)]
    return np.asarray(local, dtype=object), iso.astype(object)


def harvest_frame(points: int, seed: int = SEED, *, variety: str = "Brawl CLP", origin: tuple[float, float] | None = None,
                  start: pd.Timestamp | None = None) -> gpd.GeoDataFrame:
    """`points` harvest points (a multiple of 8 sections, the last second cut short), deterministic for `seed`."""
    if points <= 0:
        raise ValueError("points must be positive")
    rng = np.random.default_rng(seed)
    lon0, lat0 = origin or (ORIGIN_LON, ORIGIN_LAT)
    seconds = -(-points // SECTIONS)
    # a square-ish field: pass length L with L * (L / spacing) ~ the distance driven
    driven = seconds * SPEED_M_PER_S
    per_pass = max(4, int(round(math.sqrt(driven * PASS_SPACING_M) / SPEED_M_PER_S)))
    t = np.arange(seconds)
    pass_no, in_pass = t // per_pass, t % per_pass

    step = np.clip(rng.normal(SPEED_M_PER_S, 0.08, seconds), 0.9, 2.2)  # metres driven in the second before
    total = np.cumsum(step)
    along = total - total[pass_no * per_pass] + step[pass_no * per_pass]
    northbound = pass_no % 2 == 0
    length = per_pass * SPEED_M_PER_S
    y_centre = np.where(northbound, along, length - along) + rng.normal(0, 0.05, seconds)
    x_centre = pass_no * PASS_SPACING_M + PASS_SPACING_M / 2 + rng.normal(0, 0.05, seconds)
    heading = np.where(northbound, 0.0, 180.0) + rng.normal(2.5, 1.5, seconds)
    heading = np.mod(heading, 360.0)

    # time: one record a second (logged a little over a second apart), turns and nights skipped
    elapsed = t + pass_no * TURN_SECONDS
    day, clock = elapsed // WORK_SECONDS_PER_DAY, elapsed % WORK_SECONDS_PER_DAY
    millis = (t * 2) % 1000
    stamps = pd.DatetimeIndex((start or START).to_datetime64() + (day * 86_400 + clock).astype("timedelta64[s]")
                              + millis.astype("timedelta64[ms]"))
    local, iso = _time_strings(stamps)

    # per-second values shared by every section of the header
    wave = _field_wave(x_centre, y_centre, phase=seed % 7)
    yield_bu = np.clip(72 + 22 * wave + rng.normal(0, 6, seconds), 0, None)
    moisture = np.round(np.clip(11.8 + 1.2 * _field_wave(x_centre, y_centre, phase=seed % 5 + 1)
                                + rng.normal(0, 0.3, seconds), 8, 20), 1)
    filling = in_pass < 3  # header filling at the start of each pass: the monitor logs zeros
    yield_bu[filling] = 0.0
    moisture[filling] = 0.0
    elevation = 4020 + 9 * _field_wave(x_centre, y_centre, phase=3.0) + y_centre * 0.004 + rng.normal(0, 0.05, seconds)
    distance_ft = step / FT

    # expand to sections: section j sits (j - 3.5) widths to the right of the centre line
    section = np.tile(np.arange(SECTIONS), seconds)[:points]
    second = np.repeat(t, SECTIONS)[:points]
    offset = (section - (SECTIONS - 1) / 2) * SECTION_WIDTH_FT * FT
    theta = np.radians(heading[second])
    x = x_centre[second] + offset * np.cos(theta)
    y = y_centre[second] - offset * np.sin(theta)
    per_section = 1 + rng.normal(0, 0.03, points)  # sections see slightly different crop
    vryield = yield_bu[second] * per_section

    lat = lat0 + y / M_PER_DEG_LAT
    lon = lon0 + x / (M_PER_DEG_LAT * math.cos(math.radians(lat0)))
    frame = pd.DataFrame({
        "DISTANCE": distance_ft[second],
        "SWATHWIDTH": np.full(points, SECTION_WIDTH_FT),
        "VRYIELDVOL": vryield,
        "SECTIONID": (FIRST_SECTION_ID + section).astype(np.int32),
        "Crop": np.full(points, JD_CROP_WHEAT, dtype=np.int32),
        "WetMass": vryield * LB_PER_BU,
        "Moisture": moisture[second],
        "Time": local[second],
        "Heading": heading[second],
        "VARIETY": np.full(points, variety, dtype=object),
        "Elevation": elevation[second],
        "IsoTime": iso[second],
        "Machine": np.ones(points, dtype=np.int32),
    })
    geometry = shapely.points(lon, lat, np.zeros(points))  # JD leaves Z NaN; GDAL refuses to write NaN
    return gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")


def write_shapefile(frame: gpd.GeoDataFrame, folder: Path, name: str) -> Path:
    """NAME.shp/.shx/.dbf/.prj as JD writes them (no .cpg, JD's DBF language driver id); RESIZE shrinks the
    text and integer fields to their content (JD's own widths are close: 18.8 reals, 23-24 character text)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.shp"
    with warnings.catch_warnings():
        # GDAL writes the DBF with its default widths first: 5,000,000 points pass 2 GB (and GDAL warns) until
        # RESIZE shrinks it at close, to about 1.1 GB
        warnings.filterwarnings("ignore", message="2GB file size limit reached", category=RuntimeWarning)
        pyogrio.write_dataframe(frame, path, driver="ESRI Shapefile", layer=name, geometry_type="Point Z",
                                layer_options={"RESIZE": "YES", "SHPT": "POINTZ"})
    path.with_suffix(".cpg").unlink(missing_ok=True)
    with open(path.with_suffix(".dbf"), "r+b") as dbf:  # the language driver id JD's exports carry
        dbf.seek(29)
        dbf.write(bytes([JD_LANGUAGE_DRIVER]))
    return path


def zip_shapefiles(shapefiles: list[Path], target: Path) -> Path:
    """Zip shapefile sets (flat, as Operations Center downloads are), written atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for shp in shapefiles:
            for ext in SHAPEFILE_EXTENSIONS:
                zf.write(shp.with_suffix(ext), shp.with_suffix(ext).name)
    partial.replace(target)
    return target


def write_harvest_zip(folder: Path, points: int, seed: int = SEED, name: str = HARVEST_NAME,
                      keep_shapefile: bool = True) -> tuple[Path, Path | None]:
    """(NAME.zip, NAME.shp or None): one JD-style export of `points` points; the unzipped set is kept in
    folder/NAME/ when asked (the baseline reads it)."""
    frame = harvest_frame(points, seed)
    shp_folder = folder / "shapefile"
    shp = write_shapefile(frame, shp_folder, name)
    del frame
    archive = zip_shapefiles([shp], folder / f"{name}.zip")
    if not keep_shapefile:
        shutil.rmtree(shp_folder)
        return archive, None
    return archive, shp


def batch_names(files: int) -> list[str]:
    return [f"Bench Client-Bench Farm-Field {i:03d}-Wheat-1" for i in range(1, files + 1)]


def write_batch_zip(folder: Path, files: int = 100, points: int = 504, seed: int = SEED,
                    name: str = "bench-batch") -> Path:
    """One upload holding `files` small JD exports of `points` points each, each a field of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        shapefiles = []
        for i, file_name in enumerate(batch_names(files)):
            origin = (ORIGIN_LON + 0.02 * (i % 10), ORIGIN_LAT + 0.02 * (i // 10))
            frame = harvest_frame(points, seed + i, origin=origin, start=START + pd.Timedelta(hours=3 * i))
            shapefiles.append(write_shapefile(frame, Path(tmp), file_name))
        return zip_shapefiles(shapefiles, folder / f"{name}.zip")


def harvest_input(work: str, points: int, seed: int) -> dict[str, Any]:
    """The big shapefile the benchmark reads, zipped (the upload) and unzipped (the baseline reads it) in
    work/, with how long writing it took and its sizes."""
    started = time.perf_counter()
    archive, shp = write_harvest_zip(Path(work), points, seed)
    assert shp is not None
    return {
        "zip": str(archive), "shp": str(shp), "seconds": time.perf_counter() - started,
        "bytes": {ext: shp.with_suffix(ext).stat().st_size for ext in SHAPEFILE_EXTENSIONS},
        "zip_bytes": archive.stat().st_size,
    }


def batch_input(work: str, files: int, file_points: int, seed: int) -> dict[str, Any]:
    """The batch upload the benchmark drops in the inbox, with how long writing it took and its size."""
    started = time.perf_counter()
    batch = write_batch_zip(Path(work), files, file_points, seed)
    return {"zip": str(batch), "seconds": time.perf_counter() - started, "zip_bytes": batch.stat().st_size}
