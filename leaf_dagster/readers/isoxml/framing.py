"""Where the records of a TLG binary start, and which of them can be trusted.

A binary time log has no markers between records: record i+1 starts where the DLV values of record i end, so
one damaged count byte sends every later record off its true start, and the walk then reads garbage (points
at 84 degrees north in the year 2081). Every record on the walk is therefore checked:

- it is complete (its values do not run past the end of the file);
- its DLV count is within the header's DLV count, and every DLV index names a DLV of the header;
- its terminal time of day is at most 24:00:01 (24:00:00 is what some terminals write at midnight), and its
  time is in line with its neighbours: where the times go backwards or jump ahead by more than a day, a
  record more than 10 minutes away from the median of the five records around it fails (one garbage time is
  caught, a real gap or clock step is not, a log that advances by less than a day at a time never fails);
- its position status, when logged, is a value ISO 11783-10 defines (0-8, 14, 15), and its latitude and
  longitude lie within +-90 / +-180 degrees.

At the first record that fails, the walk stops and resumes at the next byte where `RUN` consecutive records
pass the checks, in time order after the accepted records (resynchronisation). If that point lies inside
the last accepted record, that record's length was the damage and it is rejected too. "In time order" is
measured from the median of the last five accepted times (`time_anchor`), not from the last one: the
records just before a failure have no neighbours after them yet, so a damaged time among them can pass (a
jump ahead of less than a day may be a real gap), and a search anchored on it would skip every sound record
until the clock caught up. With only one or two records accepted there is no median to trust, and the last
accepted time is the anchor: without one, a run of records dated years off right after the first sound
record would be resumed at, and their wrong times, being the majority around them, would pass. If that
anchor finds nothing (it may be a damaged time itself: the first record of a log has no neighbour before
it), the search is repeated without one. Once the walk is done, the times of a resynchronised log are judged
again over the whole log, so such a record meets its neighbours on both sides. No record that failed a
check is ever returned; the bytes that belong to no returned record are counted, so the reader can say how
much it skipped.

The walk itself is one tight sequential loop (record starts form a chain); the checks are vectorised over
the walked records, so a sound file costs one walk plus a few array comparisons.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

# PTN attributes in record order: (attribute, field name, numpy dtype, size in bytes).
PTN_FIELDS: tuple[tuple[str, str, str, int], ...] = (
    ("A", "north", "<i4", 4), ("B", "east", "<i4", 4), ("C", "up", "<i4", 4), ("D", "status", "u1", 1),
    ("E", "pdop", "<u2", 2), ("F", "hdop", "<u2", 2), ("G", "satellites", "u1", 1),
    ("H", "gps_time", "<u4", 4), ("I", "gps_date", "<u2", 2),
)
MAX_DLVS = 256  # the DLV index in a record is one byte
DAY_MS = 86_400_000
# the most a time of day may read: terminals write 24:00:00.000 at midnight (KRONE CCI), and a leap second
LATEST_TIME_OF_DAY_MS = DAY_MS + 1000
TIME_TOLERANCE_MS = 10 * 60 * 1000  # how far a record's time may stray from the median of its neighbourhood
RESUME_WITHIN_MS = DAY_MS  # a resynchronised record is at most this much later than the accepted ones
RUN = 3  # consecutive valid records that mark a resynchronisation point
_ANCHOR = 5  # accepted times whose median anchors the time window of a resynchronisation
_RESTART_LIMIT = 64  # records walked at once after a resynchronisation (doubles while the walk stays sound)
_SCAN_WINDOW = 1 << 16  # byte positions examined at once when searching for a resynchronisation point
_CANDIDATE_BATCH = 1 << 10  # candidates whose DLV indices are checked at once
_MAX_NORTH = 900_000_000  # 90 degrees in 1e-7 degrees
_MAX_EAST = 1_800_000_000
DEFINED_STATUS = np.zeros(256, dtype=bool)
DEFINED_STATUS[[0, 1, 2, 3, 4, 5, 6, 7, 8, 14, 15]] = True


@dataclass(frozen=True)
class RecordLayout:
    """Byte layout of the fixed part of a record (everything before the DLV count byte, then the count)."""

    time_in_binary: bool
    ptn_binary: tuple[str, ...]
    dlv_count: int  # DLVs in the header: the most values a record can carry, and the bound of DLV indices

    @property
    def dtype(self) -> np.dtype:
        names: list[str] = []
        formats: list[str] = []
        positions: list[int] = []
        pos = 0
        if self.time_in_binary:
            names += ["time_ms", "time_days"]
            formats += ["<u4", "<u2"]
            positions += [0, 4]
            pos = 6
        for _, name, dtype, size in PTN_FIELDS:
            if name in self.ptn_binary:
                names.append(name)
                formats.append(dtype)
                positions.append(pos)
                pos += size
        names.append("dlv_count")
        formats.append("u1")
        positions.append(pos)
        return np.dtype({"names": names, "formats": formats, "offsets": positions, "itemsize": pos + 1})

    @property
    def fixed(self) -> int:
        """Bytes before the DLV count byte."""
        return self.dtype.itemsize - 1


@dataclass
class Records:
    """Records read at given offsets: the fixed part as a structured array, the DLV entries as flat arrays."""

    offsets: np.ndarray
    fields: np.ndarray  # structured, RecordLayout.dtype
    entry_record: np.ndarray  # record index of each entry
    entry_start: np.ndarray  # byte offset of each (DLV index, value) pair

    @property
    def ends(self) -> np.ndarray:
        return self.offsets + self.fields.dtype.itemsize + 5 * self.fields["dlv_count"].astype(np.int64)

    def head(self, count: int) -> Records:
        """The first `count` records."""
        if count >= len(self.offsets):
            return self
        entries = int(np.searchsorted(self.entry_record, count))
        return Records(self.offsets[:count], self.fields[:count], self.entry_record[:entries],
                       self.entry_start[:entries])


@dataclass
class Framing:
    """The records of a binary that passed the checks, and what was left out."""

    records: Records
    trailing_bytes: int = 0  # a last record cut short by the end of the file
    skipped_bytes: int = 0  # bytes in no accepted record (damaged stretches), trailing bytes excluded
    rejected_records: int = 0  # walked records that failed a check
    resyncs: int = 0  # times the walk was resumed at a later byte


def gather(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """`width` bytes from each start, as an (n, width) uint8 array."""
    if width == 0 or len(starts) == 0 or len(data) < width:
        return np.zeros((len(starts), width), dtype=np.uint8)
    # rows of a sliding window are copied whole: far cheaper than one index per byte
    return np.lib.stride_tricks.sliding_window_view(data, width)[starts]


def walk(raw: bytes, fixed: int, start: int, limit: int) -> tuple[np.ndarray, int]:
    """Up to `limit` record starts from `start`, following each record's length; and where the walk stopped.

    Record starts form a chain (each length depends on its count byte), so this is one sequential pass: a
    tight loop over `bytes` costs about 0.13 s per million records, a small share of the decode (an int64
    `array` takes the starts: it becomes a numpy array without a copy, unlike a list). The last start may
    belong to a record that runs past the end of the data (the caller checks completeness).
    """
    step = fixed + 1
    starts = array("q")
    append = starts.append
    pos = start
    last = len(raw) - fixed  # a record needs its count byte at pos + fixed < len(raw)
    for _ in range(limit):
        if pos >= last:
            break
        append(pos)
        pos += step + 5 * raw[pos + fixed]
    return np.frombuffer(starts, dtype=np.int64), pos


def read_at(data: np.ndarray, layout: RecordLayout, offsets: np.ndarray) -> Records:
    """The fixed parts and DLV entry positions of records starting at `offsets` (complete or not)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    dtype = layout.dtype
    fields = np.ascontiguousarray(gather(data, offsets, dtype.itemsize)).view(dtype).reshape(len(offsets))
    counts = fields["dlv_count"].astype(np.int64)
    total = int(counts.sum())
    entry_record = np.repeat(np.arange(len(offsets), dtype=np.int64), counts)
    if total:
        # entry j of the file (record r, k-th of its entries) starts at offsets[r] + itemsize + 5k, and
        # k = j - (entries before record r): one repeat of a per-record base plus 5j
        base = offsets + dtype.itemsize - 5 * (np.cumsum(counts) - counts)
        entry_start = np.repeat(base, counts) + 5 * np.arange(total, dtype=np.int64)
    else:
        entry_start = np.empty(0, dtype=np.int64)
    return Records(offsets, fields, entry_record, entry_start)


def _fixed_part_fails(layout: RecordLayout, fields: np.ndarray) -> np.ndarray:
    """Checks on the fixed part alone: DLV count, time of day, status and position ranges."""
    fails = fields["dlv_count"] > min(layout.dlv_count, MAX_DLVS)
    names = fields.dtype.names or ()
    if "time_ms" in names:
        fails |= fields["time_ms"] > LATEST_TIME_OF_DAY_MS
    if "status" in names:
        fails |= ~DEFINED_STATUS[fields["status"]]
    if "north" in names:
        fails |= np.abs(fields["north"].astype(np.int64)) > _MAX_NORTH
    if "east" in names:
        fails |= np.abs(fields["east"].astype(np.int64)) > _MAX_EAST
    return fails


def local_failures(data: np.ndarray, layout: RecordLayout, records: Records) -> np.ndarray:
    """Per record: does it fail a check that needs no neighbour (completeness, count, indices, ranges)?"""
    incomplete = records.ends > len(data)
    fails = _fixed_part_fails(layout, records.fields) | incomplete
    starts, owners = records.entry_start, records.entry_record
    if incomplete.any():  # only a last record can run past the end: read the indices that are there
        inside = starts < len(data)
        starts, owners = starts[inside], owners[inside]
    bad_index = data[starts] >= min(layout.dlv_count, MAX_DLVS)
    if bad_index.any():
        fails[owners[bad_index]] = True
    return fails


def record_times(fields: np.ndarray) -> np.ndarray | None:
    """Terminal time per record in ms since 1980 (None when the records carry no time)."""
    if "time_ms" not in (fields.dtype.names or ()):
        return None
    return fields["time_days"].astype(np.int64) * DAY_MS + fields["time_ms"].astype(np.int64)


def out_of_line(times: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Per record of `times`: where the times go backwards (or jump ahead by more than a day), is it far from
    the median of its five neighbours?

    `before` holds the times of up to two accepted records just before, as context. Beyond either end the
    neighbourhood is shorter (a lone last record is judged by the records before it)."""
    series = np.concatenate([before, times])
    fails = np.zeros(len(times), dtype=bool)
    steps = np.diff(series)
    jumps = np.flatnonzero((steps < 0) | (steps > RESUME_WITHIN_MS))
    if len(jumps) == 0:
        return fails
    suspects = np.unique(np.concatenate([jumps, jumps + 1]))
    suspects = suspects[suspects >= len(before)]
    padded = np.concatenate([np.full(2, np.nan), series.astype(np.float64), np.full(2, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 5)[suspects]
    deviation = np.abs(series[suspects] - np.nanmedian(windows, axis=1))
    fails[suspects[deviation > TIME_TOLERANCE_MS] - len(before)] = True
    return fails


def time_anchor(context: np.ndarray) -> int | None:
    """The time a resynchronised record must follow: the median of the last accepted times, so that one
    damaged time among three (two among five) cannot move it; the last accepted time when only one or two
    were accepted (see the module docstring); None before any record is accepted."""
    if len(context) >= 3:
        return int(np.median(context))
    return int(context[-1]) if len(context) else None


def _run_holds(raw: bytes, data: np.ndarray, layout: RecordLayout, start: int, after: int | None) -> bool:
    """Do `RUN` records from `start` (or all up to the exact end of the data) pass every check?"""
    starts, _ = walk(raw, layout.fixed, start, RUN)
    if not len(starts):
        return False
    records = read_at(data, layout, starts)
    if local_failures(data, layout, records).any():
        return False
    if len(starts) < RUN and int(records.ends[-1]) != len(data):
        return False
    times = record_times(records.fields)
    if times is not None:
        steps = np.diff(times)
        if ((steps < -TIME_TOLERANCE_MS) | (steps > TIME_TOLERANCE_MS * 6)).any():
            return False
        if after is not None and not after - TIME_TOLERANCE_MS <= times[0] <= after + RESUME_WITHIN_MS:
            return False
    return True


def resume_point(raw: bytes, data: np.ndarray, layout: RecordLayout, start: int, after: int | None) -> int | None:
    """The first byte at or after `start` where a sound run of records begins (None if there is none).

    Candidates are screened a window at a time with the fixed-part checks (vectorised over every byte
    position), then in batches with their DLV indices, then confirmed by walking `RUN` records from each."""
    fixed = layout.fixed
    end = len(raw) - fixed
    while start < end:
        positions = np.arange(start, min(start + _SCAN_WINDOW, end), dtype=np.int64)
        fields = np.ascontiguousarray(gather(data, positions, fixed + 1)).view(layout.dtype).reshape(len(positions))
        ok = ~_fixed_part_fails(layout, fields)
        ok &= positions + fixed + 1 + 5 * fields["dlv_count"].astype(np.int64) <= len(data)
        times = record_times(fields)
        if times is not None and after is not None:
            ok &= (times >= after - TIME_TOLERANCE_MS) & (times <= after + RESUME_WITHIN_MS)
        candidates = positions[ok]
        for batch in range(0, len(candidates), _CANDIDATE_BATCH):  # DLV indices too, before walking runs
            some = candidates[batch:batch + _CANDIDATE_BATCH]
            sound = some[~local_failures(data, layout, read_at(data, layout, some))]
            for candidate in sound.tolist():
                if _run_holds(raw, data, layout, candidate, after):
                    return candidate
        start = int(positions[-1]) + 1
    return None


def frame(raw: bytes, layout: RecordLayout) -> Framing:
    """Walk the records of `raw`, check each, resynchronise after a failure; see the module docstring."""
    data = np.frombuffer(raw, dtype=np.uint8)
    size = len(raw)
    accepted: list[Records] = []
    last_start: int | None = None  # the last accepted record
    last_end = 0
    context = np.empty(0, dtype=np.int64)  # times of the last `_ANCHOR` accepted records
    trailing = rejected = resyncs = 0
    pos, limit = 0, size + 1  # the first walk covers the whole file
    while pos < size:
        starts, stop = walk(raw, layout.fixed, pos, limit)
        if not len(starts):
            trailing = size - pos  # less than a fixed part is left
            break
        records = read_at(data, layout, starts)
        fails = local_failures(data, layout, records)
        times = record_times(records.fields)
        first_bad = int(np.argmax(fails)) if fails.any() else len(starts)
        if times is not None and first_bad:
            late = out_of_line(times[:first_bad], context[-2:])
            if late.any():
                first_bad = int(np.argmax(late))
        if first_bad:
            accepted.append(records.head(first_bad))
            last_start, last_end = int(records.offsets[first_bad - 1]), int(records.ends[first_bad - 1])
            if times is not None:
                context = np.concatenate([context, times[max(first_bad - _ANCHOR, 0):first_bad]])[-_ANCHOR:]
        if first_bad == len(starts):
            pos, limit = stop, limit * 2
            continue
        if first_bad == len(starts) - 1 and records.ends[first_bad] > size \
                and not _fixed_part_fails(layout, records.fields[first_bad:]).any():
            trailing = size - int(records.offsets[first_bad])  # a sound record cut short: the file was truncated
            break
        rejected += 1
        resyncs += 1
        after = time_anchor(context)
        search_from = (last_start + 1) if last_start is not None else int(records.offsets[first_bad]) + 1
        resume = resume_point(raw, data, layout, search_from, after)
        if resume is None and after is not None and len(context) < 3:
            resume = resume_point(raw, data, layout, search_from, None)  # the lone anchor may be the damage
        if resume is None:
            break
        if last_start is not None and resume < last_end:
            # the resumed chain starts inside the last accepted record: its length was the damage
            accepted[-1] = accepted[-1].head(len(accepted[-1].offsets) - 1)
            rejected += 1
            context = context[:-1]
        last_start = None
        pos, limit = resume, _RESTART_LIMIT
    if len(accepted) == 1:
        records = accepted[0]
    else:
        offsets = np.concatenate([r.offsets for r in accepted]) if accepted else np.empty(0, dtype=np.int64)
        records = read_at(data, layout, offsets)
    times = record_times(records.fields) if resyncs else None
    if times is not None:  # records next to a damaged stretch were judged on one side only
        late = out_of_line(times, np.empty(0, dtype=np.int64))
        if late.any():
            records = read_at(data, layout, records.offsets[~late])
            rejected += int(late.sum())
    used = int((records.ends - records.offsets).sum())
    return Framing(records, trailing, size - used - trailing, rejected, resyncs)
