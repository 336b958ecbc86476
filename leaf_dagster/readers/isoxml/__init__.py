"""ISO 11783-10 TaskData (ISOXML) with our own numpy decoder for binary time logs.

Public API:

- `detect_tasks(primary, members)`: the machine files in one TASKDATA folder, as (layer, name) pairs, one per
  task x operation type ("TSK1|planted"); used by `ingest.detect`.
- `read_isoxml(detected)`: the `SourceTable` of one such machine file (dialect "STANDARD": columns already
  carry Leaf standard property names and units).
- `is_taskdata`, `load_taskdata`, `parse_header`, `decode`, `decode_log`: the parts, for tests and tools.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ...errors import ReaderError
from ...model import DetectedFile, SourceTable
from . import ddi
from .operations import SUPPORTED, OperationGroup, classify
from .partfield import off_field
from .points import build_points
from .taskdata import Task, TaskData, is_taskdata, load_taskdata, time_log_files, time_log_state
from .tlg import TlgData, TlgHeader, decode, decode_log, parse_header
from .totals import terminal_totals

DIALECT = "STANDARD"
NO_TASK = ""  # task part of the layer of a TaskData that logs nothing


def layer_for(task_id: str, operation: str) -> str:
    return f"{task_id}|{operation}"


def split_layer(layer: str | None) -> tuple[str, str]:
    task_id, _, operation = (layer or "").rpartition("|")
    return task_id, operation


def read_headers(data: TaskData, task: Task) -> list[TlgHeader]:
    """The task's time log headers (no binaries read)."""
    headers = []
    for name in task.time_logs:
        header_path = data.file(f"{name}.XML")
        if header_path is None:
            raise ReaderError(f"{name}.XML", "time log header named by the task is missing")
        if time_log_state(data, name).unwritten:
            continue
        headers.append(parse_header(header_path.read_bytes(), name))
    return headers


def read_logs(data: TaskData, task: Task) -> tuple[list[TlgData], list[str]]:
    """Decoded time logs of a task and the decoder's notes; empty logs (0-byte header and binary) are noted."""
    logs: list[TlgData] = []
    notes: list[str] = []
    for name in task.time_logs:
        if time_log_state(data, name).unwritten:
            notes.append(f"{name}: header and binary are 0 bytes (a log opened but never written): skipped")
            continue
        header_path, binary_path = time_log_files(data, name)
        header = parse_header(header_path.read_bytes(), name)
        try:
            binary = binary_path.read_bytes()
        except OSError as exc:
            raise ReaderError(binary_path.name, f"time log binary cannot be read ({exc})") from None
        decoded, log_notes = decode_log(header, binary, data.version_major)
        logs.append(decoded)
        notes += log_notes
    return logs, notes


def logged_practices(logs: list[TlgData]) -> dict[str, int]:
    """DDI 179 (Actual Cultural Practice) per element: a constant from the header or the most logged value."""
    found: dict[str, int] = {}
    for log in logs:
        for spec in log.header.dlvs:
            if spec.ddi != 179:
                continue
            if spec.fixed is not None:
                found.setdefault(spec.element, spec.fixed)
                continue
            _, values = log.entries(spec.index)
            if len(values):
                found.setdefault(spec.element, int(Counter(values.tolist()).most_common(1)[0][0]))
    return found


def plan(data: TaskData, task: Task, logs: list[TlgData] | None = None) -> list[OperationGroup]:
    """Operation groups of one task (headers alone when the binaries are not at hand)."""
    if logs is None:
        headers = read_headers(data, task)
        practices: dict[str, int] = {}
        try:
            decoded, _ = read_logs(data, task)
            practices = logged_practices(decoded)
        except ReaderError:
            pass  # a broken binary is the reader's to report; the headers still tell the operation
        return classify(data, headers, practices)
    return classify(data, [log.header for log in logs], logged_practices(logs))


def detect_tasks(primary: Path, members: list[Path]) -> list[tuple[str, str]]:
    """(layer, name) of every task x operation type in the TaskData at `primary`.

    A task whose time logs cannot be read is still listed (operation "unreadable") so the reader reports
    why; a TaskData with no logging task at all is listed once, so the upload says so instead of
    silently holding nothing."""
    folder_name = primary.parent.name or primary.stem
    try:
        data = load_taskdata(primary, members)
    except ReaderError:
        return [(layer_for(NO_TASK, "unreadable"), f"{folder_name} TaskData")]
    found: list[tuple[str, str]] = []
    for task in data.tasks:
        if not task.time_logs:
            continue
        try:
            groups = plan(data, task)
        except (ReaderError, OSError):
            found.append((layer_for(task.id, "unreadable"), f"{task.label} (unreadable)"))
            continue
        for group in groups:
            found.append((layer_for(task.id, group.operation), f"{task.label} {group.operation}"))
    if not found:
        found.append((layer_for(NO_TASK, "none"), f"{folder_name} TaskData (no logged task)"))
    return found


def read_isoxml(detected: DetectedFile) -> SourceTable:
    """Points of one task x operation type, with Leaf standard property names and units."""
    task_id, operation = split_layer(detected.layer)
    data = load_taskdata(detected.primary, detected.members)
    if not task_id:
        logging = [t for t in data.tasks if t.time_logs]
        if not logging:
            raise ReaderError(detected.primary.name, f"no task in this TaskData has a time log (TLG), so nothing was "
                                                     f"recorded ({len(data.tasks)} tasks, all planned or empty)")
        raise ReaderError(detected.primary.name, "the TaskData names no task to read")
    task = data.task(task_id)
    if task is None:
        raise ReaderError(detected.primary.name, f"task {task_id} is not in the TaskData")
    if not task.time_logs:
        raise ReaderError(detected.primary.name, f"task {task.label} has no time log (TLG)")
    logs, notes = read_logs(data, task)
    if not any(log.count for log in logs):
        names = ", ".join(task.time_logs)
        raise ReaderError(detected.primary.name, f"task {task.label} recorded nothing: its time logs ({names}) hold "
                                                 "no records (0-byte binaries)")
    groups = plan(data, task, logs)
    group = next((g for g in groups if g.operation == operation), None)
    if group is None:
        found = ", ".join(g.operation for g in groups)
        raise ReaderError(detected.primary.name, f"task {task.label} has no {operation or 'such'} operation (it has: {found})")
    frame, units, hints, point_notes = build_points(data, task, group, logs)
    off = off_field(data, task, frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy())
    if off is not None:
        hints["partfieldMismatchKm"] = round(off.km, 1)
        point_notes.append(off.note)
    totals = terminal_totals(data, task)
    if totals:
        hints["terminalTotals"] = totals
    if group.operation not in SUPPORTED:
        point_notes.insert(0, f"task {task.label}: {'; '.join(group.evidence)}")
    notes = data.notes + notes + point_notes
    return SourceTable(frame=frame, dialect=DIALECT, source_crs="EPSG:4326", units=units, hints=hints, notes=notes)


__all__ = [
    "DIALECT", "OperationGroup", "TaskData", "TlgData", "TlgHeader", "classify", "ddi", "decode", "decode_log",
    "detect_tasks", "is_taskdata", "layer_for", "load_taskdata", "logged_practices", "parse_header", "plan",
    "read_headers", "read_isoxml", "read_logs", "split_layer",
]
