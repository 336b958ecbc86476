"""Format readers: each turns one detected machine file into a `SourceTable` of raw records."""

from __future__ import annotations

from ..errors import ReaderError
from ..model import DetectedFile, SourceTable
from .agleader_text import read_agleader_text
from .delimited import read_delimited
from .isoxml import read_isoxml
from .vector import read_vector

_READERS = {
    "SHAPEFILE": read_vector,
    "GEOPACKAGE": read_vector,
    "GEOJSON": read_vector,
    "CSV": read_delimited,
    "AGLEADER_TEXT": read_agleader_text,
    "ISO11783": read_isoxml,
}

DECODABLE_FORMATS = frozenset(_READERS)


def read_machine_file(detected: DetectedFile) -> SourceTable:
    """Read a detected machine file; raises ReaderError naming the file and the reason when it cannot."""
    reader = _READERS.get(detected.file_format)
    if reader is None:
        raise ReaderError(detected.primary.name, detected.unsupported_reason or f"{detected.file_format} is not decodable")
    table = reader(detected)
    table.hints.setdefault("fileName", detected.name)  # the name is evidence too (a crop word, "as-applied")
    return table


__all__ = ["DECODABLE_FORMATS", "read_machine_file"]
