"""Unfinished uploads: `.part` files in the inbox, locked while their request lives, removed otherwise.

A request writes its upload to `inbox/.<token>.part` and holds an exclusive `flock` on it until the
upload is renamed into place or refused. The lock dies with the process, so a `.part` nobody holds
belongs to a request that is gone (the API was killed mid-upload): `sweep` removes exactly those, at API
start and every SWEEP_SECONDS, and never touches one a live request, in this process or another API
process on the same data directory, is still writing. A live request whose client stops sending for
the idle timeout is refused, which removes its `.part` too.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

SWEEP_SECONDS = 60.0
PART_GLOB = ".*.part"


@contextmanager
def partial_upload(inbox: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A new locked `.part` file open for writing; removed at the end unless the block renamed it away."""
    while True:
        path = inbox / f".{uuid.uuid4().hex}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # a sweep may have taken the file between its creation and the lock: then start again
        with suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    sink = os.fdopen(fd, "wb")
    try:
        yield path, sink
    finally:
        path.unlink(missing_ok=True)
        sink.close()  # releases the lock


def sweep(inbox: Path) -> list[str]:
    """Remove every `.part` in the inbox that no live request holds; returns the names removed."""
    removed = []
    for path in inbox.glob(PART_GLOB) if inbox.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live request is writing it
            os.close(fd)
            continue
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed
