"""Leaf's machine-files endpoints: lists, a file, its status, summary, units, images and downloads, merges."""

from __future__ import annotations

import io
import zipfile
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from ... import config as configuration
from ... import run_requests
from ...errors import MergeError, QueryError
from ...identifiers import check_id
from ...objects import outside_field_object, status_object, uncovered_files
from ...query import FILE_FILTERS, list_files, paging
from ...storage import Storage
from ..deps import (BASE, ERRORS, LeafRoute, Owner, OwnedFile, StorageDep, attachment, binary, owned, owned_file,
                    page_headers, url, with_urls)
from ..models import (Feature, FileObject, FilesPage, Image, MergeAccepted, OutsideField, PolygonGeoparquet,
                      StandardGeoparquet, Status, UncoveredFiles)
from ..streaming import geojson_chunks

OWNED_FILE = Depends(owned_file)  # a route that answers only about an owned file
router = APIRouter(prefix=f"{BASE}/files", tags=["files"], responses=ERRORS, route_class=LeafRoute)


@router.get("", summary="Get all machine files", response_model=FilesPage)
def get_files(request: Request, response: Response, who: Owner, storage: StorageDep, leafUserId: str | None = None,
              provider: str | None = None, status: str | None = None, origin: str | None = None,
              organizationId: str | None = None, batchId: str | None = None, fileId: str | None = None,
              fileFormat: str | None = None, createdTime: str | None = None, startTime: str | None = None,
              updatedTime: str | None = None, endTime: str | None = None, operationStartTime: str | None = None,
              operationEndTime: str | None = None, operationType: str | None = None, minArea: str | None = None,
              providerFileId: str | None = None, standard: str | None = None, page: str | None = None,
              size: str | None = None, sort: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
    filters = {k: v for k, v in request.query_params.items() if k in FILE_FILTERS}
    result = list_files(storage, owner=who, page=page, size=size, sort=sort, **filters)
    items = [with_urls(request, storage, record) for record in result.records]
    page_headers(request, response, result.total, result.page, result.size)
    return {"operations": items}


def _outside(request: Request, obj: dict[str, Any]) -> dict[str, Any]:
    link = url(request, f"{BASE}/files/{obj['id']}/outsideFieldGeojson/file")
    return {**obj, "outsideFieldGeojson": link, "downloadOutsideFieldGeojson": link + "?download=true"}


@router.get("/outsideFieldGeojson", summary="Get all outsideFieldGeoJSON", response_model=list[OutsideField])
def all_outside(request: Request, response: Response, who: Owner, storage: StorageDep, leafUserId: str | None = None,
                page: str | None = None, size: str | None = None, sort: str | None = None) -> list[dict[str, Any]]:
    page_n, size_n = paging(page, size)
    descending = False
    if sort:
        field, _, direction = sort.partition(",")
        if field != "id" or direction not in ("", "asc", "desc"):
            raise QueryError("sort must be id,asc or id,desc")
        descending = direction == "desc"
    records = storage.records.owner_files(who, leafUserId)
    objects = sorted((_outside(request, o) for o in map(outside_field_object, records) if o),
                     key=lambda o: o["id"], reverse=descending)
    page_headers(request, response, len(objects), page_n, size_n)
    return objects[page_n * size_n:(page_n + 1) * size_n]


@router.get("/uncoveredFiles", summary="Get uncovered files", response_model=UncoveredFiles)
def uncovered(leafUserId: str, who: Owner, storage: StorageDep) -> dict[str, Any]:
    return {"files": uncovered_files(storage, check_id("leafUserId", leafUserId), owner=who)}


@router.post("/merge", summary="Merge files", response_model=MergeAccepted)
def merge_files(who: Owner, storage: StorageDep, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MergeError("the body must be {\"ids\": [\"fileId1\", \"fileId2\", ...]}")
    for file_id in ids:
        owned(storage, "files", file_id, who)
    from ... import merge

    record = merge.create(storage, ids)
    run_requests.request_runs(storage, [record["id"]], "merge")
    return {"id": record["id"], "status": merge.SENT_TO_MERGE}


@router.get("/{file_id}", summary="Get a machine file", response_model=FileObject)
def get_file(record: OwnedFile, request: Request, storage: StorageDep) -> dict[str, Any]:
    return with_urls(request, storage, record)


def output(storage: Storage, section: str, file_id: str) -> Any:
    """A step's output of an owned file, or 404 when the step has not produced it."""
    record = storage.records.section("files", file_id, section)
    if record is None:
        raise HTTPException(404, f"file {file_id} has no {section}")
    return record


@router.get("/{file_id}/summary", summary="Get file summary", response_model=Feature,
            dependencies=[OWNED_FILE])
def get_summary(file_id: str, storage: StorageDep) -> dict[str, Any]:
    return output(storage, "summary", file_id)["summary"]


@router.get("/{file_id}/units", summary="Get file units", response_model=dict[str, str],
            dependencies=[OWNED_FILE])
def get_units(file_id: str, storage: StorageDep) -> dict[str, str]:
    return output(storage, "units", file_id)["unitMap"]


@router.get("/{file_id}/status", summary="Get file status", response_model=Status)
def get_status(record: OwnedFile) -> dict[str, Any]:
    return status_object(record)


@router.get("/{file_id}/standardGeoparquet", summary="Get file standardGeoParquet", response_model=StandardGeoparquet)
def standard_geoparquet(file_id: str, record: OwnedFile, request: Request, who: Owner,
                        storage: StorageDep) -> dict[str, str]:
    if not configuration.effective(storage, record.get("leafUserId"), who)["enableGeoparquetOutput"]:
        raise HTTPException(400, "enableGeoparquetOutput is off for this user")
    if not storage.exists(storage.parquet_path("standard", file_id)):
        raise HTTPException(404, f"file {file_id} has no standard output")
    return {"downloadStandardGeoparquet": url(request, f"{BASE}/files/{file_id}/standardGeoparquet/file")}


@router.get("/{file_id}/polygonGeoparquet", summary="Get file polygonGeoParquet", response_model=PolygonGeoparquet)
def polygon_geoparquet(file_id: str, record: OwnedFile, request: Request, who: Owner,
                       storage: StorageDep) -> dict[str, str]:
    settings = configuration.effective(storage, record.get("leafUserId"), who)
    if not (settings["enableGeoparquetOutput"] and settings["enablePolygonOutput"]):
        raise HTTPException(400, "enablePolygonOutput and enableGeoparquetOutput must be on for this user")
    if not storage.exists(storage.parquet_path("polygons", file_id)):
        raise HTTPException(404, f"file {file_id} has no polygon output (re-process it after enabling it)")
    return {"downloadPolygonGeoparquet": url(request, f"{BASE}/files/{file_id}/polygonGeoparquet/file")}


@router.get("/{file_id}/{table}Geoparquet/file", summary="Download a GeoParquet output", response_class=FileResponse,
            responses=binary("application/vnd.apache.parquet", "The standard or polygon GeoParquet"),
            dependencies=[OWNED_FILE])
def geoparquet_file(file_id: str, table: str, storage: StorageDep) -> FileResponse:
    path = {"standard": storage.parquet_path("standard", file_id),
            "polygon": storage.parquet_path("polygons", file_id)}.get(table)
    if path is None or not storage.fetch(path).exists():
        raise HTTPException(404, "no such output")
    return FileResponse(path, media_type="application/vnd.apache.parquet",
                        headers=attachment(f"{file_id}-{table}.parquet"))


@router.get("/{file_id}/outsideFieldGeojson", summary="Get file outsideFieldGeoJSON", response_model=OutsideField)
def outside(record: OwnedFile, request: Request) -> dict[str, Any]:
    obj = outside_field_object(record)
    if obj is None:
        raise HTTPException(404, "no outside-field GeoJSON: it needs splitOperationsByField and enableOutsideFieldGeojson")
    result = _outside(request, obj)
    del result["id"]
    return result


@router.get("/{file_id}/outsideFieldGeojson/file", summary="Download outside-field points", response_class=FileResponse,
            responses=binary("application/geo+json", "The points outside the user's fields"))
def outside_file(file_id: str, record: OwnedFile, storage: StorageDep, download: bool = False) -> FileResponse:
    if not record.get("outsideField"):
        raise HTTPException(404, "no outside-field GeoJSON")
    return FileResponse(storage.fetch(storage.root / record["outsideField"]["path"]), media_type="application/geo+json",
                        headers=attachment(f"{file_id}-outside-field.geojson") if download else None)


@router.get("/{file_id}/images", summary="Get a file's images", response_model=list[Image],
            dependencies=[OWNED_FILE])
def images(file_id: str, request: Request, storage: StorageDep) -> list[dict[str, Any]]:
    out = []
    for image in (storage.records.section("files", file_id, "images") or {}).get("images") or []:
        link = url(request, f"{BASE}/files/{file_id}/images/{image['property']}.png")
        out.append({"property": image["property"], "ramp": image["ramp"], "url": link, "downloadUrl": link + "?download=true"})
    return out


@router.get("/{file_id}/images/{name}", summary="Download a property PNG or its .aux.xml", response_class=FileResponse,
            responses=binary("image/png", "The PNG map, or its georeferencing (application/xml)"),
            dependencies=[OWNED_FILE])
def image_file(file_id: str, name: str, storage: StorageDep, download: bool = False) -> FileResponse:
    if not (name.endswith(".png") or name.endswith(".png.aux.xml")) or "/" in name or "\0" in name:
        raise HTTPException(404, "no such image")
    path = storage.fetch(storage.images_dir(file_id) / name)
    if not path.is_file():
        raise HTTPException(404, "no such image")
    return FileResponse(path, media_type="image/png" if name.endswith(".png") else "application/xml",
                        headers=attachment(path.name) if download else None)


@router.get("/{file_id}/zippedPNGs", summary="Download the zipped PNGs", response_class=FileResponse,
            responses=binary("application/zip", "Every property PNG, zipped"),
            dependencies=[OWNED_FILE])
def zipped(file_id: str, storage: StorageDep, download: bool = False) -> FileResponse:
    path = storage.fetch(storage.images_dir(file_id) / "images.zip")
    if not path.is_file():
        raise HTTPException(404, "no zipped PNGs")
    return FileResponse(path, media_type="application/zip",
                        headers=attachment(f"{file_id}-images.zip") if download else None)


@router.get("/{file_id}/{step}Geojson", summary="Download raw, standard or filtered points as GeoJSON",
            response_class=StreamingResponse, responses=binary("application/geo+json", "The points, streamed"),
            dependencies=[OWNED_FILE])
def geojson(file_id: str, step: str, storage: StorageDep, download: bool = False) -> StreamingResponse:
    path = {"raw": storage.parquet_path("raw", file_id), "standard": storage.parquet_path("standard", file_id),
            "filtered": storage.parquet_path("filtered", file_id)}.get(step)
    if path is None or not storage.fetch(path).exists():
        raise HTTPException(404, "no such output")
    return StreamingResponse(geojson_chunks(path), media_type="application/geo+json",
                             headers=attachment(f"{file_id}-{step}.geojson") if download else None)


@router.get("/{file_id}/originalFile", summary="Download the original file", response_class=Response,
            responses=binary("application/zip", "The file's original members, zipped"))
def original(file_id: str, record: OwnedFile, storage: StorageDep, download: bool = False) -> Response:
    folder = storage.synced(storage.original_dir(file_id))
    if not folder.exists():
        raise HTTPException(404, "no original file")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for member in sorted(folder.iterdir()):
            zf.write(member, member.name)
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers=attachment(f"{record['fileName']}.zip") if download else None)
