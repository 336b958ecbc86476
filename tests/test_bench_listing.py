"""The listing benchmark lists what it claims: copies of a real processed record, varied as planned, that
`GET /files` filters, sorts and pages like the plan says, and a catalog check that would see a rebuild.

Small sizes only; nothing here is timed (performance lives in `leaf-dagster bench`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from benchmarks.listing import (
    MIN_AREA_FILTER,
    OPERATION_SHARES,
    OTHER_OWNER,
    OWNER,
    START_TIME_FILTER,
    TOKEN,
    USERS,
    Sample,
    build,
    catalog_state,
    plan,
    process_sample,
    time_requests,
)
from leaf_dagster.api.app import create_app
from leaf_dagster.api.deps import BASE
from leaf_dagster.catalog import refresh_catalog
from leaf_dagster.files import NO_POINTS
from leaf_dagster.storage import Storage

FILES = 150


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return process_sample(tmp_path_factory.mktemp("sample") / "data")


@pytest.fixture(scope="module")
def store(sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    data = tmp_path_factory.mktemp("listing") / "data"
    facts = plan(FILES)
    build(sample, data, facts)
    return data, facts


def _list(data: Path, **params: Any) -> tuple[int, list[dict[str, Any]]]:
    client = TestClient(create_app(Storage(data), tokens={TOKEN: OWNER}), headers={"Authorization": f"Bearer {TOKEN}"})
    response = client.get(f"{BASE}/files", params=params)
    assert response.status_code == 200, response.text
    return int(response.headers["X-Total-Count"]), response.json()["operations"]


def test_plan_is_deterministic_and_varied() -> None:
    facts = plan(600, seed=3)
    assert facts == plan(600, seed=3) and facts != plan(600, seed=4)
    assert len(facts) == 600 and len({f["id"] for f in facts}) == 600
    assert {f["apiOwnerUsername"] for f in facts} == {OWNER, OTHER_OWNER}
    assert {f["status"] for f in facts} == {"processed", "failed"}
    assert 0.02 < sum(f["status"] == "failed" for f in facts) / 600 < 0.2
    assert {f["operationType"] for f in facts} == set(OPERATION_SHARES)
    assert len({f["leafUserId"] for f in facts}) > 20 and {f["leafUserId"] for f in facts} <= set(USERS)
    batches: dict[str, list[dict[str, Any]]] = {}
    for f in facts:
        batches.setdefault(f["batchId"], []).append(f)
    assert 600 / 20 <= len(batches) < 600 / 2
    for files in batches.values():  # one upload: one user, owner and provider, its files created in order
        assert len({(f["leafUserId"], f["apiOwnerUsername"], f["provider"]) for f in files}) == 1
        assert [f["createdTime"] for f in files] == sorted(f["createdTime"] for f in files)
    assert all(f["startTime"] < f["endTime"] and f["startTime"] < f["createdTime"] for f in facts)
    assert min(f["createdTime"] for f in facts) >= "2024-01-01" and max(f["createdTime"] for f in facts) < "2026-01-02"


def test_copies_list_filter_and_sort_as_planned(sample: Sample, store: tuple[Path, list[dict[str, Any]]]) -> None:
    data, facts = store
    mine = [f for f in facts if f["apiOwnerUsername"] == OWNER]
    processed = [f for f in mine if f["status"] == "processed"]
    assert 0 < len(processed) < len(mine) < FILES
    assert _list(data)[0] == len(mine)
    assert _list(data, status="processed")[0] == len(processed)
    assert _list(data, operationType="harvested")[0] == sum(f["operationType"] == "harvested" for f in mine)
    assert _list(data, leafUserId=USERS[0])[0] == sum(f["leafUserId"] == USERS[0] for f in mine)
    # a failed file has no points, so no operation times, and no summary, so no area
    assert _list(data, startTime=START_TIME_FILTER)[0] == sum(f["startTime"] >= START_TIME_FILTER for f in processed)
    assert _list(data, minArea=MIN_AREA_FILTER)[0] == sum(f["areaM2"] >= MIN_AREA_FILTER for f in processed)

    total, items = _list(data, sort="createdTime,desc", size=100)
    newest = sorted(mine, key=lambda f: f["createdTime"], reverse=True)[:100]
    assert total == len(mine) and [i["id"] for i in items] == [f["id"] for f in newest]
    by_id = {f["id"]: f for f in facts}
    standard = sample.sections["standard"]
    for item in items:
        planned = by_id[item["id"]]
        for key in ("batchId", "leafUserId", "provider", "createdTime", "operationType", "status"):
            assert item[key] == planned[key], key
        assert item["rawGeojson"].endswith(f"/files/{item['id']}/rawGeojson")
        if planned["status"] == "processed":
            assert (item["startTime"], item["endTime"]) == (planned["startTime"], planned["endTime"])
            assert item["pointCount"] == standard["pointCount"] and item["crops"] == standard["crops"] == ["wheat"]
            properties = item["summary"]["properties"]
            assert properties["totalArea"] == {"value": planned["areaM2"], "unit": "m2"}
            assert properties["operationType"] == planned["operationType"]
            assert item["zippedPNGs"].endswith(f"/files/{item['id']}/zippedPNGs")
        else:
            assert item["steps"]["standardGeojson"] == {"status": "failed", "message": NO_POINTS}
            assert item["steps"]["summary"]["status"] == "skipped"
            assert item["pointCount"] == 0 and item["startTime"] is None
            assert "summary" not in item and "standardGeojson" not in item


def test_copies_link_the_sample_outputs(sample: Sample, store: tuple[Path, list[dict[str, Any]]]) -> None:
    data, facts = store
    source, copies = Storage(sample.root), Storage(data)
    processed = next(f for f in facts if f["status"] == "processed")
    failed = next(f for f in facts if f["status"] == "failed")
    for table in ("raw", "standard", "filtered"):
        assert copies.parquet_path(table, processed["id"]).samefile(source.parquet_path(table, sample.file_id))
    assert copies.parquet_path("raw", failed["id"]).exists()
    assert not copies.parquet_path("standard", failed["id"]).exists()
    images = copies.records.section("files", processed["id"], "images")
    assert images is not None and all(i["fileId"] == processed["id"] for i in images["images"])


def test_timed_requests_answer_every_kind_and_see_a_catalog_rebuild(store: tuple[Path, list[dict[str, Any]]]) -> None:
    data, facts = store
    owned = sum(f["apiOwnerUsername"] == OWNER for f in facts)
    result = time_requests(data, facts, requests=10, warmup_rounds=1)
    assert result["catalog_untouched"] and "leaf.duckdb" in result["catalog_before"]
    assert result["requests"] == 10 and all(kind["requests"] == 1 for kind in result["kinds"].values())
    assert result["kinds"]["default page"]["total"] == owned
    deep = result["kinds"]["deep page"]
    assert deep["params"]["page"] == owned * 95 // 100 // 100
    assert deep["items"] == min(100, owned - 100 * deep["params"]["page"])
    # the check notices a rebuilt catalog
    Storage(data).catalog_path.with_name("leaf.duckdb.views").unlink()
    refresh_catalog(Storage(data))
    assert catalog_state(Storage(data).root) != result["catalog_before"]
