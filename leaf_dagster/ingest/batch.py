"""An upload becomes a batch: stored, safely extracted, and its machine files detected and registered.

Identifiers are derived, not random, so that re-running a batch step (a retry, a re-executed run) finds
the same batch and the same file ids instead of duplicating them: the batch id is a UUID of the inbox
file's name, size and modification time, and each file id a UUID of the batch id and the file's path
inside the upload.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NO_VALID_FILES, CorruptArchiveError, QueryError, UnsafeArchiveError
from ..model import DetectedFile, utc_now
from ..identifiers import batch_identifier_problem, is_uuid
from ..model import leaf_provider
from ..status import set_batch_state
from ..storage import DEFAULT_OWNER, Storage
from .safe_zip import extract_archive

NAMESPACE = uuid.UUID("5d0c5a53-2f7e-4c0e-9a51-3f0b0c7c1eaf")
# Each machine file costs one run, so an upload's file count is capped (a zip of 200 one-byte entries
# would otherwise hold the queue for as long as 200 real files).
MAX_FILES_ENV = "LEAF_MAX_FILES_PER_UPLOAD"
DEFAULT_MAX_FILES = 1000
# Errors that mean "the machine, not the upload": a retry once they are fixed can succeed.
_RETRYABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM}


def max_files_per_upload() -> int:
    """The cap on machine files in one upload (LEAF_MAX_FILES_PER_UPLOAD, default 1000)."""
    value = os.environ.get(MAX_FILES_ENV, "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else DEFAULT_MAX_FILES


def os_error_message(file_name: str, action: str, exc: OSError) -> str:
    """An OS error as a batch message: the user's file name and the reason, never a server path."""
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    retry = "; retry the batch once the server is fixed" if exc.errno in _RETRYABLE_ERRNOS else ""
    return f"{file_name}: {action} failed ({reason}){retry}"


def batch_id_for(upload: Path, leaf_user_id: str | None = None, provider: str | None = None) -> str:
    """Stable id of an upload: the same file seen on many sensor ticks maps to one batch, while the same
    file uploaded for another Leaf user or provider is another batch."""
    stat = upload.stat()
    return str(uuid.uuid5(NAMESPACE, f"{upload.name}|{stat.st_size}|{stat.st_mtime_ns}|{leaf_user_id}|{provider}"))


def file_id_for(batch_id: str, relative_path: str) -> str:
    return str(uuid.uuid5(uuid.UUID(batch_id), relative_path))


def sidecar_for(upload: Path) -> Path:
    return upload.with_suffix(".json")


def read_sidecar(upload: Path) -> dict[str, Any]:
    """The optional NAME.json next to NAME.zip: leafUserId, provider, fileFormat; the HTTP API also writes the
    upload's own fileName, the apiOwnerUsername and the batchId it already answered with."""
    path = sidecar_for(upload)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    keys = ("leafUserId", "provider", "fileFormat", "fileName", "apiOwnerUsername", "batchId")
    # values are strings: anything else (a list, a number) becomes its text and is judged as an identifier
    meta = {k: str(data[k]) for k in keys if isinstance(data, dict) and data.get(k) is not None}
    if not is_uuid(meta.get("batchId")):  # only the API's own UUID is a usable batch key
        meta.pop("batchId", None)
    return meta


def new_batch(storage: Storage, batch_id: str, upload: Path, leaf_user_id: str | None, provider: str | None,
              file_format: str | None = None, *, move: bool = True, file_name: str | None = None,
              owner: str | None = None) -> dict[str, Any]:
    """Record a received upload (Leaf's batch object, status RECEIVED) unless it is already known.

    `move` takes the upload out of the inbox when it is stored; a file named on the command line is
    copied instead, so the user's own file stays where it is."""
    existing = storage.records.get("batches", batch_id)
    if existing:
        return existing
    try:  # a provider Leaf does not have is refused by the batch step, where the user sees it
        provider = leaf_provider(provider or "Other")
    except QueryError:
        pass
    storage.records.put("batches", batch_id, "registration", {
        "id": batch_id, "leafUserId": leaf_user_id or "default", "fileName": file_name or upload.name,
        "apiOwnerUsername": owner or DEFAULT_OWNER, "storedName": upload.name, "size": upload.stat().st_size,
        "provider": provider, "uploadTimestamp": utc_now(), "fileFormat": file_format,
        "inboxPath": str(upload.resolve()), "moveUpload": move,
    })
    return storage.records.get("batches", batch_id) or {}


def upload_problem(batch: dict[str, Any]) -> str | None:
    """Why a batch's sidecar values cannot be used (a bad owner or Leaf user id, a provider Leaf does not
    have), or None."""
    problem = batch_identifier_problem(batch)
    if problem is None:
        try:
            leaf_provider(batch.get("provider") or "Other")
        except QueryError as exc:
            problem = str(exc)
    return problem


@dataclass
class BatchOutcome:
    """What the batch step found: the machine files it registered, or why the upload is refused (`error`
    for the run's log, `details` for Leaf's statusDetails)."""
    batch: dict[str, Any]
    files: list[dict[str, Any]]
    error: str | None = None
    details: str | None = None


def _store_upload(storage: Storage, batch: dict[str, Any]) -> Path:
    """Move the upload (and its sidecar) out of the inbox into the batch folder; idempotent."""
    stored = storage.upload_dir(batch["id"]) / batch.get("storedName", batch["fileName"])
    inbox_path = storage.inbox_upload(batch["inboxPath"])
    if not storage.fetch(stored).exists():  # stored by an earlier attempt, maybe on another host
        if not inbox_path.exists():
            raise FileNotFoundError(f"{batch['fileName']}: the upload is neither in the inbox nor stored")
        stored.parent.mkdir(parents=True, exist_ok=True)
        with storage.atomic_path(stored) as tmp:
            shutil.copyfile(inbox_path, tmp)
        if batch.get("moveUpload", True):
            storage.discard(inbox_path)
    sidecar = sidecar_for(inbox_path)
    if sidecar.exists() and batch.get("moveUpload", True):
        storage.move(sidecar, stored.parent / sidecar.name)
    return stored


def _file_record(storage: Storage, batch: dict[str, Any], root: Path, found: DetectedFile) -> dict[str, Any]:
    relative = found.relative_to(root)
    return {
        "id": file_id_for(batch["id"], relative), "batchId": batch["id"], "leafUserId": batch["leafUserId"],
        "apiOwnerUsername": batch.get("apiOwnerUsername", DEFAULT_OWNER),
        "provider": batch["provider"], "fileName": found.name, "fileFormat": found.file_format,
        "origin": "uploaded", "createdTime": utc_now(), "sourcePath": relative, "primary": found.primary.relative_to(root).as_posix(), "layer": found.layer,
        "members": [m.relative_to(root).as_posix() for m in found.members],
        "sizeInBytes": sum(m.stat().st_size for m in found.members), "unsupportedReason": found.unsupported_reason,
    }


def ingest_batch(storage: Storage, batch_id: str) -> BatchOutcome:
    """Store, extract, detect and register the machine files (the batch's `scan` section). Never raises for
    bad input or an OS error (a full disk, a path too long): the batch ends FAILED with the reason and the
    outcome carries it; otherwise the caller records the status once unreadable files are settled. Extraction work is removed when the upload is refused, so a refused or empty
    upload leaves only the stored zip behind (kept for a retry)."""
    from .detect import detect_machine_files

    batch = storage.records.get("batches", batch_id)
    if batch is None:
        raise KeyError(f"batch {batch_id} was never received")
    name = batch["fileName"]
    extracted = storage.extracted_dir(batch_id)
    detected: list[DetectedFile] = []
    error = details = stored = None
    action = "storing the upload"
    try:
        upload = _store_upload(storage, batch)
        stored = str(upload.relative_to(storage.root))
        problem = upload_problem(batch)  # a hand-written sidecar: refused before any per-user path is used
        if problem:
            storage.records.put("batches", batch_id, "scan", {"leafFiles": [], "storedPath": stored})
            return BatchOutcome(set_batch_state(storage, batch_id, "FAILED", problem) or batch, [], problem, problem)
        action = "extracting the upload"
        shutil.rmtree(extracted, ignore_errors=True)
        extract_archive(upload, extracted, name=name)
        action = "scanning the upload"
        detected = detect_machine_files(extracted)
    except (UnsafeArchiveError, CorruptArchiveError) as exc:
        error = details = str(exc)
    except OSError as exc:
        error = details = os_error_message(name, action, exc)
    if not error and not detected:
        details = NO_VALID_FILES
        error = f"{name}: {NO_VALID_FILES} (no shapefile, GeoPackage, GeoJSON, CSV/text or known monitor format inside)"
    elif not error and len(detected) > max_files_per_upload():
        error = details = (f"{name}: {len(detected)} machine files found, more than the limit of "
                           f"{max_files_per_upload()} per upload; split the upload into smaller zips")
    files = [] if error else [_file_record(storage, batch, extracted, found) for found in detected]
    known = {r["id"]: r for r in storage.records.many("files", [f["id"] for f in files])}
    for record in files:  # a re-run batch step keeps its files' creation times
        record["createdTime"] = known.get(record["id"], record)["createdTime"]
        storage.records.put("files", record["id"], "registration", record)
    storage.records.put("batches", batch_id, "scan", {"leafFiles": [f["id"] for f in files], "storedPath": stored})
    if error:
        shutil.rmtree(extracted, ignore_errors=True)
        batch = set_batch_state(storage, batch_id, "FAILED", details) or batch
    return BatchOutcome(batch, files, error, details)


def link_members(storage: Storage, record: dict[str, Any]) -> list[Path]:
    """Place a file's members in its own original/ folder (hard links: no second copy on disk)."""
    extracted = storage.extracted_dir(record["batchId"])
    target = storage.synced(storage.original_dir(record["id"]))  # placed by an earlier run, maybe on another host
    target.mkdir(parents=True, exist_ok=True)
    placed = []
    for member in record["members"]:
        src = extracted / member
        dst = target / Path(member).name
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
            storage.publish(dst)
        placed.append(dst)
    return placed
