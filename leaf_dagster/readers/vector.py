"""Shapefile sets, GeoPackages and GeoJSON, read through GDAL (pyogrio, Arrow path)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely
from pyogrio.geopandas import _try_parse_datetime  # how read_dataframe parses datetimes read as text

from ..errors import ReaderError
from ..model import WGS84, DetectedFile, SourceTable
from ..standard.units import leaf_unit
from .shapefile_integrity import check_shapefile_integrity

# The John Deere Operations Center metadata sidecar of a shapefile set (detection groups it with the set).
DEERE_METADATA_SUFFIX = "-deere-metadata.json"

_JD_SIGNATURE = {"isotime", "vryieldvol", "swathwidth", "vrappratev", "vrappratem", "wetmass", "sectionid"}
_YIELD_EDITOR_SIGNATURE = {"dist_in", "flw_lbs", "rm_code", "swth_w_", "gps_tim"}
_BATCH_ROWS = 1 << 16  # records decoded at a time: their WKB bytes and 3D geometries are what is let go


def read_deere_metadata(members: list[Path]) -> dict | None:
    """The John Deere Operations Center metadata sidecar of a shapefile set, if it has one."""
    for member in members:
        if member.name.lower().endswith(DEERE_METADATA_SUFFIX):
            return json.loads(member.read_text(encoding="utf-8-sig"))
    return None


def _check_shapefile_set(detected: DetectedFile) -> None:
    exts = {m.suffix.lower() for m in detected.members}
    for ext, what in ((".shp", "geometry"), (".shx", "index"), (".dbf", "attribute table")):
        if ext not in exts:
            raise ReaderError(detected.primary.name, f"shapefile set '{detected.name}' is missing its {ext} ({what})")


def _looks_like_lonlat(bounds: np.ndarray) -> bool:
    xmin, ymin, xmax, ymax = bounds
    return bool(np.all(np.isfinite(bounds)) and -180 <= xmin <= xmax <= 180 and -90 <= ymin <= ymax <= 90)


def _dialect(columns: list[str], has_deere_json: bool) -> str:
    lower = {c.lower() for c in columns}
    if has_deere_json or len(lower & _JD_SIGNATURE) >= 1 and ("isotime" in lower or "vrappratev" in lower or "vryieldvol" in lower):
        return "JOHN_DEERE"
    if len(lower & _YIELD_EDITOR_SIGNATURE) >= 3:
        return "YIELD_EDITOR"
    return "SMS"


def _unquote(frame) -> list[str]:
    """Strip the quotes a CSV-to-shapefile conversion left around values (`"2.92"`, `"Soybeans"`), in place."""
    quoted = []
    for column in frame.columns:
        if column == frame.geometry.name or frame[column].dtype.kind not in "OSUT" and str(frame[column].dtype) != "str":
            continue
        head = frame[column].iloc[:1000].dropna().head(200).astype(str).str.strip()  # a look, not a scan
        if len(head) and head.str.match(r'^".*"$').all():
            frame[column] = frame[column].astype("string").str.strip().str.strip('"')
            quoted.append(str(column))
    return [f"quotes around the values of {quoted} removed"] if quoted else []


class NotUtf8(ValueError):
    """Text columns whose bytes are not the UTF-8 the source declares."""

    def __init__(self, columns: list[str]):
        super().__init__(f"the text of {columns} is not UTF-8")
        self.columns = columns


FALLBACK_ENCODING = "CP1252"
# DBF language drivers that leave Windows ANSI the one code page to fall back on: none declared (0), and
# ESRI's two ids of Windows ANSI (0x03, 0x57).
WINDOWS_ANSI_DRIVERS = {0x00, 0x03, 0x57}


def _read_frame(path: Path, layer: str | int | None, encoding: str | None = None) -> gpd.GeoDataFrame:
    """The layer's features in 2D, read as `pyogrio.read_dataframe(use_arrow=True)` reads them (the same
    columns, types and values), in record batches: each batch's WKB becomes 2D shapely geometries at once,
    so a big file never holds every record's WKB bytes, nor a 3D geometry per record beside the 2D one.
    `encoding` overrides the one the source declares; NotUtf8 when its text does not decode as declared."""
    batches: list[pa.RecordBatch] = []
    geometries: list[np.ndarray] = []
    with pyogrio.open_arrow(path, layer=layer, batch_size=_BATCH_ROWS, datetime_as_string=True,
                            use_pyarrow=True, encoding=encoding) as (meta, reader):
        name = meta["geometry_name"] or "wkb_geometry"
        for batch in reader:
            index = batch.schema.get_field_index(name)
            if index < 0:
                raise ValueError("the layer has no geometry")
            wkb = batch.column(index)
            if isinstance(wkb.type, pa.BaseExtensionType):  # geoarrow.wkb
                wkb = wkb.storage
            batch = _as_text(batch.remove_column(index))
            if invalid := _not_utf8(batch):  # at the first batch that has such bytes, before the rest is read
                raise NotUtf8(invalid)
            shapes = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
            geometries.append(shapely.force_2d(shapes) if shapely.has_z(shapes).any() else shapes)
            batches.append(batch)
        schema = _as_text(pa.RecordBatch.from_pylist([], reader.schema.remove(reader.schema.get_field_index(name))))
    table = pa.Table.from_batches(batches, schema.schema)
    del batches
    # a column at a time, each one's Arrow buffers let go as it is converted (no consolidated copy of them all)
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    for dtype, column in zip(meta["dtypes"], meta["fields"], strict=True):
        if dtype is not None and dtype.startswith("datetime") and dtype != "datetime64[D]":
            frame[column] = _try_parse_datetime(frame[column], False, True)  # read_dataframe's defaults
    for subtype, column in zip(meta["ogr_subtypes"], meta["fields"], strict=True):
        if subtype == "OFSTJSON" and pd.api.types.infer_dtype(frame[column]) == "string":
            frame[column] = _parsed_json(frame[column])
    geometry = np.concatenate(geometries) if geometries else np.empty(0, dtype=object)
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=meta["crs"], copy=False)  # the columns as converted


def _as_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """GDAL's JSON fields (`arrow.json`), which pandas cannot convert, as their text (parsed later as
    read_dataframe parses them)."""
    columns = [column.storage if isinstance(column.type, pa.BaseExtensionType) else column for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _not_utf8(batch: pa.RecordBatch) -> list[str]:
    """The text columns holding bytes that are not UTF-8 (GDAL hands a source's bytes over as they are when
    its declared encoding is UTF-8, and pandas fails on them)."""
    invalid = []
    for column, field in zip(batch.columns, batch.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                invalid.append(field.name)
    return invalid


def _parsed_json(column: pd.Series) -> pd.Series:
    """A JSON field's values parsed, as read_dataframe parses them; GDAL also gives that type to a GeoJSON
    property holding numbers in some features and text in others ("n/a"), which is kept as text for the
    standardiser to read what numbers it can."""
    try:
        return column.map(json.loads, na_action="ignore")
    except ValueError:
        return column


def _single_points(frame: gpd.GeoDataFrame, name: str) -> list[str]:
    """Multi-points of one point (some writers store every point so) as points; a feature of several points
    shares one record's values among them (a dissolved export), so its points are not machine records."""
    kinds = shapely.get_type_id(frame.geometry.values)
    multi = kinds == shapely.GeometryType.MULTIPOINT
    if not multi.any():
        return []
    parts = np.zeros(len(frame), dtype=int)
    parts[multi] = shapely.get_num_geometries(frame.geometry.values[multi])
    if (parts > 1).any():
        raise ReaderError(name, f"{int((parts > 1).sum())} features are multi-points of several points (up to "
                                f"{int(parts.max())}), which share one record's values (a dissolved export): "
                                "export one point per record")
    one = parts == 1
    if not one.any():
        return []  # empty multi-points only: records without a position, as empty points are
    geometry = frame.geometry.values.copy()
    geometry[one] = shapely.get_geometry(geometry[one], 0)
    frame[frame.geometry.name] = geometry
    return [f"{int(one.sum())} multi-points of one point read as points"]


def _read_text_as_written(detected: DetectedFile) -> tuple[gpd.GeoDataFrame, list[str]]:
    """The layer, with the note of how its text was decoded when not as declared. A .cpg saying UTF-8 over a
    DBF written in the Windows code page (as re-saved files often have) is read as Windows-1252 when the
    DBF's own language driver names that code page or none; naming another, or in a GeoJSON or GeoPackage
    (UTF-8 by definition), bytes that are not UTF-8 fail the file with the columns, not a guess."""
    name = detected.primary.name
    try:
        return _read_frame(detected.primary, detected.layer), []
    except NotUtf8 as bad:
        if detected.file_format != "SHAPEFILE":
            raise ReaderError(name, f"cannot be read: {bad}") from bad
        columns = bad.columns
    dbf = next(m for m in detected.members if m.suffix.lower() == ".dbf")
    with dbf.open("rb") as header:
        driver = header.read(32)[29]  # the DBF header's language driver id
    if driver not in WINDOWS_ANSI_DRIVERS:
        raise ReaderError(name, f"cannot be read: the text of {columns} is not UTF-8 as its .cpg says, and the DBF's "
                                f"language driver ({driver:#04x}) names another code page; save it with a .cpg "
                                "naming its encoding")
    frame = _read_frame(detected.primary, detected.layer, encoding=FALLBACK_ENCODING)
    return frame, [f"the DBF's text ({columns}) is not the UTF-8 its .cpg names, and its language driver "
                   f"({driver:#04x}) names Windows ANSI or nothing: read as {FALLBACK_ENCODING} (if the text looks "
                   "wrong, the DBF is in another code page: name it in the .cpg)"]


def read_vector(detected: DetectedFile) -> SourceTable:
    """Read every feature; polygons are kept, CRS is resolved, and JD metadata units are attached."""
    if detected.file_format == "SHAPEFILE":
        _check_shapefile_set(detected)
        check_shapefile_integrity(detected)
    name = detected.primary.name
    try:
        info = pyogrio.read_info(detected.primary, layer=detected.layer)
        frame, encoding_notes = _read_text_as_written(detected)
    except ReaderError:
        raise
    except Exception as exc:  # GDAL raises several types; all mean the same to the user
        raise ReaderError(name, f"cannot be read as {detected.file_format.lower()}: {exc}") from exc
    if len(frame) == 0:
        raise ReaderError(name, "contains no features")
    if (frame.geometry.isna() | frame.geometry.is_empty).all():
        raise ReaderError(name, f"has no position: all {len(frame)} features have an empty geometry")

    notes = encoding_notes + _single_points(frame, name)
    source_crs = info.get("crs")
    if frame.crs is None:
        bounds = np.asarray(frame.total_bounds, dtype=float)
        if _looks_like_lonlat(bounds):
            frame = frame.set_crs(WGS84)
            notes.append("no CRS in the source (.prj missing); coordinates are longitude/latitude, read as WGS84")
            source_crs = None
        else:
            raise ReaderError(name, "has no CRS (.prj missing) and its coordinates are not longitude/latitude "
                                    f"(bounds {bounds.round(1).tolist()}), so they cannot be placed on the map")
    elif not frame.crs.equals(WGS84):
        frame = frame.to_crs(WGS84)
    notes.extend(_unquote(frame))

    metadata = read_deere_metadata(detected.members) if detected.file_format == "SHAPEFILE" else None
    units: dict[str, str] = {}
    hints: dict[str, object] = {}
    if metadata:
        for attribute in metadata.get("DataAttributes", []):
            unit = leaf_unit(attribute.get("Unit"))
            if unit:
                units[attribute["Name"]] = unit
        hints.update({
            "operation": metadata.get("Operation"),
            "crop": metadata.get("CropToken"),
            "season": metadata.get("CropSeason"),
            "field": metadata.get("FieldName"),
            "farm": metadata.get("FarmName"),
            "grower": metadata.get("ClientName"),
            "machines": metadata.get("MachineUsage") or {},
        })
        notes.append("units and operation from the John Deere metadata JSON")
    columns = [c for c in frame.columns if c != frame.geometry.name]
    dialect = _dialect(columns, metadata is not None)
    if dialect == "JOHN_DEERE" and not metadata:
        # Operations Center names exports "Client-Farm-Field-Crop[-n]"; the crop segment is the only crop
        # name such a file carries (its Crop column is a numeric id).
        parts = detected.primary.stem.split("-")
        if len(parts) >= 4:
            hints["crop"] = parts[3].strip()
            notes.append(f"crop '{hints['crop']}' from the Operations Center export name")
    return SourceTable(frame=frame, dialect=dialect, source_crs=str(source_crs) if source_crs else None,
                       units=units, hints=hints, notes=notes)
