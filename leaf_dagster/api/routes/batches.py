"""Leaf's batch endpoints: the upload (streamed to the inbox for the sensor), batch lists, a batch, its files'
status and its retry."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from ... import run_requests
from ...errors import UploadError
from ...identifiers import check_id
from ...ingest.batch import batch_id_for, new_batch, sidecar_for
from ...objects import batch_object, batch_status
from ...model import leaf_provider
from ...query import BATCH_FILTERS, list_batches
from ..deps import BASE, ERRORS, LeafRoute, OwnedBatch, Owner, StorageDep, page_headers, settings
from ..models import BatchObject, BatchStatus, Error, NewBatch, RetriedBatch
from ..partials import partial_upload
from ..streaming import FORM_FIELDS, receive_zip

router = APIRouter(prefix=f"{BASE}/batch", tags=["batches"], responses=ERRORS, route_class=LeafRoute)

# The upload's body as /openapi.json shows it; the route reads it as a stream (streaming.receive_zip), so
# FastAPI never holds an upload of gigabytes in memory or a temporary file.
UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "the zip of machine files"},
                   **{name: {"type": "string", "description": f"{name}, when not in the query"} for name in FORM_FIELDS}},
}}}}


async def _idle_limited(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """The request body, refused when the client sends nothing for `seconds`."""
    iterator = chunks.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), seconds)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise UploadError(f"the upload stalled: nothing received for {seconds:g} s") from None
        yield chunk


@router.post("", summary="Upload a file", response_model=NewBatch, openapi_extra={"requestBody": UPLOAD_BODY},
             responses={507: {"model": Error, "description": "The server could not store the upload (a full disk)"}})
async def upload(request: Request, who: Owner, storage: StorageDep, leafUserId: str | None = None,
                 provider: str | None = None, fileFormat: str | None = None) -> dict[str, Any]:
    # streamed to a locked inbox/.<token>.part, renamed to inbox/<token>.zip: the user's file name is
    # kept in the batch record and never becomes a path
    limits = settings(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes + 1_000_000:
        raise UploadError(f"the upload is larger than the {limits.max_upload_bytes} bytes allowed")
    if leafUserId is not None:
        check_id("leafUserId", leafUserId)
    storage.inbox.mkdir(parents=True, exist_ok=True)
    with partial_upload(storage.inbox) as (partial, sink):
        received = await receive_zip(_idle_limited(request.stream(), limits.idle_seconds),
                                     request.headers.get("content-type", ""), sink, limits.max_upload_bytes)
        user = leafUserId or received["fields"].get("leafUserId")
        source = provider or received["fields"].get("provider")
        missing = [name for name, value in (("leafUserId", user), ("provider", source)) if not value]
        if missing:
            raise UploadError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required "
                              "(in the query or the form)")
        check_id("leafUserId", user)
        source = leaf_provider(source)
        target = storage.inbox / f"{partial.name[1:-len('.part')]}.zip"
        batch_id = batch_id_for(partial, user, source)
        file_format = fileFormat or received["fields"].get("fileFormat")
        # the sidecar is in place before the zip appears, so the inbox sensor never sees this upload without
        # its owner and user, whatever stops this request between the two
        sidecar = {"leafUserId": user, "provider": source, "fileFormat": file_format,
                   "fileName": received["fileName"], "apiOwnerUsername": who, "batchId": batch_id}
        with storage.atomic_path(sidecar_for(target)) as tmp:
            tmp.write_text(json.dumps(sidecar))
        os.replace(partial, target)
        storage.publish(target)
    record = new_batch(storage, batch_id, target, user, source, file_format, file_name=received["fileName"], owner=who)
    return {k: record[k] for k in NewBatch.model_fields}


@router.get("", summary="Get all batches", response_model=list[BatchObject])
def get_batches(request: Request, response: Response, who: Owner, storage: StorageDep, leafUserId: str | None = None,
                status: str | None = None, uploadStartTime: str | None = None, uploadEndTime: str | None = None,
                processStartTime: str | None = None, processEndTime: str | None = None, page: str | None = None,
                size: str | None = None, sort: Annotated[list[str] | None, Query()] = None) -> list[dict[str, Any]]:
    filters = {k: v for k, v in request.query_params.items() if k in BATCH_FILTERS}
    result = list_batches(storage, owner=who, page=page, size=size, sort=sort, **filters)
    page_headers(request, response, result.total, result.page, result.size)
    return result.items


@router.get("/{batch_id}", summary="Get a batch", response_model=BatchObject)
def get_batch(record: OwnedBatch) -> dict[str, Any]:
    return batch_object(record)


@router.get("/{batch_id}/status", summary="Get batch files status", response_model=BatchStatus)
def get_batch_status(record: OwnedBatch, storage: StorageDep) -> dict[str, Any]:
    return batch_status(storage, record)


@router.put("/{batch_id}/retry", summary="Retry a batch", response_model=RetriedBatch,
            description="Runs again what did not succeed (Leaf's answer: the batch, RECEIVED or PROCESSING). A batch "
                        "with nothing to retry (still in progress, every file processed, or failed in a way a run "
                        "would repeat) is returned unchanged, with a 200 like any retry; `message` says which.")
def retry(record: OwnedBatch, storage: StorageDep) -> dict[str, Any]:
    retried, plan = run_requests.request_retry(storage, record)
    return {**batch_object(retried), "message": plan.message}
