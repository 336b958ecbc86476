"""Work requested outside Dagster (HTTP merge and retry) is handed to a sensor as small request files.

The API process writes <data>/requests/<id>.json naming the file ids to run; the `requested_runs_sensor`
adds their partitions, starts one run per file and moves the request to requests/done/.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from .ingest.batch import utc_now
from .storage import Storage


def request_runs(storage: Storage, file_ids: list[str], reason: str) -> str:
    request_id = str(uuid.uuid4())
    target = storage.root / "requests" / f"{request_id}.json"
    with storage.atomic_path(target) as tmp:
        tmp.write_text(json.dumps({"id": request_id, "fileIds": file_ids, "reason": reason, "created": utc_now()}))
    return request_id


def pending(storage: Storage) -> list[tuple[Path, dict[str, Any]]]:
    folder = storage.root / "requests"
    if not folder.exists():
        return []
    return [(p, json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]


def mark_done(path: Path) -> None:
    done = path.parent / "done"
    done.mkdir(exist_ok=True)
    shutil.move(path, done / path.name)
