"""Header-less Ag Leader / Yield Editor text, read by the layout its column types show.

The layout registry (`text_layouts.py`) names the columns and their units; the time column's epoch
(GPS or Unix seconds, or a relative counter) is chosen from the evidence (`times.choose_epoch`) and the
column named after it (`gps_time`, `unix_time`, `time_counter`), so the standardiser converts it the right
way. Lines cut short (a copy interrupted mid-line) are dropped and counted in the notes.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from ..errors import EpochUndecided, ReaderError
from ..model import WGS84, DetectedFile, SourceTable
from ..standard.times import choose_epoch, years_in
from .text_layouts import SNIFF_LINES, decode, sniff_rows, split_rows

_TIME_COLUMN = {"GPS": "gps_time", "Unix": "unix_time", None: "time_counter"}
_TEXT_KINDS = {"field", "load", "text", "label"}


def read_agleader_text(detected: DetectedFile) -> SourceTable:
    name = detected.primary.name
    try:
        raw = detected.primary.read_bytes()
    except OSError as exc:
        raise ReaderError(name, f"cannot be read: {exc}") from exc
    text, encoding = decode(raw)
    try:
        rows = split_rows(text)
    except Exception as exc:  # csv.Error on a NUL byte or an unterminated quote
        raise ReaderError(name, f"is not readable comma-separated text: {exc}") from exc
    sniffed = sniff_rows(rows[:SNIFF_LINES])
    layout = sniffed.layout
    if layout is None:
        raise ReaderError(name, sniffed.reason)
    notes = [f"header-less text ({encoding}): {sniffed.reason}"]

    complete = [r for r in rows if len(r) == layout.width]
    if rows and len(rows[-1]) == layout.width and not text.endswith(("\n", "\r")) \
            and _cut_short(rows[-1][-1], [r[-1] for r in complete[:-1]]):
        complete = complete[:-1]  # the copy stopped inside the last value of the last line
    frame = pd.DataFrame(complete, columns=[c.name for c in layout.columns])
    for numeric in (c.name for c in layout.columns if c.kind not in _TEXT_KINDS):
        frame[numeric] = pd.to_numeric(frame[numeric].replace("NA", np.nan), errors="coerce")
    good = frame["longitude"].notna() & frame["latitude"].notna()
    dropped = len(rows) - int(good.sum())
    if dropped > len(rows) / 2:
        raise ReaderError(name, f"{dropped} of {len(rows)} lines are not {layout.name} records "
                                "(wrong number of values or no numeric position)")
    if dropped:
        notes.append(f"{dropped} of {len(rows)} lines dropped: cut short or without a numeric position")
    frame = frame[good].reset_index(drop=True)
    for column in ("crop", "variety", "field_id", "load_id"):
        if column in frame.columns:
            frame[column] = frame[column].astype("string").str.strip()
    if "variety" in frame.columns:
        frame.loc[frame["variety"].isin(["NA", ""]), "variety"] = pd.NA

    labels = {"the file name": [detected.primary.name]}
    for column, what in (("load_id", "a load label"), ("field_id", "a field label")):
        labels[what] = frame[column].dropna().unique().tolist()
    try:
        epoch = choose_epoch(frame["time"], layout.epoch, years_in(labels))
    except EpochUndecided as exc:
        raise ReaderError(name, str(exc)) from exc
    notes.append(epoch.evidence)
    time_column = _TIME_COLUMN[epoch.epoch]
    frame = frame.rename(columns={"time": time_column})

    units = {c.name: c.unit for c in layout.columns if c.unit}
    units[time_column] = units.pop("time")
    gdf = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["longitude"], frame["latitude"], crs=WGS84),
                           crs=WGS84)
    return SourceTable(frame=gdf, dialect="AGLEADER_TEXT", source_crs=WGS84, units=units, notes=notes)


def _cut_short(last: str, others: list[str]) -> bool:
    """A final value shorter than every other value of its column, on a line with no line end: a cut copy."""
    lengths = [len(v) for v in others if v]
    return bool(lengths) and len(last) < min(lengths)
