"""Streaming both ways: multipart uploads to disk, GeoParquet to GeoJSON, without holding either in memory."""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from ..errors import UploadError, UploadNotStored

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
MAX_FORM_BYTES = 64 * 1024  # all form fields and part headers together
MAX_FIELD_BYTES = 4096
FORM_FIELDS = ("leafUserId", "provider", "fileFormat")  # besides `file`, the zip
# The user's file name is only shown, never a path on the server; it must still be something a client
# can store: one name of at most 255 UTF-8 bytes with no control characters.
MAX_FILE_NAME_BYTES = 255


def upload_file_name(raw: bytes | None) -> str:
    """The file name a client sent for the `file` part, as the user knows it (no folders); UploadError if unusable."""
    name = (raw or b"upload.zip").decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UploadError("the upload's file name contains control characters")
    if not name or len(name.encode()) > MAX_FILE_NAME_BYTES:
        raise UploadError(f"the upload's file name must be 1 to {MAX_FILE_NAME_BYTES} bytes long")
    return name


async def receive_zip(chunks: AsyncIterator[bytes], content_type: str, sink: BinaryIO, max_bytes: int) -> dict[str, Any]:
    """Write the multipart field `file` to `sink` chunk by chunk; returns the file name, size and form fields.

    Form fields may come before or after the file; only one file is accepted."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError("the upload must be multipart/form-data with a 'file' field")
    upload: dict[str, Any] = {"fileName": None, "size": 0, "head": b"", "fields": {}, "formBytes": 0}
    part: dict[str, Any] = {}

    def count_form(size: int) -> None:
        upload["formBytes"] += size
        if upload["formBytes"] > MAX_FORM_BYTES:
            raise UploadError(f"the form fields and part headers exceed {MAX_FORM_BYTES} bytes")

    def on_part_begin() -> None:
        part.clear()
        part.update(header=b"", headers={}, field=None, value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        count_form(end - start)
        part["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        count_form(end - start)
        key = part["header"].lower()
        part["headers"][key] = part["headers"].get(key, b"") + data[start:end]

    def on_header_end() -> None:
        part["header"] = b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["field"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        if part["field"] != "file" and b"filename" in disposition:
            raise UploadError(f"the zip must be sent in the form field 'file', not {part['field']!r}")
        if part["field"] == "file":
            if upload["fileName"] is not None:
                raise UploadError("only one 'file' field is accepted")
            upload["fileName"] = upload_file_name(disposition.get(b"filename"))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        if part.get("field") == "file":
            upload["size"] += len(piece)
            if upload["size"] > max_bytes:
                raise UploadError(f"the upload is larger than the {max_bytes} bytes allowed")
            if len(upload["head"]) < 4:
                upload["head"] += piece[: 4 - len(upload["head"])]
            sink.write(piece)
        else:
            count_form(len(piece))
            part["value"] += piece
            if len(part["value"]) > MAX_FIELD_BYTES:
                known = part["field"] in FORM_FIELDS
                raise UploadError(f"form field {part['field']!r} is too long" if known else
                                  f"form field {part['field']!r} is not one the upload takes: the zip goes in "
                                  f"'file', with {', '.join(FORM_FIELDS)} as query parameters or form fields")

    def on_part_end() -> None:
        if part.get("field") and part["field"] != "file":
            upload["fields"][part["field"]] = part["value"].decode("utf-8", "replace")

    parser = MultipartParser(options[b"boundary"], callbacks={
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
        sink.flush()
    except UploadError:
        raise
    except OSError as exc:  # the disk, not the request: say so without server paths
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise UploadNotStored(f"the upload could not be stored ({reason}); try again later") from exc
    except Exception as exc:  # the multipart parser's own errors: malformed body
        raise UploadError(f"malformed multipart body: {exc}") from exc
    if upload["fileName"] is None:
        others = ", ".join(repr(f) for f in upload["fields"] if f not in FORM_FIELDS)
        raise UploadError("the multipart body has no 'file' field (the zip goes in 'file')"
                          + (f"; it has {others}" if others else ""))
    if not upload["fileName"].lower().endswith(".zip") or upload["head"][:4] not in ZIP_MAGIC:
        raise UploadError(f"{upload['fileName']}: the upload must be a .zip archive")
    return {"fileName": upload["fileName"], "size": upload["size"], "fields": upload["fields"]}


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        stamp = value.astimezone(timezone.utc) if value.tzinfo else value
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def geojson_chunks(path: Path, batch_rows: int = 20_000) -> Iterator[bytes]:
    """A FeatureCollection streamed from a GeoParquet file, a row group batch at a time."""
    import pyarrow.parquet as pq  # imported here: an API process that only takes uploads stays small
    import shapely

    parquet = pq.ParquetFile(path)
    geo = json.loads(parquet.metadata.metadata[b"geo"])  # the file's key-value metadata, as GeoParquet says
    geometry_column = geo["primary_column"]
    yield b'{"type":"FeatureCollection","features":['
    first = True
    for batch in parquet.iter_batches(batch_size=batch_rows):
        table = batch.to_pydict()
        geometries = shapely.from_wkb(table.pop(geometry_column))
        table.pop("bbox", None)
        names = list(table)
        parts = []
        for i, geometry in enumerate(geometries):
            props = {name: _json_value(table[name][i]) for name in names}
            feature = {"type": "Feature", "geometry": shapely.geometry.mapping(geometry) if geometry is not None else None,
                       "properties": props}
            parts.append(json.dumps(feature, default=str, separators=(",", ":")))
        if parts:
            yield ((b"" if first else b",") + ",".join(parts).encode())
            first = False
    yield b"]}"


__all__ = ["geojson_chunks", "receive_zip", "upload_file_name"]
