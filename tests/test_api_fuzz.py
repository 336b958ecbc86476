"""Fuzz runs: a schema-driven one over every endpoint of the OpenAPI description, and one of the upload
endpoint with multipart bodies built at random; no request may get a 5xx."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaf_dagster.api.app import create_app
from leaf_dagster.identifiers import ID_PATTERN, check_id
from leaf_dagster.storage import Storage

APP = create_app(Storage(Path(tempfile.mkdtemp(prefix="leaf-fuzz-")) / "data"), tokens={"fuzz-token": "fuzzer"},
                 max_upload_bytes=1_000_000)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=[f"{op.method.upper()} {op.path}" for op in OPERATIONS])
def test_no_server_errors(operation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:
        response = case.call(headers={"Authorization": "Bearer fuzz-token"})
        assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"

    check()


# -- the upload endpoint with file bodies: random names, bytes, form fields and part order ------------------
UPLOAD_ROOT = Path(tempfile.mkdtemp(prefix="leaf-upload-fuzz-"))
UPLOAD_STORAGE = Storage(UPLOAD_ROOT / "data")
UPLOAD_APP = create_app(UPLOAD_STORAGE, tokens={"fuzz-token": "fuzzer"}, max_upload_bytes=20_000)
BOUNDARY = "fuzzboundary"


def _tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("a.csv", "lon,lat\n1,2\n")
    return buffer.getvalue()


identifiers = st.one_of(st.sampled_from(["grower-1", "../../../secret", "..", ".", "a/b", "", "x" * 200, "a\x00b"]),
                        st.text(max_size=40))
file_names = st.one_of(st.sampled_from([b"data.zip", b"../../x.zip", b"a\x00b.zip", b"n" * 300 + b".zip", b"", b"c:\\x\\y.zip"]),
                       st.binary(max_size=300), st.text(max_size=60).map(lambda t: t.encode("utf-8", "replace")))
contents = st.one_of(st.just(_tiny_zip()), st.binary(max_size=3000), st.binary(max_size=3000).map(lambda b: b"PK\x03\x04" + b),
                     st.just(b"PK\x03\x04" + b"\0" * 25_000))
file_parts = st.tuples(st.just("file"), contents, st.one_of(st.none(), file_names))
field_parts = st.tuples(st.one_of(st.sampled_from(["leafUserId", "provider", "fileFormat"]), st.text(max_size=20)),
                        st.one_of(identifiers.map(lambda t: t.encode("utf-8", "replace")), st.binary(max_size=5000)),
                        st.none())


def _part(name: str, content: bytes, filename: bytes | None) -> bytes:
    disposition = b'form-data; name="' + name.encode("utf-8", "replace").replace(b'"', b"") + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename.replace(b'"', b"").replace(b"\r", b"").replace(b"\n", b"") + b'"'
    return f"--{BOUNDARY}\r\n".encode() + b"Content-Disposition: " + disposition + b"\r\n\r\n" + content + b"\r\n"


async def _post(query: dict[str, str], body: bytes) -> httpx.Response:
    """In process, with the app's own exceptions raised (a 500 could not hide behind a handler)."""
    transport = httpx.ASGITransport(app=UPLOAD_APP, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://fuzz") as client:
        return await client.post("/services/operations/api/batch", params=query, content=body,
                                 headers={"Authorization": "Bearer fuzz-token",
                                          "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


# near-valid uploads (a zip, a user, a provider, maybe extra fields) in any order, and arbitrary part lists
valid_ids = st.from_regex(ID_PATTERN, fullmatch=True)
zip_names = st.text(max_size=80).map(lambda t: (t + ".zip").encode("utf-8", "replace"))
plausible = st.tuples(st.tuples(st.just("file"), st.just(_tiny_zip()), st.one_of(zip_names, zip_names, file_names)),
                      st.tuples(st.just("leafUserId"), st.one_of(valid_ids, valid_ids, identifiers).map(
                          lambda t: t.encode("utf-8", "replace")), st.none()),
                      st.just(("provider", b"Other", None)), st.lists(field_parts, max_size=2)
                      ).map(lambda t: [*t[:3], *t[3]]).flatmap(st.permutations)
arbitrary = st.lists(st.one_of(file_parts, field_parts), max_size=5)


@given(parts=st.one_of(plausible, arbitrary),
       query=st.one_of(st.just({}), st.just({}), st.dictionaries(st.sampled_from(["leafUserId", "provider", "fileFormat"]),
                                                                 identifiers, max_size=3)),
       truncate=st.one_of(st.none(), st.none(), st.none(), st.integers(min_value=0, max_value=400)))
@settings(max_examples=int(os.environ.get("LEAF_UPLOAD_FUZZ_EXAMPLES", 150)), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_uploads_never_get_a_server_error(parts, query, truncate) -> None:
    """Bounded: at most 5 parts of at most ~25 KB, 150 examples (a few seconds)."""
    body = b"".join(_part(*p) for p in parts) + f"--{BOUNDARY}--\r\n".encode()
    if truncate is not None:
        body = body[:truncate]
    response = asyncio.run(_post(query, body))
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert set(response.json()) == {"status", "message"}
    assert sorted(p.name for p in UPLOAD_ROOT.iterdir()) == ["data"]  # nothing written outside the data directory
    assert not list(UPLOAD_STORAGE.inbox.glob(".*.part"))  # every request removes its own unfinished upload
    for sidecar in UPLOAD_STORAGE.inbox.glob("*.json"):
        assert check_id("leafUserId", json.loads(sidecar.read_text())["leafUserId"])
