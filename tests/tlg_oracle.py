"""A deliberately simple, slow TLG reader for tests, independent of the project's numpy decoder.

It follows the record layout of ISO 11783-10 "binary time log type 1" (docs isoxml.md 3.3) one record
at a time with `struct`: TimeStart when the header's TIM A is empty, each PTN field whose attribute is
present and empty, a count byte, then (DLV index, int32) pairs. Values are forward-filled per DLV the
way every reference reader does. Tests count records with it (positioned, working) and compare those
counts with what the pipeline makes of the same card; `write_tlg` re-encodes records so tests can
derive variants of a real card (a value moved to another element, a counter replaced).
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

# (PTN attribute, struct format, bytes) in record order
PTN_LAYOUT = [("A", "i", 4), ("B", "i", 4), ("C", "i", 4), ("D", "B", 1), ("E", "H", 2), ("F", "H", 2),
              ("G", "B", 1), ("H", "I", 4), ("I", "H", 2)]


@dataclass
class Record:
    time: tuple[int, int] | None  # (ms since midnight, days since 1980-01-01)
    ptn: dict[str, int]
    values: dict[int, int]  # DLV index -> raw value


@dataclass
class Tlg:
    time_in_binary: bool
    ptn_fields: list[str]  # PTN attributes stored in every record
    dlvs: list[tuple[int, str, int | None]]  # (DDI, element, fixed value)
    records: list[Record] = field(default_factory=list)

    def index(self, ddi: int, element: str) -> int:
        return next(i for i, (d, e, _) in enumerate(self.dlvs) if d == ddi and e == element)

    def has(self, ddi: int, element: str) -> bool:
        return any(d == ddi and e == element for d, e, _ in self.dlvs)

    def filled(self, ddi: int, element: str) -> list[float | None]:
        """The DLV's value per record, repeating the last logged value (None before the first)."""
        i = self.index(ddi, element)
        fixed = self.dlvs[i][2]
        if fixed is not None:
            return [float(fixed)] * len(self.records)
        out: list[float | None] = []
        last = None
        for record in self.records:
            if i in record.values:
                last = float(record.values[i])
            out.append(last)
        return out

    def logged(self, ddi: int, element: str) -> list[int]:
        """Raw values in the order they were logged (no fill)."""
        i = self.index(ddi, element)
        return [r.values[i] for r in self.records if i in r.values]


def read_header(path: Path) -> Tlg:
    root = ET.parse(path).getroot()
    ptn = root.find("PTN")
    fields = [a for a, _, _ in PTN_LAYOUT if ptn is not None and ptn.get(a) == ""]
    dlvs = []
    for dlv in root.findall("DLV"):
        fixed = dlv.get("B")
        dlvs.append((int(dlv.get("A"), 16), dlv.get("C", ""), int(fixed) if fixed not in (None, "") else None))
    return Tlg(root.get("A") == "", fields, dlvs)


def read_tlg(header: Path, binary: Path) -> Tlg:
    """All complete records of a time log (a truncated last record is left out)."""
    tlg = read_header(header)
    data = binary.read_bytes()
    formats = dict((a, (f, s)) for a, f, s in PTN_LAYOUT)
    pos = 0
    while pos < len(data):
        try:
            time = None
            if tlg.time_in_binary:
                time = struct.unpack_from("<IH", data, pos)
                pos += 6
            ptn = {}
            for attr in tlg.ptn_fields:
                fmt, size = formats[attr]
                ptn[attr] = struct.unpack_from("<" + fmt, data, pos)[0]
                pos += size
            (count,) = struct.unpack_from("<B", data, pos)
            pos += 1
            values = {}
            for _ in range(count):
                index, value = struct.unpack_from("<Bi", data, pos)
                pos += 5
                values[index] = value
        except struct.error:
            break
        tlg.records.append(Record(time, ptn, values))
    return tlg


def write_tlg(tlg: Tlg, header: Path, binary: Path) -> None:
    """Write `tlg` as a header and binary in the standard layout (for cards derived from real ones)."""
    root = ET.Element("TIM", {"A": ""} if tlg.time_in_binary else {})
    root.set("D", "4")
    ET.SubElement(root, "PTN", {a: "" for a in tlg.ptn_fields})
    for ddi, element, fixed in tlg.dlvs:
        ET.SubElement(root, "DLV", {"A": f"{ddi:04X}", "B": "" if fixed is None else str(fixed), "C": element})
    header.write_bytes(b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root))
    formats = dict((a, f) for a, f, _ in PTN_LAYOUT)
    out = bytearray()
    for record in tlg.records:
        if tlg.time_in_binary:
            out += struct.pack("<IH", *record.time)
        for attr in tlg.ptn_fields:
            out += struct.pack("<" + formats[attr], record.ptn[attr])
        out += struct.pack("<B", len(record.values))
        for index, value in record.values.items():
            out += struct.pack("<Bi", index, value)
    binary.write_bytes(bytes(out))


def positioned(record: Record) -> bool:
    """A fix: not the (0, 0) of no position, and not PTN status 0 (no GPS fix) when it is logged."""
    if record.ptn.get("A", 0) == 0 and record.ptn.get("B", 0) == 0:
        return False
    return record.ptn.get("D", 1) != 0


def count_working(tlg: Tlg, work_state: list[tuple[int, str]], extra: list[list[float | None]] | None = None) -> int:
    """Positioned records where any of the `work_state` DLVs (DDI, element) is on (1), and every column of
    `extra` (per-record conditions as 1/0/None) is 1."""
    states = [tlg.filled(ddi, element) for ddi, element in work_state]
    count = 0
    for i, record in enumerate(tlg.records):
        if not positioned(record):
            continue
        if states and not any(s[i] == 1 for s in states):
            continue
        if extra and not all(e[i] == 1 for e in extra):
            continue
        count += 1
    return count
