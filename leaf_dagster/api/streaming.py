"""Streaming both ways: multipart uploads to disk, GeoParquet to GeoJSON, without holding either in memory."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class UploadError(ValueError):
    """The upload is refused (HTTP 400)."""


async def receive_zip(chunks: AsyncIterator[bytes], content_type: str, target: Path, max_bytes: int) -> dict[str, Any]:
    """Write the multipart field `file` to `target` chunk by chunk; returns the file name, size and form fields."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise UploadError("the upload must be multipart/form-data with a 'file' field")
    state: dict[str, Any] = {"name": None, "field": None, "header": b"", "headers": {}, "size": 0, "fields": {},
                             "value": b"", "file": None, "seen_file": False, "head": b""}

    def on_part_begin() -> None:
        state.update(headers={}, value=b"", field=None, name=None)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["headers"][state["header"].lower()] = state["headers"].get(state["header"].lower(), b"") + data[start:end]

    def on_header_end() -> None:
        state["header"] = b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["field"] = disposition.get(b"name", b"").decode()
        filename = disposition.get(b"filename")
        if state["field"] == "file":
            if state["seen_file"]:
                raise UploadError("only one 'file' field is accepted")
            state["seen_file"] = True
            state["name"] = os.path.basename((filename or b"upload.zip").decode("utf-8", "replace").replace("\\", "/"))
            state["file"] = target.open("wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["field"] == "file":
            piece = data[start:end]
            state["size"] += len(piece)
            if state["size"] > max_bytes:
                raise UploadError(f"the upload is larger than the {max_bytes} bytes allowed")
            if len(state["head"]) < 4:
                state["head"] += piece[: 4 - len(state["head"])]
            state["file"].write(piece)
        else:
            state["value"] += data[start:end]
            if len(state["value"]) > 4096:
                raise UploadError(f"form field '{state['field']}' is too long")

    def on_part_end() -> None:
        if state["field"] == "file" and state["file"]:
            state["file"].close()
            state["file"] = None
        elif state["field"]:
            state["fields"][state["field"]] = state["value"].decode("utf-8", "replace")

    parser = MultipartParser(options[b"boundary"], callbacks={  # type: ignore[arg-type]
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # the multipart parser's own errors: malformed body
        raise UploadError(f"malformed multipart body: {exc}") from exc
    finally:
        if state["file"]:
            state["file"].close()
    if not state["seen_file"]:
        raise UploadError("the multipart body has no 'file' field")
    if not state["name"].lower().endswith(".zip") or state["head"][:4] not in ZIP_MAGIC:
        raise UploadError(f"{state['name']}: the upload must be a .zip archive")
    return {"fileName": state["name"], "size": state["size"], "fields": state["fields"]}


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
    geo = json.loads(parquet.schema_arrow.metadata[b"geo"])
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


__all__ = ["UploadError", "geojson_chunks", "receive_zip"]
