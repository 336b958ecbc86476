"""Metadata shown with each materialisation in the Dagster UI."""

from __future__ import annotations

from typing import Any

import dagster as dg
import geopandas as gpd
import pandas as pd
from tabulate import tabulate


def preview(frame: pd.DataFrame, rows: int = 5, columns: int = 12) -> dg.MetadataValue:
    """The first rows as a Markdown table (geometry as WKT, long values cut). Built from the few cells it
    shows, not through a frame of strings: three previews per file are a part of an upload's run to keep small.
    Columns are taken by position, so a source with two columns of one name shows both."""
    head = frame.head(rows)
    geometry = frame.geometry.name if isinstance(frame, gpd.GeoDataFrame) else None
    shown = min(columns, head.shape[1])
    values = [head.iloc[:, i].to_wkt().tolist() if head.columns[i] == geometry else head.iloc[:, i].tolist()
              for i in range(shown)]
    cells = [[_cell(value) for value in row] for row in zip(*values)]
    return dg.MetadataValue.md(tabulate(cells, headers=[str(name) for name in head.columns[:shown]], tablefmt="pipe"))


def _cell(value: Any) -> str:
    """A value as the preview shows it: missing values blank, bytes as text, lists and arrays (a GDAL list field)
    as printed, long values cut."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    return (value.decode(errors="replace") if isinstance(value, bytes) else str(value))[:40]


def time_span(frame: pd.DataFrame) -> dict[str, Any]:
    if "timestamp" not in frame.columns or frame["timestamp"].isna().all():
        return {"time_span": "no times in the source"}
    start, end = frame["timestamp"].min(), frame["timestamp"].max()
    return {"start_time": start.isoformat(), "end_time": end.isoformat(), "duration_h": round((end - start).total_seconds() / 3600, 2)}
