"""A schema-driven fuzz run over every endpoint of the OpenAPI description: no request may get a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from leaf_dagster.api.app import create_app
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
