"""Merging processed files into one machine file (Leaf's POST /files/merge).

The merged file is a new machine file (`origin` merged, `sources`) whose raw and standard points are its
sources' points together; it then runs through the downstream steps like any other file. The merge request
answers Leaf's `SENT_TO_MERGE`; the file itself is `processing` (Leaf's file statuses) until its run reports.
"""

from __future__ import annotations

import uuid
from typing import Any

import geopandas as gpd
import pandas as pd

from .errors import MergeError
from .model import utc_now
from .standard.units import convert, is_known
from .storage import Storage

SENT_TO_MERGE = "SENT_TO_MERGE"


def validate(storage: Storage, ids: list[str]) -> list[dict[str, Any]]:
    if len(ids) < 2 or len(set(ids)) != len(ids):
        raise MergeError("merge needs two or more different file ids")
    records = []
    for file_id in ids:
        record = storage.records.get("files", file_id)
        if record is None:
            raise MergeError(f"file {file_id} not found")
        records.append(record)
    users = {r.get("leafUserId") for r in records}
    if len(users) > 1:
        raise MergeError(f"all files must belong to the same leafUserId (found {', '.join(sorted(map(str, users)))})")
    operations = {r.get("operationType") for r in records}
    if len(operations) > 1:
        raise MergeError(f"all files must have the same operationType (found {', '.join(sorted(map(str, operations)))})")
    not_processed = [r["id"] for r in records if r.get("status") != "processed"]
    if not_processed:
        raise MergeError(f"all files must have status processed (not: {', '.join(not_processed)})")
    return records


def create(storage: Storage, ids: list[str]) -> dict[str, Any]:
    """Validate and register the merged file, `processing` until its run reports."""
    records = validate(storage, ids)
    first = records[0]
    record = {
        "id": str(uuid.uuid4()), "batchId": None, "leafUserId": first["leafUserId"], "provider": first.get("provider"),
        "apiOwnerUsername": first.get("apiOwnerUsername"),
        "fileName": f"merged ({len(records)} files)", "fileFormat": "MERGED", "origin": "merged",
        "sources": [r["id"] for r in records], "createdTime": utc_now(), "members": [], "primary": None,
        "sizeInBytes": sum(r.get("sizeInBytes") or 0 for r in records),
    }
    storage.records.put("files", record["id"], "registration", record)
    return storage.records.get("files", record["id"]) or record


def operation_type(storage: Storage, record: dict[str, Any]) -> str:
    """A merged file's operation type: its sources' (`validate` made sure they share one)."""
    return str(storage.records.get("files", record["sources"][0])["operationType"])  # type: ignore[index]


def combine(frames: list[gpd.GeoDataFrame], units: list[dict[str, str]]) -> tuple[gpd.GeoDataFrame, dict[str, str]]:
    """Stack sources' points, converting each property to the first source's unit (crops are Leaf's names
    already, so the merged file's `crops` is the list of its sources' crops)."""
    target = dict(units[0])
    for extra in units[1:]:
        for prop, unit in extra.items():
            target.setdefault(prop, unit)
    converted = []
    for frame, frame_units in zip(frames, units):
        frame = frame.copy()
        for prop, unit in frame_units.items():
            want = target.get(prop)
            if prop in frame.columns and want and unit != want and is_known(unit) and is_known(want):
                frame[prop] = convert(frame[prop].to_numpy(dtype=float), unit, want)
        converted.append(frame)
    merged = pd.concat(converted, ignore_index=True)
    return gpd.GeoDataFrame(merged, geometry="geometry", crs=frames[0].crs), target


def source_points(storage: Storage, record: dict[str, Any], table: str) -> list[gpd.GeoDataFrame]:
    return [storage.read_geoparquet(table, source).drop(columns=["file_id"], errors="ignore")
            for source in record["sources"]]


def source_units(storage: Storage, record: dict[str, Any]) -> list[dict[str, str]]:
    return [r.get("units") or {} for r in storage.records.many("files", record["sources"])]


__all__ = ["SENT_TO_MERGE", "combine", "create", "operation_type", "source_points", "source_units",
           "validate"]
