"""Leaf's JSON objects (file, batch) built from our records, with internal bookkeeping left out."""

from __future__ import annotations

from typing import Any

from .status import status_object

FILE_KEYS = ["id", "batchId", "leafUserId", "apiOwnerUsername", "provider", "fileName", "fileFormat", "origin",
             "status", "operationType", "originalOperationType", "createdTime", "updatedTime", "sizeInBytes",
             "startTime", "endTime", "crops", "varieties", "fields", "sources", "pointCount"]
BATCH_KEYS = ["id", "leafUserId", "fileName", "size", "provider", "status", "uploadTimestamp", "leafFiles",
              "statusDetails"]


def file_object(record: dict[str, Any]) -> dict[str, Any]:
    """The file object with its per-step status (`steps`)."""
    out = {k: record.get(k) for k in FILE_KEYS if k in record}
    out.setdefault("fields", [])
    out["steps"] = status_object(record)
    return out


def batch_object(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in BATCH_KEYS}
