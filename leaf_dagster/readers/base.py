"""What every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd

WGS84 = "EPSG:4326"


@dataclass
class SourceTable:
    """Raw records of one machine file, with source column names and units kept.

    `frame` holds one row per source record and its geometry in WGS84 (polygons stay polygons);
    `units` maps a source column to the unit the source gives or implies for it; `dialect` names the
    column-naming convention the standardiser should use; `hints` carries what sidecars say
    (operation, crop) and `notes` what the reader assumed (CRS, time zone).
    """

    frame: gpd.GeoDataFrame
    dialect: str
    source_crs: str | None = None
    units: dict[str, str] = field(default_factory=dict)
    hints: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def point_count(self) -> int:
        return len(self.frame)
