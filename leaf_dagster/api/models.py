"""The API's answers as pydantic models: what /openapi.json documents and what every answer is checked against.

They follow Leaf's objects as leaf_dagster.objects builds them (file, batch, status, summary Feature, page
of files). Where Leaf's object is open (a file, a batch, a summary), the model allows extra keys, so a key
a record gains reaches clients without a model change; answers carry exactly the keys the object has
(routes leave unset fields out), never a null the object did not hold.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..model import BatchStatusName


class Error(BaseModel):
    """The one body of every error: `{"status": <HTTP status>, "message": "<what was wrong>"}`."""
    status: int = Field(description="the HTTP status, repeated")
    message: str = Field(description="what was wrong, in words")


class Open(BaseModel):
    """An object of Leaf's that may carry more keys than those named."""
    model_config = ConfigDict(extra="allow")


class StepStatus(BaseModel):
    status: str = Field(description="processing, processed or failed")
    message: str


# GET /files/{id}/status and a file's `steps`: {step: {status, message}} in Leaf's step order (objects.STEP_ORDER).
Status = dict[str, StepStatus]


class Feature(Open):
    """A GeoJSON Feature: the file's summary (its properties) over its coverage (its geometry)."""
    type: str = "Feature"
    properties: dict[str, Any] | None = None
    geometry: dict[str, Any] | None = None


class FileObject(Open):
    """Leaf's machine file (model.FILE_OBJECT_KEYS, typed as model.py types them: tests/test_openapi.py checks
    that they agree), with its steps, summary and output URLs once they exist."""
    id: str
    batchId: str | None = None
    leafUserId: str | None = None
    apiOwnerUsername: str | None = None
    provider: str | None = None
    fileName: str | None = None
    fileFormat: str | None = None
    origin: str | None = Field(None, description="uploaded or merged")
    status: str | None = Field(None, description="processing, processed or failed")
    operationType: str | None = None
    originalOperationType: str | None = None
    createdTime: str | None = None
    updatedTime: str | None = None
    sizeInBytes: int | None = None
    startTime: str | None = None
    endTime: str | None = None
    crops: list[Any] | None = None
    varieties: list[Any] | None = None
    fields: list[str] = Field(default_factory=list, description="ids of the user's fields the file covers")
    sources: list[str] | None = Field(None, description="a merged file's source file ids")
    pointCount: int | None = None
    organizationId: str | None = None
    providerFileId: str | None = None
    standard: bool | None = None
    terminalTotals: dict[str, Any] | None = None
    steps: Status
    summary: Feature | None = None
    originalFile: str | None = None
    downloadOriginalFile: str | None = None
    rawGeojson: str | None = None
    downloadRawGeojson: str | None = None
    standardGeojson: str | None = None
    downloadStandardGeojson: str | None = None
    filteredGeojson: str | None = None
    downloadFilteredGeojson: str | None = None
    zippedPNGs: str | None = None
    downloadZippedPNGs: str | None = None


class FilesPage(BaseModel):
    """One page of GET /files; X-Total-Count and Link (first, last, next, prev) are in the headers."""
    operations: list[FileObject]


class NewBatch(Open):
    """A batch as POST /batch answers it: received, not yet processed."""
    id: str
    leafUserId: str | None = None
    fileName: str | None = None
    size: int | None = None
    provider: str | None = None
    status: BatchStatusName = Field(description="RECEIVED, then PROCESSING, then PROCESSED or FAILED")
    uploadTimestamp: str | None = None


class BatchObject(NewBatch):
    """Leaf's batch (model.BATCH_OBJECT_KEYS, typed as model.py types them)."""
    leafFiles: list[str] | None = None
    statusDetails: str | None = None
    processedTimestamp: str | None = None


class RetriedBatch(BatchObject):
    message: str = Field(description="what the retry does, or why there is nothing to retry")


class FileIds(BaseModel):
    leafFiles: list[str]


class FailedStep(FileIds):
    status: str
    message: str = Field(description="the step's message for the first file")
    messages: dict[str, str] = Field(description="file id -> the step's message for that file")


class BatchStatus(BaseModel):
    """Leaf's GET /batch/{id}/status: the batch's files by outcome, the failed ones by failing step."""
    converted: FileIds
    processing: FileIds
    failed: dict[str, FailedStep]


class OutsideField(BaseModel):
    """A file's points outside its user's fields (GeoJSON), listed with the file's id."""
    id: str | None = None
    fields: list[str]
    featureCount: int
    outsideFieldGeojson: str
    downloadOutsideFieldGeojson: str


class UncoveredFiles(BaseModel):
    files: list[str]


class MergeAccepted(BaseModel):
    id: str = Field(description="the merged file's id")
    status: str


class StandardGeoparquet(BaseModel):
    downloadStandardGeoparquet: str


class PolygonGeoparquet(BaseModel):
    downloadPolygonGeoparquet: str


class Image(BaseModel):
    """A property's PNG map: its colour ramp and where to get it."""
    property: str
    ramp: Any
    url: str
    downloadUrl: str


class Area(BaseModel):
    value: float
    unit: str


class FieldObject(BaseModel):
    """A Leaf user's field boundary."""
    id: str
    name: str | None = Field(description="the name the user gave the field, null when it has none")
    leafUserId: str
    area: Area
    geometry: dict[str, Any]


class ListedField(FieldObject):
    files: list[str] = Field(description="ids of the user's files that cover the field")
