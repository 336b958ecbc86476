"""Handing freed memory back to the system, so a big file's later steps do not count what earlier ones freed."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import pyarrow as pa


def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the pages of what a step freed back to the system. A big file's steps free millions of small
    objects (a GEOS point and its Python object per record, chunk arrays): glibc keeps their pages mapped,
    scattered among live ones, and Arrow's pool keeps freed buffers for reuse, so the resident set would
    stay at the step's high-water mark (1.6 GB more than the live tables after standardising 5,000,000
    points) and count against every later step."""
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
