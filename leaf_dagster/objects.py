"""Leaf's JSON objects (file, batch) built from our records, with internal bookkeeping left out."""

from __future__ import annotations

from typing import Any

from .errors import public_message
from .model import BATCH_OBJECT_KEYS, FILE_OBJECT_KEYS, STEP_ORDER
from .storage import DEFAULT_OWNER



def status_object(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Leaf's GET /files/{id}/status body: {step: {status, message}}. A file whose run has not reported yet
    (just registered, or sent to merge) has every step `processing`."""
    steps = record.get("steps") or {step: {"status": "processing", "message": ""} for step in STEP_ORDER}
    return {step: {"status": s["status"], "message": s["message"]} for step, s in steps.items()}


def file_object(record: dict[str, Any]) -> dict[str, Any]:
    """The file object with its per-step status (`steps`)."""
    out = {k: record.get(k) for k in FILE_OBJECT_KEYS if k in record}
    out.setdefault("fields", [])
    out["steps"] = status_object(record)
    return out


def batch_object(record: dict[str, Any]) -> dict[str, Any]:
    """The batch object; its statusDetails name the upload as the user named it, with no server paths."""
    out = {k: record.get(k) for k in BATCH_OBJECT_KEYS}
    if isinstance(out["statusDetails"], str):
        stored = record.get("storedName") or ""
        out["statusDetails"] = public_message(out["statusDetails"], {stored: record.get("fileName") or stored})
    return out


def batch_status(storage: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Leaf's GET /batch/{id}/status: files grouped as converted, processing and failed (by failing step)."""
    out: dict[str, Any] = {"converted": {"leafFiles": []}, "processing": {"leafFiles": []}, "failed": {}}
    for record in storage.records.many("files", batch.get("leafFiles", [])):
        file_id = record["id"]
        status = record.get("status", "processing")
        if status == "processed":
            out["converted"]["leafFiles"].append(file_id)
        elif status == "failed":
            step, detail = next((k, v) for k, v in (record.get("steps") or {}).items() if v["status"] == "failed")
            group = out["failed"].setdefault(step, {"leafFiles": [], "status": "failed", "message": detail["message"],
                                                    "messages": {}})
            group["leafFiles"].append(file_id)
            group["messages"][file_id] = detail["message"]
        else:
            out["processing"]["leafFiles"].append(file_id)
    return out


def uncovered_files(storage: Any, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> list[str]:
    """Processed files of an owner's user that intersect none of the user's fields."""
    return [r["id"] for r in storage.records.owner_files(owner, leaf_user_id)
            if r.get("status") == "processed" and r.get("uncovered")]


def outside_field_object(record: dict[str, Any]) -> dict[str, Any] | None:
    outside = record.get("outsideField")
    if not outside:
        return None
    return {"id": record["id"], "fields": outside["fields"], "featureCount": outside["featureCount"],
            "outsideFieldGeojson": outside["path"], "downloadOutsideFieldGeojson": outside["path"]}
