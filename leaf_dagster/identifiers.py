"""The one rule for identifiers that become paths: API owners, Leaf user ids, file and batch ids.

An identifier is 1 to 128 characters: letters, digits, `.`, `_`, `-` and `@`, starting with a letter or
a digit. That keeps every UUID and names such as `grower-7` or `ops@farm.example`, and leaves out
everything a path could be steered with: `/`, `\\`, `..` as a whole name, NUL and other control
characters, leading dots and empty names. The storage resource applies it to every per-owner and
per-user path, and the API, the CLI and the batch step refuse a bad identifier before it gets there.
"""

from __future__ import annotations

import re
import uuid

from .errors import InvalidIdentifier

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
ID_RULE = "1-128 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"


def check_id(kind: str, value: object) -> str:
    """`value` when it is a valid identifier, else InvalidIdentifier naming `kind` and the rule."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "..."
        raise InvalidIdentifier(f"{kind} {shown} is not valid: it must be {ID_RULE}")
    return value


def is_uuid(value: object) -> bool:
    """True for a canonical UUID string (file and batch ids are UUIDs)."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def batch_identifier_problem(batch: dict) -> str | None:
    """Why a batch record's owner or Leaf user id cannot be used (a hand-written inbox sidecar), or None."""
    for kind, key in (("leafUserId", "leafUserId"), ("apiOwnerUsername", "apiOwnerUsername")):
        if batch.get(key) is not None:
            try:
                check_id(kind, batch[key])
            except InvalidIdentifier as exc:
                return str(exc)
    return None
