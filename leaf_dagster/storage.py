"""Every path the pipeline reads or writes, in one place.

The data directory is laid out so that each pipeline step owns one folder of per-file outputs:

    inbox/                          uploads waiting to be picked up (NAME.zip, optional NAME.json)
    owners/<owner>/config.json      an API owner's configuration
    owners/<owner>/users/<leafUserId>/config.json, fields/
                                    a Leaf user's configuration and field boundaries, per owner
    batches/<batch_id>/upload/      the stored upload
    batches/<batch_id>/extracted/   its safely extracted contents
    files/<file_id>/original/       the members that make up one machine file
    files/<file_id>/images/         property PNGs (+ .aux.xml) and their zip
    lake/<table>/<id>.parquet       one GeoParquet output per file and step
    records.sqlite                  batch and file records, one section per writer (`records.py`)
    leaf.duckdb                     SQL catalog: views over lake/ and the records
    ducklake/                       data files of the shared DuckLake catalog, when LEAF_CATALOG names one

Every per-owner and per-user path comes from `owner_path`/`user_path`: the identifiers must match
`identifiers.ID_PATTERN` and the resolved path must lie inside the owner's folder. Record and output
keys (file and batch ids) are checked the same way.

Writers always write to a temporary name in the target folder and rename it into place, so a reader
never sees half an output and a crashed step never leaves one behind.

The data directory may instead be S3-compatible object storage (LEAF_DATA_DIR=s3://bucket/prefix): the bucket
is then the shared truth and each process works in a local working folder (LEAF_WORK_DIR) laid out the same
way, since readers (GDAL, pyogrio, Parquet) need local files. `atomic_path` renames locally and then PUTs the
same key (a PUT is atomic too); `fetch` brings one path's object down when the local copy is missing or its
ETag differs (the ETags of the local copies are kept in the working folder's `.objects.sqlite`); `synced` does
so for a folder others write into (the inbox, run requests, a file's originals, a user's fields). Keys are the
same confined relative paths, so nothing lands outside the prefix. The records and the local DuckDB catalog are
not objects: they stay in the working folder, and hosts sharing a bucket need a record store they share too.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import PathOutsideDataDir
from .identifiers import check_id

if TYPE_CHECKING:
    import geopandas as gpd

    from obstore import ObjectMeta
    from obstore.store import S3Store

    from .records import Records

DATA_DIR_ENV = "LEAF_DATA_DIR"
# With object storage: this process's working folder (default: a cache folder per bucket and prefix), and
# the S3 endpoint when it is not AWS_ENDPOINT_URL's (keys and region: the usual AWS_* variables).
WORK_DIR_ENV = "LEAF_WORK_DIR"
ENDPOINT_ENV = "LEAF_S3_ENDPOINT"
# Working-folder entries that are never objects: each host's own records copy and DuckDB catalog.
LOCAL_ONLY = {"records.sqlite", "leaf.duckdb", "leaf.duckdb.views", "ducklake", ".objects.sqlite"}
# Uploads that name no API owner (inbox drops without one in their sidecar, the CLI) belong to this owner.
DEFAULT_OWNER = "local"


def owner_of(record: dict[str, Any]) -> str:
    """The API owner of a batch or file record (records without one belong to the local owner)."""
    return record.get("apiOwnerUsername") or DEFAULT_OWNER


def data_url() -> str:
    """The data directory named by LEAF_DATA_DIR (a folder or s3://bucket/prefix), else ./data."""
    return os.environ.get(DATA_DIR_ENV, "data")


def default_data_dir() -> Path:
    """The local folder of LEAF_DATA_DIR: the folder itself, or this process's working folder for object storage."""
    url = data_url()
    return work_dir_for(url) if url.startswith("s3://") else Path(url)


def work_dir_for(url: str) -> Path:
    """LEAF_WORK_DIR, else a cache folder named after the bucket and prefix."""
    named = os.environ.get(WORK_DIR_ENV)
    if named:
        return Path(named)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "leaf-dagster" / url.removeprefix("s3://").strip("/")


class Storage:
    """Paths and atomic writes under one data directory: a local folder, or an s3:// URL whose objects are
    mirrored in a local working folder (`work_dir`, else LEAF_WORK_DIR)."""

    def __init__(self, data_dir: str | os.PathLike[str], work_dir: str | os.PathLike[str] | None = None):
        url = os.fspath(data_dir)
        self.objects: ObjectStore | None = None
        self.work_dir: str | None = None
        if url.startswith("s3://"):
            self.root = Path(work_dir or work_dir_for(url)).resolve()
            self.objects = ObjectStore(url, self.root)
            self.url, self.work_dir = url, str(self.root)
        else:
            self.root = Path(url).resolve()
            self.url = str(self.root)

    # -- layout --------------------------------------------------------------------------------
    def _inside(self, *parts: str, base: Path | None = None) -> Path:
        """`parts` joined under `base` (the data directory by default), resolved, and refused if it leaves it."""
        base = base or self.root
        path = base.joinpath(*parts).resolve()
        if path != base and base not in path.parents:
            raise PathOutsideDataDir(f"{'/'.join(parts)} is outside its folder in the data directory")
        return path

    def owner_path(self, owner: str, *parts: str) -> Path:
        """The one way to a path of an API owner: owners/<owner>/<parts>, never outside that folder."""
        folder = self._inside("owners", check_id("API owner", owner))
        return self._inside(*parts, base=folder)

    def user_path(self, owner: str, leaf_user_id: str, *parts: str) -> Path:
        """A path of one Leaf user of one API owner: owners/<owner>/users/<leafUserId>/<parts>."""
        return self.owner_path(owner, "users", check_id("leafUserId", leaf_user_id), *parts)

    @property
    def inbox(self) -> Path:
        return self._inside("inbox")

    @property
    def catalog_path(self) -> Path:
        return self._inside("leaf.duckdb")

    @property
    def ducklake_dir(self) -> Path:
        return self._inside("ducklake")

    def batch_dir(self, batch_id: str) -> Path:
        return self._inside("batches", check_id("batch id", batch_id))

    def upload_dir(self, batch_id: str) -> Path:
        return self.batch_dir(batch_id) / "upload"

    def extracted_dir(self, batch_id: str) -> Path:
        return self.batch_dir(batch_id) / "extracted"

    def file_dir(self, file_id: str) -> Path:
        return self._inside("files", check_id("file id", file_id))

    def original_dir(self, file_id: str) -> Path:
        return self.file_dir(file_id) / "original"

    def images_dir(self, file_id: str) -> Path:
        return self.file_dir(file_id) / "images"

    def table_dir(self, table: str) -> Path:
        return self._inside("lake", table)

    def parquet_path(self, table: str, key: str) -> Path:
        return self._inside("lake", table, f"{check_id('id', key)}.parquet")

    @property
    def records(self) -> "Records":
        """The batch and file records: `records.sqlite` in the data directory, or the PostgreSQL database of
        LEAF_RECORDS_URL when one is named."""
        from .records import Records, records_url

        return Records(self._inside("records.sqlite"), records_url())

    # -- atomic writes -------------------------------------------------------------------------
    @contextmanager
    def atomic_path(self, target: Path) -> Iterator[Path]:
        """Yield a temporary sibling of `target`; it replaces `target` only if the block succeeds."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.replace(tmp_path, target)
        finally:
            tmp_path.unlink(missing_ok=True)
        self.publish(target)

    def read_geoparquet(self, table: str, key: str) -> "gpd.GeoDataFrame":
        import geopandas as gpd  # heavy: only the steps that read points pay for it

        return gpd.read_parquet(self.fetch(self.parquet_path(table, key)))

    # -- object storage (each a no-op on a local data directory) ---------------------------------
    def _object(self, path: Path) -> tuple[ObjectStore, str] | None:
        """The object store and key of a path in the working folder; None on a local data directory, for a
        path outside the working folder or for a local-only one."""
        if self.objects is None:
            return None
        path = path.resolve()
        if self.root not in path.parents:
            return None
        key = path.relative_to(self.root).as_posix()
        return None if key.split("/", 1)[0] in LOCAL_ONLY else (self.objects, key)

    def publish(self, path: Path) -> None:
        """Put a file written in place (not through `atomic_path`) under its key."""
        if found := self._object(path):
            found[0].put(found[1], path)

    def fetch(self, path: Path) -> Path:
        """`path`, its local copy brought up to date from the store first (gone if the object is)."""
        if found := self._object(path):
            found[0].fetch(found[1], path)
        return path

    def exists(self, path: Path) -> bool:
        """Whether `path` exists (as an object, with object storage: no download)."""
        found = self._object(path)
        return found[0].exists(found[1]) if found else path.exists()

    def object_url(self, path: Path) -> str | None:
        """The s3:// URL of a path's object, for a reader that takes it from the store itself (DuckDB's
        httpfs); None on a local data directory or for a local-only path."""
        found = self._object(path)
        return f"{self.url.rstrip('/')}/{found[1]}" if found else None

    def stamps(self, folder: Path) -> dict[str, str]:
        """Each file directly in `folder` by name, with a stamp that changes whenever the file does: its size and
        modification time, or with object storage its object's size and ETag, listed from the store (nothing
        fetched), so the files other hosts wrote are there too."""
        if found := self._object(folder):
            return {meta["path"].rsplit("/", 1)[-1]: f"{meta['size']}:{meta['e_tag']}"
                    for meta in found[0].listed(found[1])}
        stamps = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed since listed
                continue
            stamps[path.name] = f"{stat.st_size}:{stat.st_mtime_ns}"
        return stamps

    def synced(self, folder: Path) -> Path:
        """`folder` with the files of its store folder fetched and the ones gone from the store removed (files
        only this host has, such as an upload still being received, stay)."""
        if found := self._object(folder):
            found[0].sync(found[1], folder)
        return folder

    def discard(self, path: Path) -> None:
        """Remove a file and its object."""
        path.unlink()
        if found := self._object(path):
            found[0].delete(found[1])

    def move(self, source: Path, target: Path) -> None:
        """Move a file to another place in the data directory (its object too)."""
        shutil.move(source, target)
        self.publish(target)
        if found := self._object(source):
            found[0].delete(found[1])

    def inbox_upload(self, recorded: str) -> Path:
        """The upload a batch record names (`inboxPath`): that path on a local data directory. With object
        storage an upload under some host's inbox/ is this host's inbox/NAME (and NAME.json), fetched; a file
        named on the command line stays where it is."""
        path = Path(recorded)
        if self.objects is None or (path.exists() and self._object(path) is None):
            return path
        local = path if self._object(path) else self.inbox / path.name
        self.fetch(local.with_suffix(".json"))
        return self.fetch(local)


class ObjectStore:
    """An S3 bucket prefix (obstore) and the ETags of the objects copied into one working folder.

    The ETags live in `.objects.sqlite` in the working folder with the size and modification time each local
    copy had then, so a copy is fetched again only when the object changed (or the copy did)."""

    def __init__(self, url: str, root: Path):
        from obstore.store import S3Store

        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"{url}: an object storage URL is s3://bucket/prefix")
        endpoint = os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL")
        self.store: S3Store = S3Store(parts.netloc, prefix=parts.path.strip("/") or None,
                                      config={"endpoint": endpoint} if endpoint else None,
                                      client_options={"allow_http": bool(endpoint and endpoint.startswith("http:"))})
        self.index = root / ".objects.sqlite"
        root.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS copies (key TEXT PRIMARY KEY, etag TEXT, size INT, mtime INT)")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.index, timeout=60, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def _note(self, key: str, etag: str | None, path: Path, stat: os.stat_result | None = None) -> None:
        """Record that the local copy of `key` is the object with `etag`; `stat`, when given, is the copy as it
        was when that held (a copy replaced since then no longer matches, and is fetched again)."""
        stat = stat or path.stat()
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO copies VALUES (?, ?, ?, ?)", (key, etag, stat.st_size, stat.st_mtime_ns))

    def _known(self, key: str, path: Path) -> str | None:
        """The ETag of the local copy of `key`, if it is still the copy that was fetched or put."""
        with self._db() as db:
            row = db.execute("SELECT etag, size, mtime FROM copies WHERE key = ?", (key,)).fetchone()
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return row[0] if row and (row[1], row[2]) == (stat.st_size, stat.st_mtime_ns) else None

    def _forget(self, key: str, path: Path | None = None) -> None:
        with self._db() as db:
            db.execute("DELETE FROM copies WHERE key = ?", (key,))
        if path is not None:
            path.unlink(missing_ok=True)

    def put(self, key: str, path: Path) -> None:
        import obstore

        stat = path.stat()  # the file put: another process of this host may rename its own fetch over it meanwhile
        self._note(key, obstore.put(self.store, key, path)["e_tag"], path, stat)

    def fetch(self, key: str, path: Path, etag: str | None = None) -> None:
        """Get `key` into `path` unless the local copy has its ETag (`etag` when the caller listed it)."""
        import obstore
        from obstore.exceptions import NotFoundError, NotModifiedError

        known = self._known(key, path)
        if known is not None and known == etag:
            return
        try:
            result = obstore.get(self.store, key, options={"if_none_match": known} if known else None)
        except NotModifiedError:
            return
        except (FileNotFoundError, NotFoundError):  # obstore raises either
            if self._tracked(key):
                self._forget(key, path)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as sink:
                for chunk in result:
                    sink.write(chunk)
            stamp = result.meta["last_modified"].timestamp()  # the same upload time on every host
            os.utime(tmp, (stamp, stamp))
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._note(key, result.meta["e_tag"], path)

    def _tracked(self, key: str) -> bool:
        with self._db() as db:
            return db.execute("SELECT 1 FROM copies WHERE key = ?", (key,)).fetchone() is not None

    def sync(self, key: str, folder: Path) -> None:
        """Fetch the objects directly under `key/` that changed; remove copies whose object is gone."""
        names = set()
        for meta in self.listed(key):
            name = meta["path"].rsplit("/", 1)[-1]
            names.add(name)
            self.fetch(meta["path"], folder / name, meta["e_tag"])
        with self._db() as db:
            copies = [row[0] for row in db.execute("SELECT key FROM copies WHERE key > ? AND key < ?",
                                                   (key + "/", key + "0"))]
        for gone in copies:
            name = gone[len(key) + 1:]
            if "/" not in name and name not in names:
                self._forget(gone, folder / name)

    def listed(self, key: str) -> "Sequence[ObjectMeta]":
        """The objects directly under `key/`."""
        import obstore

        return obstore.list_with_delimiter(self.store, key + "/")["objects"]

    def exists(self, key: str) -> bool:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.head(self.store, key)
        except (FileNotFoundError, NotFoundError):  # obstore raises either
            return False
        return True

    def delete(self, key: str) -> None:
        import obstore

        obstore.delete(self.store, key)
        self._forget(key)
