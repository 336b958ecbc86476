"""Leaf's machine-files API (files and batch endpoints), plus fields and configurations, over a data directory.

A client written for Leaf works by changing the base URL and token. The API only reads records and
outputs and writes uploads, boundaries, configurations and run requests: every pipeline run happens in
Dagster (the inbox sensor takes uploads; the requested-runs sensor takes merges and retries).

Tenancy: a token names an API owner; batches, files, configurations, fields and Leaf user ids all
belong to one owner. Another owner's leafUserId is just an unused id: every answer about it is the
answer for a user this owner never had.

Every error, whatever raised it (the API's own checks, an unknown route, FastAPI's request
validation), has one shape: `{"status": <HTTP status>, "message": "<what was wrong>"}`; bad input is a
400, never a 500. The routes live in routes/ (one router per service), their answers' models in
models.py, what they share (the owner a token names, the storage, owned records) in deps.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (ConfigError, FieldError, InvalidIdentifier, MergeError, QueryError, UploadError,
                      UploadNotStored)
from ..identifiers import check_id
from ..storage import Storage, data_url
from .deps import Settings
from .models import Error
from .partials import SWEEP_SECONDS, sweep
from .routes import batches, configs, fields, files, thumbnails

MAX_UPLOAD_BYTES = 3 * 2**30
TOKENS_ENV = "LEAF_API_TOKENS"
MAX_UPLOAD_ENV = "LEAF_API_MAX_UPLOAD_BYTES"
# An upload whose client sends nothing for this long is refused and its .part removed.
UPLOAD_IDLE_SECONDS = 300.0
UPLOAD_IDLE_ENV = "LEAF_API_UPLOAD_IDLE_SECONDS"


def load_tokens(storage: Storage) -> dict[str, str]:
    """token -> API owner, from <data>/config/api-tokens.json and LEAF_API_TOKENS (`token=owner,token2=owner2`)."""
    tokens: dict[str, str] = {}
    path = storage.fetch(storage.root / "config" / "api-tokens.json")
    if path.exists():
        tokens.update(json.loads(path.read_text()))
    for pair in filter(None, (p.strip() for p in os.environ.get(TOKENS_ENV, "").split(","))):
        token, _, owner = pair.partition("=")
        if token and owner:
            tokens[token.strip()] = owner.strip()
    return tokens


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The API's one error shape."""
    return JSONResponse(Error(status=status, message=message).model_dump(), status_code=status, headers=headers)


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


def create_app(storage: Storage | None = None, *, max_upload_bytes: int | None = None,
               tokens: dict[str, str] | None = None) -> FastAPI:
    """The API over `storage` (default: LEAF_DATA_DIR), with the tokens given (default: load_tokens)."""
    storage = storage or Storage(data_url())
    known_tokens = tokens if tokens is not None else load_tokens(storage)
    for name in known_tokens.values():  # an owner names a folder of the data directory
        check_id("API owner", name)
    settings = Settings(storage, known_tokens,
                        max_upload_bytes or int(os.environ.get(MAX_UPLOAD_ENV, MAX_UPLOAD_BYTES)),
                        float(os.environ.get(UPLOAD_IDLE_ENV, UPLOAD_IDLE_SECONDS)))

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
                  description="Leaf-compatible machine files and batch upload endpoints over a leaf-dagster data "
                              "directory. Every error answers `{\"status\": <HTTP status>, \"message\": \"...\"}` (Error).")
    app.state.settings = settings

    @app.exception_handler(QueryError)
    @app.exception_handler(UploadError)
    @app.exception_handler(MergeError)
    @app.exception_handler(FieldError)
    @app.exception_handler(ConfigError)
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

    for module in (files, batches, fields, configs, thumbnails):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        """FastAPI's description without its 422 validation answers: they are 400s with the Error body, which
        every router documents."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                operation["responses"].pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace its schema
    return app
