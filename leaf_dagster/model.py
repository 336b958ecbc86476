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
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

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
