"""`leaf-dagster`: the machine-files API from the command line, plus SQL and in-process processing.

Every command reads the data directory from LEAF_DATA_DIR (default ./data), like the Dagster code location,
and prints JSON with --json. The command line has no API owner: uploads, fields and configurations it
makes belong to the local owner ("local"), and `--owner` on the fields commands names another. Commands that start work (process, files merge, batch retry) run it in this
process to completion and print the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .catalog import query, refresh_catalog
from .config import ConfigError
from .errors import FieldError, MergeError
from .identifiers import InvalidIdentifier, check_id
from .objects import batch_object, batch_status, file_object, outside_field_object, status_object, uncovered_files
from .query import BATCH_FILTERS, FILE_FILTERS, QueryError, list_batches, list_files
from .storage import DEFAULT_OWNER, Storage, default_data_dir


class NotFound(Exception):
    """A file or batch id that the data directory does not know."""


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 200) -> str:
    from tabulate import tabulate

    shown = [[("" if v is None else str(v))[:60] for v in row] for row in rows[:limit]]
    text = tabulate(shown, headers=list(columns), tablefmt="simple")
    if len(rows) > limit:
        text += f"\n... {len(rows) - limit} more rows"
    return text


def _emit(args: argparse.Namespace, value: Any, columns: Sequence[str] | None = None,
          rows: Callable[[Any], Sequence[Sequence[Any]]] | None = None) -> None:
    if args.json or columns is None or rows is None:
        print(json.dumps(value, indent=2, default=str))
    else:
        print(_table(columns, rows(value)))


def _record(storage: Storage, table: str, key: str) -> dict[str, Any]:
    record = storage.read_record(table, key)
    if record is None:
        raise NotFound(f"{table[:-1]} {key} not found")
    return record


def _file_rows(files: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for f in files:
        failed = next((f"{step}: {s['message']}" for step, s in f.get("steps", {}).items() if s["status"] == "failed"), "")
        rows.append([f["id"][:8], f.get("fileFormat"), f.get("operationType") or "", f.get("pointCount") or "",
                     f.get("status"), f.get("fileName"), failed])
    return rows


FILE_COLUMNS = ["id", "format", "operation", "points", "status", "file", "failure"]


def _print_batch_result(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        batch = result["batch"]
        print(f"batch {batch['id']}  {batch['fileName']}  {batch['status']}"
              + (f"  ({batch['statusDetails']})" if batch.get("statusDetails") else ""))
        print(_table(FILE_COLUMNS, _file_rows(result["files"])))
    return 0 if result["batch"]["status"] != "FAILED" else 1


def _progress(args: argparse.Namespace) -> Callable[[str], None]:
    return (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))


def cmd_process(args: argparse.Namespace, storage: Storage) -> int:
    from .pipeline import instance_for_cli, process_upload

    upload = Path(args.zip)
    if not upload.is_file():
        raise NotFound(f"{upload}: no such file")
    return _print_batch_result(args, process_upload(upload, storage, instance_for_cli(), leaf_user_id=args.leaf_user_id,
                                                    provider=args.provider, progress=_progress(args)))


def cmd_sql(args: argparse.Namespace, storage: Storage) -> int:
    refresh_catalog(storage)
    columns, rows = query(storage, args.query)
    if args.json:
        print(json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=str))
    else:
        print(_table(columns, rows))
    return 0


def cmd_files_list(args: argparse.Namespace, storage: Storage) -> int:
    filters = {k: v for k, v in vars(args).items() if k in FILE_FILTERS and v is not None}
    page = list_files(storage, page=args.page, size=args.size, sort=args.sort, **filters)
    if args.json:
        print(json.dumps({"operations": page.items, "totalCount": page.total, "page": page.page, "size": page.size},
                         indent=2, default=str))
    else:
        print(_table(FILE_COLUMNS, _file_rows(page.items)))
        print(f"{page.total} files in all (page {page.page}, size {page.size})")
    return 0


def cmd_files_show(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, file_object(_record(storage, "files", args.id)))
    return 0


def cmd_files_status(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, status_object(_record(storage, "files", args.id)), ["step", "status", "message"],
          lambda s: [[k, v["status"], v["message"]] for k, v in s.items()])
    return 0


def cmd_files_summary(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, _record(storage, "summaries", args.id)["summary"])
    return 0


def cmd_files_units(args: argparse.Namespace, storage: Storage) -> int:
    rows = _record(storage, "units", args.id)
    _emit(args, {r["property"]: r["unit"] for r in rows}, ["property", "unit"], lambda m: list(m.items()))
    return 0


def cmd_files_outside(args: argparse.Namespace, storage: Storage) -> int:
    if args.id:
        value = outside_field_object(_record(storage, "files", args.id))
        if value is None:
            raise NotFound(f"file {args.id} has no outside-field GeoJSON (needs splitOperationsByField and "
                           "enableOutsideFieldGeojson)")
        _emit(args, value)
    else:
        records = [r for r in storage.records("files") if args.leaf_user_id in (None, r.get("leafUserId"))]
        _emit(args, [o for o in (outside_field_object(r) for r in records) if o])
    return 0


def cmd_files_uncovered(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, {"files": uncovered_files(storage, args.leaf_user_id, owner=args.owner)})
    return 0


def cmd_files_merge(args: argparse.Namespace, storage: Storage) -> int:
    from .pipeline import instance_for_cli, merge_files

    merged = merge_files(storage, instance_for_cli(), args.ids)
    _emit(args, merged, FILE_COLUMNS, lambda f: _file_rows([f]))
    return 0 if merged["status"] == "processed" else 1


def cmd_batch_list(args: argparse.Namespace, storage: Storage) -> int:
    filters = {k: v for k, v in vars(args).items() if k in BATCH_FILTERS and v is not None}
    page = list_batches(storage, page=args.page, size=args.size, sort=args.sort, **filters)
    _emit(args, page.items, ["id", "leafUserId", "fileName", "status", "files", "uploaded"],
          lambda items: [[b["id"], b["leafUserId"], b["fileName"], b["status"], len(b["leafFiles"] or []),
                          b["uploadTimestamp"]] for b in items])
    return 0


def cmd_batch_show(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, batch_object(_record(storage, "batches", args.id)))
    return 0


def cmd_batch_status(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, batch_status(storage, _record(storage, "batches", args.id)))
    return 0


def cmd_batch_retry(args: argparse.Namespace, storage: Storage) -> int:
    from .pipeline import instance_for_cli, retry_batch

    _record(storage, "batches", args.id)
    return _print_batch_result(args, retry_batch(storage, instance_for_cli(), args.id, progress=_progress(args)))


def cmd_serve(args: argparse.Namespace, storage: Storage) -> int:
    import uvicorn

    from .api.app import create_app

    uvicorn.run(create_app(storage), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_fields_add(args: argparse.Namespace, storage: Storage) -> int:
    from .fields import add_boundaries

    added = add_boundaries(storage, args.leaf_user_id, Path(args.path), owner=args.owner)
    _emit(args, added, ["id", "name", "area m2"], lambda fs: [[f["id"], f["name"], round(f["area"]["value"])] for f in fs])
    return 0


def cmd_fields_list(args: argparse.Namespace, storage: Storage) -> int:
    from .fields import list_fields

    _emit(args, list_fields(storage, args.leaf_user_id, owner=args.owner), ["id", "name", "area m2", "files"],
          lambda fs: [[f["id"], f["name"], round(f["area"]["value"]), len(f["files"])] for f in fs])
    return 0


def _identifier(kind: str) -> Callable[[str], str]:
    """An argparse type that refuses ids which could not be used as paths (exit code 2 with the rule)."""
    def parse(value: str) -> str:
        try:
            return check_id(kind, value)
        except InvalidIdentifier as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
    parse.__name__ = kind
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leaf-dagster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def command(parent: Any, name: str, run: Callable[..., int], help_text: str, *arguments: tuple) -> argparse.ArgumentParser:
        cmd = parent.add_parser(name, help=help_text)
        for flags, options in arguments:
            cmd.add_argument(*flags, **options)
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(run=run)
        return cmd

    file_id = (("id",), {"help": "file id", "type": _identifier("file id")})
    batch_id = (("id",), {"help": "batch id", "type": _identifier("batch id")})
    user = (("--leaf-user-id",), {"required": True, "type": _identifier("leafUserId")})
    owner = (("--owner",), {"default": DEFAULT_OWNER, "type": _identifier("API owner"),
                            "help": f"the API owner of the user (default: {DEFAULT_OWNER}, the command line's own)"})
    command(sub, "process", cmd_process, "run one upload through the pipeline in this process",
            (("zip",), {}), user, (("--provider",), {"required": True}))
    command(sub, "sql", cmd_sql, "read-only SQL on the catalog (views: batches, files, file_status, raw_points, "
                                 "standard_points, filtered_points, polygons, summaries, units, images)", (("query",), {}))

    files = sub.add_parser("files", help="machine files").add_subparsers(dest="files_command", required=True)
    listing = command(files, "list", cmd_files_list, "list files (Leaf's GET /files filters)",
                      (("--page",), {}), (("--size",), {}), (("--sort",), {"action": "append", "help": "field[,asc|desc]"}))
    for name in FILE_FILTERS:
        listing.add_argument(f"--{name}", dest=name)
    command(files, "show", cmd_files_show, "a file object", file_id)
    command(files, "status", cmd_files_status, "Leaf's status object of a file", file_id)
    command(files, "summary", cmd_files_summary, "a file's summary Feature", file_id)
    command(files, "units", cmd_files_units, "a file's property -> unit map", file_id)
    command(files, "outside-field", cmd_files_outside, "outside-field GeoJSON of one file, or of all files",
            (("id",), {"nargs": "?", "type": _identifier("file id")}),
            (("--leaf-user-id",), {"type": _identifier("leafUserId")}))
    command(files, "uncovered", cmd_files_uncovered, "files that intersect no field of the user", user, owner)
    command(files, "merge", cmd_files_merge, "merge processed files into a new file",
            (("ids",), {"nargs": "+", "type": _identifier("file id")}))

    batch = sub.add_parser("batch", help="uploads").add_subparsers(dest="batch_command", required=True)
    listing = command(batch, "list", cmd_batch_list, "list batches", (("--page",), {}), (("--size",), {}),
                      (("--sort",), {"action": "append"}))
    for name in BATCH_FILTERS:
        listing.add_argument(f"--{name}", dest=name)
    command(batch, "show", cmd_batch_show, "a batch object", batch_id)
    command(batch, "status", cmd_batch_status, "files of a batch: converted, processing, failed", batch_id)
    command(batch, "retry", cmd_batch_retry, "reprocess the files of a batch that did not succeed", batch_id)

    serve = sub.add_parser("serve", help="run the Leaf-compatible HTTP API (uploads are processed by the Dagster daemon)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=cmd_serve)

    sub.add_parser("bench", help="benchmarks: per-step speed and memory against a pyogrio baseline "
                                 "([--quick] [--json] [--out DIR]; `leaf-dagster bench --help` for all)")

    fields = sub.add_parser("fields", help="field boundaries").add_subparsers(dest="fields_command", required=True)
    command(fields, "add", cmd_fields_add, "add boundaries (GeoJSON, shapefile, GeoPackage or zip)", user, owner,
            (("path",), {}))
    command(fields, "list", cmd_fields_list, "a user's fields and the files matched to them", user, owner)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import duckdb

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own options
        from .bench.run import main as bench_main

        return bench_main(argv[1:])
    args = parser().parse_args(argv)
    storage = Storage(default_data_dir())
    try:
        return args.run(args, storage)
    except (NotFound, QueryError, MergeError, FieldError, ConfigError, InvalidIdentifier) as exc:
        print(exc, file=sys.stderr)
        return 1 if isinstance(exc, NotFound) else 2
    except duckdb.Error as exc:  # a clear one-line error for users, not a traceback
        print(f"SQL error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
