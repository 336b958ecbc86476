"""Metadata shown with each materialisation in the Dagster UI."""

from __future__ import annotations

from typing import Any

import dagster as dg
import geopandas as gpd
import pandas as pd
from tabulate import tabulate


def preview(frame: pd.DataFrame, rows: int = 5, columns: int = 12) -> dg.MetadataValue:
    """The first rows as a Markdown table (geometry as WKT, long values cut). Built from the few cells it
    shows, not through a frame of strings: three previews per file are a part of an upload's run to keep small."""
    head = frame.head(rows)
    geometry = frame.geometry.name if isinstance(frame, gpd.GeoDataFrame) else None
    names = list(head.columns[:columns])
    values = [head[name].to_wkt().tolist() if name == geometry else head[name].tolist() for name in names]
    cells = [[_cell(value) for value in row] for row in zip(*values)]
    return dg.MetadataValue.md(tabulate(cells, headers=[str(name) for name in names], tablefmt="pipe"))


def _cell(value: Any) -> str:
    """A value as the preview shows it: missing values blank, long ones cut."""
    return "" if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)) else str(value)[:40]


def time_span(frame: pd.DataFrame) -> dict[str, Any]:
    if "timestamp" not in frame.columns or frame["timestamp"].isna().all():
        return {"time_span": "no times in the source"}
    start, end = frame["timestamp"].min(), frame["timestamp"].max()
    return {"start_time": start.isoformat(), "end_time": end.isoformat(), "duration_h": round((end - start).total_seconds() / 3600, 2)}
