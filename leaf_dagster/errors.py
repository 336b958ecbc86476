"""Every error the project raises on purpose, and the messages it shows, in one module.

Each class says who raises it and how it reaches the user: a CLI exit code, an HTTP status, a batch's
status details or a file's failed step. The module imports nothing from the project at load time, so
any module can import it without a cycle and without pulling in geopandas or Dagster.
"""

from __future__ import annotations

import re


# Leaf's failure messages (batch statusDetails and file steps).
NO_VALID_FILES = "No valid files found"
CONVERSION_FAILED = "Failed to convert file on provider batch processing"
UNREADABLE = "Files found but unable to read. Please check file format before re-trying or contact Support"


# -- a request refused before any work starts ------------------------------------------------------

class InvalidIdentifier(ValueError):
    """identifiers.check_id: an id that breaks ID_PATTERN (HTTP 400, CLI exit code 2, a FAILED batch for an
    inbox sidecar)."""


class QueryError(ValueError):
    """query: a list filter, page, sort or provider Leaf refuses (HTTP 400, CLI exit code 2, a FAILED batch for
    an inbox sidecar's provider)."""


class CatalogError(RuntimeError):
    """ducklake: the shared SQL catalog named by LEAF_CATALOG is misnamed or cannot be opened or kept current
    (CLI exit code 2 for `sql`; raised after a run, whose results are already recorded)."""


class RecordsConfigError(ValueError):
    """records.records_url: LEAF_RECORDS_URL names no PostgreSQL database (raised on the first use of the record
    store: a CLI exit code 2, a failed step, an API request answered 500)."""


class ConfigError(ValueError):
    """config.validate: a configuration value Leaf would refuse (HTTP 400, CLI exit code 2)."""


class UploadError(ValueError):
    """api.streaming and the upload route: a multipart upload the API refuses (HTTP 400)."""


class UploadNotStored(OSError):
    """api.streaming: the server could not store a valid upload (a full disk): HTTP 507, worth retrying later."""


class NotFound(Exception):
    """cli: a file or batch id that the data directory does not know (CLI exit code 1)."""


class UsageError(Exception):
    """cli: a request the command cannot take as given, such as an ambiguous id prefix (CLI exit code 2)."""


# -- an upload or a machine file that cannot be processed ------------------------------------------

class UnsafeArchiveError(Exception):
    """ingest.safe_zip: the archive was refused; str(err) is a clear one-line message naming the archive and the
    reason (the batch FAILED with it as its status details)."""


class CorruptArchiveError(Exception):
    """ingest.safe_zip: the archive could not be read (not a zip, truncated, bad CRC); the message names the
    archive and the reason (the batch FAILED with it as its status details)."""


class ReaderError(Exception):
    """readers: a machine file could not be read; the message names the file and the reason (the file's
    rawGeojson step fails with it)."""

    def __init__(self, file_name: str, reason: str):
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = reason


class DamagedShapefile(ReaderError):
    """readers.shapefile_integrity: the .shp, .shx and .dbf of a set are damaged or disagree; `problems` lists
    each finding (the rawGeojson step fails and its source_intact check names them)."""

    def __init__(self, file_name: str, problems: list[str]):
        super().__init__(file_name, "damaged shapefile: " + "; ".join(problems))
        self.problems = problems


class EpochUndecided(ValueError):
    """standard.times.choose_epoch: the evidence does not tell which epoch a seconds column counts from; the
    message says why (the reader turns it into a ReaderError, so the rawGeojson step fails with it)."""


# -- fields, merges and the data directory ---------------------------------------------------------

class FieldError(ValueError):
    """fields: a boundary file that cannot be read as field polygons (HTTP 400, CLI exit code 2)."""


class MergeError(ValueError):
    """merge and the merge route: the files cannot be merged; the message names the rule that failed (HTTP 400,
    CLI exit code 2)."""


class PathOutsideDataDir(ValueError):
    """storage: a computed path would leave its folder in the data directory. Identifiers are checked before
    paths are built, so only a bug gets here: HTTP 500, CLI exit code 1."""


# An absolute POSIX path inside a message: a "/" that starts a token (not "lb/ac", not "http://"), then
# one or more path segments. Only its last segment is kept.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"`/:;,()\[\]{}<>|]+/)*([^\s'\"`/:;,()\[\]{}<>|]+)")


def public_message(text: str, names: dict[str, str] | None = None) -> str:
    """A message fit to show a tenant: absolute server paths cut to their file name, and internal names
    (the stored name of an upload) replaced by the names the user knows (`names`: internal -> shown).

    Paths under the data directory lose that prefix first, since its own name may hold spaces a pattern
    cannot tell from the words around it."""
    from .storage import default_data_dir  # at call time: storage raises PathOutsideDataDir from this module

    for internal, shown in (names or {}).items():
        if internal and internal != shown:
            text = text.replace(internal, shown)
    root = str(default_data_dir().resolve())
    text = text.replace(root + "/", "/")
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)
