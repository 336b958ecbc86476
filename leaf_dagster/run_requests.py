"""Work requested outside Dagster (HTTP merge and retry) is handed to a sensor as small request files.

The API process writes <data>/requests/<id>.json naming the file ids (and batch ids) to run; the
`requested_runs_sensor` adds their partitions, starts one run per file (and one batch run per batch) and
moves the request to requests/done/.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from .ingest.batch import utc_now
from .storage import Storage


def request_runs(storage: Storage, file_ids: list[str], reason: str, batch_ids: list[str] | None = None) -> str:
    request_id = str(uuid.uuid4())
    target = storage.root / "requests" / f"{request_id}.json"
    with storage.atomic_path(target) as tmp:
        tmp.write_text(json.dumps({"id": request_id, "fileIds": file_ids, "batchIds": batch_ids or [],
                                   "reason": reason, "created": utc_now()}))
    return request_id


def retry_plan(storage: Storage, batch: dict[str, Any]) -> tuple[bool, list[str]]:
    """What retrying a batch runs: (re-run the batch step?, files to run again).

    A batch that registered no files failed in its own step (a refused or unreadable zip, a full disk, a
    killed run), so the batch step runs again. Otherwise every file that did not succeed runs again,
    except files in a format we cannot decode, whose answer would not change."""
    if not batch.get("leafFiles"):
        return True, []
    files = [storage.read_record("files", f) or {"id": f} for f in batch["leafFiles"]]
    return False, [f["id"] for f in files if f.get("status") != "processed" and not f.get("unsupportedReason")]


def mark_retried(storage: Storage, batch: dict[str, Any], rerun_batch: bool, file_ids: list[str]) -> dict[str, Any]:
    """The records a retry leaves until its runs report: the batch RECEIVED (its step runs again) or
    PROCESSING, and the files to run `processing`. Nothing to retry changes nothing."""
    for file_id in file_ids:
        storage.update_record("files", file_id, status="processing", updatedTime=utc_now())
    if rerun_batch:
        return storage.update_record("batches", batch["id"], status="RECEIVED", statusDetails=None)
    if file_ids:
        return storage.update_record("batches", batch["id"], status="PROCESSING", statusDetails=None)
    return batch


def request_retry(storage: Storage, batch: dict[str, Any]) -> dict[str, Any]:
    """PUT /batch/{id}/retry: hand the retry to the daemon; returns the batch record."""
    rerun_batch, file_ids = retry_plan(storage, batch)
    if rerun_batch or file_ids:
        request_runs(storage, file_ids, "retry", [batch["id"]] if rerun_batch else [])
    return mark_retried(storage, batch, rerun_batch, file_ids)


def pending(storage: Storage) -> list[tuple[Path, dict[str, Any]]]:
    folder = storage.root / "requests"
    if not folder.exists():
        return []
    return [(p, json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]


def mark_done(path: Path) -> None:
    done = path.parent / "done"
    done.mkdir(exist_ok=True)
    shutil.move(path, done / path.name)
