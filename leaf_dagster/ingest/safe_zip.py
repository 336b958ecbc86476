"""Safe extraction of untrusted, user-uploaded zip archives.

Machine data reaches us as zip files uploaded by users, so every archive is
treated as hostile: entry paths are confined to the destination folder, entry
counts, sizes and compression ratios (per member and for the whole upload) are
capped both from the central directory and while decompressing, and a failed
extraction leaves nothing behind.
"""

from __future__ import annotations

import lzma
import os
import re
import secrets
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import CorruptArchiveError, UnsafeArchiveError

__all__ = [
    "ExtractionLimits",
    "extract_archive",
]

_CHUNK_SIZE = 1 << 20
# Small members cannot do real damage however well they compress, and tiny
# files (e.g. a .prj full of repeated spaces) legitimately compress very well.
_RATIO_MIN_SIZE = 1 << 20
# Typical file-system limit for one path component; longer names fail on write.
_MAX_COMPONENT_BYTES = 255
_ENCRYPTED_FLAG = 0x1
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_MACOS_JUNK_DIR = "__MACOSX"
_MACOS_JUNK_FILE = ".DS_Store"
_APPLEDOUBLE_PREFIX = "._"

# What zipfile and the decompressors raise on damaged or unsupported input.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    NotImplementedError,  # unsupported compression method (e.g. Deflate64)
    ValueError,  # includes UnicodeDecodeError for bad UTF-8 names
    OSError,  # bz2 reports bad streams as OSError
)


@dataclass(frozen=True)
class ExtractionLimits:
    """Caps that keep a hostile or broken upload from exhausting disk, memory or time.

    The bytes an upload may expand to are bounded three ways: `max_upload_ratio` times the upload's own
    size (real machine-data zips expand 2-17x as a whole; a zip of zero-filled members 1000x), never less
    than `min_budget_bytes` (small uploads cannot do damage however well they compress) and never more
    than `max_total_bytes`. The cumulative bound covers every member, however small: 2,000 members of
    1 MiB of zeros each pass the per-member ratio test but not this one.
    """

    max_entries: int = 20_000  # total members, nested zips included
    max_total_bytes: int = 20 * 2**30  # total uncompressed bytes, nested included
    max_ratio: float = 200.0  # per member file_size / compress_size, for members > 1 MiB
    max_upload_ratio: float = 100.0  # total uncompressed bytes / size of the upload
    min_budget_bytes: int = 64 * 2**20  # the ratio bound never goes below this
    max_depth: int = 2  # a zip inside the upload is depth 1; deeper zips stay plain files

    def budget(self, upload_bytes: int) -> int:
        """The uncompressed bytes an upload of `upload_bytes` may expand to, nested zips included."""
        relative = max(self.min_budget_bytes, int(self.max_upload_ratio * upload_bytes))
        return min(self.max_total_bytes, relative)


def extract_archive(
    archive: Path, dest: Path, limits: ExtractionLimits = ExtractionLimits(), name: str | None = None
) -> list[Path]:
    """Extract `archive` into `dest` (created), expanding nested zips in place up to limits.max_depth.

    Returns the extracted regular files (absolute paths, sorted), not including the
    nested .zip files themselves: a nested `a/b.zip` is expanded into the folder `a/b/`
    and then deleted. Zips nested deeper than `max_depth`, and nested zips that cannot
    be read, are kept as plain files so they can be reported later.

    Raises UnsafeArchiveError when the archive breaks a safety rule and
    CorruptArchiveError when it cannot be read; in both cases everything written
    under `dest` by this call is removed first. Messages name the archive by `name`
    (the user's own file name) when given, else by its file name.
    """
    archive = Path(archive)
    extractor = _Extractor(archive, Path(dest), limits, name)
    try:
        extractor.run()
    except BaseException:
        extractor.rollback()
        raise
    return sorted(extractor.results)


@dataclass(frozen=True)
class _Snapshot:
    """Extractor state to return to when a nested zip turns out to be unreadable."""

    entries: int
    total_bytes: int
    written: int
    created_dirs: int


class _Extractor:
    """One extraction run; tracks everything it writes so a failure can undo it."""

    def __init__(self, archive: Path, dest: Path, limits: ExtractionLimits, name: str | None = None) -> None:
        self.archive = archive
        self.top_label = _show(name or archive.name)
        self.limits = limits
        self.budget = limits.budget(archive.stat().st_size)
        self.entries = 0
        self.total_bytes = 0
        self.created_dirs: list[Path] = []
        self.written: list[Path] = []  # in write order, for rollback
        self.claimed: set[Path] = set()  # every file target of this run, to catch collisions
        self.results: set[Path] = set()
        self.dest = self._create_dest(Path(dest).absolute())

    def _create_dest(self, dest: Path) -> Path:
        """Create `dest` and any missing parents, remembering them so rollback can remove them."""
        missing: list[Path] = []
        current = dest
        while not current.is_dir():
            if current.exists() or current.is_symlink():
                raise NotADirectoryError(f"extraction folder {str(dest)!r} is not a directory")
            missing.append(current)
            current = current.parent
        for folder in reversed(missing):
            folder.mkdir()
            self.created_dirs.append(folder)
        return dest.resolve()

    # -- driving ---------------------------------------------------------------

    def run(self) -> None:
        """Extract the upload, then expand the nested zips it contained."""
        with self._open(self.archive, self.top_label) as zf:
            nested = self._extract_members(zf, self.top_label, self.dest, depth=0)
        for child in nested:
            self._expand_nested(child, depth=1)

    def _expand_nested(self, zip_path: Path, depth: int) -> None:
        """Expand `a/b.zip` into `a/b/`; an unreadable nested zip is kept as a plain file."""
        label = f"{self.top_label} > {_show(zip_path.relative_to(self.dest).as_posix())}"
        root = zip_path.with_name(zip_path.name[: -len(".zip")])
        snapshot = self._snapshot()
        try:
            self._make_dirs(root, label, _show(zip_path.name))
            with self._open(zip_path, label) as zf:
                nested = self._extract_members(zf, label, root, depth)
        except CorruptArchiveError:
            self._rollback_to(snapshot)
            return
        zip_path.unlink()
        self.results.discard(zip_path)
        for child in nested:
            self._expand_nested(child, depth + 1)

    @contextmanager
    def _open(self, path: Path, label: str) -> Iterator[zipfile.ZipFile]:
        """Open a zip, turning parse failures (but not a missing file) into CorruptArchiveError."""
        with open(path, "rb") as handle:
            try:
                zf = zipfile.ZipFile(handle)
            except _READ_ERRORS as err:
                raise CorruptArchiveError(
                    f"{label}: not a readable zip archive ({_reason(err)})"
                ) from err
            with zf:
                yield zf

    # -- per archive -----------------------------------------------------------

    def _extract_members(
        self, zf: zipfile.ZipFile, label: str, root: Path, depth: int
    ) -> list[Path]:
        """Check every member, then write them; returns nested zips eligible for expansion."""
        plan = self._preflight(zf.infolist(), label, root)
        nested: list[Path] = []
        expand_children = depth + 1 <= self.limits.max_depth
        for info, parts, is_dir in plan:
            target = root.joinpath(*parts)
            shown = _show_name(info.filename)
            if is_dir:
                self._make_dirs(target, label, shown)
                continue
            self._write_member(zf, info, target, label, shown)
            if expand_children and _is_zip_name(target.name):
                nested.append(target)
        return nested

    def _preflight(
        self, infos: list[zipfile.ZipInfo], label: str, root: Path
    ) -> list[tuple[zipfile.ZipInfo, list[str], bool]]:
        """Refuse the archive from its central directory before anything is written."""
        limits = self.limits
        self.entries += len(infos)
        if self.entries > limits.max_entries:
            raise UnsafeArchiveError(
                f"{label}: too many entries ({self.entries} in total, limit {limits.max_entries})"
            )

        plan: list[tuple[zipfile.ZipInfo, list[str], bool]] = []
        for info in infos:
            shown = _show_name(info.filename)
            parts = self._safe_parts(info.filename, label, root)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(
                    f"{label}: entry {shown} is a symbolic link, which is not allowed"
                )
            if info.flag_bits & _ENCRYPTED_FLAG:
                raise UnsafeArchiveError(
                    f"{label}: entry {shown} is password-protected; "
                    "upload the files without a password"
                )
            if info.file_size > _RATIO_MIN_SIZE:
                ratio = info.file_size / info.compress_size if info.compress_size else float("inf")
                if ratio > limits.max_ratio:
                    raise UnsafeArchiveError(
                        f"{label}: entry {shown} expands {ratio:.0f}x "
                        f"(limit {limits.max_ratio:g}x), refusing a likely zip bomb"
                    )
            if not parts or _is_macos_junk(parts):
                continue
            is_dir = info.filename.replace("\\", "/").endswith("/")
            plan.append((info, parts, is_dir))

        declared = sum(info.file_size for info in infos)
        if self.total_bytes + declared > self.budget:
            raise UnsafeArchiveError(
                f"{label}: uncompressed size of {self.total_bytes + declared} bytes in total "
                f"exceeds the limit of {self._budget_text()}"
            )
        return plan

    def _budget_text(self) -> str:
        """The byte limit, and why it is what it is when the upload's size set it."""
        if self.budget == self.limits.max_total_bytes:
            return f"{self.budget} bytes"
        return (f"{self.budget} bytes for an upload of this size "
                f"({self.limits.max_upload_ratio:g}x its size, at least {self.limits.min_budget_bytes} bytes)")

    def _safe_parts(self, name: str, label: str, root: Path) -> list[str]:
        """Split an entry name into path components, refusing anything that could leave `root`."""
        shown = _show_name(name)
        # Windows tools write backslash separators; treat them as separators everywhere.
        normalised = name.replace("\\", "/")
        if normalised.startswith("/") or _DRIVE_RE.match(normalised):
            raise UnsafeArchiveError(
                f"{label}: entry {shown} is an absolute path and escapes the extraction folder"
            )
        raw_parts = normalised.split("/")
        if ".." in raw_parts:
            raise UnsafeArchiveError(f"{label}: entry {shown} escapes the extraction folder")
        parts = [part for part in raw_parts if part not in ("", ".")]
        for part in parts:
            if len(part.encode("utf-8", "replace")) > _MAX_COMPONENT_BYTES:
                raise UnsafeArchiveError(
                    f"{label}: entry {shown} has a name longer than {_MAX_COMPONENT_BYTES} bytes"
                )
        if parts and not _is_within(root.joinpath(*parts).resolve(), root):
            raise UnsafeArchiveError(f"{label}: entry {shown} escapes the extraction folder")
        return parts

    # -- writing ---------------------------------------------------------------

    def _write_member(
        self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, label: str, shown: str
    ) -> None:
        """Stream one member to a temporary file next to `target`, then rename it into place."""
        if target in self.claimed:
            raise UnsafeArchiveError(
                f"{label}: entry {shown} would overwrite another extracted file "
                f"{_show_name(target.relative_to(self.dest).as_posix())}"
            )
        self._make_dirs(target.parent, label, shown)
        fd, tmp = _create_temp(target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                self._copy_member(zf, info, out, label, shown)
            try:
                os.replace(tmp, target)
            except IsADirectoryError as err:
                raise UnsafeArchiveError(
                    f"{label}: entry {shown} conflicts with a folder of the same name"
                ) from err
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.claimed.add(target)
        self.written.append(target)
        self.results.add(target)

    def _copy_member(
        self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: BinaryIO, label: str, shown: str
    ) -> None:
        """Copy in chunks, counting real bytes so a lying header cannot get past the limits."""
        limits = self.limits
        written = 0
        try:
            src = zf.open(info)
        except _READ_ERRORS as err:
            raise CorruptArchiveError(
                f"{label}: entry {shown} could not be read ({_reason(err)})"
            ) from err
        with src:
            while True:
                try:
                    chunk = src.read(_CHUNK_SIZE)
                except _READ_ERRORS as err:
                    raise CorruptArchiveError(
                        f"{label}: entry {shown} could not be read ({_reason(err)})"
                    ) from err
                if not chunk:
                    break
                written += len(chunk)
                self.total_bytes += len(chunk)
                if written > info.file_size:
                    raise UnsafeArchiveError(
                        f"{label}: entry {shown} is larger than its header declares "
                        f"({info.file_size} bytes)"
                    )
                if self.total_bytes > self.budget:
                    raise UnsafeArchiveError(
                        f"{label}: uncompressed size exceeds the limit of {self._budget_text()}"
                    )
                if (
                    written > _RATIO_MIN_SIZE
                    and written / max(info.compress_size, 1) > limits.max_ratio
                ):
                    raise UnsafeArchiveError(
                        f"{label}: entry {shown} expands more than {limits.max_ratio:g}x, "
                        "refusing a likely zip bomb"
                    )
                out.write(chunk)

    def _make_dirs(self, folder: Path, label: str, shown: str) -> None:
        """Create `folder` and missing parents inside dest, refusing clashes with files."""
        missing: list[Path] = []
        current = folder
        while not current.is_dir():
            if not _is_within(current, self.dest) or current == self.dest:
                raise UnsafeArchiveError(f"{label}: entry {shown} escapes the extraction folder")
            if current.exists() or current.is_symlink():
                raise UnsafeArchiveError(
                    f"{label}: entry {shown} conflicts with a file of the same name"
                )
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            path.mkdir()
            self.created_dirs.append(path)

    # -- undo ------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(self.entries, self.total_bytes, len(self.written), len(self.created_dirs))

    def _rollback_to(self, snapshot: _Snapshot) -> None:
        """Remove files and folders created after `snapshot` and restore the counters."""
        for path in reversed(self.written[snapshot.written :]):
            path.unlink(missing_ok=True)
            self.claimed.discard(path)
            self.results.discard(path)
        del self.written[snapshot.written :]
        for folder in reversed(self.created_dirs[snapshot.created_dirs :]):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: holds something this run did not write
        del self.created_dirs[snapshot.created_dirs :]
        self.entries = snapshot.entries
        self.total_bytes = snapshot.total_bytes

    def rollback(self) -> None:
        """Undo the whole run, including creating `dest` if it did not exist."""
        self._rollback_to(_Snapshot(0, 0, 0, 0))


def _create_temp(folder: Path) -> tuple[int, Path]:
    """Exclusively create a hidden temporary file, honouring the umask like a normal open()."""
    while True:
        tmp = folder / f".extract-{secrets.token_hex(8)}.part"
        try:
            fd = os.open(tmp, _TEMP_FLAGS, 0o666)
        except FileExistsError:
            continue
        return fd, tmp


def _is_within(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def _is_zip_name(name: str) -> bool:
    return len(name) > len(".zip") and name.lower().endswith(".zip")


def _is_macos_junk(parts: list[str]) -> bool:
    """Finder adds resource forks and folder metadata that are never machine data."""
    name = parts[-1]
    return (
        _MACOS_JUNK_DIR in parts
        or name == _MACOS_JUNK_FILE
        or name.startswith(_APPLEDOUBLE_PREFIX)
    )


def _show(text: str) -> str:
    """Keep messages on one line even when names contain control characters."""
    return text if text.isprintable() else repr(text)


def _show_name(name: str) -> str:
    return repr(name)


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
