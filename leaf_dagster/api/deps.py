"""What the routers share: the app's settings, the owner a Bearer token names, owned records and URLs.

Routes take them as `Annotated` dependencies (`who: Owner`, `storage: StorageDep`, `record: OwnedFile`), so
the token check comes before anything else a route does and /openapi.json declares the Bearer scheme.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..identifiers import is_uuid
from ..objects import file_object
from ..storage import Storage, owner_of
from .models import Error

BASE = "/services/operations/api"
FIELDS = "/services/fields/api"
CONFIG = "/services/config/api"

# The error answers every route can give, documented with the one error shape.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Bad request: a parameter, the body or the upload is refused"},
    401: {"model": Error, "description": "No valid Bearer token"},
    404: {"model": Error, "description": "Not found (or another owner's)"},
}


def binary(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    """The 200 answer of a download route: `what`, as bytes of `media_type`."""
    return {200: {"description": what, "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}}


def attachment(name: str) -> dict[str, str]:
    """The Content-Disposition header of a download saved as `name` (RFC 6266): `filename*` holds the exact name,
    UTF-8 percent-encoded (RFC 5987), and `filename` an ASCII stand-in for clients that read only that one.

    The stand-in keeps a name's letters without their accents (Müller -> Muller) and puts `_` for every other
    character outside printable ASCII and for `"`, `\\` and `%`, which a quoted string would have to escape and
    some clients would decode again; the header then never breaks, whatever the user named the file.
    """
    letters = (c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in letters)
    return {"Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"}


@dataclass(frozen=True)
class Settings:
    """One app's data directory, tokens and upload limits (create_app's arguments)."""
    storage: Storage
    tokens: dict[str, str]  # token -> API owner
    max_upload_bytes: int
    idle_seconds: float


class LeafRoute(APIRoute):
    """A route whose answer holds the keys its object has: a model's unset fields are left out, not null."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        super().__init__(*args, **kwargs)


def settings(request: Request) -> Settings:
    return request.app.state.settings


def storage(request: Request) -> Storage:
    return settings(request).storage


bearer = HTTPBearer(auto_error=False, scheme_name="Bearer",
                    description="A token of LEAF_API_TOKENS or <data>/config/api-tokens.json; it names the API owner.")


def owner(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """The API owner the Bearer token names, else 401."""
    token = credentials.credentials.strip().encode() if credentials else None
    match = next((o for t, o in settings(request).tokens.items()
                  if token is not None and secrets.compare_digest(t.encode(), token)), None)
    if match is None:
        raise HTTPException(401, "a valid Bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return match


Owner = Annotated[str, Depends(owner)]
StorageDep = Annotated[Storage, Depends(storage)]


def owned(storage: Storage, table: str, key: str, who: str) -> dict[str, Any]:
    """The owner's record `key` of `table`, else 404: another owner's record is answered as one never made."""
    record = storage.records.get(table, key) if is_uuid(key) else None
    if record is None or owner_of(record) != who:
        shown = key if is_uuid(key) else "with this id"
        raise HTTPException(404, f"{table[:-1] if table != 'batches' else 'batch'} {shown} not found")
    return record


def owned_file(file_id: str, who: Owner, storage: StorageDep) -> dict[str, Any]:
    return owned(storage, "files", file_id, who)


def owned_batch(batch_id: str, who: Owner, storage: StorageDep) -> dict[str, Any]:
    return owned(storage, "batches", batch_id, who)


OwnedFile = Annotated[dict[str, Any], Depends(owned_file)]
OwnedBatch = Annotated[dict[str, Any], Depends(owned_batch)]


def url(request: Request, path: str, **params: Any) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"{str(request.base_url).rstrip('/')}{path}{query}"


def with_urls(request: Request, storage: Storage, record: dict[str, Any]) -> dict[str, Any]:
    """The file object with its summary and the URL of each output that exists."""
    out = file_object(record)
    fid = record["id"]
    outputs = {"originalFile": record.get("origin") != "merged" and bool(record.get("members")),
               "rawGeojson": storage.exists(storage.parquet_path("raw", fid)),
               "standardGeojson": storage.exists(storage.parquet_path("standard", fid)),
               "filteredGeojson": storage.exists(storage.parquet_path("filtered", fid)),
               "zippedPNGs": storage.exists(storage.images_dir(fid) / "images.zip")}
    for name, exists in outputs.items():
        if exists:
            out[name] = url(request, f"{BASE}/files/{fid}/{name}")
            out["download" + name[0].upper() + name[1:]] = url(request, f"{BASE}/files/{fid}/{name}", download="true")
    if record.get("summary"):
        out["summary"] = record["summary"]
    return out


def page_headers(request: Request, response: Response, total: int, page: int, size: int) -> None:
    """A list's X-Total-Count and Link (first, last, next, prev) headers."""
    last = max((total - 1) // size, 0)

    def link(p: int) -> str:
        return f"<{str(request.url.remove_query_params('page').include_query_params(page=p))}>"
    links = [f'{link(0)}; rel="first"', f'{link(last)}; rel="last"']
    if page < last:
        links.append(f'{link(page + 1)}; rel="next"')
    if page > 0:
        links.append(f'{link(min(page - 1, last))}; rel="prev"')
    response.headers["X-Total-Count"] = str(total)
    response.headers["Link"] = ", ".join(links)
