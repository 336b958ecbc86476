"""What the pipeline records about batches and machine files, written once: every fact, its SQL type and the
one section (and so the one writer) it belongs to.

A record is stored as sections, each written whole by one step or module only, so two writers can never
overwrite each other's facts (a field re-match during a file's run changes `fields` and nothing else):

    file     registration  ingest.batch / merge   who uploaded what: identity and provenance
             raw           the rawGeojson step    how the source was read
             standard      the standardGeojson step
             filtered      the filteredGeojson step
             plausibility  the plausibility check
             summary       the summary step
             units         the units step         Leaf's flat property -> unit map
             images        the propertiesPNGs step
             fields        field matching
             status        status.record_steps    Leaf's per-step status, from the run's results
    batch    registration  ingest.batch           the upload
             scan          the batch step         the machine files it found
             state         status.set_batch_state Leaf's batch status

The record store (`records.py`), the SQL catalog (`catalog.py`) and the API's objects (`objects.py`) are
derived from these tables.

The typed records a machine file passes through on its way to the standard schema live here too, so that
imports go one way (detection, readers and standardisation import this module, never each other for a type):

    DetectedFile     ingest.detect -> readers     one machine file found in an upload: format and members
    SourceTable      readers -> standard          its raw records, source names and units kept, in WGS84
    StandardResult   standard -> files.py         its standard points (a PointTable), units, crop, what is missing
    PointTable       files.py -> the next steps   standard or filtered points, encoded
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from .errors import QueryError


if TYPE_CHECKING:
    import geopandas as gpd

    import numpy as np
    import pandas as pd

    from .geoparquet import Geometry

# SQL types of the catalog's columns (DuckDB's names); JSON stays JSON: nested values whose keys come from
# source files (units, steps) must not become struct columns that differ from file to file.
TS, TEXT, INT, FLOAT, BOOL, JSON, TEXTS = "TIMESTAMPTZ", "VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "JSON", "VARCHAR[]"

FILE_SECTIONS: dict[str, dict[str, str]] = {
    "registration": {
        "id": TEXT, "batchId": TEXT, "leafUserId": TEXT, "apiOwnerUsername": TEXT, "provider": TEXT,
        "fileName": TEXT, "fileFormat": TEXT, "origin": TEXT, "createdTime": TS, "sizeInBytes": INT,
        "sourcePath": TEXT, "primary": TEXT, "layer": TEXT, "members": TEXTS, "unsupportedReason": TEXT,
        "sources": TEXTS, "organizationId": TEXT, "providerFileId": TEXT},
    "raw": {"raw": JSON, "terminalTotals": JSON},
    "standard": {
        "operationType": TEXT, "originalOperationType": TEXT, "evidence": TEXT, "pointCount": INT, "crops": TEXTS,
        "varieties": TEXTS, "units": JSON, "unitMeasurement": TEXT, "missingProperties": TEXTS, "standard": BOOL,
        "startTime": TS, "endTime": TS, "notes": TEXTS, "missingInputs": JSON},
    "filtered": {"filteredPointCount": INT},
    "plausibility": {"plausibility": JSON},
    "summary": {"summary": JSON, "areaM2": FLOAT, "thumbnailToken": TEXT, "mapLegend": JSON},
    "units": {"unitMap": JSON},
    "images": {"images": JSON},
    "fields": {"fields": TEXTS, "uncovered": BOOL, "outsideField": JSON},
    "status": {"status": TEXT, "steps": JSON, "lastRunId": TEXT},
}
BATCH_SECTIONS: dict[str, dict[str, str]] = {
    "registration": {
        "id": TEXT, "leafUserId": TEXT, "fileName": TEXT, "apiOwnerUsername": TEXT, "storedName": TEXT,
        "size": INT, "provider": TEXT, "uploadTimestamp": TS, "fileFormat": TEXT, "inboxPath": TEXT,
        "moveUpload": BOOL},
    "scan": {"leafFiles": TEXTS, "storedPath": TEXT},
    "state": {"status": TEXT, "statusDetails": TEXT, "processedTimestamp": TS},
}
SECTIONS = {"files": FILE_SECTIONS, "batches": BATCH_SECTIONS}
# Kept by the store itself: the time of a file record's last write.
ROW_FACTS: dict[str, dict[str, str]] = {"files": {"updatedTime": TS}, "batches": {}}

# The facts Leaf's file and batch objects show, in Leaf's order (the others are the pipeline's own).
FILE_OBJECT_KEYS = ("id", "batchId", "leafUserId", "apiOwnerUsername", "provider", "fileName", "fileFormat", "origin",
                    "status", "operationType", "originalOperationType", "createdTime", "updatedTime", "sizeInBytes",
                    "startTime", "endTime", "crops", "varieties", "fields", "sources", "pointCount", "organizationId",
                    "providerFileId", "standard", "terminalTotals")
BATCH_OBJECT_KEYS = ("id", "leafUserId", "fileName", "size", "provider", "status", "uploadTimestamp", "leafFiles",
                     "statusDetails", "processedTimestamp")

# What a record says before the section that owns a fact is written: a file is processing until its run
# reports, a batch RECEIVED until its step has run.
DEFAULTS: dict[str, dict[str, Any]] = {
    "files": {"status": "processing", "fields": []},
    "batches": {"status": "RECEIVED", "leafFiles": [], "statusDetails": None},
}

# Leaf's operation types: what the standard schema covers (standard/schema.py) and the files filter's choices.
OPERATION_TYPES = ("harvested", "planted", "applied", "tillage")
# Leaf's providers: the upload's list (Other for "unsure, detect it"), the older docs' Farmobile and
# PrecisionPlanting, and Panorama from the files filter's list.
PROVIDERS = ("Other", "Leaf", "ClimateFieldView", "CNHI", "JohnDeere", "Trimble", "AgLeader", "RavenSlingshot",
             "Stara", "Farmobile", "PrecisionPlanting", "Panorama")
# Leaf's batch statuses: the filter's choices and the type of every batch answer's `status` (api.models).
BatchStatusName = Literal["RECEIVED", "PROCESSING", "PROCESSED", "FAILED"]
BATCH_STATUSES: tuple[str, ...] = get_args(BatchStatusName)
def leaf_provider(value: str) -> str:
    """A provider in Leaf's spelling, whatever its case; QueryError (HTTP 400, CLI exit 2, a failed batch for an inbox sidecar) naming the allowed ones otherwise."""
    spelling = {p.lower(): p for p in PROVIDERS}.get(str(value).strip().lower())
    if spelling is None:
        raise QueryError(f"provider must be one of {', '.join(PROVIDERS)} (any case), not {value!r}")
    return spelling




# Leaf's steps of a machine file, in order (the keys of GET /files/{id}/status).
STEP_ORDER = ["originalFile", "rawGeojson", "standardGeojson", "filteredGeojson", "summary", "units",
              "propertiesPNGs", "zippedPNGs"]


def utc_now() -> str:
    """Now in Leaf's date format, yyyy-MM-dd'T'HH:mm:ss.SSS'Z' (record times compare as text)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def section_of(table: str, key: str) -> str:
    """The section that owns `key` in `table`'s records."""
    for section, keys in SECTIONS[table].items():
        if key in keys:
            return section
    raise KeyError(f"{key} is not a fact of {table}")


def columns(table: str) -> dict[str, str]:
    """Every fact of `table` and its SQL type, in section order, then the store's own (the catalog's columns)."""
    return {**{key: kind for keys in SECTIONS[table].values() for key, kind in keys.items()}, **ROW_FACTS[table]}


WGS84 = "EPSG:4326"


@dataclass
class DetectedFile:
    """One machine file: its format, the member that is read first, and every member that belongs to it.

    `accept_damaged` asks readers to read a damaged file anyway (the user's acceptDamagedShapefiles
    configuration); what they found wrong then goes to `warnings` instead of failing the file."""

    name: str
    file_format: str
    primary: Path
    members: list[Path] = field(default_factory=list)
    layer: str | None = None
    unsupported_reason: str | None = None
    accept_damaged: bool = False
    warnings: list[str] = field(default_factory=list)

    def relative_to(self, root: Path) -> str:
        rel = self.primary.relative_to(root).as_posix()
        return f"{rel}#{self.layer}" if self.layer else rel


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


@dataclass
class PointTable:
    """The standard or filtered points of a file (without the file id column) and the unit of each property:
    what the standard and filtered steps hand to the steps after them.

    A file's tables stay in memory for all its steps, so they are held lean: the points encoded
    (`geoparquet.Geometry`: WKB, bounds, types), not as a shapely object per row, and the filtered table as
    the standard table's rows it keeps (`keep`), not as a copy of them. `columns` and `geometry` are the
    table's own rows; a step that needs shapely geometry builds the frame (`frame`) for its own use only."""

    properties: pd.DataFrame  # every row's properties, kept or not
    points: Geometry  # every row's point, encoded
    units: dict[str, str]
    crs: Any
    name: str  # the geometry column's name
    position: int  # and its place among the columns
    keep: np.ndarray | None = None  # the rows of `properties` and `points` in the table (None: all)

    @classmethod
    def of(cls, frame: gpd.GeoDataFrame, units: dict[str, str]) -> PointTable:
        import pandas as pd

        from .geoparquet import wkb_geometry

        name = frame.geometry.name
        columns = pd.DataFrame(frame, copy=False).drop(columns=[name])  # shares the values (a GeoDataFrame's drop copies)
        return cls(columns, wkb_geometry(frame.geometry.to_numpy()), units, frame.crs, name,
                   list(frame.columns).index(name))

    @classmethod
    def joined(cls, parts: list[PointTable], units: dict[str, str]) -> PointTable:
        """Whole tables (chunks of one file, in order) as one, with these `units`; `parts` is emptied. The
        properties are joined a column at a time and each column's chunks let go as it is joined, so no whole
        copy of the chunks stands beside the table. Chunks whose columns differ are joined as `pd.concat`
        joins them, the geometry kept last (where the standard schema has it)."""
        import pandas as pd

        from .geoparquet import concat_geometry

        first = parts[0]
        names = list(first.properties.columns)
        frames = [part.properties for part in parts]
        points = concat_geometry([part.points for part in parts])
        same = all(list(frame.columns) == names and part.position == first.position
                   for frame, part in zip(frames, parts))
        parts.clear()
        if not same:
            properties = pd.concat(frames, ignore_index=True)
            return cls(properties, points, units, first.crs, first.name, len(properties.columns))
        joined: dict[str, pd.Series] = {}
        for name in names:
            joined[name] = pd.concat([frame.pop(name) for frame in frames], ignore_index=True)
        return cls(pd.DataFrame(joined, copy=False), points, units, first.crs, first.name, first.position)

    def subset(self, keep: np.ndarray) -> PointTable:
        """The table's rows where the boolean `keep` holds, sharing this table's values."""
        if self.keep is not None:
            within, keep = keep, self.keep.copy()
            keep[keep] = within
        return replace(self, keep=None if keep.all() else keep)

    @property
    def point_count(self) -> int:
        return len(self.properties) if self.keep is None else int(self.keep.sum())

    @property
    def columns(self) -> pd.DataFrame:
        """The properties of the table's rows (a copy of them for a subset: keep it for a step only)."""
        if self.keep is None:
            return self.properties
        return self.properties[self.keep].reset_index(drop=True)

    @property
    def geometry(self) -> Geometry:
        """The points of the table's rows, encoded."""
        from .geoparquet import take_geometry

        return self.points if self.keep is None else take_geometry(self.points, self.keep)

    def values(self, column: str) -> np.ndarray:
        """One property of the table's rows, as floats (taken from its rows only, not a copy of every column)."""
        values = self.properties[column].to_numpy(dtype=float)
        return values if self.keep is None else values[self.keep]

    def with_geometry(self, columns: pd.DataFrame) -> pd.DataFrame:
        """`columns` (these properties, or some of their rows) with the geometry column back in its place, as
        None: what the GeoParquet writer fills with the encoded geometry."""
        columns = columns.copy(deep=False)
        columns.insert(self.position, self.name, None)
        return columns

    def head(self, rows: int) -> gpd.GeoDataFrame:
        """The first `rows` points as a GeoDataFrame."""
        return self.rows(0, rows).frame

    def rows(self, start: int, stop: int) -> PointTable:
        """The table's rows `start` to `stop` (positions among its own rows), sharing this table's values."""
        import numpy as np

        taken = np.zeros(len(self.properties), dtype=bool)
        taken[slice(start, stop) if self.keep is None else np.flatnonzero(self.keep)[start:stop]] = True
        return replace(self, keep=taken)

    @property
    def frame(self) -> gpd.GeoDataFrame:
        """The points as a GeoDataFrame, a shapely geometry per row (built on each call: keep it for a step only)."""
        import geopandas as gpd

        from .geoparquet import geometry_objects

        frame = self.columns.copy(deep=False)
        frame.insert(self.position, self.name, gpd.GeoSeries(geometry_objects(self.geometry), index=frame.index,
                                                             crs=self.crs))
        return gpd.GeoDataFrame(frame, geometry=self.name, copy=False)  # the crs given here would copy every column


@dataclass
class StandardResult:
    """One machine file in Leaf's standard schema, with what the steps after standardisation need to judge it:
    the units of its properties, the required ones it lacks (`missing`), units that stay open (`unresolved`)
    and the inputs (a crop, a width) that would unlock more (`missing_inputs`)."""

    operation_type: str
    original_operation_type: str | None
    table: PointTable | None = None  # the standard points, encoded (None when the file has none to give)
    units: dict[str, str] = field(default_factory=dict)
    crop: str | None = None
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)
    evidence: str = ""
    cleaned_out: bool = False
    unresolved: dict[str, str] = field(default_factory=dict)  # property -> why its unit is not known
    missing_inputs: dict[str, str] = field(default_factory=dict)  # input -> what it would unlock

    @property
    def supported(self) -> bool:
        return self.operation_type in OPERATION_TYPES

    @property
    def frame(self) -> gpd.GeoDataFrame | None:
        """The standard points as a GeoDataFrame, a shapely point per row (built on each call: a look at the
        rows, not what the steps pass on)."""
        return None if self.table is None else self.table.frame
