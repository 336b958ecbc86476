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

Record starts form a chain, so the walk is sequential: a tight loop over the bytes (`walk`) on short
stretches, and on long ones many chains walked at once as numpy lanes, one per segment of the file, joined
where each lands on the next one's start (`follow`; exactly the loop's answer, several times faster). The
checks are vectorised over the walked records, so a sound file costs one walk plus a few array comparisons.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from functools import cached_property

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
_SEGMENT = 8192  # bytes per lane when a long stretch is walked as lanes (`follow`)
_WINDOW = 512  # bytes from a lane's base where its first record start is looked for
_LANES_FROM = 1 << 20  # stretches shorter than this are walked by the plain loop
_LOOP_RECORDS = 1 << 12  # records walked by the plain loop before `follow` looks at the stretch ahead again
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

    @cached_property
    def ends(self) -> np.ndarray:
        return self.offsets + self.fields.dtype.itemsize + 5 * self.fields["dlv_count"].astype(np.int64)

    @property
    def size(self) -> int:
        """Bytes in these records."""
        return len(self.offsets) * self.fields.dtype.itemsize + 5 * len(self.entry_start)

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


def walk(raw: bytes, fixed: int, start: int, limit: int, end: int | None = None) -> tuple[np.ndarray, int]:
    """Up to `limit` record starts from `start`, following each record's length; and where the walk stopped.

    Record starts form a chain (each length depends on its count byte), so this is one sequential pass: a
    tight loop over `bytes`, about 0.08 s per million records (an int64 `array` takes the starts: it becomes a
    numpy array without a copy, unlike a list). Only starts before `end` are taken (by default every start
    with its count byte in the data). The last start may belong to a record that runs past the end of the data
    (the caller checks completeness). `follow` gives the same answer several times faster on long stretches.
    """
    step = fixed + 1
    starts = array("q")
    append = starts.append
    pos = start
    last = len(raw) - fixed  # a record needs its count byte at pos + fixed < len(raw)
    if end is not None:
        last = min(last, end)
    for _ in range(limit):
        if pos >= last:
            break
        append(pos)
        pos += step + 5 * raw[pos + fixed]
    return np.frombuffer(starts, dtype=np.int64), pos


def _lane_starts(data: np.ndarray, layout: RecordLayout, bases: np.ndarray, window: int) -> np.ndarray:
    """Per base, the first byte of the `window` bytes from it where a record and the one after it pass the
    fixed-part checks (the base itself where no byte does): a guess at where the chain of records passes,
    which `follow` verifies."""
    fixed = layout.fixed
    positions = (bases[:, None] + np.arange(window, dtype=np.int64)).ravel()
    keep = np.flatnonzero(data[positions + fixed] <= min(layout.dlv_count, MAX_DLVS))  # most bytes fail here
    candidates, lane = positions[keep], keep // window
    probe = candidates
    for _ in range(2):  # the candidate record, then the one after it
        inside = probe + fixed < len(data)
        candidates, lane, probe = candidates[inside], lane[inside], probe[inside]
        fields = np.ascontiguousarray(gather(data, probe, fixed + 1)).view(layout.dtype).reshape(len(probe))
        sound = ~_fixed_part_fails(layout, fields)
        candidates, lane, probe = candidates[sound], lane[sound], probe[sound]
        probe = probe + fixed + 1 + 5 * fields["dlv_count"][sound].astype(np.int64)
    starts = bases.copy()
    first = np.searchsorted(lane, np.arange(len(bases)))  # lanes come in order, candidates in order within one
    found = first < len(lane)
    found[found] = lane[first[found]] == np.flatnonzero(found)
    starts[found] = candidates[first[found]]
    return starts


def _follow_lanes(raw: bytes, data: np.ndarray, layout: RecordLayout, start: int, end: int,
                  segment: int) -> tuple[np.ndarray, int]:
    """The record starts from `start` before `end` (at most len(raw) - fixed), and the first one at or after it.

    The stretch is cut into segments of `segment` bytes, and a chain is walked from a likely record start
    in each (`_lane_starts`), all segments at once, one numpy step per record. Two chains that meet at a byte
    are the same from there on, so segment j's chain is the true one exactly when the true chain, coming out
    of segment j - 1, lands on its first start; it nearly always does in a sound log. Where it does not, that
    segment is walked again with `walk` from where the true chain entered it. The result is exactly `walk`'s.
    """
    fixed = layout.fixed
    lengths = fixed + 1 + 5 * np.arange(256, dtype=np.int64)  # record length per count byte
    bases = start + segment * np.arange(max((end - start) // segment, 1), dtype=np.int64)
    # a window as long as the longest record holds a start of any chain (and stays inside the stretch); past
    # `_WINDOW` bytes, a record longer than that is rare enough to leave to the fallback
    window = min(segment, end - start, fixed + 1 + 5 * min(layout.dlv_count, MAX_DLVS), _WINDOW)
    lane_starts = _lane_starts(data, layout, bases, window)
    lane_starts[0] = start
    stops = np.append(lane_starts[1:], end)  # each chain is taken up to the next one's start
    counts = data[fixed:]  # the count byte of a record at each position
    pos = lane_starts
    steps = [pos]
    while True:
        for _ in range(16):
            # past the end of the data a chain reads the last byte: it only moves on, and is not taken there
            pos = pos + lengths.take(counts.take(pos, mode="clip"))
            steps.append(pos)
        if (pos >= stops).all():
            break
    chains = np.stack(steps).T  # lane by lane, each chain in order
    taken = chains < stops[:, None]
    exits = chains[np.arange(len(bases)), taken.sum(axis=1)]  # each chain's first start at or after its stop
    met = np.flatnonzero(exits[:-1] != lane_starts[1:]) + 1  # lanes the chain before did not land on
    if not len(met):
        return chains[taken], int(exits[-1])
    pieces: list[np.ndarray] = []
    done = 0  # lanes before `done` are in `pieces`; the chain of lane `done` is the true one
    for lane in met.tolist():
        if lane <= done:  # walked already, or found true when the walk before it landed on its start
            continue
        pieces.append(chains[done:lane][taken[done:lane]])
        stop, done = int(exits[lane - 1]), lane
        while True:
            walked, stop = walk(raw, fixed, stop, len(raw) + 1, int(stops[done]))
            pieces.append(walked)
            done += 1
            if done == len(bases) or stop == lane_starts[done]:
                break
    if done < len(bases):
        pieces.append(chains[done:][taken[done:]])
        stop = int(exits[-1])
    return np.concatenate(pieces), stop


def follow(raw: bytes, data: np.ndarray, layout: RecordLayout, start: int, limit: int,
           segment: int = _SEGMENT, lanes_from: int = _LANES_FROM) -> tuple[np.ndarray, int]:
    """What `walk(raw, layout.fixed, start, limit)` returns, with every stretch of at least `lanes_from` bytes
    walked as lanes of `segment` bytes (`_follow_lanes`): several times faster on a long log."""
    fixed = layout.fixed
    last = len(raw) - fixed
    pieces: list[np.ndarray] = []
    pos, left = start, limit
    record = fixed + 1  # the mean record length, as far as the records walked tell
    while left > 0 and pos < last:
        span = min(last - pos, left * record * 2)  # bytes that likely hold the records still wanted
        if span < lanes_from:
            starts, pos = walk(raw, fixed, pos, min(left, _LOOP_RECORDS))
        else:
            starts, pos = _follow_lanes(raw, data, layout, pos, pos + span, segment)
            if len(starts) > left:
                starts, pos = starts[:left], int(starts[left])
        pieces.append(starts)
        left -= len(starts)
        if len(starts):
            record = max(record, -(-(pos - int(starts[0])) // len(starts)))
    if len(pieces) == 1:
        return pieces[0], pos
    return (np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)), pos


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
        entry_start = base[entry_record]  # a gather: cheaper than repeating `base` again
        entry_start += 5 * np.arange(total, dtype=np.int64)
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
    for name, bound in (("north", _MAX_NORTH), ("east", _MAX_EAST)):
        if name in names:  # compared as int32: no abs, which would overflow at -2**31
            fails |= (fields[name] > bound) | (fields[name] < -bound)
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
        starts, stop = follow(raw, data, layout, pos, limit)
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
    used = records.size
    return Framing(records, trailing, size - used - trailing, rejected, resyncs)
