"""Header-less yield text: which documented column layout a file follows, told from its column types.

Yield monitors of the Ag Leader family and the software around them (USDA Yield Editor, yieldcleanr) write
positional comma-separated text with no header: longitude, latitude, grain flow (lb/s), time (s), logging
interval (s), distance (in), swath (in), moisture (%), header status, pass, serial, a field label
(`"F1: C1N"`), a load label (`"L1: "`), the grain, then a tail that depends on the monitor and the export:
a variety and/or the altitude (15 and 16 columns, Yield Editor's input format), or the GPS status, PDOP and
altitude (17 columns, the "Advanced Ag Leader Format" of the GPS 2000/2100 manuals). Which tail a file has
is read from its values: a numeric column that varies within a load is an altitude, a label constant within
a load (even a number that changes from load to load) is a variety, a small integer is a GPS fix status.
GreenStar text and Yield Editor export layouts are not registered: no public documentation of their column
order was found, and a layout is never guessed. Each layout names the time epoch its documentation gives.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from dataclasses import dataclass

# How many lines of a file are sniffed (enough for a variety to show it is constant and an altitude to vary).
SNIFF_LINES = 400
FIELD_LABEL = re.compile(r"^\s*F\d*\s*:")
LOAD_LABEL = re.compile(r"^\s*L\d*\s*:")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # lon, lat, number, integer, field, load, text, label (text constant within a load), varying, status
    unit: str | None = None


@dataclass(frozen=True)
class Layout:
    name: str
    columns: tuple[Column, ...]
    epoch: str  # the time epoch the layout's documentation gives: "GPS" or "Unix"
    documented_by: str

    @property
    def width(self) -> int:
        return len(self.columns)


_AG_LEADER_HEAD = (
    Column("longitude", "lon"), Column("latitude", "lat"), Column("flow", "number", "lb/s"),
    Column("time", "number", "s"), Column("interval", "number", "s"), Column("distance", "number", "in"),
    Column("swath", "number", "in"), Column("moisture", "number", "percentage"), Column("header_status", "integer"),
    Column("pass", "integer"), Column("serial", "number"), Column("field_id", "field"), Column("load_id", "load"),
    Column("crop", "text"),
)
_VARIETY = Column("variety", "label")
_ALTITUDE = Column("altitude", "varying", "ft")
_YIELD_EDITOR = "USDA Yield Editor input format (Ag Leader advanced export)"

LAYOUTS: tuple[Layout, ...] = (
    Layout("Ag Leader advanced text, 15 columns with variety", _AG_LEADER_HEAD + (_VARIETY,), "GPS", _YIELD_EDITOR),
    Layout("Ag Leader advanced text, 15 columns with altitude", _AG_LEADER_HEAD + (_ALTITUDE,), "GPS", _YIELD_EDITOR),
    Layout("Ag Leader advanced text, 16 columns", _AG_LEADER_HEAD + (_VARIETY, _ALTITUDE), "GPS", _YIELD_EDITOR),
    Layout("Ag Leader advanced text, 17 columns", _AG_LEADER_HEAD + (
        Column("gps_status", "status"), Column("pdop", "number"), _ALTITUDE), "GPS",
        "Advanced Ag Leader Format, Ag Leader GPS 2000/2100 manuals"),
)


def decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding): a byte-order mark decides, else UTF-8 when the bytes are valid UTF-8, else Windows-1252
    (what US monitor software writes), whose every byte decodes."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            return raw.decode(encoding), encoding
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def split_rows(text: str, limit: int | None = None) -> list[list[str]]:
    """Comma-separated rows (quotes honoured, surrounding spaces trimmed), blank lines skipped."""
    lines = io.StringIO(text)
    rows = []
    for row in csv.reader(lines, skipinitialspace=True):
        if row and any(cell.strip() for cell in row):
            rows.append([cell.strip() for cell in row])
            if limit and len(rows) >= limit:
                break
    return rows


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _fits(kind: str, values: list[str], loads: list[str]) -> bool:
    present = [v for v in values if v not in ("", "NA")]
    numbers = [_number(v) for v in present]
    if kind == "text":
        return True
    if kind in ("field", "load"):
        pattern = FIELD_LABEL if kind == "field" else LOAD_LABEL
        return bool(values) and all(pattern.match(v) for v in values)
    per_load: dict[str, set[str]] = {}
    for load, value in zip(loads, values):
        per_load.setdefault(load, set()).add(value)
    if kind == "label":  # a variety: any text, the same all through a load
        return all(len(v) == 1 for v in per_load.values())
    if not present or any(n is None for n in numbers):
        return False
    if kind == "lon":
        return all(-180 <= n <= 180 for n in numbers)  # type: ignore[operator]
    if kind == "lat":
        return all(-90 <= n <= 90 for n in numbers)  # type: ignore[operator]
    if kind == "integer":
        return all(float(n).is_integer() for n in numbers)  # type: ignore[arg-type]
    if kind == "status":  # NMEA fix quality 0-9 (and a few vendor codes)
        return all(float(n).is_integer() and 0 <= n <= 15 for n in numbers)  # type: ignore[arg-type, operator]
    if kind == "varying":  # an altitude changes point to point within a load; a number that changes only
        # from one load to the next (a variety code, 4238 then 4239) is a label, not a height
        return any(len(v - {"", "NA"}) > 1 for v in per_load.values())
    return True  # number


@dataclass(frozen=True)
class Sniffed:
    layout: Layout | None
    width: int
    reason: str


def sniff_rows(rows: list[list[str]]) -> Sniffed:
    """The registered layout whose column kinds every sampled row fits, or the reason none does."""
    if not rows:
        return Sniffed(None, 0, "the file has no rows")
    width = Counter(len(r) for r in rows).most_common(1)[0][0]
    sample = [r for r in rows if len(r) == width]
    columns = list(zip(*sample))
    candidates = [layout for layout in LAYOUTS if layout.width == width]
    if not candidates:
        widths = sorted({layout.width for layout in LAYOUTS})
        return Sniffed(None, width, f"has {width} columns; the header-less layouts we know have "
                                    f"{', '.join(map(str, widths[:-1]))} or {widths[-1]}")
    loads = list(columns[12]) if width > 12 else [""] * len(sample)
    fitting, misfits = [], []
    for layout in candidates:
        bad = [f"column {i + 1} ({c.name}) is not {c.kind}" for i, c in enumerate(layout.columns)
               if not _fits(c.kind, list(columns[i]), loads)]
        if bad:
            misfits.append(f"{layout.name}: {'; '.join(bad)}")
        else:
            fitting.append(layout)
    if not fitting:
        return Sniffed(None, width, "fits no header-less layout (" + " | ".join(misfits) + ")")
    # the layout that says most about the columns wins (an altitude over a variety when the values vary)
    specific = [sum(c.kind not in ("text", "label") for c in layout.columns) for layout in fitting]
    best = max(specific)
    chosen = [layout for layout, score in zip(fitting, specific) if score == best]
    if len(chosen) > 1:
        return Sniffed(None, width, "fits several layouts equally: " + ", ".join(layout.name for layout in chosen))
    return Sniffed(chosen[0], width, f"columns fit the {chosen[0].name} ({chosen[0].documented_by})")


def is_agleader_family(row: list[str]) -> bool:
    """A first row of the Ag Leader text family: longitude, latitude, then a field and a load label at
    columns 12 and 13, whatever the width (so a width we have no layout for is reported, not skipped)."""
    if len(row) < 14:
        return False
    lon, lat = _number(row[0]), _number(row[1])
    return lon is not None and lat is not None and -180 <= lon <= 180 and -90 <= lat <= 90 \
        and bool(FIELD_LABEL.match(row[11])) and bool(LOAD_LABEL.match(row[12]))
