"""Metadata shown with each materialisation in the Dagster UI."""

from __future__ import annotations

from typing import Any

import dagster as dg
import geopandas as gpd
import pandas as pd


def preview(frame: pd.DataFrame, rows: int = 5, columns: int = 12) -> dg.MetadataValue:
    """The first rows as a Markdown table (geometry as WKT, long values cut)."""
    head = pd.DataFrame(frame.head(rows))
    if isinstance(frame, gpd.GeoDataFrame):
        head[frame.geometry.name] = frame.geometry.head(rows).to_wkt().str[:60]
    head = head.iloc[:, :columns].astype("string").fillna("").map(lambda v: v[:40])
    return dg.MetadataValue.md(head.to_markdown(index=False))


def time_span(frame: pd.DataFrame) -> dict[str, Any]:
    if "timestamp" not in frame.columns or frame["timestamp"].isna().all():
        return {"time_span": "no times in the source"}
    start, end = frame["timestamp"].min(), frame["timestamp"].max()
    return {"start_time": start.isoformat(), "end_time": end.isoformat(), "duration_h": round((end - start).total_seconds() / 3600, 2)}
