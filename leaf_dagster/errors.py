"""Errors that carry a message for the caller (CLI exit code 2, HTTP 400), importable without heavy modules."""

from __future__ import annotations

import re

from .storage import default_data_dir


# Leaf's failure messages (batch statusDetails and file steps).
NO_VALID_FILES = "No valid files found"
CONVERSION_FAILED = "Failed to convert file on provider batch processing"
UNREADABLE = "Files found but unable to read. Please check file format before re-trying or contact Support"


class FieldError(ValueError):
    """A boundary file that cannot be read as field polygons."""


class MergeError(ValueError):
    """The files cannot be merged; the message names the rule that failed."""


# An absolute POSIX path inside a message: a "/" that starts a token (not "lb/ac", not "http://"), then
# one or more path segments. Only its last segment is kept.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"`/:;,()\[\]{}<>|]+/)*([^\s'\"`/:;,()\[\]{}<>|]+)")


def public_message(text: str, names: dict[str, str] | None = None) -> str:
    """A message fit to show a tenant: absolute server paths cut to their file name, and internal names
    (the stored name of an upload) replaced by the names the user knows (`names`: internal -> shown).

    Paths under the data directory lose that prefix first, since its own name may hold spaces a pattern
    cannot tell from the words around it."""
    for internal, shown in (names or {}).items():
        if internal and internal != shown:
            text = text.replace(internal, shown)
    root = str(default_data_dir().resolve())
    text = text.replace(root + "/", "/")
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)
