"""The work of each per-file step, independent of Dagster: the assets call these, tests can too.

A file's record (lake/files/<id>.json) is Leaf's file object plus what later steps need: the reader's
dialect, units, hints and notes are stored after the raw step so the standard step can rebuild the
source table from the raw GeoParquet alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd

from .ingest.batch import link_members, utc_now
from .ingest.detect import DetectedFile
from .readers import ReaderError, SourceTable, read_machine_file
from .standard.standardize import StandardResult, standardize
from .standard.times import format_utc
from .storage import Storage

FILE_ID_COLUMN = "file_id"


class FileSteps:
    """Steps of one machine file, reading and writing through `storage`."""

    def __init__(self, storage: Storage, file_id: str):
        self.storage = storage
        self.file_id = file_id

    @property
    def record(self) -> dict[str, Any]:
        record = self.storage.read_record("files", self.file_id)
        if record is None:
            raise KeyError(f"machine file {self.file_id} is not registered")
        return record

    def update(self, **changes: Any) -> dict[str, Any]:
        return self.storage.update_record("files", self.file_id, updatedTime=utc_now(), **changes)

    def store_original(self) -> tuple[dict[str, Any], list[Path]]:
        record = self.record
        placed = link_members(self.storage, record)
        return record, placed

    def _detected(self, record: dict[str, Any]) -> DetectedFile:
        folder = self.storage.original_dir(self.file_id)
        members = [folder / Path(m).name for m in record["members"]]
        return DetectedFile(record["fileName"], record["fileFormat"], folder / Path(record["primary"]).name,
                            members, layer=record.get("layer"), unsupported_reason=record.get("unsupportedReason"))

    def read_raw(self) -> SourceTable:
        """Read the source and store raw GeoParquet; raises ReaderError for unreadable input."""
        record = self.record
        try:
            source = read_machine_file(self._detected(record))
        except ReaderError:
            raise
        except Exception as exc:  # a reader bug or an input no reader anticipated: still the file's failure
            raise ReaderError(record["fileName"], f"unexpected {type(exc).__name__}: {exc}") from exc
        frame = source.frame.copy()
        frame.insert(0, FILE_ID_COLUMN, self.file_id)
        frame.columns = [str(c) for c in frame.columns]
        self.storage.write_geoparquet("raw", self.file_id, frame)
        self.update(raw={"dialect": source.dialect, "units": source.units, "hints": source.hints,
                         "notes": source.notes, "sourceCrs": source.source_crs, "recordCount": source.point_count})
        return source

    def load_raw(self) -> SourceTable:
        raw = self.record.get("raw") or {}
        frame = self.storage.read_geoparquet("raw", self.file_id).drop(columns=[FILE_ID_COLUMN])
        return SourceTable(frame=frame, dialect=raw.get("dialect", "GENERIC"), source_crs=raw.get("sourceCrs"),
                           units=raw.get("units", {}), hints=raw.get("hints", {}), notes=list(raw.get("notes", [])))

    def standardize(self) -> StandardResult:
        """Map to the standard schema; the GeoParquet is written only for a supported operation type."""
        result = standardize(self.load_raw())
        changes: dict[str, Any] = {"operationType": result.operation_type,
                                   "originalOperationType": result.original_operation_type,
                                   "notes": result.notes, "evidence": result.evidence}
        if result.frame is not None:
            frame: gpd.GeoDataFrame = result.frame
            frame.insert(0, FILE_ID_COLUMN, self.file_id)
            self.storage.write_geoparquet("standard", self.file_id, frame)
            stamps = frame["timestamp"].dropna()
            changes.update(
                pointCount=len(frame), crops=[result.crop] if result.crop else [],
                varieties=sorted(frame["variety"].dropna().astype(str).unique().tolist()) if "variety" in frame else [],
                units=result.units, missingProperties=result.missing,
                startTime=format_utc(stamps.min()) if len(stamps) else None,
                endTime=format_utc(stamps.max()) if len(stamps) else None,
            )
        self.update(**changes)
        return result

    @staticmethod
    def schema_failure(result: StandardResult) -> str | None:
        """Leaf's message for a standard step that must fail, or None."""
        if not result.supported:
            return f"unsupported operation type: {result.operation_type}"
        if result.missing:
            return f"missing required properties: {', '.join(result.missing)}"
        return None
