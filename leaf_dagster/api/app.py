"""Leaf's machine-files API (files and batch endpoints), plus fields and configurations, over a data directory.

A client written for Leaf works by changing the base URL and token. The API only reads records and
outputs and writes uploads, boundaries, configurations and run requests: every pipeline run happens in
Dagster (the inbox sensor takes uploads; the requested-runs sensor takes merges and retries).

Tenancy: a token names an API owner; batches, files, configurations, fields and Leaf user ids all
belong to one owner. Another owner's leafUserId is just an unused id: every answer about it is the
answer for a user this owner never had.

Every error, whatever raised it (the API's own checks, an unknown route, FastAPI's request
validation), has one shape: `{"status": <HTTP status>, "message": "<what was wrong>"}`; bad input is a
400, never a 500.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import config as configuration
from .. import run_requests
from ..errors import FieldError, MergeError
from ..identifiers import InvalidIdentifier, check_id, is_uuid
from ..ingest.batch import batch_id_for, new_batch, sidecar_for
from ..objects import batch_object, batch_status, file_object, outside_field_object, status_object, uncovered_files
from ..query import BATCH_FILTERS, FILE_FILTERS, QueryError, leaf_provider, list_batches, list_files, owner_files, paging
from ..storage import Storage, default_data_dir, owner_of
from .partials import SWEEP_SECONDS, partial_upload, sweep
from .streaming import UploadError, UploadNotStored, geojson_chunks, receive_zip

BASE = "/services/operations/api"
FIELDS = "/services/fields/api"
CONFIG = "/services/config/api"
MAX_UPLOAD_BYTES = 3 * 2**30
TOKENS_ENV = "LEAF_API_TOKENS"
MAX_UPLOAD_ENV = "LEAF_API_MAX_UPLOAD_BYTES"
# An upload whose client sends nothing for this long is refused and its .part removed.
UPLOAD_IDLE_SECONDS = 300.0
UPLOAD_IDLE_ENV = "LEAF_API_UPLOAD_IDLE_SECONDS"


def load_tokens(storage: Storage) -> dict[str, str]:
    """token -> API owner, from <data>/config/api-tokens.json and LEAF_API_TOKENS (`token=owner,token2=owner2`)."""
    tokens: dict[str, str] = {}
    path = storage.root / "config" / "api-tokens.json"
    if path.exists():
        tokens.update(json.loads(path.read_text()))
    for pair in filter(None, (p.strip() for p in os.environ.get(TOKENS_ENV, "").split(","))):
        token, _, owner = pair.partition("=")
        if token and owner:
            tokens[token.strip()] = owner.strip()
    return tokens


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's one error shape."""
    return JSONResponse({"status": status, "message": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's request validation errors in words: `leafUserId is required` for a missing parameter."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where = ".".join(loc[1:] if loc[:1] in (["query"], ["path"], ["header"], ["body"]) else loc) or "body"
        if error.get("type") == "missing":
            problems.append("the request body is required" if loc == ["body"] else f"{where} is required")
        else:
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


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


def create_app(storage: Storage | None = None, *, max_upload_bytes: int | None = None,
               tokens: dict[str, str] | None = None) -> FastAPI:
    storage = storage or Storage(default_data_dir())
    max_upload_bytes = max_upload_bytes or int(os.environ.get(MAX_UPLOAD_ENV, MAX_UPLOAD_BYTES))
    idle_seconds = float(os.environ.get(UPLOAD_IDLE_ENV, UPLOAD_IDLE_SECONDS))
    known_tokens = tokens if tokens is not None else load_tokens(storage)
    for name in known_tokens.values():  # an owner names a folder of the data directory
        check_id("API owner", name)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """Remove the .part files of uploads whose request died with an earlier API process, now and
        every SWEEP_SECONDS (a live request's .part is locked and kept)."""
        async def sweeper() -> None:
            while True:
                await asyncio.to_thread(sweep, storage.inbox)
                await asyncio.sleep(SWEEP_SECONDS)

        sweep(storage.inbox)
        task = asyncio.create_task(sweeper())
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    app = FastAPI(title="leaf-dagster machine files API", version="1.0", lifespan=lifespan,
                  description="Leaf-compatible machine files and batch upload endpoints over a leaf-dagster data directory.")

    @app.exception_handler(QueryError)
    @app.exception_handler(UploadError)
    @app.exception_handler(MergeError)
    @app.exception_handler(FieldError)
    @app.exception_handler(configuration.ConfigError)
    @app.exception_handler(InvalidIdentifier)
    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(exc.status_code, message, exc.headers)

    @app.exception_handler(UploadNotStored)
    async def not_stored(_: Request, exc: UploadNotStored) -> JSONResponse:
        return error_response(507, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal error")

    def owner(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        match = next((o for t, o in known_tokens.items() if scheme.lower() == "bearer" and secrets.compare_digest(t.encode(), token.strip().encode())), None)
        if match is None:
            raise HTTPException(401, "a valid Bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return match

    def owned(table: str, key: str, who: str) -> dict[str, Any]:
        record = storage.read_record(table, key) if is_uuid(key) else None
        if record is None or owner_of(record) != who:
            shown = key if is_uuid(key) else "with this id"
            raise HTTPException(404, f"{table[:-1] if table != 'batches' else 'batch'} {shown} not found")
        return record

    def url(request: Request, path: str, **params: Any) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"{str(request.base_url).rstrip('/')}{path}{query}"

    def with_urls(request: Request, record: dict[str, Any]) -> dict[str, Any]:
        out = file_object(record)
        fid = record["id"]
        outputs = {"originalFile": record.get("origin") != "merged" and bool(record.get("members")),
                   "rawGeojson": storage.parquet_path("raw", fid).exists(),
                   "standardGeojson": storage.parquet_path("standard", fid).exists(),
                   "filteredGeojson": storage.parquet_path("filtered", fid).exists(),
                   "zippedPNGs": (storage.images_dir(fid) / "images.zip").exists()}
        for name, exists in outputs.items():
            if exists:
                out[name] = url(request, f"{BASE}/files/{fid}/{name}")
                out["download" + name[0].upper() + name[1:]] = url(request, f"{BASE}/files/{fid}/{name}", download="true")
        summary = storage.read_record("summaries", fid)
        if summary:
            out["summary"] = summary["summary"]
        return out

    def paged(request: Request, items: list[Any], total: int, page: int, size: int, body: Any) -> JSONResponse:
        last = max((total - 1) // size, 0)

        def link(p: int) -> str:
            return f"<{str(request.url.remove_query_params('page').include_query_params(page=p))}>"
        links = [f'{link(0)}; rel="first"', f'{link(last)}; rel="last"']
        if page < last:
            links.append(f'{link(page + 1)}; rel="next"')
        if page > 0:
            links.append(f'{link(min(page - 1, last))}; rel="prev"')
        return JSONResponse(body, headers={"X-Total-Count": str(total), "Link": ", ".join(links)})

    # -- files --------------------------------------------------------------------------------------
    @app.get(f"{BASE}/files", summary="Get all machine files")
    def get_files(request: Request, who: str = Depends(owner), leafUserId: str | None = None, provider: str | None = None,
                  status: str | None = None, origin: str | None = None, organizationId: str | None = None,
                  batchId: str | None = None, fileId: str | None = None, fileFormat: str | None = None,
                  createdTime: str | None = None, startTime: str | None = None, updatedTime: str | None = None,
                  endTime: str | None = None, operationStartTime: str | None = None, operationEndTime: str | None = None,
                  operationType: str | None = None, minArea: str | None = None, providerFileId: str | None = None,
                  standard: str | None = None, page: str | None = None, size: str | None = None,
                  sort: list[str] | None = Query(None)) -> JSONResponse:
        filters = {k: v for k, v in request.query_params.items() if k in FILE_FILTERS}
        result = list_files(storage, owner=who, page=page, size=size, sort=sort, **filters)
        items = [with_urls(request, storage.read_record("files", f["id"]) or f) for f in result.items]
        return paged(request, items, result.total, result.page, result.size, {"operations": items})

    @app.get(f"{BASE}/files/outsideFieldGeojson", summary="Get all outsideFieldGeoJSON")
    def all_outside(request: Request, who: str = Depends(owner), leafUserId: str | None = None,
                    page: str | None = None, size: str | None = None, sort: str | None = None) -> JSONResponse:
        page_n, size_n = paging(page, size)
        descending = False
        if sort:
            field, _, direction = sort.partition(",")
            if field != "id" or direction not in ("", "asc", "desc"):
                raise QueryError("sort must be id,asc or id,desc")
            descending = direction == "desc"
        records = owner_files(storage, who, leafUserId)
        objects = sorted((_outside(request, o) for o in map(outside_field_object, records) if o),
                         key=lambda o: o["id"], reverse=descending)
        shown = objects[page_n * size_n:(page_n + 1) * size_n]
        return paged(request, shown, len(objects), page_n, size_n, shown)

    def _outside(request: Request, obj: dict[str, Any]) -> dict[str, Any]:
        link = url(request, f"{BASE}/files/{obj['id']}/outsideFieldGeojson/file")
        return {**obj, "outsideFieldGeojson": link, "downloadOutsideFieldGeojson": link + "?download=true"}

    @app.get(f"{BASE}/files/uncoveredFiles", summary="Get uncovered files")
    def uncovered(leafUserId: str, who: str = Depends(owner)) -> dict[str, Any]:
        return {"files": uncovered_files(storage, check_id("leafUserId", leafUserId), owner=who)}

    @app.post(f"{BASE}/files/merge", summary="Merge files")
    def merge_files(who: str = Depends(owner), body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise MergeError("the body must be {\"ids\": [\"fileId1\", \"fileId2\", ...]}")
        for file_id in ids:
            owned("files", file_id, who)
        from .. import merge

        record = merge.create(storage, ids)
        run_requests.request_runs(storage, [record["id"]], "merge")
        return {"id": record["id"], "status": merge.SENT_TO_MERGE}

    @app.get(f"{BASE}/files/{{file_id}}", summary="Get a machine file")
    def get_file(file_id: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
        return with_urls(request, owned("files", file_id, who))

    def output(table: str, file_id: str, who: str) -> Any:
        """A step's record of an owned file, or 404 when the step has not produced it."""
        owned("files", file_id, who)
        record = storage.read_record(table, file_id)
        if record is None:
            raise HTTPException(404, f"file {file_id} has no {table}")
        return record

    @app.get(f"{BASE}/files/{{file_id}}/summary", summary="Get file summary")
    def get_summary(file_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        return output("summaries", file_id, who)["summary"]

    @app.get(f"{BASE}/files/{{file_id}}/units", summary="Get file units")
    def get_units(file_id: str, who: str = Depends(owner)) -> dict[str, str]:
        return {r["property"]: r["unit"] for r in output("units", file_id, who)}

    @app.get(f"{BASE}/files/{{file_id}}/status", summary="Get file status")
    def get_status(file_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        return status_object(owned("files", file_id, who))

    @app.get(f"{BASE}/files/{{file_id}}/standardGeoparquet", summary="Get file standardGeoParquet")
    def standard_geoparquet(file_id: str, request: Request, who: str = Depends(owner)) -> dict[str, str]:
        record = owned("files", file_id, who)
        if not configuration.effective(storage, record.get("leafUserId"), who)["enableGeoparquetOutput"]:
            raise HTTPException(400, "enableGeoparquetOutput is off for this user")
        if not storage.parquet_path("standard", file_id).exists():
            raise HTTPException(404, f"file {file_id} has no standard output")
        return {"downloadStandardGeoparquet": url(request, f"{BASE}/files/{file_id}/standardGeoparquet/file")}

    @app.get(f"{BASE}/files/{{file_id}}/polygonGeoparquet", summary="Get file polygonGeoParquet")
    def polygon_geoparquet(file_id: str, request: Request, who: str = Depends(owner)) -> dict[str, str]:
        record = owned("files", file_id, who)
        settings = configuration.effective(storage, record.get("leafUserId"), who)
        if not (settings["enableGeoparquetOutput"] and settings["enablePolygonOutput"]):
            raise HTTPException(400, "enablePolygonOutput and enableGeoparquetOutput must be on for this user")
        if not storage.parquet_path("polygons", file_id).exists():
            raise HTTPException(404, f"file {file_id} has no polygon output (re-process it after enabling it)")
        return {"downloadPolygonGeoparquet": url(request, f"{BASE}/files/{file_id}/polygonGeoparquet/file")}

    @app.get(f"{BASE}/files/{{file_id}}/{{table}}Geoparquet/file", summary="Download a GeoParquet output",
             response_class=FileResponse)
    def geoparquet_file(file_id: str, table: str, who: str = Depends(owner)) -> FileResponse:
        owned("files", file_id, who)
        path = {"standard": storage.parquet_path("standard", file_id),
                "polygon": storage.parquet_path("polygons", file_id)}.get(table)
        if path is None or not path.exists():
            raise HTTPException(404, "no such output")
        return FileResponse(path, media_type="application/vnd.apache.parquet", filename=f"{file_id}-{table}.parquet")

    @app.get(f"{BASE}/files/{{file_id}}/outsideFieldGeojson", summary="Get file outsideFieldGeoJSON")
    def outside(file_id: str, request: Request, who: str = Depends(owner)) -> dict[str, Any]:
        obj = outside_field_object(owned("files", file_id, who))
        if obj is None:
            raise HTTPException(404, "no outside-field GeoJSON: it needs splitOperationsByField and enableOutsideFieldGeojson")
        result = _outside(request, obj)
        del result["id"]
        return result

    @app.get(f"{BASE}/files/{{file_id}}/outsideFieldGeojson/file", summary="Download outside-field points")
    def outside_file(file_id: str, who: str = Depends(owner), download: bool = False) -> FileResponse:
        record = owned("files", file_id, who)
        if not record.get("outsideField"):
            raise HTTPException(404, "no outside-field GeoJSON")
        return FileResponse(storage.root / record["outsideField"]["path"], media_type="application/geo+json",
                            filename=f"{file_id}-outside-field.geojson" if download else None)

    @app.get(f"{BASE}/files/{{file_id}}/images", summary="Get a file's images")
    def images(file_id: str, request: Request, who: str = Depends(owner)) -> list[dict[str, Any]]:
        owned("files", file_id, who)
        out = []
        for image in storage.read_record("images", file_id) or []:
            link = url(request, f"{BASE}/files/{file_id}/images/{image['property']}.png")
            out.append({"property": image["property"], "ramp": image["ramp"], "url": link, "downloadUrl": link + "?download=true"})
        return out

    @app.get(f"{BASE}/files/{{file_id}}/images/{{name}}", summary="Download a property PNG or its .aux.xml")
    def image_file(file_id: str, name: str, who: str = Depends(owner), download: bool = False) -> FileResponse:
        owned("files", file_id, who)
        if not (name.endswith(".png") or name.endswith(".png.aux.xml")) or "/" in name or "\0" in name:
            raise HTTPException(404, "no such image")
        path = storage.images_dir(file_id) / name
        if not path.is_file():
            raise HTTPException(404, "no such image")
        return FileResponse(path, media_type="image/png" if name.endswith(".png") else "application/xml",
                            filename=path.name if download else None)

    @app.get(f"{BASE}/files/{{file_id}}/zippedPNGs", summary="Download the zipped PNGs")
    def zipped(file_id: str, who: str = Depends(owner), download: bool = False) -> FileResponse:
        owned("files", file_id, who)
        path = storage.images_dir(file_id) / "images.zip"
        if not path.is_file():
            raise HTTPException(404, "no zipped PNGs")
        return FileResponse(path, media_type="application/zip", filename=f"{file_id}-images.zip" if download else None)

    @app.get(f"{BASE}/files/{{file_id}}/{{step}}Geojson", summary="Download raw, standard or filtered points as GeoJSON")
    def geojson(file_id: str, step: str, who: str = Depends(owner), download: bool = False) -> StreamingResponse:
        owned("files", file_id, who)
        path = {"raw": storage.parquet_path("raw", file_id), "standard": storage.parquet_path("standard", file_id),
                "filtered": storage.parquet_path("filtered", file_id)}.get(step)
        if path is None or not path.exists():
            raise HTTPException(404, "no such output")
        headers = {"Content-Disposition": f'attachment; filename="{file_id}-{step}.geojson"'} if download else {}
        return StreamingResponse(geojson_chunks(path), media_type="application/geo+json", headers=headers)

    @app.get(f"{BASE}/files/{{file_id}}/originalFile", summary="Download the original file")
    def original(file_id: str, who: str = Depends(owner), download: bool = False) -> Response:
        record = owned("files", file_id, who)
        folder = storage.original_dir(file_id)
        if not folder.exists():
            raise HTTPException(404, "no original file")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for member in sorted(folder.iterdir()):
                zf.write(member, member.name)
        name = f"{record['fileName']}.zip"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'} if download else {}
        return Response(buffer.getvalue(), media_type="application/zip", headers=headers)

    @app.get("/thumbnails/{file_id}/{token}.png", summary="A file's coverage map thumbnail (capability URL)",
             response_class=FileResponse)
    def thumbnail(file_id: str, token: str) -> FileResponse:
        record = storage.read_record("files", file_id) if is_uuid(file_id) else None
        expected = (record or {}).get("thumbnailToken") or ""
        if not expected or not secrets.compare_digest(expected.encode(), token.encode()) \
                or not (path := storage.file_dir(file_id) / "summary-map.png").is_file():
            raise HTTPException(404, "no such thumbnail")
        return FileResponse(path, media_type="image/png")

    # -- batches ------------------------------------------------------------------------------------
    @app.post(f"{BASE}/batch", summary="Upload a file")
    async def upload(request: Request, who: str = Depends(owner), leafUserId: str | None = None,
                     provider: str | None = None, fileFormat: str | None = None) -> dict[str, Any]:
        # streamed to a locked inbox/.<token>.part, renamed to inbox/<token>.zip: the user's file name is
        # kept in the batch record and never becomes a path
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes + 1_000_000:
            raise UploadError(f"the upload is larger than the {max_upload_bytes} bytes allowed")
        if leafUserId is not None:
            check_id("leafUserId", leafUserId)
        storage.inbox.mkdir(parents=True, exist_ok=True)
        with partial_upload(storage.inbox) as (partial, sink):
            received = await receive_zip(_idle_limited(request.stream(), idle_seconds),
                                         request.headers.get("content-type", ""), sink, max_upload_bytes)
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
        record = new_batch(storage, batch_id, target, user, source, file_format, file_name=received["fileName"], owner=who)
        return {k: record[k] for k in ("id", "leafUserId", "fileName", "size", "provider", "status", "uploadTimestamp")}

    @app.get(f"{BASE}/batch", summary="Get all batches")
    def get_batches(request: Request, who: str = Depends(owner), leafUserId: str | None = None, status: str | None = None,
                    uploadStartTime: str | None = None, uploadEndTime: str | None = None,
                    processStartTime: str | None = None, processEndTime: str | None = None,
                    page: str | None = None, size: str | None = None, sort: list[str] | None = Query(None)) -> JSONResponse:
        filters = {k: v for k, v in request.query_params.items() if k in BATCH_FILTERS}
        result = list_batches(storage, owner=who, page=page, size=size, sort=sort, **filters)
        return paged(request, result.items, result.total, result.page, result.size, result.items)

    @app.get(f"{BASE}/batch/{{batch_id}}", summary="Get a batch")
    def get_batch(batch_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        return batch_object(owned("batches", batch_id, who))

    @app.get(f"{BASE}/batch/{{batch_id}}/status", summary="Get batch files status")
    def get_batch_status(batch_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        return batch_status(storage, owned("batches", batch_id, who))

    @app.put(f"{BASE}/batch/{{batch_id}}/retry", summary="Retry a batch",
             description="Runs again what did not succeed (Leaf's answer: the batch, RECEIVED or PROCESSING). A batch "
                         "with nothing to retry (still in progress, every file processed, or failed in a way a run "
                         "would repeat) is returned unchanged, with a 200 like any retry; `message` says which.")
    def retry(batch_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        record, plan = run_requests.request_retry(storage, owned("batches", batch_id, who))
        return {**batch_object(record), "message": plan.message}

    # -- fields and configurations: per API owner, and per owner's Leaf user -------------------------------
    @app.get(f"{FIELDS}/users/{{leaf_user_id}}/fields", summary="Get a user's fields")
    def get_fields(leaf_user_id: str, who: str = Depends(owner)) -> list[dict[str, Any]]:
        from ..fields import list_fields

        return list_fields(storage, check_id("leafUserId", leaf_user_id), owner=who)

    @app.post(f"{FIELDS}/users/{{leaf_user_id}}/fields", summary="Add field boundaries (a GeoJSON body)",
              description="A FeatureCollection, Feature, Polygon or MultiPolygon, or Leaf's field body {name, geometry}; "
                          "each field keeps the `name` given (a feature's own, else the body's).")
    def post_fields(leaf_user_id: str, who: str = Depends(owner), body: dict[str, Any] = Body(...)) -> list[dict[str, Any]]:
        from ..fields import add_geojson

        return add_geojson(storage, check_id("leafUserId", leaf_user_id), body, owner=who)

    @app.get(f"{CONFIG}/configs", summary="Get the API owner's configuration")
    def get_owner_config(who: str = Depends(owner)) -> dict[str, Any]:
        return configuration.effective(storage, None, who)

    @app.patch(f"{CONFIG}/configs", summary="Change the API owner's configuration")
    def patch_owner_config(who: str = Depends(owner), body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        configuration.save(storage, body, owner=who)
        return configuration.effective(storage, None, who)

    @app.get(f"{CONFIG}/configs/{{leaf_user_id}}", summary="Get a Leaf user's configuration")
    def get_user_config(leaf_user_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        return configuration.effective(storage, check_id("leafUserId", leaf_user_id), who)

    @app.patch(f"{CONFIG}/configs/{{leaf_user_id}}", summary="Change a Leaf user's configuration")
    def patch_user_config(leaf_user_id: str, who: str = Depends(owner), body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        configuration.save(storage, body, leaf_user_id=check_id("leafUserId", leaf_user_id), owner=who)
        return configuration.effective(storage, leaf_user_id, who)

    def openapi() -> dict[str, Any]:
        """FastAPI's description, with its 422 validation answers shown as what they are: the 400 error shape."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            schemas["Error"] = {"type": "object", "required": ["status", "message"],
                                "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                if operation.get("responses", {}).pop("422", None) is not None:
                    operation["responses"]["400"] = {"description": "Bad request", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
