"""Header-less Ag Leader "advanced" export / USDA Yield Editor input text.

The layout is positional (Yield Editor's documented input format): longitude, latitude, grain flow
(lb/s), GPS time (s), logging interval (s), distance (in), swath width (in), moisture (%), header status,
pass number, serial number, field id ("F1: C1N"), load id ("L1: "), crop, variety, and optionally
altitude (ft). The names below are ours; the units are the format's.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from ..ingest.detect import DetectedFile
from .base import WGS84, ReaderError, SourceTable

COLUMNS = ["longitude", "latitude", "flow", "gps_time", "interval", "distance", "swath", "moisture",
           "header_status", "pass", "serial", "field_id", "load_id", "crop", "variety", "altitude"]
UNITS = {"flow": "lb/s", "gps_time": "s", "interval": "s", "distance": "in", "swath": "in",
         "moisture": "percentage", "altitude": "ft"}


def read_agleader_text(detected: DetectedFile) -> SourceTable:
    name = detected.primary.name
    try:
        frame = pd.read_csv(detected.primary, header=None, encoding="latin-1", skipinitialspace=True,
                            dtype={11: "string", 12: "string", 13: "string", 14: "string"}, keep_default_na=False,
                            na_values={i: ["", "NA"] for i in range(11)})
    except (pd.errors.ParserError, ValueError) as exc:
        raise ReaderError(name, f"is not a readable Ag Leader text export: {exc}") from exc
    if frame.shape[1] not in (15, 16):
        raise ReaderError(name, f"has {frame.shape[1]} columns; the Ag Leader text layout has 15 or 16")
    frame.columns = COLUMNS[: frame.shape[1]]
    for column in ("crop", "variety", "field_id", "load_id"):
        frame[column] = frame[column].str.strip()
    frame.loc[frame["variety"].isin(["NA", ""]), "variety"] = pd.NA
    lon = pd.to_numeric(frame["longitude"], errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(frame["latitude"], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(lon).all() or not np.isfinite(lat).all():
        raise ReaderError(name, "has rows without a numeric longitude/latitude")
    units = {k: v for k, v in UNITS.items() if k in frame.columns}
    gdf = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon, lat, crs=WGS84), crs=WGS84)
    return SourceTable(frame=gdf, dialect="AGLEADER_TEXT", source_crs=WGS84, units=units,
                       notes=["header-less Ag Leader / Yield Editor text: columns named from the format's layout"])
