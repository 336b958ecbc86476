"""The query layer behind the CLI and the HTTP API: Leaf's list filters, paging and sorting.

Lists are SQL over the record store's `file_list` table and `batch_list` view (a column per scalar fact of
`model.py`, the same facts SQL users see in the catalog): the ids of a page are chosen on narrow indexed
rows, then only that page's records are read, and nothing is rebuilt per request. Bad parameters raise
QueryError with a message fit to show the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import QueryError
from .objects import batch_object, file_object
from .model import BATCH_STATUSES, OPERATION_TYPES, leaf_provider
from .records import owner_where
from .storage import Storage

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
FILE_SORT_FIELDS = ("id", "fileName", "createdTime", "updatedTime", "origin", "leafUserId", "sizeInBytes", "provider",
                    "organizationId", "fileFormat")
BATCH_SORT_FIELDS = ("id", "uploadTimestamp", "processedTimestamp", "leafUserId", "provider", "status", "fileName", "size")
FILE_STATUSES = ("processed", "failed", "processing")
ORIGINS = ("provider", "automerged", "merged", "uploaded")
FILE_FILTERS = ("leafUserId", "provider", "status", "origin", "organizationId", "batchId", "fileId", "fileFormat",
                "createdTime", "startTime", "updatedTime", "endTime", "operationStartTime", "operationEndTime",
                "operationType", "minArea", "providerFileId", "standard")
BATCH_FILTERS = ("leafUserId", "status", "uploadStartTime", "uploadEndTime", "processStartTime", "processEndTime")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$")


@dataclass
class Page:
    """One page of a list: Leaf's objects, the records they were built from, and the list's total."""
    items: list[dict[str, Any]]
    total: int
    page: int
    size: int
    records: list[dict[str, Any]]


def _timestamp(name: str, value: str) -> str:
    """An ISO 8601 parameter in the records' own form (UTC, milliseconds, Z), so it compares as text;
    a time without a zone is UTC."""
    if not _ISO.match(value.strip()):
        raise QueryError(f"{name} must be an ISO 8601 timestamp such as 2024-05-01T00:00:00.000Z, not {value!r}")
    try:
        instant = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=timezone.utc)
        return instant.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError) as exc:
        raise QueryError(f"{name}: {value!r} is not a valid date/time ({exc})") from exc


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise QueryError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def paging(page: Any, size: Any) -> tuple[int, int]:
    try:
        page_n = int(page) if page not in (None, "") else 0
        size_n = int(size) if size not in (None, "") else DEFAULT_PAGE_SIZE
    except (TypeError, ValueError) as exc:
        raise QueryError("page and size must be whole numbers") from exc
    if page_n < 0:
        raise QueryError("page must be 0 or more")
    if not 1 <= size_n <= MAX_PAGE_SIZE:
        raise QueryError(f"size must be between 1 and {MAX_PAGE_SIZE}, not {size_n}")
    return page_n, size_n


def _order(sort: list[str] | str | None, allowed: tuple[str, ...], default: str) -> str:
    """`sort=field[,asc|desc]`, repeatable; the first one has priority."""
    specs = [sort] if isinstance(sort, str) else list(sort or [])
    parts = []
    for spec in specs:
        field, _, direction = spec.partition(",")
        field, direction = field.strip(), (direction.strip() or "asc").lower()
        if field not in allowed:
            raise QueryError(f"cannot sort by {field!r}; sortable fields: {', '.join(allowed)}")
        if direction not in ("asc", "desc"):
            raise QueryError(f"sort direction must be asc or desc, not {direction!r}")
        parts.append(f'"{field}" {direction.upper()} NULLS LAST')
    parts.append(f'"{default}" ASC')
    return ", ".join(parts)


def _page(storage: Storage, table: str, where: list[str], params: list[Any], owner: str | None, order: str,
          page: int, size: int) -> Page:
    """Run the filtered, ordered query for one page and build Leaf's objects from its records."""
    if owner is not None:
        owned, owner_params = owner_where(owner)
        where, params = [*where, *owned], [*params, *owner_params]
    view = "file_list" if table == "files" else "batch_list"
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    ((total,),) = storage.records.query(f"SELECT count(*) FROM {view}{clause}", params)
    ids: list[str] = []
    if page * size < total:  # past the end (any page number, even one beyond SQL's integers): empty
        ids = [row[0] for row in storage.records.query(
            f"SELECT id FROM {view}{clause} ORDER BY {order} LIMIT ? OFFSET ?", [*params, size, page * size])]
    records = storage.records.many(table, ids)
    to_object = file_object if table == "files" else batch_object
    return Page([to_object(r) for r in records], int(total), page, size, records)


def list_files(storage: Storage, *, owner: str | None = None, page: Any = None, size: Any = None,
               sort: list[str] | str | None = None, **filters: Any) -> Page:
    """GET /files: every filter of Leaf's list, paging, multi-key sort, total count."""
    page_n, size_n = paging(page, size)
    where: list[str] = []
    params: list[Any] = []
    if filters.get("provider") not in (None, ""):
        filters["provider"] = leaf_provider(filters["provider"])
    exact = {"leafUserId": None, "provider": None, "organizationId": None, "batchId": None, "fileId": "id",
             "fileFormat": None, "providerFileId": None}
    for key, column in exact.items():
        if filters.get(key) not in (None, ""):
            where.append(f'"{column or key}" = ?')
            params.append(str(filters[key]))
    for key, allowed in (("status", FILE_STATUSES), ("operationType", OPERATION_TYPES), ("origin", ORIGINS)):
        if filters.get(key) not in (None, ""):
            where.append(f'"{key}" = ?')
            params.append(_choice(key, filters[key], allowed))
    for key, column, op in (("createdTime", "createdTime", ">="), ("updatedTime", "updatedTime", ">="),
                            ("startTime", "startTime", ">="), ("operationStartTime", "startTime", ">="),
                            ("endTime", "endTime", "<="), ("operationEndTime", "endTime", "<=")):
        if filters.get(key) not in (None, ""):
            where.append(f'"{column}" {op} ?')
            params.append(_timestamp(key, filters[key]))
    if filters.get("minArea") not in (None, ""):
        try:
            min_area = float(filters["minArea"])
        except (TypeError, ValueError) as exc:
            raise QueryError(f"minArea must be a number of square metres, not {filters['minArea']!r}") from exc
        where.append('"areaM2" >= ?')
        params.append(min_area)
    if filters.get("standard") not in (None, ""):
        value = str(filters["standard"]).lower()
        if value not in ("true", "false"):
            raise QueryError(f"standard must be true or false, not {filters['standard']!r}")
        # a file processed out of standard (outOfStandardOperations) is not standard; both are 0/1 columns, so
        # their product is their AND in SQLite and PostgreSQL alike
        where.append('coalesce("standardProcessed" * coalesce("standard", 1), 0) = ?')
        params.append(1 if value == "true" else 0)
    return _page(storage, "files", where, params, owner, _order(sort, FILE_SORT_FIELDS, "id"), page_n, size_n)


def list_batches(storage: Storage, *, owner: str | None = None, page: Any = None, size: Any = None,
                 sort: list[str] | str | None = None, **filters: Any) -> Page:
    """GET /batch with Leaf's filters."""
    page_n, size_n = paging(page, size)
    where, params = [], []
    if filters.get("leafUserId") not in (None, ""):
        where.append('"leafUserId" = ?')
        params.append(filters["leafUserId"])
    if filters.get("status") not in (None, ""):
        where.append('"status" = ?')
        params.append(_choice("status", filters["status"], BATCH_STATUSES))
    for key, column, op in (("uploadStartTime", "uploadTimestamp", ">="), ("uploadEndTime", "uploadTimestamp", "<="),
                            ("processStartTime", "processedTimestamp", ">="), ("processEndTime", "processedTimestamp", "<=")):
        if filters.get(key) not in (None, ""):
            where.append(f'"{column}" {op} ?')
            params.append(_timestamp(key, filters[key]))
    return _page(storage, "batches", where, params, owner, _order(sort, BATCH_SORT_FIELDS, "id"), page_n, size_n)
