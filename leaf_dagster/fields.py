"""Field boundaries per Leaf user, matching files to fields, outside-field points and uncovered files.

Boundaries live as files in <data>/owners/<owner>/users/<leafUserId>/fields/ (GeoJSON, shapefile sets,
GeoPackage, or zips of them): drop one in, or add it with `leaf-dagster fields add`. A user belongs to one
API owner, so a file is only ever matched to the fields of its own owner's user. Each polygon is a field;
its id is derived from the owner, the user, the file and the feature's position, so it is stable across
reloads.

A file attaches to a field when their overlap reaches `fieldsAttachIntersection` percent of either the
field's area or the file's coverage (Leaf's "either ratio" intersect rule).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely

from .config import effective
from .errors import FieldError
from .ingest.batch import utc_now
from .storage import DEFAULT_OWNER, Storage, owner_of

BOUNDARY_SUFFIXES = {".geojson", ".json", ".shp", ".gpkg", ".zip"}
FIELD_NAMESPACE = uuid.UUID("8a4e4c1e-8f8e-4c52-9d5b-3a7f2f6c0b11")


def fields_dir(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> Path:
    return storage.user_path(owner, leaf_user_id, "fields")


def _read_boundaries(path: Path) -> gpd.GeoDataFrame:
    if path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            from .ingest.safe_zip import extract_archive

            extract_archive(path, Path(tmp))
            frames = [_read_boundaries(p) for p in sorted(Path(tmp).rglob("*"))
                      if p.suffix.lower() in BOUNDARY_SUFFIXES - {".zip"} and "__MACOSX" not in p.parts
                      and not p.name.startswith("._")]
            if not frames:
                raise FieldError(f"{path.name}: no boundary file inside")
            return pd.concat(frames, ignore_index=True)  # type: ignore[return-value]
    try:
        frame = pyogrio.read_dataframe(path)
    except Exception as exc:  # GDAL's several error types
        raise FieldError(f"{path.name}: cannot be read as boundaries ({exc})") from exc
    if frame.crs is None:
        raise FieldError(f"{path.name}: boundaries need a coordinate reference system")
    frame = frame.to_crs(4326)
    frame = frame[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if frame.empty:
        raise FieldError(f"{path.name}: no polygons")
    return frame


def load_fields(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> gpd.GeoDataFrame:
    """Every field of an owner's user: id, name, source file, geometry (WGS84)."""
    folder = fields_dir(storage, leaf_user_id, owner)
    rows = []
    if folder.exists():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in BOUNDARY_SUFFIXES or path.name.startswith("."):
                continue
            frame = _read_boundaries(path)
            for position, geometry in enumerate(frame.geometry):
                rows.append({"id": str(uuid.uuid5(FIELD_NAMESPACE, f"{owner}/{leaf_user_id}/{path.name}/{position}")),
                             "name": f"{path.stem}" + (f" #{position + 1}" if len(frame) > 1 else ""),
                             "leafUserId": leaf_user_id, "sourceFile": path.name, "geometry": geometry})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=4326) if rows else \
        gpd.GeoDataFrame({"id": [], "name": [], "leafUserId": [], "sourceFile": []}, geometry=[], crs=4326)


def add_boundaries(storage: Storage, leaf_user_id: str, source: Path,
                   owner: str = DEFAULT_OWNER) -> list[dict[str, Any]]:
    """Copy a boundary file (a shapefile set travels with its siblings) into the user's folder."""
    folder = fields_dir(storage, leaf_user_id, owner)
    folder.mkdir(parents=True, exist_ok=True)
    _read_boundaries(source)  # refuse unreadable input before storing it
    members = [source] if source.suffix.lower() != ".shp" else \
        [p for p in source.parent.iterdir() if p.stem == source.stem]
    for member in members:
        shutil.copyfile(member, folder / member.name)
    fields = load_fields(storage, leaf_user_id, owner)
    added = fields[fields["sourceFile"] == source.name]
    rematch_user(storage, leaf_user_id, owner)
    return [field_object(row) for _, row in added.iterrows()]


def field_object(row: Any) -> dict[str, Any]:
    utm = gpd.GeoSeries([row.geometry], crs=4326)
    area = float(utm.to_crs(utm.estimate_utm_crs()).area.iloc[0])
    return {"id": row["id"], "name": row["name"], "leafUserId": row["leafUserId"], "area": {"value": area, "unit": "m2"},
            "geometry": shapely.geometry.mapping(row.geometry)}


def match_file(storage: Storage, file_id: str, fields: gpd.GeoDataFrame | None = None) -> dict[str, Any]:
    """Attach a processed file to its user's fields and write its outside-field points (when configured)."""
    record = storage.read_record("files", file_id) or {}
    user = record.get("leafUserId")
    summary = (storage.read_record("summaries", file_id) or {}).get("summary")
    if not user or not summary:
        return record
    config = effective(storage, user, owner_of(record))
    fields = load_fields(storage, user, owner_of(record)) if fields is None else fields
    coverage = shapely.geometry.shape(summary["geometry"])
    matched: list[str] = []
    if len(fields) and not coverage.is_empty:
        utm = gpd.GeoSeries([coverage], crs=4326).estimate_utm_crs()
        cover = gpd.GeoSeries([coverage], crs=4326).to_crs(utm).iloc[0]
        threshold = float(config["fieldsAttachIntersection"]) / 100.0
        for field_id, geometry in zip(fields["id"], fields.geometry.to_crs(utm)):
            overlap = cover.intersection(geometry).area
            if overlap > 0 and (overlap / geometry.area >= threshold or overlap / cover.area >= threshold):
                matched.append(field_id)
    changes: dict[str, Any] = {"fields": matched, "uncovered": not matched}
    if config["splitOperationsByField"] and config["enableOutsideFieldGeojson"]:
        changes["outsideField"] = _write_outside(storage, file_id, fields, matched)
    else:
        changes["outsideField"] = None
    return storage.update_record("files", file_id, updatedTime=utc_now(), **changes)


def _write_outside(storage: Storage, file_id: str, fields: gpd.GeoDataFrame, matched: list[str]) -> dict[str, Any]:
    points = storage.read_geoparquet("standard", file_id)
    if len(fields):
        inside = points.geometry.to_crs(4326).intersects(fields.geometry.union_all()) if len(points) else []
        outside = points[~pd.Series(inside, index=points.index)]
    else:
        outside = points
    target = storage.file_dir(file_id) / "outside_field.geojson"
    with storage.atomic_path(target) as tmp:
        frame = outside.drop(columns=["file_id"], errors="ignore")
        frame = frame.assign(**{c: frame[c].astype(str) for c in frame.columns
                                if c != "geometry" and frame[c].dtype == object})
        frame.to_crs(4326).to_file(tmp, driver="GeoJSON")
    return {"fields": matched, "featureCount": int(len(outside)), "path": str(target.relative_to(storage.root))}


def user_files(storage: Storage, leaf_user_id: str, owner: str) -> list[dict[str, Any]]:
    """The file records of one owner's user."""
    return [r for r in storage.records("files") if r.get("leafUserId") == leaf_user_id and owner_of(r) == owner]


def rematch_user(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> None:
    """Re-run matching for every processed file of an owner's user (after boundaries change)."""
    fields = load_fields(storage, leaf_user_id, owner)
    for record in user_files(storage, leaf_user_id, owner):
        if record.get("status") == "processed":
            match_file(storage, record["id"], fields)


def list_fields(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> list[dict[str, Any]]:
    fields = load_fields(storage, leaf_user_id, owner)
    matches: dict[str, list[str]] = {}
    for record in user_files(storage, leaf_user_id, owner):
        for field_id in record.get("fields") or []:
            matches.setdefault(field_id, []).append(record["id"])
    return [{**field_object(row), "files": sorted(matches.get(row["id"], []))} for _, row in fields.iterrows()]


