"""Work requested outside Dagster (HTTP merge and retry) is handed to a sensor as small request files.

The API process writes <data>/requests/<id>.json naming the file ids (and batch ids) to run; the
`requested_runs_sensor` adds their partitions, starts one run per file (and one batch run per batch) and
moves the request to requests/done/. An upload's run split over several runs (LEAF_FILES_PER_RUN) asks for
its other shares the same way (`request_shards`).

A share ("shard") of an upload is named `i/n`: the upload's runnable files (those not settled in the batch
step, in `leafFiles` order) whose index modulo n is i. The name alone says which files a shard run takes, so a
shard run resumed, queued again or re-run from the UI takes the same files whatever the setting is by then.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from .errors import NO_VALID_FILES
from .ingest.batch import upload_problem
from .model import utc_now
from .status import record_steps, set_batch_state
from .storage import Storage


def request_runs(storage: Storage, file_ids: list[str], reason: str, batch_ids: list[str] | None = None) -> str:
    request_id = str(uuid.uuid4())
    target = storage.root / "requests" / f"{request_id}.json"
    with storage.atomic_path(target) as tmp:
        tmp.write_text(json.dumps({"id": request_id, "fileIds": file_ids, "batchIds": batch_ids or [],
                                   "reason": reason, "created": utc_now()}))
    return request_id


class RetryPlan(NamedTuple):
    """What retrying a batch does: run the batch step again, run these files again, and a message saying so."""
    rerun_batch: bool
    file_ids: list[str]
    message: str

    @property
    def runs(self) -> bool:
        return self.rerun_batch or bool(self.file_ids)


def retry_plan(storage: Storage, batch: dict[str, Any]) -> RetryPlan:
    """What retrying a batch runs: only a settled batch (PROCESSED or FAILED), and only what a run could change.

    A batch that registered no files failed in its own step (a full disk, a killed run, a refused zip), so
    the batch step runs again, unless its answer was a verdict on the upload that would only repeat (no
    machine files inside, a bad Leaf user id, a provider Leaf does not have). Otherwise every file that did not succeed runs again, except
    files in a format we cannot decode, whose answer would not change."""
    status = batch.get("status")
    if status not in ("PROCESSED", "FAILED"):
        return RetryPlan(False, [], f"nothing to retry: the batch is still {status}; retry it once it is "
                                    "PROCESSED or FAILED")
    if not batch.get("leafFiles"):
        verdict = NO_VALID_FILES if batch.get("statusDetails") == NO_VALID_FILES else upload_problem(dict(batch))
        if verdict:
            return RetryPlan(False, [], f"nothing to retry: the upload was refused ({verdict}); a retry would "
                                        "answer the same")
        return RetryPlan(True, [], "the upload is processed again")
    files = storage.records.many("files", batch["leafFiles"])
    failed = [f for f in files if f.get("status") != "processed"]
    retried = [f["id"] for f in failed if not f.get("unsupportedReason")]
    if retried:
        return RetryPlan(False, retried, f"{len(retried)} of the batch's {len(files)} files run again")
    if failed:
        return RetryPlan(False, [], f"nothing to retry: the failed files ({len(failed)}) are in formats that "
                                    "cannot be decoded")
    return RetryPlan(False, [], "nothing to retry: every file of the batch was processed")


def mark_retried(storage: Storage, batch: dict[str, Any], plan: RetryPlan) -> dict[str, Any]:
    """The records a retry leaves until its runs report: the batch RECEIVED (its step runs again) or
    PROCESSING, and the files to run `processing`. Nothing to retry changes nothing."""
    for file_id in plan.file_ids:
        record_steps(storage, file_id, None, None, update_batch=False)
    if plan.rerun_batch:
        return set_batch_state(storage, batch["id"], "RECEIVED") or batch
    if plan.file_ids:
        return set_batch_state(storage, batch["id"], "PROCESSING") or batch
    return batch


def request_retry(storage: Storage, batch: dict[str, Any]) -> tuple[dict[str, Any], RetryPlan]:
    """PUT /batch/{id}/retry: hand the retry to the daemon; returns the batch record and the plan."""
    plan = retry_plan(storage, batch)
    if plan.runs:
        request_runs(storage, plan.file_ids, "retry", [batch["id"]] if plan.rerun_batch else [])
    return mark_retried(storage, batch, plan), plan


def shard_count(files: int, per_run: int | None) -> int:
    """Into how many runs an upload of `files` runnable files is split with `per_run` files at most per run."""
    return max(1, -(-files // per_run)) if per_run else 1


def shard_name(index: int, count: int) -> str:
    return f"{index}/{count}"


def parse_shard(name: str) -> tuple[int, int]:
    """(i, n) of a shard name `i/n`; ValueError names the value when it is not one."""
    try:
        index, count = (int(part) for part in name.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise ValueError(f"{name!r} is no shard name: expected i/n with 0 <= i < n")
    return index, count


def shard_records(records: list[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    """The file records of a batch (in `leafFiles` order) that one of its runs answers for: all of them for a
    run of no shard (or of the one shard `0/1`); for shard i/n, every n-th runnable file from the i-th. Files
    in a format we cannot decode are no shard's: the batch step settles them before it splits the upload."""
    index, count = parse_shard(name) if name else (0, 1)
    if count == 1:
        return list(records)
    return [r for r in records if not r.get("unsupportedReason")][index::count]


def request_shards(storage: Storage, batch_id: str, count: int, origin: str) -> str:
    """Ask for shards 1 to count-1 of the batch (the asking run does shard 0). `origin` names the upload's run
    (its first attempt, for a run queued again): the request's id and the run keys derive from it, so asking
    again for the same run writes the same request and starts no shard twice."""
    request_id = _shard_request_id(batch_id, origin)
    target = storage.root / "requests" / f"{request_id}.json"
    with storage.atomic_path(target) as tmp:
        tmp.write_text(json.dumps({"id": request_id, "fileIds": [], "batchIds": [], "reason": "shard",
                                   "shards": {"batchId": batch_id, "names": [shard_name(i, count)
                                                                             for i in range(1, count)]},
                                   "created": utc_now()}))
    return request_id


def asked_shards(storage: Storage, batch_id: str, origin: str) -> int:
    """Into how many runs the upload's run named `origin` split the batch: its shard request's names and its own
    shard, whether the request waits or was turned into runs; 1 when it asked for none. An upload's run that
    asked and died before tagging itself answers for shard 0 alone."""
    name = f"{_shard_request_id(batch_id, origin)}.json"
    for path in (storage.root / "requests" / name, storage.root / "requests" / "done" / name):
        if storage.exists(path):
            names = json.loads(storage.fetch(path).read_text())["shards"]["names"]
            return parse_shard(names[0])[1]
    return 1


def _shard_request_id(batch_id: str, origin: str) -> str:
    return f"shards-{batch_id}-{origin}"


def pending(storage: Storage) -> list[tuple[Path, dict[str, Any]]]:
    folder = storage.synced(storage.root / "requests")
    if not folder.exists():
        return []
    return [(p, json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]


def mark_done(storage: Storage, path: Path) -> None:
    done = path.parent / "done"
    done.mkdir(exist_ok=True)
    storage.move(path, done / path.name)
