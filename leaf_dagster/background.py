"""Work handed to a thread of its own while the caller makes the next piece, one piece behind at most.

Used where the caller's next piece does not depend on the last one's being done: a GeoParquet chunk written
while the next chunk is made (pyarrow lets go of the GIL as it writes), an upload's file recorded in the event
log while the run makes the next file (the event log's database is waited on meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class OneBehind:
    """A thread taking one piece of work at a time: `submit` first waits for the piece before, so at most one
    waits and the caller holds no more than two pieces' data; a piece's error is raised at the next `submit`
    or `wait`. As a context manager, the end waits for the last piece (raising its error) when the block ended
    normally, and only lets it finish when the block raised, whose error is then the one raised."""

    def __init__(self, name: str):
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        """Wait for the piece in hand, raising its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def stop(self) -> None:
        """Let the piece in hand finish and end the thread (its error stays for `wait`)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> OneBehind:
        return self

    def __exit__(self, failing: type[BaseException] | None, *_: object) -> None:
        try:
            if failing is None:
                self.wait()
        finally:
            self.stop()
