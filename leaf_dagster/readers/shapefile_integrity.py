"""Is a shapefile set intact? The three headers and the record counts of .shp, .shx and .dbf must agree.

GDAL reads a damaged attribute table without complaint: with a wrong record count in the .dbf header it
returns that many rows (59 of 18,400), with a truncated .dbf the rows it can reach. Such a file would pass
as processed with a fraction of its points. The checks here read only the headers (and the deletion flag
of each .dbf record, one strided pass), so they cost milliseconds, and each problem is named with the
numbers found so the user can tell a truncated copy from a rewritten header.

A user who wants such files read anyway sets the `acceptDamagedShapefiles` configuration: the problems are
then recorded as warnings on the file instead of failing it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DamagedShapefile
from ..model import DetectedFile

_SHAPE_FILE_CODE = 9994
_SHAPE_HEADER_BYTES = 100
_SHX_RECORD_BYTES = 8
_DBF_HEADER_BYTES = 32
_DBF_DESCRIPTOR_BYTES = 32
_DBF_HEADER_END = 0x0D
# The first byte of every .dbf record: blank for a live record, '*' for a deleted one.
_DBF_RECORD_FLAGS = (0x20, 0x2A)
# dBase field types (dBase III-7, FoxPro, Visual FoxPro); anything else means the descriptors are damaged.
_DBF_FIELD_TYPES = set(b"CNFLDMBGPYTIV@O+0WQ")
_DBF_BLOCK_BYTES = 1 << 24  # .dbf bytes read at a time for the deletion flags


@dataclass(frozen=True)
class DbfHeader:
    records: int
    header_bytes: int
    record_bytes: int


def check_shapefile_integrity(detected: DetectedFile) -> None:
    """Fail a damaged shapefile set with the reason, or record the damage as warnings if the user accepts it."""
    if detected.file_format != "SHAPEFILE":
        return
    problems = shapefile_problems(detected.members)
    if not problems:
        return
    if not detected.accept_damaged:
        raise DamagedShapefile(detected.primary.name, problems)
    detected.warnings.extend(f"damaged shapefile read anyway (acceptDamagedShapefiles): {p}" for p in problems)


def shapefile_problems(members: list[Path]) -> list[str]:
    """Every disagreement between the members' headers, sizes and record counts (empty when intact)."""
    by_ext = {m.suffix.lower(): m for m in members}
    shp, shx, dbf = by_ext.get(".shp"), by_ext.get(".shx"), by_ext.get(".dbf")
    problems: list[str] = []
    shapes = None
    if shp is not None:
        problems += _main_file_problems(shp)
    if shx is not None:
        found = _main_file_problems(shx)
        problems += found
        if not found:
            shapes = (shx.stat().st_size - _SHAPE_HEADER_BYTES) // _SHX_RECORD_BYTES
    if dbf is not None:
        found, records = _dbf_problems(dbf)
        problems += found
        if shapes is not None and records is not None and records != shapes:
            problems.append(f"the .dbf holds {records} records but the .shx indexes {shapes} shapes")
    return problems


def _main_file_problems(path: Path) -> list[str]:
    """The .shp/.shx header: file code 9994 and a file length (in 16-bit words) equal to the size on disk."""
    ext = path.suffix.lower()
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(_SHAPE_HEADER_BYTES)
    if len(head) < _SHAPE_HEADER_BYTES:
        return [f"the {ext} is {size} bytes, shorter than its 100-byte header"]
    code, words = struct.unpack(">i", head[:4])[0], struct.unpack(">i", head[24:28])[0]
    if code != _SHAPE_FILE_CODE:
        return [f"the {ext} header is damaged (file code {code}, expected {_SHAPE_FILE_CODE})"]
    declared = words * 2
    if declared != size:
        state = "truncated" if size < declared else "longer than its header says"
        return [f"the {ext} is {state}: its header declares {declared} bytes, the file has {size}"]
    if ext == ".shx" and (size - _SHAPE_HEADER_BYTES) % _SHX_RECORD_BYTES:
        return [f"the .shx is damaged: {size - _SHAPE_HEADER_BYTES} bytes of index are not whole 8-byte entries"]
    return []


def read_dbf_header(path: Path) -> tuple[DbfHeader | None, list[str]]:
    """The .dbf header (record count, header and record sizes), or the reasons it cannot be trusted."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(_DBF_HEADER_BYTES)
        if len(head) < _DBF_HEADER_BYTES:
            return None, [f"the .dbf is {size} bytes, shorter than its 32-byte header"]
        records, header_bytes, record_bytes = struct.unpack("<IHH", head[4:12])
        if not _DBF_HEADER_BYTES + _DBF_DESCRIPTOR_BYTES < header_bytes <= size:
            return None, [f"the .dbf header is damaged (header length {header_bytes} bytes, file {size} bytes)"]
        descriptors = fh.read(header_bytes - _DBF_HEADER_BYTES)
    # the list ends at the first descriptor that starts with 0x0D; the byte 13 inside a descriptor is an ordinary
    # width, decimal count or offset (ArcGIS writes N(13,11) fields)
    count = next((i // _DBF_DESCRIPTOR_BYTES for i in range(0, len(descriptors), _DBF_DESCRIPTOR_BYTES)
                  if descriptors[i] == _DBF_HEADER_END), 0)
    if count == 0:
        return None, ["the .dbf header is damaged (no readable list of fields)"]
    fields = [descriptors[i * _DBF_DESCRIPTOR_BYTES:(i + 1) * _DBF_DESCRIPTOR_BYTES] for i in range(count)]
    bad = [i + 1 for i, field in enumerate(fields) if field[11] not in _DBF_FIELD_TYPES or field[0] in (0, 0x20)]
    if bad:
        return None, [f"the .dbf header is damaged (field {bad[0]} of {count} has no valid name or type)"]
    widths = sum(field[16] for field in fields)
    if record_bytes != widths + 1:
        return None, [f"the .dbf header is damaged (records of {record_bytes} bytes, its {count} fields "
                      f"need {widths + 1})"]
    return DbfHeader(records, header_bytes, record_bytes), []


def _dbf_problems(path: Path) -> tuple[list[str], int | None]:
    """Problems of the .dbf, and the number of records it really holds (None when that cannot be known)."""
    header, problems = read_dbf_header(path)
    if header is None:
        return problems, None
    size = path.stat().st_size
    whole, rest = divmod(size - header.header_bytes, header.record_bytes)
    misaligned = _misaligned_records(path, header, whole)
    if misaligned:  # the header's sizes are wrong, so the counts derived from them mean nothing
        return [f"the .dbf header is damaged ({misaligned} of {whole} records do not start where the header "
                "places them)"], None
    if rest and rest != 1:  # one extra byte is the optional end-of-file marker
        problems.append(f"the .dbf is cut inside a record ({rest} bytes after {whole} whole records)")
    if whole != header.records:
        state = "truncated" if whole < header.records else "longer than its header says"
        problems.append(f"the .dbf is {state}: its header declares {header.records} records, "
                        f"the file holds {whole}")
    return problems, whole


def _misaligned_records(path: Path, header: DbfHeader, records: int) -> int:
    """Records whose first byte is not a deletion flag: the header's sizes do not match the data.

    Read a block of records at a time: a map of the file would make every page of a big .dbf (a gigabyte for
    a season of a combine) part of the process's resident memory."""
    bad = 0
    per_block = max(1, _DBF_BLOCK_BYTES // header.record_bytes)
    with path.open("rb") as fh:
        fh.seek(header.header_bytes)
        for first in range(0, records, per_block):
            count = min(per_block, records - first)
            block = np.fromfile(fh, dtype=np.uint8, count=count * header.record_bytes)
            bad += int((~np.isin(block[:: header.record_bytes], _DBF_RECORD_FLAGS)).sum())
    return bad
