"""`GET /files` over 10,000 catalogued files: p50/p95 latency, and the catalog left as it was.

The list is SQL over the record store's `file_list` view, so no request may rebuild `leaf.duckdb`. This
benchmark checks that, and shows how the latency grows with the number of files and with the page:

1. One real sample (`data/samples/jd-wheat-yield-montana-2019.zip`) goes through the pipeline once
   (`process_upload`, a throwaway Dagster instance), so every section of its record is what the steps wrote.
2. Its record is copied to N new file ids in a fresh data directory, in one transaction: 50 Leaf users, uploads of
   1 to 20 files (one batch id, user, owner and provider each) over two years, four operation types, operation
   times before the upload, field areas from 1.5 to 290 ha, about 8 % failed (at standardGeojson: no points passed
   the filter, so no points, times or summary) and two API owners (about 95 % alice's). Its outputs
   (GeoParquet, images.zip) are hard-linked, so every listed file has the download links of a real one. The
   catalog is then made once, as after a pipeline run.
3. Alice's token asks `GET /files` through FastAPI's TestClient for a mix of requests a client makes (default
   page, size=100, filters, a sort, a page 95 % of the way through her list), round robin after two warm-up
   rounds. p50 and p95 are over every timed request and per kind of request.
4. `leaf.duckdb` (and its view listing) must exist with the same size and mtime before and after the listing.

It runs at 1,000 and at 10,000 files in one run to show how latency grows with the files.

    python -m benchmarks.listing [--files 10000] [--small-files 1000] [--requests 300] [--json]

Performance is measured here, never in timed tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from leaf_dagster.model import FILE_SECTIONS, STEP_ORDER
from leaf_dagster.storage import Storage

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT_ROOT / "data" / "samples" / "jd-wheat-yield-montana-2019.zip"
SEED = 20261130
OWNER, OTHER_OWNER, TOKEN = "alice", "bob", "alice-token"
USERS = tuple(f"farmer-{k:02d}" for k in range(50))
# Upload providers and how often they appear (the shares of an imagined customer base, not measured ones).
PROVIDER_SHARES = {"JohnDeere": 0.35, "ClimateFieldView": 0.2, "CNHI": 0.15, "Trimble": 0.1, "AgLeader": 0.1,
                   "RavenSlingshot": 0.05, "Other": 0.05}
OPERATION_SHARES = {"harvested": 0.35, "planted": 0.25, "applied": 0.3, "tillage": 0.1}
FAILED_SHARE = 0.08
OTHER_OWNER_SHARE = 0.05
FIRST_UPLOAD = datetime(2024, 1, 1, tzinfo=timezone.utc)
UPLOAD_SPAN = timedelta(days=730)
START_TIME_FILTER = "2025-07-01T00:00:00.000Z"
MIN_AREA_FILTER = 500_000  # m2: the larger fields, about a fifth of them
WARMUP_ROUNDS = 2  # untimed rounds over every kind of request first (imports, SQLite's page cache)
# The sample's outputs each processed copy links to (failed copies only have the raw one).
LINKED_TABLES = ("raw", "standard", "filtered")
# Sections a file failed at standardGeojson never gets.
LATER_SECTIONS = ("filtered", "plausibility", "summary", "units", "images")

Log = Callable[[str], None]


def _silent(_: str) -> None:
    return None


# -- the sample ---------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """The record of one processed file, each section as its step stored it."""
    root: Path
    file_id: str
    sections: dict[str, dict[str, Any]]
    seconds: float


def process_sample(data: Path, upload: Path = SAMPLE) -> Sample:
    """Run the pipeline on `upload` (one machine file) with a throwaway Dagster instance and read its record."""
    import dagster as dg

    from leaf_dagster.defs.in_process import process_upload

    storage = Storage(data)
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        result = process_upload(upload, storage, instance, leaf_user_id=USERS[0], provider="JohnDeere")
    seconds = time.perf_counter() - started
    (processed,) = result["files"]
    if processed["status"] != "processed":
        raise RuntimeError(f"the sample {upload.name} did not process: {processed.get('steps')}")
    sections = {name: doc for name in FILE_SECTIONS
                if (doc := storage.records.section("files", processed["id"], name)) is not None}
    return Sample(storage.root, processed["id"], sections, seconds)


# -- the copies ---------------------------------------------------------------------------------------------------
def _ms(instant: datetime) -> str:
    """Leaf's record time format (what the pipeline writes)."""
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def plan(files: int, seed: int = SEED) -> list[dict[str, Any]]:
    """The facts of `files` file records, deterministic for `seed`: uploads of 1 to 20 files, each with one
    user, owner, provider and upload time; per file an operation type, operation times, an area and a status."""
    rng = np.random.default_rng(seed)
    user_weights = 1 / np.sqrt(np.arange(1, len(USERS) + 1))  # a few busy users, many occasional ones
    user_weights /= user_weights.sum()
    providers, operations = list(PROVIDER_SHARES), list(OPERATION_SHARES)
    out: list[dict[str, Any]] = []
    upload = 0
    while len(out) < files:
        batch_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"leaf-bench-batch-{seed}-{upload}"))
        user = USERS[int(rng.choice(len(USERS), p=user_weights))]
        owner = OTHER_OWNER if rng.random() < OTHER_OWNER_SHARE else OWNER
        provider = providers[int(rng.choice(len(providers), p=list(PROVIDER_SHARES.values())))]
        uploaded = FIRST_UPLOAD + UPLOAD_SPAN * float(rng.random())
        for k in range(min(int(rng.integers(1, 21)), files - len(out))):
            start = uploaded - timedelta(days=float(rng.uniform(0.5, 60)))
            out.append({
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"leaf-bench-file-{seed}-{len(out)}")),
                "batchId": batch_id, "leafUserId": user, "apiOwnerUsername": owner, "provider": provider,
                "createdTime": _ms(uploaded + timedelta(seconds=0.35 * k)),
                "operationType": operations[int(rng.choice(len(operations), p=list(OPERATION_SHARES.values())))],
                "startTime": _ms(start), "endTime": _ms(start + timedelta(hours=float(rng.uniform(0.5, 10)))),
                "status": "failed" if rng.random() < FAILED_SHARE else "processed",
                "areaM2": round(float(np.clip(rng.lognormal(np.log(250_000), 0.8), 15_000, 2_900_000)), 1),
            })
        upload += 1
    return out


def failed_steps() -> dict[str, dict[str, str]]:
    """Leaf's steps of a file whose standardGeojson step failed because the cleanup left no points."""
    from leaf_dagster.files import NO_POINTS

    failed_at = STEP_ORDER.index("standardGeojson")
    return {step: ({"status": "processed", "message": "ok"} if i < failed_at else
                   {"status": "failed", "message": NO_POINTS} if i == failed_at else
                   {"status": "skipped", "message": "skipped"}) for i, step in enumerate(STEP_ORDER)}


def _sections(sample: Sample, facts: dict[str, Any], failed: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """The sample's sections for one planned file: its ids (image paths too), its facts in the sections that own
    them, and for a failed file the `failed` steps, no points and none of the later steps' sections. Sections it does not
    change are the sample's own dicts, shared (they are only serialised)."""
    own = sample.sections
    times = {k: facts[k] for k in ("operationType", "startTime", "endTime")}
    docs = {**own,
            "registration": {**own["registration"], "id": facts["id"], "batchId": facts["batchId"],
                             **{k: facts[k] for k in ("leafUserId", "apiOwnerUsername", "provider", "createdTime")}},
            "standard": {**own["standard"], **times}}
    if facts["status"] == "failed":  # as the standard step leaves a file the cleanup emptied
        docs["standard"].update(pointCount=0, crops=[], varieties=[], startTime=None, endTime=None)
        for name in LATER_SECTIONS:
            docs.pop(name, None)
        docs["status"] = {**own["status"], "status": "failed", "steps": failed}
        return docs
    summary = own["summary"]
    properties = {**summary["summary"]["properties"], **times, "totalArea": {"value": facts["areaM2"], "unit": "m2"}}
    docs["summary"] = {**summary, "areaM2": facts["areaM2"], "summary": {**summary["summary"], "properties": properties}}
    docs["images"] = json.loads(json.dumps(own["images"]).replace(sample.file_id, facts["id"]))
    return docs


def _link_outputs(sample: Sample, source: Storage, storage: Storage, facts: dict[str, Any]) -> None:
    """Hard links to the sample's outputs, where the copy's record says they exist."""
    tables = LINKED_TABLES if facts["status"] == "processed" else LINKED_TABLES[:1]
    for table in tables:
        os.link(source.parquet_path(table, sample.file_id), storage.parquet_path(table, facts["id"]))
    if facts["status"] == "processed":
        images = storage.images_dir(facts["id"])
        images.mkdir(parents=True)
        os.link(source.images_dir(sample.file_id) / "images.zip", images / "images.zip")


def build(sample: Sample, data: Path, facts: list[dict[str, Any]]) -> dict[str, Any]:
    """A data directory holding a record per planned file (inserted in one transaction) and its outputs,
    then the catalog, made once as the pipeline makes it after a run."""
    from leaf_dagster.catalog import refresh_catalog

    storage = Storage(data)
    records = storage.records
    for table in LINKED_TABLES:
        storage.table_dir(table).mkdir(parents=True, exist_ok=True)
    failed = failed_steps()
    started = time.perf_counter()
    with records.transaction() as con:
        for one in facts:
            for name, doc in _sections(sample, one, failed).items():
                records.put("files", one["id"], name, doc, con=con)
    records_seconds = time.perf_counter() - started
    started = time.perf_counter()
    source = Storage(sample.root)
    for one in facts:
        _link_outputs(sample, source, storage, one)
    outputs_seconds = time.perf_counter() - started
    refresh_catalog(storage)
    return {"files": len(facts), "records_seconds": records_seconds, "records_per_s": len(facts) / records_seconds,
            "outputs_seconds": outputs_seconds, "records_mb": records.path.stat().st_size / 2**20}


# -- the requests -------------------------------------------------------------------------------------------------
def request_kinds(facts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The requests timed, by kind; the deep page is 95 % of the way through alice's list of 100-file pages
    (page 90 when she has 9,500 files)."""
    owned = sum(1 for f in facts if f["apiOwnerUsername"] == OWNER)
    busiest = USERS[0]
    return {
        "default page": {},
        "size=100": {"size": 100},
        f"leafUserId={busiest}": {"leafUserId": busiest},
        "status=processed": {"status": "processed"},
        "operationType=harvested": {"operationType": "harvested"},
        f"startTime={START_TIME_FILTER[:10]}": {"startTime": START_TIME_FILTER},
        f"minArea={MIN_AREA_FILTER}": {"minArea": MIN_AREA_FILTER},
        "sort=createdTime,desc": {"sort": "createdTime,desc"},
        "a user's harvests, newest first": {"leafUserId": busiest, "operationType": "harvested",
                                            "sort": "createdTime,desc", "size": 50},
        "deep page": {"page": owned * 95 // 100 // 100, "size": 100},
    }


def catalog_state(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime in ns, size) of every catalog file (leaf.duckdb, its view listing and any temporary rebuild)."""
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.glob("*leaf*duckdb*"))}


def _ms_stats(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
            "max_ms": float(values.max()), "requests": len(values)}


def time_requests(data: Path, facts: list[dict[str, Any]], requests: int,
                  warmup_rounds: int = WARMUP_ROUNDS) -> dict[str, Any]:
    """Alice's `GET /files` requests through TestClient, round robin over the kinds; what each answered
    (total, items) and whether the catalog stayed as it was."""
    from fastapi.testclient import TestClient

    from leaf_dagster.api.app import create_app
    from leaf_dagster.api.deps import BASE

    storage = Storage(data)
    kinds = request_kinds(facts)
    names = list(kinds)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    answers: dict[str, dict[str, Any]] = {}
    before = catalog_state(storage.root)
    with TestClient(create_app(storage, tokens={TOKEN: OWNER}), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for n in range(warmup_rounds * len(names) + requests):
            name = names[n % len(names)]
            started = time.perf_counter()
            response = client.get(f"{BASE}/files", params=kinds[name])
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"GET /files {kinds[name]} answered {response.status_code}: {response.text[:200]}")
            if n >= warmup_rounds * len(names):
                seconds[name].append(elapsed)
            answers[name] = {"total": int(response.headers["X-Total-Count"]),
                             "items": len(response.json()["operations"]), "bytes": len(response.content)}
    after = catalog_state(storage.root)
    every = [s for values in seconds.values() for s in values]
    return {**_ms_stats(every), "catalog_before": before, "catalog_untouched": bool(before) and before == after,
            "kinds": {name: {"params": kinds[name], **answers[name], **_ms_stats(seconds[name])} for name in names}}


# -- the benchmark ------------------------------------------------------------------------------------------------
def measure(work: str, files: int = 10_000, small_files: int = 1_000, requests: int = 300,
            log: Log = _silent) -> dict[str, Any]:
    """The sample once, then a store of `small_files` and one of `files` copies, each listed `requests` times."""
    root = Path(work)
    load_start = os.getloadavg()
    log(f"processing {SAMPLE.name} once")
    sample = process_sample(root / "sample")
    out: dict[str, Any] = {"sample": SAMPLE.name, "sample_seconds": sample.seconds, "requests": requests,
                           "warmup_rounds": WARMUP_ROUNDS, "sizes": []}
    for count in (small_files, files):
        facts = plan(count)
        built = build(sample, root / f"files-{count}", facts)
        log(f"  {count:,} file records in {built['records_seconds']:.1f} s; listing {requests} times")
        timed = time_requests(root / f"files-{count}", facts, requests)
        owned = sum(1 for f in facts if f["apiOwnerUsername"] == OWNER)
        out["sizes"].append({**built, "owned_files": owned, **timed})
        log(f"  p50 {timed['p50_ms']:.1f} ms, p95 {timed['p95_ms']:.1f} ms, catalog untouched: "
            f"{timed['catalog_untouched']}")
    largest = out["sizes"][-1]
    out.update(files_list_p50_ms=largest["p50_ms"], files_list_p95_ms=largest["p95_ms"],
               catalog_untouched=all(s["catalog_untouched"] for s in out["sizes"]),
               load_average={"start": [round(x, 2) for x in load_start],
                             "end": [round(x, 2) for x in os.getloadavg()]})
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    """The report's section: overall and per-kind p50/p95 at each size, and the time to make the records."""
    sizes = result["sizes"]
    head = " | ".join(f"{s['files']:,} files p50 / p95 (ms)" for s in sizes)
    lines = [f"| request | {head} | items of the total at {sizes[-1]['files']:,} files |", "|---|" + "---:|" * (len(sizes) + 1)]
    for name in sizes[-1]["kinds"]:
        cells = " | ".join(f"{s['kinds'][name]['p50_ms']:.1f} / {s['kinds'][name]['p95_ms']:.1f}" for s in sizes)
        last = sizes[-1]["kinds"][name]
        lines.append(f"| `{_query(last['params'])}` | {cells} | {last['items']} of {last['total']:,} |")
    overall = " | ".join(f"**{s['p50_ms']:.1f} / {s['p95_ms']:.1f}**" for s in sizes)
    lines.append(f"| **all {result['requests']} requests** | {overall} | |")
    made = "; ".join(
        f"{s['files']:,} records ({s['owned_files']:,} of them alice's) made in {s['records_seconds']:.1f} s "
        f"({s['records_per_s']:,.0f}/s, one transaction; records.sqlite {s['records_mb']:.0f} MiB), outputs "
        f"linked in {s['outputs_seconds']:.1f} s" for s in sizes)
    catalog = ("existed before and was neither rebuilt nor touched by any request (same size and mtime after)"
               if result["catalog_untouched"] else "**was created or changed during the listing**")
    load = result["load_average"]
    lines += ["", f"{made}. The sample took {result['sample_seconds']:.1f} s through the pipeline. `leaf.duckdb` "
              f"{catalog}. Load average (1/5/15 min) at start {load['start']}, at end {load['end']}."]
    return lines


def _query(params: dict[str, Any]) -> str:
    return "GET /files" + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--small-files", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per size, after the warm-up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="leaf-bench-listing-") as tmp:
        result = measure(tmp, args.files, args.small_files, args.requests, log)
    print(json.dumps(result, indent=2) if args.json else "\n".join(markdown(result)))
    return 0 if result["catalog_untouched"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
