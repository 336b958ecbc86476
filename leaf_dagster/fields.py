"""Field boundaries per Leaf user, matching files to fields, outside-field points and uncovered files.

Boundaries live as files in <data>/owners/<owner>/users/<leafUserId>/fields/ (GeoJSON, shapefile sets,
GeoPackage, or zips of them): drop one in, add it with `leaf-dagster fields add`, or POST it to the API.
A user belongs to one API owner, so a file is only ever matched to the fields of its own owner's user.
Each polygon is a field; its id is derived from the owner, the user, the file and the feature's position,
so it is stable across reloads. Its name is the feature's `name` attribute when the file has one, else
the file's name. Boundaries of the layout before API owners (<data>/fields/<leafUserId>/) are moved into
this one the first time fields are read.

A file attaches to a field when their overlap reaches `fieldsAttachIntersection` percent of either the
field's area or the file's coverage (Leaf's "either ratio" intersect rule).
"""

from __future__ import annotations

import filecmp
import json
import shutil
import tempfile
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely

from .config import effective, legacy_owners
from .derived.geometry import metric_crs
from .errors import FieldError
from .identifiers import ID_PATTERN
from .storage import DEFAULT_OWNER, Storage, owner_of

BOUNDARY_SUFFIXES = {".geojson", ".json", ".shp", ".gpkg", ".zip"}
FIELD_NAMESPACE = uuid.UUID("8a4e4c1e-8f8e-4c52-9d5b-3a7f2f6c0b11")


def fields_dir(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> Path:
    migrate_legacy_fields(storage)
    return storage.synced(storage.user_path(owner, leaf_user_id, "fields"))


def migrate_legacy_fields(storage: Storage) -> None:
    """Move the boundaries of the layout before API owners (fields/<leafUserId>/) to the user of each owner
    that used them (config.legacy_owners), then match their files again, since field ids now name the
    owner. An old file goes once every copy of it is in place; one whose name is taken by a different
    file, or under no valid Leaf user id, stays where it is."""
    old = storage.root / "fields"
    if not old.is_dir():
        return
    moved: list[tuple[str, str]] = []
    for folder in sorted(p for p in old.iterdir() if p.is_dir() and ID_PATTERN.fullmatch(p.name)):
        owners = sorted(legacy_owners(storage, folder.name))
        for member in sorted(p for p in folder.iterdir() if p.is_file()):
            targets = {owner: storage.user_path(owner, folder.name, "fields", member.name) for owner in owners}
            with suppress(FileNotFoundError):  # another process moved it meanwhile
                for owner, target in targets.items():
                    if not target.exists():
                        with storage.atomic_path(target) as tmp:
                            shutil.copyfile(member, tmp)
                        moved.append((owner, folder.name))
                if all(filecmp.cmp(member, target, shallow=False) for target in targets.values()):
                    member.unlink()
        with suppress(OSError):
            folder.rmdir()
    with suppress(OSError):
        old.rmdir()
    for owner, leaf_user_id in sorted(set(moved)):
        rematch_user(storage, leaf_user_id, owner)


def _read_frame(source: Path | bytes, label: str) -> gpd.GeoDataFrame:
    """The polygons of one boundary file (or of its bytes), in WGS84; FieldError naming `label` otherwise."""
    try:
        frame = pyogrio.read_dataframe(source)
    except Exception as exc:  # GDAL's several error types
        raise FieldError(f"{label}: cannot be read as boundaries ({exc})") from exc
    if frame.crs is None:
        raise FieldError(f"{label}: boundaries need a coordinate reference system")
    frame = frame.to_crs(4326)
    frame = frame[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if frame.empty:
        raise FieldError(f"{label}: no polygons")
    return frame


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
            return pd.concat(frames, ignore_index=True)
    return _read_frame(path, path.name)


def _names(frame: gpd.GeoDataFrame, stem: str) -> list[str | None]:
    """The fields' names: a `name` attribute (any case) when the file has one, else the file's stem,
    numbered when it holds several polygons."""
    column = next((c for c in frame.columns if c.lower() == "name"), None)
    if column is not None:
        return [v.strip() if isinstance(v, str) and v.strip() else None for v in frame[column]]
    return [stem + (f" #{k}" if len(frame) > 1 else "") for k in range(1, len(frame) + 1)]


def load_fields(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> gpd.GeoDataFrame:
    """Every field of an owner's user: id, name, source file, geometry (WGS84)."""
    folder = fields_dir(storage, leaf_user_id, owner)
    rows = []
    if folder.exists():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in BOUNDARY_SUFFIXES or path.name.startswith("."):
                continue
            frame = _read_boundaries(path)
            for position, (name, geometry) in enumerate(zip(_names(frame, path.stem), frame.geometry)):
                rows.append({"id": str(uuid.uuid5(FIELD_NAMESPACE, f"{owner}/{leaf_user_id}/{path.name}/{position}")),
                             "name": name, "leafUserId": leaf_user_id, "sourceFile": path.name, "geometry": geometry})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=4326) if rows else \
        gpd.GeoDataFrame({"id": [], "name": [], "leafUserId": [], "sourceFile": []}, geometry=[], crs=4326)


def add_boundaries(storage: Storage, leaf_user_id: str, source: Path,
                   owner: str = DEFAULT_OWNER) -> list[dict[str, Any]]:
    """Copy a boundary file (a shapefile set travels with its siblings) into the user's folder, which is
    made only once the file has been read: refused input leaves nothing behind."""
    _read_boundaries(source)
    members = [source] if source.suffix.lower() != ".shp" else \
        [p for p in source.parent.iterdir() if p.stem == source.stem]
    folder = fields_dir(storage, leaf_user_id, owner)
    folder.mkdir(parents=True, exist_ok=True)
    for member in members:
        shutil.copyfile(member, folder / member.name)
        storage.publish(folder / member.name)
    return _added(storage, leaf_user_id, owner, source.name)


def add_geojson(storage: Storage, leaf_user_id: str, body: Any, owner: str = DEFAULT_OWNER) -> list[dict[str, Any]]:
    """Store a GeoJSON body (POST /users/{id}/fields) as one boundary file of the user, once it has been read,
    with the names the user gave (`boundary_collection`)."""
    text = json.dumps(boundary_collection(body))
    _read_frame(text.encode(), "the request body")
    target = fields_dir(storage, leaf_user_id, owner) / f"{uuid.uuid4()}.geojson"
    with storage.atomic_path(target) as tmp:
        tmp.write_text(text)
    return _added(storage, leaf_user_id, owner, target.name)


def boundary_collection(body: Any) -> dict[str, Any]:
    """A POSTed boundary as a FeatureCollection whose features carry the names the user gave: a feature's own
    `name` property, else the body's `name` (Leaf's field body `{name, geometry}`, or a collection's name;
    numbered when it covers several features), else none. Accepts a FeatureCollection, a Feature, a Polygon
    or MultiPolygon, or Leaf's `{name, geometry}`."""
    kind = body.get("type") if isinstance(body, dict) else None
    if kind == "FeatureCollection":
        features = body.get("features")
    elif kind == "Feature":
        features = [body]
    elif kind in ("Polygon", "MultiPolygon"):
        features = [{"type": "Feature", "geometry": body}]
    elif kind is None and isinstance(body, dict) and isinstance(body.get("geometry"), dict):
        features = [{"type": "Feature", "geometry": body["geometry"]}]
    else:
        raise FieldError("the body must be a GeoJSON FeatureCollection, Feature, Polygon or MultiPolygon, "
                         "or a field {\"name\": ..., \"geometry\": ...}")
    if not isinstance(features, list) or not features or \
            not all(isinstance(f, dict) and isinstance(f.get("properties") or {}, dict) for f in features):
        raise FieldError("the body's features must be a non-empty list of GeoJSON Features")
    given = body.get("name") if isinstance(body.get("name"), str) and body["name"].strip() else None
    named = []
    for number, feature in enumerate(features, start=1):
        properties = dict(feature.get("properties") or {})
        own = properties.get("name")
        if not (isinstance(own, str) and own.strip()):
            properties["name"] = given and (f"{given} #{number}" if len(features) > 1 else given)
        named.append({**feature, "type": "Feature", "properties": properties})
    return {"type": "FeatureCollection", "features": named}


def _added(storage: Storage, leaf_user_id: str, owner: str, source_name: str) -> list[dict[str, Any]]:
    """The fields a newly stored boundary file holds, after matching the user's files again."""
    fields = load_fields(storage, leaf_user_id, owner)
    added = fields[fields["sourceFile"] == source_name]
    rematch_user(storage, leaf_user_id, owner)
    return [field_object(row) for _, row in added.iterrows()]


def field_object(row: Any) -> dict[str, Any]:
    """Leaf's field object of a row of load_fields. A field without a name has the name None (JSON null): in a
    column that also holds names, pandas keeps a missing one as NaN."""
    utm = gpd.GeoSeries([row.geometry], crs=4326)
    area = float(utm.to_crs(metric_crs(utm)).area.iloc[0])
    name = row["name"] if isinstance(row["name"], str) else None
    return {"id": row["id"], "name": name, "leafUserId": row["leafUserId"], "area": {"value": area, "unit": "m2"},
            "geometry": shapely.geometry.mapping(row.geometry)}


def match_file(storage: Storage, file_id: str, fields: gpd.GeoDataFrame | None = None,
               record: dict[str, Any] | None = None) -> None:
    """Attach a processed file to its user's fields and write its outside-field points (when configured).
    `record` is the file's record when the caller holds it: a season-sized file's is megabytes of JSON to read."""
    if record is None:
        record = storage.records.get("files", file_id) or {}
    user = record.get("leafUserId")
    summary = record.get("summary")
    if not user or not summary:
        return
    config = effective(storage, user, owner_of(record))
    fields = load_fields(storage, user, owner_of(record)) if fields is None else fields
    matched: list[str] = []
    # the coverage of a season-sized file is megabytes of GeoJSON: made into a shape only when there are fields
    coverage = shapely.geometry.shape(summary["geometry"]) if len(fields) else None
    if coverage is not None and not coverage.is_empty:
        utm = metric_crs(gpd.GeoSeries([coverage], crs=4326))
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
    storage.records.put("files", file_id, "fields", changes)


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
        # the layer name becomes the collection's "name": the file's id and kind, not the temporary file's
        frame.to_crs(4326).to_file(tmp, driver="GeoJSON", layer=f"{file_id}-outside-field")
    return {"fields": matched, "featureCount": int(len(outside)), "path": str(target.relative_to(storage.root))}


def rematch_user(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> None:
    """Re-run matching for every processed file of an owner's user (after boundaries change)."""
    fields = load_fields(storage, leaf_user_id, owner)
    for record in storage.records.owner_files(owner, leaf_user_id):
        if record.get("status") == "processed":
            match_file(storage, record["id"], fields)


def list_fields(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> list[dict[str, Any]]:
    fields = load_fields(storage, leaf_user_id, owner)
    matches: dict[str, list[str]] = {}
    for record in storage.records.owner_files(owner, leaf_user_id):
        for field_id in record.get("fields") or []:
            matches.setdefault(field_id, []).append(record["id"])
    return [{**field_object(row), "files": sorted(matches.get(row["id"], []))} for _, row in fields.iterrows()]


