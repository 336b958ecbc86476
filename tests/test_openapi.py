"""/openapi.json documents what the API answers: every route with its 200 model, the one error model on every
4xx, the Bearer scheme and the upload's multipart body; each router answers a missing token and an unknown id
with the one error shape; the response models keep every key of Leaf's objects and add none."""

from __future__ import annotations

import types
import typing
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leaf_dagster.api.app import create_app
from leaf_dagster.api.models import BatchObject, FileObject
from leaf_dagster.api.routes import batches, configs, fields, files, thumbnails
from leaf_dagster.model import BATCH_OBJECT_KEYS, FILE_OBJECT_KEYS, columns
from leaf_dagster.objects import STEP_ORDER, batch_object, file_object
from leaf_dagster.query import BATCH_STATUSES
from leaf_dagster.storage import Storage

BASE = "/services/operations/api"
ERROR = {"$ref": "#/components/schemas/Error"}
UNKNOWN = "0b6f4c1e-5b7a-4d5e-9a51-3f1f0c2d7e11"


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(tmp_path / "data")


@pytest.fixture
def client(storage: Storage) -> TestClient:
    return TestClient(create_app(storage, tokens={"t": "alice"}), headers={"Authorization": "Bearer t"})


@pytest.fixture
def schema(client: TestClient) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_every_route_is_documented_with_its_200_answer(schema: dict) -> None:
    routes = {(method.lower(), route.path) for module in (files, batches, fields, configs, thumbnails)
              for route in module.router.routes for method in route.methods}
    assert routes == {(method, path) for method, path, _ in _operations(schema)}
    assert len(routes) == 30
    for method, path, op in _operations(schema):
        content = op["responses"]["200"]["content"]
        assert len(content) == 1, (method, path, content)
        (media_type, body), = content.items()
        if media_type == "application/json":  # a model of models.py (or config.Configuration), or a list or map of one
            inner = body["schema"].get("items") or body["schema"].get("additionalProperties") or body["schema"]
            assert inner.get("$ref", "").startswith("#/components/schemas/") or inner == {"type": "string"}, (path, body)
        else:
            assert body["schema"] == {"type": "string", "format": "binary"}, (path, media_type)
    file_answer = schema["paths"][f"{BASE}/files/{{file_id}}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert file_answer["schema"] == {"$ref": "#/components/schemas/FileObject"}
    assert schema["components"]["schemas"]["FileObject"]["additionalProperties"] is True  # Leaf's object is open


def test_every_4xx_is_the_one_error_model(schema: dict) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["status", "message"]
    assert {name: p["type"] for name, p in error["properties"].items()} == {"status": "integer", "message": "string"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for method, path, op in _operations(schema):
        codes = set(op["responses"])
        assert "422" not in codes  # request validation answers 400
        expected = {"400", "404"} if path.startswith("/thumbnails") else {"400", "401", "404"}
        assert expected <= codes, (method, path, codes)
        for code in codes - {"200"}:
            assert op["responses"][code]["content"]["application/json"]["schema"] == ERROR, (method, path, code)
    assert "507" in schema["paths"][f"{BASE}/batch"]["post"]["responses"]  # a full disk


def test_the_bearer_scheme_is_declared_on_every_route_but_the_capability_url(schema: dict) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert [s for s in schemes.values() if s["type"] == "http" and s["scheme"] == "bearer"]
    (name,) = schemes
    for method, path, op in _operations(schema):
        assert op.get("security") == (None if path.startswith("/thumbnails") else [{name: []}]), (method, path)


def test_the_upload_body_is_multipart_with_its_file(schema: dict) -> None:
    body = schema["paths"][f"{BASE}/batch"]["post"]["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary", "description": "the zip of machine files"}
    assert set(form["properties"]) == {"file", "leafUserId", "provider", "fileFormat"}


def test_every_batch_answer_documents_leafs_batch_statuses(schema: dict) -> None:
    """POST /batch, GET /batch, GET /batch/{id} and the retry answer a batch whose status is one of Leaf's four."""
    models = schema["components"]["schemas"]
    answers = [op["responses"]["200"]["content"]["application/json"]["schema"]
               for _, path, op in _operations(schema) if path.startswith(f"{BASE}/batch")]
    named = {a.get("items", a)["$ref"].rsplit("/", 1)[-1] for a in answers}
    batches = {name for name in named if "status" in models[name]["properties"]}
    assert batches == {"NewBatch", "BatchObject", "RetriedBatch"}  # and BatchStatus, the files by outcome
    for name in batches:
        assert models[name]["properties"]["status"]["enum"] == ["RECEIVED", "PROCESSING", "PROCESSED", "FAILED"], name
    assert list(BATCH_STATUSES) == ["RECEIVED", "PROCESSING", "PROCESSED", "FAILED"]  # the list filter's choices


# one route per router: (without a token: 401) and (an unknown id: 404), both in the one error shape
ROUTERS = {
    "files": (f"{BASE}/files/{UNKNOWN}", f"file {UNKNOWN} not found"),
    "batches": (f"{BASE}/batch/{UNKNOWN}/status", f"batch {UNKNOWN} not found"),
    "fields": (f"/services/fields/api/users/g1/fields/{UNKNOWN}", "Not Found"),
    "configs": (f"/services/config/api/configs/g1/{UNKNOWN}", "Not Found"),
    "thumbnails": (f"/thumbnails/{UNKNOWN}/abc.png", "no such thumbnail"),
}
AUTHENTICATED = {"files": f"{BASE}/files", "batches": f"{BASE}/batch", "fields": "/services/fields/api/users/g1/fields",
                 "configs": "/services/config/api/configs"}


@pytest.mark.parametrize("router", sorted(AUTHENTICATED))
def test_a_missing_or_wrong_token_is_a_401_in_the_error_shape(client: TestClient, router: str) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic t"}):
        response = client.get(AUTHENTICATED[router], headers=headers)
        assert response.status_code == 401
        assert response.json() == {"status": 401, "message": "a valid Bearer token is required"}
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_an_unknown_id_is_a_404_in_the_error_shape(client: TestClient, router: str) -> None:
    path, message = ROUTERS[router]
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": message}


# -- the models answer Leaf's objects as objects.py builds them: no key lost, no null added -----------------------
def test_the_models_name_every_key_of_leafs_objects() -> None:
    assert set(FILE_OBJECT_KEYS) | {"steps"} <= set(FileObject.model_fields)
    assert list(BatchObject.model_fields) == list(BATCH_OBJECT_KEYS)


PYTHON_TYPES = {"VARCHAR": (str,), "TIMESTAMPTZ": (str,), "BIGINT": (int,), "DOUBLE": (float,), "BOOLEAN": (bool,),
                "VARCHAR[]": (list,), "JSON": (dict, list)}


def _types(annotation: object) -> set[type]:
    """The Python types a field's annotation admits (None left out)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {type(a) for a in args}
    if args and origin in (typing.Union, types.UnionType):
        return set().union(*(_types(a) for a in args if a is not type(None)))
    found = origin or annotation
    return {found} if isinstance(found, type) else set()


@pytest.mark.parametrize(("model", "table", "keys"), [(FileObject, "files", FILE_OBJECT_KEYS),
                                                       (BatchObject, "batches", BATCH_OBJECT_KEYS)])
def test_the_models_type_each_fact_as_the_record_schema_does(model: type, table: str, keys: tuple[str, ...]) -> None:
    """The response models and the record schema (model.py, which types the catalog's columns) agree."""
    kinds = columns(table)
    for key in keys:
        annotation = model.model_fields[key].annotation  # type: ignore[attr-defined]
        assert _types(annotation) & set(PYTHON_TYPES[kinds[key]]), (key, annotation, kinds[key])


def _failed_file(batch_id: str) -> dict:
    """A file record as the pipeline leaves a CSV whose points all failed the filter (some keys are internal)."""
    steps = {step: {"status": "processed", "message": "ok"} for step in STEP_ORDER[:3]}
    steps.update({step: {"status": "failed", "message": "no points passed the filter"} for step in STEP_ORDER[3:]})
    return {"id": str(uuid.uuid4()), "batchId": batch_id, "leafUserId": "g1", "apiOwnerUsername": "alice",
            "provider": "AgLeader", "fileName": "area2_yield", "fileFormat": "CSV", "origin": "uploaded",
            "status": "failed", "createdTime": "2026-11-30T16:09:18.583Z",
            "sourcePath": "area2_yield.csv", "members": ["area2_yield.csv"], "sizeInBytes": 161255,
            "terminalTotals": None, "operationType": "harvested", "originalOperationType": None, "pointCount": 0,
            "crops": [], "varieties": [], "standard": True, "startTime": None, "endTime": None,
            "notes": ["text encoding cp1252"], "steps": steps}


def test_answers_hold_exactly_the_keys_of_leafs_objects(client: TestClient, storage: Storage) -> None:
    batch = {"id": str(uuid.uuid4()), "leafUserId": "g1", "fileName": "yield.zip", "apiOwnerUsername": "alice",
             "storedName": "yield.zip", "size": 197936, "provider": "AgLeader", "status": "FAILED",
             "uploadTimestamp": "2026-11-30T16:08:52.087Z", "statusDetails": "every file failed",
             "processedTimestamp": "2026-11-30T16:09:52.940Z"}
    record = _failed_file(batch["id"])
    batch["leafFiles"] = [record["id"]]
    storage.records.put_facts("batches", batch["id"], batch)
    storage.records.put_facts("files", record["id"], record)
    answer = client.get(f"{BASE}/files/{record['id']}").json()
    original = f"http://testserver{BASE}/files/{record['id']}/originalFile"
    stored = {**record, "updatedTime": answer["updatedTime"]}  # the time of the record's last write
    assert answer == {**file_object(stored), "originalFile": original, "downloadOriginalFile": original + "?download=true"}
    assert "organizationId" not in answer and "notes" not in answer
    assert client.get(f"{BASE}/batch/{batch['id']}").json() == batch_object(batch)
    assert client.get(f"{BASE}/batch/{batch['id']}/status").json() == {
        "converted": {"leafFiles": []}, "processing": {"leafFiles": []},
        "failed": {"filteredGeojson": {"leafFiles": [record["id"]], "status": "failed",
                                       "message": "no points passed the filter",
                                       "messages": {record["id"]: "no points passed the filter"}}}}


def test_an_open_objects_extra_keys_reach_the_client() -> None:
    record = {"id": "f1", "steps": {}, "plausibility": {"figures": {"working_width_m": 18.29}}}
    assert FileObject.model_validate(record).model_dump(exclude_unset=True) == record
