"""`leaf-dagster`: process uploads in-process, query the catalog, read file status.

Every command reads the data directory from LEAF_DATA_DIR (default ./data), like the Dagster code location.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .catalog import query, refresh_catalog
from .objects import file_object
from .status import status_object
from .storage import Storage, default_data_dir


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 200) -> str:
    from tabulate import tabulate

    shown = [[("" if v is None else str(v))[:60] for v in row] for row in rows[:limit]]
    text = tabulate(shown, headers=list(columns), tablefmt="simple")
    if len(rows) > limit:
        text += f"\n... {len(rows) - limit} more rows"
    return text


def _process(args: argparse.Namespace, storage: Storage) -> int:
    from .pipeline import instance_for_cli, process_upload

    upload = Path(args.zip)
    if not upload.is_file():
        print(f"{upload}: no such file", file=sys.stderr)
        return 2
    progress = (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = process_upload(upload, storage, instance_for_cli(), leaf_user_id=args.leaf_user_id,
                            provider=args.provider, progress=progress)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        batch = result["batch"]
        print(f"batch {batch['id']}  {batch['fileName']}  {batch['status']}"
              + (f"  ({batch['statusDetails']})" if batch.get("statusDetails") else ""))
        rows = []
        for f in result["files"]:
            failed = next((f"{step}: {s['message']}" for step, s in f["steps"].items() if s["status"] == "failed"), "")
            rows.append([f["id"][:8], f["fileFormat"], f.get("operationType") or "", f.get("pointCount") or "",
                         f["status"], f["fileName"], failed])
        print(_table(["id", "format", "operation", "points", "status", "file", "failure"], rows))
    return 0 if result["batch"]["status"] != "FAILED" else 1


def _sql(args: argparse.Namespace, storage: Storage) -> int:
    refresh_catalog(storage)
    columns, rows = query(storage, args.query)
    if args.json:
        print(json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=str))
    else:
        print(_table(columns, rows))
    return 0


class NotFound(Exception):
    """A file or batch id that the data directory does not know."""


def _file_record(storage: Storage, file_id: str) -> dict[str, Any]:
    record = storage.read_record("files", file_id)
    if record is None:
        raise NotFound(f"file {file_id} not found")
    return record


def _files_status(args: argparse.Namespace, storage: Storage) -> int:
    status = status_object(_file_record(storage, args.id))
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(_table(["step", "status", "message"], [[k, v["status"], v["message"]] for k, v in status.items()]))
    return 0


def _files_show(args: argparse.Namespace, storage: Storage) -> int:
    print(json.dumps(file_object(_file_record(storage, args.id)), indent=2, default=str))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leaf-dagster", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    process = sub.add_parser("process", help="run one upload through the pipeline in this process")
    process.add_argument("zip")
    process.add_argument("--leaf-user-id", required=True)
    process.add_argument("--provider", required=True)
    process.add_argument("--json", action="store_true")
    process.set_defaults(run=_process)
    sql = sub.add_parser("sql", help="run read-only SQL on the catalog (views: batches, files, file_status, "
                                     "raw_points, standard_points)")
    sql.add_argument("query")
    sql.add_argument("--json", action="store_true")
    sql.set_defaults(run=_sql)
    files = sub.add_parser("files", help="machine files").add_subparsers(dest="files_command", required=True)
    status = files.add_parser("status", help="Leaf's status object of a file")
    status.add_argument("id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_files_status)
    show = files.add_parser("show", help="Leaf's file object")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_files_show)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    storage = Storage(default_data_dir())
    import duckdb

    try:
        return args.run(args, storage)
    except NotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    except duckdb.Error as exc:  # a clear one-line error for users, not a traceback
        print(f"SQL error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
