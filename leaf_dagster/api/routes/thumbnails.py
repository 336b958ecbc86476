"""A file's coverage map thumbnail behind a capability URL: the token in the path is the permission, so a
page or a chat can show it without the API token."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from ...identifiers import is_uuid
from ..deps import ERRORS, LeafRoute, StorageDep, binary

router = APIRouter(prefix="/thumbnails", tags=["thumbnails"], route_class=LeafRoute,
                   responses={400: ERRORS[400], 404: ERRORS[404], **binary("image/png", "The coverage map")})


@router.get("/{file_id}/{token}.png", summary="A file's coverage map thumbnail (capability URL)",
            response_class=FileResponse)
def thumbnail(file_id: str, token: str, storage: StorageDep) -> FileResponse:
    record = storage.records.get("files", file_id) if is_uuid(file_id) else None
    expected = (record or {}).get("thumbnailToken") or ""
    if not expected or not secrets.compare_digest(expected.encode(), token.encode()) \
            or not (path := storage.fetch(storage.file_dir(file_id) / "summary-map.png")).is_file():
        raise HTTPException(404, "no such thumbnail")
    return FileResponse(path, media_type="image/png")
