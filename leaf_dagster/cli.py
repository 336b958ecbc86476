"""`leaf-dagster`: the machine-files API from the command line, plus SQL and in-process processing.

Every command reads the data directory from LEAF_DATA_DIR (default ./data), like the Dagster code location,
and prints JSON with --json. The command line has no API owner: uploads, fields and configurations it
makes belong to the local owner ("local"), and `--owner` on the fields commands names another. Commands that
start work (process, files reprocess, files merge, batch retry) run it in this process to completion and print
the result: progress on stderr, results on stdout, one line per failed file. An id may be given by a unique
prefix of at least 8 characters. Exit codes: 0 done, 1 a file failed or an error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from .catalog import query
from .errors import (CatalogError, ConfigError, FieldError, InvalidIdentifier, MergeError, NotFound, QueryError,
                     RecordsConfigError, UsageError)
from .identifiers import check_id
from .objects import batch_object, batch_status, file_object, outside_field_object, status_object, uncovered_files
from .model import leaf_provider
from .query import BATCH_FILTERS, FILE_FILTERS, list_batches, list_files
from .storage import DEFAULT_OWNER, Storage, data_url


MIN_PREFIX = 8  # an id prefix must be this long to be looked up (a UUID's first group)


def _out(text: str) -> None:
    """Print a result on stdout. A reader that stopped reading (`| head`) is not an error: the rest of the
    output goes to /dev/null and the command still ends with its own exit code."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 200, width: int | None = 60) -> str:
    """A text table, one line per row; cells are cut to `width` characters unless it is None."""
    from tabulate import tabulate

    def cell(value: Any) -> str:
        text = " ".join(("" if value is None else str(value)).split())
        return text if width is None else text[:width]

    shown = [[cell(v) for v in row] for row in rows[:limit]]
    text = tabulate(shown, headers=list(columns), tablefmt="simple")
    if len(rows) > limit:
        text += f"\n... {len(rows) - limit} more rows"
    return text


def _emit(args: argparse.Namespace, value: Any, columns: Sequence[str] | None = None,
          rows: Callable[[Any], Sequence[Sequence[Any]]] | None = None, width: int | None = 60) -> None:
    if args.json or columns is None or rows is None:
        _out(json.dumps(value, indent=2, default=str))
    else:
        _out(_table(columns, rows(value), width=width))


def _full_id(storage: Storage, table: str, given: str) -> str:
    """The id of the record `given` names in `table`: the id itself or a unique prefix of it."""
    kind = {"files": "file", "batches": "batch"}[table]
    if storage.records.get(table, given) is not None:
        return given
    if len(given) < MIN_PREFIX:
        raise NotFound(f"{kind} {given} not found (give the full id or at least {MIN_PREFIX} characters of it)")
    matches = storage.records.ids_starting(table, given)
    if not matches:
        raise NotFound(f"{kind} {given} not found")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise UsageError(f"{kind} id prefix {given} is ambiguous: it starts {len(matches)} ids ({shown})")
    return matches[0]


def _record(storage: Storage, table: str, given: str) -> dict[str, Any]:
    """A file or batch record by id or unique id prefix."""
    return storage.records.get(table, _full_id(storage, table, given)) or {}


def _file_rows(storage: Storage, files: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows of file objects, the failing step and Leaf's message in the last column, with the reason its
    gate recorded when it recorded one (Leaf's "Failed to convert file" says nothing of why)."""
    failed_ids = [f["id"] for f in files if f.get("status") == "failed"]
    recorded_steps = {r["id"]: r.get("steps") or {}
                      for r in storage.records.many("files", failed_ids, sections=("registration", "status"))}
    rows = []
    for f in files:
        steps = recorded_steps.get(f["id"]) or f.get("steps", {})
        failure = next((_failure(step, s) for step, s in steps.items() if s["status"] == "failed"), "")
        rows.append([f["id"], f.get("fileFormat"), f.get("operationType") or "", f.get("pointCount") or "",
                     f.get("status"), f.get("fileName"), failure])
    return rows


def _failure(step: str, status: dict[str, Any]) -> str:
    """`step: message (reason)`, the reason being the one the step's gate recorded, if any."""
    reason = (status.get("details") or {}).get("reason")
    return f"{step}: {status['message']}" + (f" ({reason})" if reason else "")


FILE_COLUMNS = ["id", "format", "operation", "points", "status", "file", "failure"]


def _files_exit_code(files: list[dict[str, Any]]) -> int:
    """1 when any file did not end processed, else 0."""
    return 1 if any(f.get("status") != "processed" for f in files) else 0


def _print_files(args: argparse.Namespace, storage: Storage, files: list[dict[str, Any]]) -> int:
    _emit(args, files, FILE_COLUMNS, lambda items: _file_rows(storage, items), width=None)
    return _files_exit_code(files)


def _print_batch_result(args: argparse.Namespace, storage: Storage, result: dict[str, Any]) -> int:
    if args.json:
        _out(json.dumps(result, indent=2, default=str))
    else:
        batch = result["batch"]
        _out(f"batch {batch['id']}  {batch['fileName']}  {batch['status']}"
             + (f"  ({batch['statusDetails']})" if batch.get("statusDetails") else ""))
        _out(_table(FILE_COLUMNS, _file_rows(storage, result["files"]), width=None))
    return 1 if result["batch"]["status"] == "FAILED" else _files_exit_code(result["files"])


def cmd_process(args: argparse.Namespace, storage: Storage) -> int:
    from .defs.in_process import instance_for_cli, process_upload

    upload = Path(args.zip)
    if not upload.is_file():
        raise NotFound(f"{upload}: no such file")
    return _print_batch_result(args, storage, process_upload(upload, storage, instance_for_cli(), leaf_user_id=args.leaf_user_id,
                                                    provider=args.provider, progress=args.progress))


def cmd_sql(args: argparse.Namespace, storage: Storage) -> int:
    columns, rows = query(storage, args.query)
    if args.json:
        _out(json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=str))
    else:
        _out(_table(columns, rows))
    return 0


def cmd_files_list(args: argparse.Namespace, storage: Storage) -> int:
    filters = {k: v for k, v in vars(args).items() if k in FILE_FILTERS and v is not None}
    page = list_files(storage, page=args.page, size=args.size, sort=args.sort, **filters)
    if args.json:
        _out(json.dumps({"operations": page.items, "totalCount": page.total, "page": page.page, "size": page.size},
                        indent=2, default=str))
    else:
        _out(_table(FILE_COLUMNS, _file_rows(storage, page.items), width=None))
        _out(f"{page.total} files in all (page {page.page}, size {page.size})")
    return 0


def cmd_files_show(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, file_object(_record(storage, "files", args.id)))
    return 0


def cmd_files_status(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, status_object(_record(storage, "files", args.id)), ["step", "status", "message"],
          lambda s: [[k, v["status"], v["message"]] for k, v in s.items()])
    return 0


def _step_output(storage: Storage, section: str, given: str) -> Any:
    """A file's summary or units, the file named by id or unique prefix."""
    file_id = _full_id(storage, "files", given)
    output = storage.records.section("files", file_id, section)
    if output is None:
        raise NotFound(f"file {file_id} has no {section} (it did not get that far)")
    return output


def cmd_files_summary(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, _step_output(storage, "summary", args.id)["summary"])
    return 0


def cmd_files_units(args: argparse.Namespace, storage: Storage) -> int:
    units = _step_output(storage, "units", args.id)["unitMap"]
    _emit(args, units, ["property", "unit"], lambda m: list(m.items()))
    return 0


def cmd_files_outside(args: argparse.Namespace, storage: Storage) -> int:
    if args.id:
        record = _record(storage, "files", args.id)
        value = outside_field_object(record)
        if value is None:
            raise NotFound(f"file {record['id']} has no outside-field GeoJSON (needs splitOperationsByField and "
                           "enableOutsideFieldGeojson)")
        _emit(args, value)
    else:
        records = storage.records.owner_files(args.owner, args.leaf_user_id)
        _emit(args, [o for o in (outside_field_object(r) for r in records) if o])
    return 0


def cmd_files_uncovered(args: argparse.Namespace, storage: Storage) -> int:
    _emit(args, {"files": uncovered_files(storage, args.leaf_user_id, owner=args.owner)})
    return 0


def cmd_files_merge(args: argparse.Namespace, storage: Storage) -> int:
    from .defs.in_process import instance_for_cli, merge_files

    merged = merge_files(storage, instance_for_cli(), [_full_id(storage, "files", i) for i in args.ids])
    _emit(args, merged, FILE_COLUMNS, lambda f: _file_rows(storage, [f]), width=None)
    return _files_exit_code([merged])


def cmd_files_reprocess(args: argparse.Namespace, storage: Storage) -> int:
    """Run files' steps again with their owner's and user's current configuration: the way to apply a
    configuration changed outside the API (Leaf applies a change to new files only)."""
    from .defs.in_process import instance_for_cli, load_definitions, run_files

    records = [_record(storage, "files", i) for i in args.ids]
    for record in records:
        if record.get("unsupportedReason"):
            raise UsageError(f"file {record['id']} ({record.get('fileName')}) cannot be processed: "
                             f"{record['unsupportedReason']}")
    ids = list(dict.fromkeys(r["id"] for r in records))
    return _print_files(args, storage, run_files(storage, instance_for_cli(), load_definitions(storage), ids, args.progress))


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
    from .defs.in_process import instance_for_cli, retry_batch

    batch_id = _full_id(storage, "batches", args.id)
    return _print_batch_result(args, storage, retry_batch(storage, instance_for_cli(), batch_id, progress=args.progress))


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


def _provider(value: str) -> str:
    """An argparse type: a provider in Leaf's spelling, any case (exit code 2 with Leaf's list otherwise)."""
    try:
        return leaf_provider(value)
    except QueryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _option(name: str) -> tuple[str, ...]:
    """The flags of an option named like Leaf's parameter: kebab-case (`--leaf-user-id`), then Leaf's
    camelCase spelling (`--leafUserId`) as an alias that help does not list."""
    kebab = re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", name).lower()
    return (f"--{kebab}",) if kebab == name else (f"--{kebab}", f"--{name}")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help that lists options by their kebab-case flags only (camelCase aliases are accepted, not shown)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [flag for flag in action.option_strings if flag == flag.lower()]
        if shown != action.option_strings:
            action = copy.copy(action)
            action.option_strings = shown
        return super()._format_action_invocation(action)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leaf-dagster", description=__doc__, formatter_class=_Help)
    sub = p.add_subparsers(dest="command", required=True)

    def group(name: str, help_text: str) -> Any:
        return sub.add_parser(name, help=help_text, formatter_class=_Help).add_subparsers(dest=f"{name}_command",
                                                                                        required=True)

    def command(parent: Any, name: str, run: Callable[..., int], help_text: str, *arguments: tuple) -> argparse.ArgumentParser:
        cmd = parent.add_parser(name, help=help_text, description=help_text, formatter_class=_Help)
        for flags, options in arguments:
            cmd.add_argument(*flags, **options)
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.add_argument("-v", "--verbose", action="store_true",
                         help="show Dagster's run logs, warnings and the traceback of an unexpected error")
        cmd.set_defaults(run=run)
        return cmd

    def filters(listing: argparse.ArgumentParser, names: Sequence[str]) -> None:
        for name in names:
            flags = _option(name)
            listing.add_argument(*flags, dest=name, metavar=flags[0][2:].upper().replace("-", "_"),
                                 help=f"Leaf's {name} filter")

    file_id = (("id",), {"help": "file id (or a unique prefix)", "type": _identifier("file id")})
    batch_id = (("id",), {"help": "batch id (or a unique prefix)", "type": _identifier("batch id")})
    file_ids = (("ids",), {"nargs": "+", "metavar": "FILE_ID", "type": _identifier("file id")})
    user = (_option("leafUserId"), {"required": True, "dest": "leaf_user_id", "metavar": "LEAF_USER_ID",
                                    "type": _identifier("leafUserId")})
    owner = (("--owner",), {"default": DEFAULT_OWNER, "type": _identifier("API owner"),
                            "help": f"the API owner of the user (default: {DEFAULT_OWNER}, the command line's own)"})
    paging: tuple[tuple[tuple[str], dict[str, str]], ...] = ((("--page",), {}), (("--size",), {}), (("--sort",), {"action": "append", "help": "field[,asc|desc]"}))
    command(sub, "process", cmd_process, "run one upload through the pipeline in this process",
            (("zip",), {}), user, (("--provider",), {"required": True, "type": _provider}))
    command(sub, "sql", cmd_sql, "read-only SQL on the catalog (views: batches, files, file_status, raw_points, "
                                 "standard_points, filtered_points, polygons, summaries, units, images)", (("query",), {}))

    files = group("files", "machine files")
    filters(command(files, "list", cmd_files_list, "list files (Leaf's GET /files filters)", *paging), FILE_FILTERS)
    command(files, "show", cmd_files_show, "a file object", file_id)
    command(files, "status", cmd_files_status, "Leaf's status object of a file", file_id)
    command(files, "summary", cmd_files_summary, "a file's summary Feature", file_id)
    command(files, "units", cmd_files_units, "a file's property -> unit map", file_id)
    command(files, "outside-field", cmd_files_outside, "outside-field GeoJSON of one file, or of all files",
            (("id",), {"nargs": "?", "type": _identifier("file id")}),
            (_option("leafUserId"), {"dest": "leaf_user_id", "metavar": "LEAF_USER_ID", "type": _identifier("leafUserId")}),
            owner)
    command(files, "uncovered", cmd_files_uncovered, "files that intersect no field of the user", user, owner)
    command(files, "merge", cmd_files_merge, "merge processed files into a new file", file_ids)
    command(files, "reprocess", cmd_files_reprocess,
            "run files' steps again in this process with the current configuration of their owner and user",
            file_ids)

    batch = group("batch", "uploads")
    filters(command(batch, "list", cmd_batch_list, "list batches", *paging), BATCH_FILTERS)
    command(batch, "show", cmd_batch_show, "a batch object", batch_id)
    command(batch, "status", cmd_batch_status, "files of a batch: converted, processing, failed", batch_id)
    command(batch, "retry", cmd_batch_retry, "reprocess the files of a batch that did not succeed", batch_id)

    serve = sub.add_parser("serve", help="run the Leaf-compatible HTTP API (uploads are processed by the Dagster daemon)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=cmd_serve, json=False, verbose=True)  # uvicorn's log is its output

    sub.add_parser("bench", help="benchmarks: per-step speed and memory against a pyogrio baseline "
                                 "([--quick] [--json] [--out DIR]; `leaf-dagster bench --help` for all)")

    fields = group("fields", "field boundaries")
    command(fields, "add", cmd_fields_add, "add boundaries (GeoJSON, shapefile, GeoPackage or zip)", user, owner,
            (("path",), {}))
    command(fields, "list", cmd_fields_list, "a user's fields and the files matched to them", user, owner)
    return p


@contextmanager
def _quiet_stderr(verbose: bool) -> Iterator[TextIO]:
    """Yield the stream for progress lines; unless `verbose`, everything else written to stderr meanwhile
    (Dagster's run logs and the tracebacks of expected failures, its warnings, C libraries' messages) goes
    to /dev/null. C code and early-made log handlers hold file descriptor 2 itself, so the descriptor is
    redirected as well as `sys.stderr`."""
    if verbose:
        yield sys.stderr
        return
    sys.stderr.flush()
    saved_fd, saved_stream = os.dup(2), sys.stderr
    progress = os.fdopen(os.dup(saved_fd), "w", buffering=1, encoding=saved_stream.encoding, errors="backslashreplace")
    devnull = open(os.devnull, "w")
    os.dup2(devnull.fileno(), 2)
    sys.stderr = devnull
    try:
        yield progress
    finally:
        sys.stderr = saved_stream
        os.dup2(saved_fd, 2)
        for stream in (progress, devnull):
            stream.close()
        os.close(saved_fd)


# Errors a user can act on: one line on stderr, and the exit code.
EXPECTED_ERRORS: dict[type[Exception], int] = {NotFound: 1, UsageError: 2, QueryError: 2, MergeError: 2,
                                                FieldError: 2, ConfigError: 2, InvalidIdentifier: 2, CatalogError: 2,
                                                RecordsConfigError: 2}


def _bench(argv: list[str]) -> int:
    """Run the benchmarks, which live in a checkout's `benchmarks/` and are not shipped in the wheel: found beside
    this package (an editable install, as `make install` makes) or in the current directory."""
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (root / "benchmarks" / "run.py").is_file():
            sys.path.insert(0, str(root))
            return importlib.import_module("benchmarks.run").main(argv)
    print("error: the benchmarks are not installed; run `leaf-dagster bench` from a checkout of leaf-dagster "
          "(its benchmarks/ folder)", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    import duckdb

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own options
        return _bench(argv[1:])
    args = parser().parse_args(argv)
    try:
        with _quiet_stderr(args.verbose) as progress:
            args.progress = (lambda _msg: None) if args.json else (lambda msg: print(msg, file=progress))
            return args.run(args, Storage(data_url()))
    except tuple(EXPECTED_ERRORS) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return next(code for kind, code in EXPECTED_ERRORS.items() if isinstance(exc, kind))
    except duckdb.Error as exc:  # a clear one-line error for users, not a traceback
        print(f"SQL error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: the user stopped it; a traceback through Dagster's run would only bury that
        if args.verbose:
            traceback.print_exc()
        print("interrupted: run the command again to finish its work", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or a broken environment: one line, the traceback only when asked for
        if args.verbose:
            traceback.print_exc()
        hint = "" if args.verbose else " (--verbose shows the traceback)"
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0] + hint, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
