"""Delimited text exports with a header row and positions (Ag Leader SMS CSV, generic monitor CSV).

Headers often carry units, `Yld Mass(Dry)(tonne/ha)`: the last parenthesised group is taken as the unit
when it parses as one, and the rest is the column name. Files come in UTF-8 or Latin-1. Positions are
longitude/latitude columns, optionally unsigned with a hemisphere column (NMEA style: `x`, `dir_x` = `W`).
"""

from __future__ import annotations

import io
import re

import geopandas as gpd
import numpy as np
import pandas as pd

from ..errors import ReaderError
from ..model import WGS84, DetectedFile, SourceTable
from ..standard.units import is_known, leaf_unit
from .text_layouts import decode

# Header names of position columns (after units in parentheses are cut and spaces become "_"); detection
# takes a delimited file with both for a CSV of points.
LAT_NAMES = {"lat", "latitude", "y", "lat_deg", "latitud", "gps_lat", "northing_deg"}
LON_NAMES = {"lon", "long", "lng", "longitude", "x", "lon_deg", "longitud", "gps_lon"}

_UNIT_GROUP = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^()]*)\)\s*$")


def split_header(header: str) -> tuple[str, str | None]:
    """'Yld Mass(Dry)(tonne/ha)' -> ('Yld Mass(Dry)', 't/ha'); 'Moisture(%)' -> ('Moisture', 'percentage')."""
    match = _UNIT_GROUP.match(header.strip())
    if match:
        unit = leaf_unit(match.group("unit"))
        if is_known(unit):
            return match.group("name").strip(), unit
    return header.strip(), None


def _position_column(columns: list[str], names: set[str]) -> str | None:
    for column in columns:
        if column.strip().lower().replace(" ", "_") in names:
            return column
    return None


def _signed(frame: pd.DataFrame, column: str, negative_letter: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    hemisphere = f"dir_{column}"
    for candidate in (hemisphere, f"{column}_dir", f"{column}_hemisphere"):
        if candidate in frame.columns:
            letters = frame[candidate].astype("string").str.strip().str.upper().fillna("")
            values = np.where((letters == negative_letter).to_numpy(dtype=bool), -np.abs(values), values)
    return values


def read_delimited(detected: DetectedFile) -> SourceTable:
    name = detected.primary.name
    text, encoding = decode(detected.primary.read_bytes())  # the same decoding detection used
    first_line = text.split("\n", 1)[0]
    delimiter = max([",", ";", "\t", "|"], key=first_line.count)
    # Continental European exports separate fields with ';' and decimals with ','.
    decimal = "," if delimiter != "," and re.search(r"\d,\d", text[len(first_line):len(first_line) + 4096]) else "."
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, decimal=decimal, dtype_backend="numpy_nullable",
                            skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as exc:
        raise ReaderError(name, f"is not a readable delimited file: {exc}") from exc
    if frame.empty:
        raise ReaderError(name, "has a header but no rows")

    renamed: dict[str, str] = {}
    units: dict[str, str] = {}
    for column in frame.columns:
        base, unit = split_header(str(column))
        target = base if base not in renamed.values() else str(column)
        renamed[column] = target
        if unit:
            units[target] = unit
    frame = frame.rename(columns=renamed)
    columns = list(frame.columns)
    lon_col = _position_column(columns, LON_NAMES)
    lat_col = _position_column(columns, LAT_NAMES)
    if lon_col is None or lat_col is None:
        raise ReaderError(name, "has no longitude/latitude columns")
    lon = _signed(frame, lon_col, "W")
    lat = _signed(frame, lat_col, "S")
    valid = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    if not valid.any():
        raise ReaderError(name, f"no row has a valid position in '{lon_col}'/'{lat_col}'")
    notes = [f"text encoding {encoding}"] + (["decimal commas"] if decimal == "," else [])
    if not valid.all():
        notes.append(f"{int((~valid).sum())} rows without a valid position are kept in raw with no geometry")
    geometry = gpd.points_from_xy(np.where(valid, lon, np.nan), np.where(valid, lat, np.nan), crs=WGS84)
    geometry[~valid] = None
    gdf = gpd.GeoDataFrame(frame, geometry=geometry, crs=WGS84)
    # Units in the header are Ag Leader SMS's convention; without them the monitor is unknown.
    dialect = "SMS" if units else "GENERIC"
    return SourceTable(frame=gdf, dialect=dialect, source_crs=WGS84, units=units, notes=notes)
