"""Binary time logs (ISO 11783-10 "binary time log type 1"): TLGnnnnn.XML header + TLGnnnnn.BIN records.

Layout (docs isoxml.md section 3.3): records are back to back, little-endian, no file header. Each record
holds the header's "in binary" fields (TimeStart, then PTN A..I, each only when the header attribute is
present and empty), one count byte n, then n pairs of (DLV index uint8, value int32). A DLV index is the
position of the DLV in the header, so a record carries only the values that triggered; a missing value
means "unchanged" and is forward-filled per column.

The record length depends on the count byte, so record starts form a chain that `framing.frame` follows
and checks record by record (resynchronising after a damaged stretch); everything after the offsets is a
handful of vectorised numpy gathers.

The decoder must survive any bytes: a truncated last record is dropped, a record that fails the framing
checks is never returned (the skipped bytes and records are counted), and unreadable headers raise
ReaderError, never anything else.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np

from ...errors import ReaderError
from .framing import MAX_DLVS, PTN_FIELDS, RecordLayout, frame

# Raw units of the binary fields, used to turn a constant from the header into the raw integer.
_PTN_FIXED_SCALE = {"north": Decimal(10) ** 7, "east": Decimal(10) ** 7, "pdop": Decimal(10), "hdop": Decimal(10)}


@dataclass(frozen=True)
class DlvSpec:
    """One DLV of a header: its index in records, DDI, device element, and constant value if any."""

    index: int
    ddi: int
    element: str
    fixed: int | None = None


@dataclass(frozen=True)
class TlgHeader:
    """What a TLG header says is in each record and what is constant."""

    name: str
    time_in_binary: bool
    ptn_binary: tuple[str, ...]  # PTN field names stored in every record, in record order
    ptn_fixed: dict[str, int] = field(default_factory=dict)  # raw constants for fields not in the binary
    dlvs: tuple[DlvSpec, ...] = ()
    time_start: str | None = None  # TIM@A when it is a constant
    time_type: int | None = None

    @property
    def layout(self) -> RecordLayout:
        return RecordLayout(self.time_in_binary, self.ptn_binary, len(self.dlvs))

    @property
    def fixed_size(self) -> int:
        """Bytes before the DLV count byte."""
        return self.layout.fixed

    def with_all_ptn(self) -> TlgHeader:
        """The same header with all nine PTN fields in the binary (what some v2/v3 writers do)."""
        return TlgHeader(self.name, self.time_in_binary, tuple(n for _, n, _, _ in PTN_FIELDS), {}, self.dlvs,
                         self.time_start, self.time_type)


def _int(text: str, what: str, name: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ReaderError(name, f"{what} is not an integer: {text[:40]!r}") from None


def _decimal(text: str, what: str, name: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ReaderError(name, f"{what} is not a number: {text[:40]!r}") from None
    if not value.is_finite():
        raise ReaderError(name, f"{what} is not a finite number: {text[:40]!r}")
    return value


def parse_header(xml: bytes, name: str) -> TlgHeader:
    """Parse a TLG header (root TIM). Raises ReaderError for anything that is not a usable header."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ReaderError(name, f"time log header is not valid XML ({exc})") from None
    except (ValueError, RecursionError) as exc:  # e.g. characters expat refuses outright
        raise ReaderError(name, f"time log header is not valid XML ({type(exc).__name__})") from None
    if root.tag != "TIM":
        raise ReaderError(name, f"time log header root is <{root.tag[:40]}>, not <TIM>")
    start = root.get("A")
    time_in_binary = start == ""
    time_type = None
    if root.get("D"):
        time_type = _int(root.get("D", ""), "TIM D (type)", name)
    ptn_binary: list[str] = []
    ptn_fixed: dict[str, int] = {}
    ptn = root.find("PTN")
    if ptn is not None:
        for attr, field_name, _, _ in PTN_FIELDS:
            value = ptn.get(attr)
            if value is None:
                continue
            if value == "":
                ptn_binary.append(field_name)
                continue
            number = _decimal(value, f"PTN {attr}", name) * _PTN_FIXED_SCALE.get(field_name, Decimal(1))
            ptn_fixed[field_name] = int(number.to_integral_value())
    dlvs: list[DlvSpec] = []
    for element in root.findall("DLV"):
        ddi_text = element.get("A", "")
        try:
            ddi = int(ddi_text, 16)
        except ValueError:
            raise ReaderError(name, f"DLV A (DDI) is not hexadecimal: {ddi_text[:40]!r}") from None
        if not 0 <= ddi <= 0xFFFF:
            raise ReaderError(name, f"DLV A (DDI) is out of range: {ddi_text[:40]!r}")
        value = element.get("B")
        fixed = None if value in (None, "") else _int(value, "DLV B (value)", name)
        if fixed is not None and not -(2**31) <= fixed < 2**31:
            raise ReaderError(name, f"DLV B (value) does not fit 32 bits: {value[:40]!r}")
        dlvs.append(DlvSpec(len(dlvs), ddi, element.get("C", ""), fixed))
    return TlgHeader(name, time_in_binary, tuple(ptn_binary), ptn_fixed, tuple(dlvs), start or None, time_type)


@dataclass
class TlgData:
    """Decoded records of one time log: fixed fields per record, and DLV entries as flat arrays."""

    header: TlgHeader
    count: int
    time_ms: np.ndarray | None
    time_days: np.ndarray | None
    ptn: dict[str, np.ndarray]
    entry_record: np.ndarray  # record index of each DLV entry
    entry_dlv: np.ndarray  # DLV index (position in header)
    entry_value: np.ndarray  # raw int32 value
    trailing_bytes: int = 0  # bytes of a truncated last record, dropped
    skipped_bytes: int = 0  # bytes of damaged stretches in no returned record
    rejected_records: int = 0  # records that failed the framing checks, never returned
    resyncs: int = 0  # damaged stretches after which the walk resumed at a later record
    _groups: tuple[np.ndarray, np.ndarray] | None = None

    def ptn_values(self, name: str) -> np.ndarray | None:
        """Raw values of PTN field `name` (isoxml.md 3.3) per record: from the binary, else the header's
        constant; None when the log has neither."""
        if name in self.ptn:
            return self.ptn[name].astype(np.int64)
        if name in self.header.ptn_fixed:
            return np.full(self.count, self.header.ptn_fixed[name], dtype=np.int64)
        return None

    def _grouped(self) -> tuple[np.ndarray, np.ndarray]:
        if self._groups is None:
            order = np.argsort(self.entry_dlv, kind="stable")
            bounds = np.searchsorted(self.entry_dlv[order], np.arange(MAX_DLVS + 1))
            self._groups = (order, bounds)
        return self._groups

    def entries(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(record indices, raw values) where DLV `index` was logged, in record order."""
        order, bounds = self._grouped()
        if not 0 <= index < MAX_DLVS:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
        pick = order[bounds[index]:bounds[index + 1]]
        return self.entry_record[pick], self.entry_value[pick]

    def logged(self, index: int) -> int:
        """How many records carry DLV `index` in the binary."""
        order, bounds = self._grouped()
        return int(bounds[index + 1] - bounds[index]) if 0 <= index < MAX_DLVS else 0

    def column(self, index: int, fill: bool = True) -> np.ndarray:
        """Raw values of DLV `index` per record as float (NaN before its first value); a constant from the
        header fills every record. With fill, a record without the value repeats the last one."""
        spec = self.header.dlvs[index] if index < len(self.header.dlvs) else None
        if spec is not None and spec.fixed is not None:
            return np.full(self.count, float(spec.fixed))
        values = np.full(self.count, np.nan)
        records, raw = self.entries(index)
        values[records] = raw
        if fill and len(records):
            seen = np.where(np.isnan(values), 0, np.arange(self.count))
            np.maximum.accumulate(seen, out=seen)
            filled = values[seen]
            filled[: int(records.min())] = np.nan
            return filled
        return values


def decode(header: TlgHeader, binary: bytes | bytearray | memoryview) -> TlgData:
    """Decode a TLG binary with its header. Never raises for any input bytes."""
    raw = bytes(binary) if not isinstance(binary, bytes) else binary
    data = np.frombuffer(raw, dtype=np.uint8)
    framing = frame(raw, header.layout)
    records = framing.records
    fields = records.fields
    total = len(records.entry_start)
    if total:
        entry_dlv = data[records.entry_start]
        # every byte offset read as an int32 (a view, no copy): one gather instead of five bytes per value
        int32_at = np.ndarray((len(raw) - 3,), dtype="<i4", buffer=raw, strides=(1,))
        entry_value = int32_at[records.entry_start + 1]
    else:
        entry_dlv = np.empty(0, dtype=np.uint8)
        entry_value = np.empty(0, dtype=np.int32)
    names = fields.dtype.names or ()
    ptn = {name: np.asarray(fields[name]) for name in names if name not in ("time_ms", "time_days", "dlv_count")}
    return TlgData(
        header=header, count=len(records.offsets),
        time_ms=np.asarray(fields["time_ms"]) if header.time_in_binary else None,
        time_days=np.asarray(fields["time_days"]) if header.time_in_binary else None,
        ptn=ptn, entry_record=records.entry_record, entry_dlv=entry_dlv, entry_value=entry_value,
        trailing_bytes=framing.trailing_bytes, skipped_bytes=framing.skipped_bytes,
        rejected_records=framing.rejected_records, resyncs=framing.resyncs,
    )


def _plausible(decoded: TlgData) -> bool:
    """The layout reads the whole file and its first records share a plausible day."""
    if decoded.count == 0 or decoded.trailing_bytes or decoded.skipped_bytes:
        return False
    days = decoded.time_days if decoded.time_days is not None else decoded.ptn.get("gps_date")
    if days is None:
        return True
    head = days[:2].astype(np.int64)
    return bool(3650 <= head[0] <= 50000 and (len(head) < 2 or abs(int(head[1]) - int(head[0])) <= 1))


def decode_log(header: TlgHeader, binary: bytes, version_major: int | None = None) -> tuple[TlgData, list[str]]:
    """Decode with the header's layout; for v2/v3 data whose layout does not fit, try all nine PTN fields
    (some old writers store them whatever the header says). Returns the data and notes."""
    decoded = decode(header, binary)
    notes: list[str] = []
    if version_major is not None and version_major < 4 and len(header.ptn_binary) < len(PTN_FIELDS) \
            and not _plausible(decoded):
        alternative = decode(header.with_all_ptn(), binary)
        if _plausible(alternative):
            notes.append(f"{header.name}: records carry all nine position fields although the header lists "
                         f"{len(header.ptn_binary)}; read as written (an old-writer habit)")
            decoded = alternative
    if decoded.trailing_bytes:
        notes.append(f"{header.name}: a truncated last record ({decoded.trailing_bytes} bytes) was dropped")
    if decoded.resyncs:
        notes.append(f"{header.name}: damaged records: {decoded.skipped_bytes} bytes in {decoded.resyncs} "
                     f"stretch{'es' if decoded.resyncs > 1 else ''} skipped, {decoded.rejected_records} records that "
                     "failed the checks (DLV count and indices within the header, time of day and position in range, "
                     "time in line with its neighbours) dropped; decoding resumed at the next sound record")
    return decoded, notes
