"""Which clock dates a TLG record: GPS UTC where it is plausible, else the terminal's clock moved to UTC.

A record can carry two clocks (isoxml.md 3.4): the terminal's (TIM A "TimeStart": ms since midnight and days
since 1980, in whatever zone the terminal was set to) and GPS UTC (PTN H time of day, PTN I date). Real cards
show every combination:

- Trimble FmX logs both; its terminal clock runs 17.4-17.6 s ahead of GPS UTC, so GPS is the better clock;
- Kverneland logs PTN H but writes 0 in every record: no GPS time at all;
- KRONE Smart Connect logs only the terminal clock, in local time, and writes its zone (+01:00, +02:00) in the
  task's TIM/ASP strings; Fendt and KRONE CCI log only the terminal clock and write no zone anywhere;
- a terminal's GPS date can be garbage (year 2149) while its time of day is fine.

So, per record:

1. GPS candidate: date and time when the date lies in 1990-2099 and the time of day is set (0 is what
   writers log before a fix); else the GPS time of day placed on the UTC day of the terminal clock, moved to
   UTC by the offset of the records with a full GPS time, else by the task's zone (the terminal's own day is
   wrong for a terminal at UTC+13 or -12). With neither, the zones' range (UTC-12 to +14) decides the day,
   and a time of day that two days fit is not used.
2. Where the terminal clock is logged too, GPS must run with it: the offset GPS - terminal of each record is
   compared with the median offset; a record more than a minute away has no plausible GPS time, and if fewer
   than half agree, GPS is not used at all (a stuck or garbage GPS field).
3. A record without a plausible GPS time takes the terminal clock shifted by that median offset; without any
   GPS time, the terminal clock minus the zone of the task's own TIM/ASP strings; without a zone, the
   terminal clock as it is (read as UTC, and the note says so).

Times before 1990 or from 2100 on are dropped (NaT). The note says which clock was used, for how many records.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .framing import DAY_MS, LATEST_TIME_OF_DAY_MS
from .taskdata import Task
from .tlg import TlgData

EPOCH_1980 = np.datetime64("1980-01-01T00:00:00", "ms")
EARLIEST = np.datetime64("1990-01-01", "ms")
LATEST = np.datetime64("2100-01-01", "ms")
AGREE_MS = 60_000  # how far a record's GPS - terminal offset may stray from the median offset
MAX_ZONE_MS = 14 * 3_600_000  # the widest UTC offset of a time zone (UTC+14)
WEST_ZONE_MS = 12 * 3_600_000  # the widest offset west (UTC-12)
SKEW_MS = 3_600_000  # how far a terminal clock may run from its zone's time (a Fendt's runs 34 min off)
_NAT = np.datetime64("NaT", "ms")
_ZONE = re.compile(r"(Z|[+-]\d\d:?\d\d)$")


def _plausible(times: np.ndarray) -> np.ndarray:
    return ~np.isnat(times) & (times >= EARLIEST) & (times < LATEST)


def _date(days: np.ndarray, ms: np.ndarray) -> np.ndarray:
    return EPOCH_1980 + days.astype(np.int64) * np.timedelta64(DAY_MS, "ms") + ms.astype(np.int64).astype("timedelta64[ms]")


def terminal_clock(log: TlgData) -> np.ndarray | None:
    """The terminal's own time per record (its zone, whatever that is); NaT where it is impossible."""
    if log.time_ms is None or log.time_days is None:
        return None
    times = _date(log.time_days, log.time_ms)
    return np.where(_plausible(times) & (log.time_ms <= LATEST_TIME_OF_DAY_MS), times, _NAT)


def _start_time(log: TlgData) -> np.datetime64 | None:
    """TIM A of the header when it is a constant (no time in the records), in UTC when it has a zone."""
    if not log.header.time_start:
        return None
    try:
        start = pd.Timestamp(log.header.time_start)
    except (ValueError, OverflowError):
        return None
    start = start.tz_convert("UTC").tz_localize(None) if start.tzinfo else start
    return start.to_datetime64().astype("datetime64[ms]")


def _on_day_of(reference: np.ndarray, time_of_day: np.ndarray) -> np.ndarray:
    """`time_of_day` (ms) on the day of `reference` nearest to it (GPS just after midnight, terminal before)."""
    midnight = reference.astype("datetime64[D]").astype("datetime64[ms]")
    out = midnight + time_of_day.astype("timedelta64[ms]")
    shift = (out - reference).astype(np.int64)
    out = out - np.where(shift > DAY_MS // 2, DAY_MS, 0).astype("timedelta64[ms]")
    return out + np.where(shift < -DAY_MS // 2, DAY_MS, 0).astype("timedelta64[ms]")


def _terminal_as_utc(gps: np.ndarray, reference: np.ndarray, zone: np.timedelta64 | None) -> np.ndarray | None:
    """The terminal clock moved to UTC: by the median GPS - terminal offset of the records whose GPS date and
    time are plausible, else by the zone of the task's own times; None when neither is known."""
    dated = ~np.isnat(gps) & ~np.isnat(reference)
    if dated.any():
        offset = int(np.median((gps[dated] - reference[dated]).astype(np.int64)))
        return reference + np.timedelta64(offset, "ms")
    if zone is not None:
        return reference - zone.astype("timedelta64[ms]")
    return None


def _within_zones(reference: np.ndarray, time_of_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`time_of_day` (ms, UTC) on the day a terminal clock in an unknown zone allows: UTC is the terminal's
    time minus its zone, and zones run from UTC-12 to UTC+14, so GPS lies 14 h before to 12 h after the
    terminal, give or take the clock's skew. Also per record whether a second day fits those bounds too."""
    centre = reference + np.timedelta64((WEST_ZONE_MS - MAX_ZONE_MS) // 2, "ms")
    placed = _on_day_of(centre, time_of_day)
    ahead = (placed - reference).astype(np.int64)
    twice = (ahead + DAY_MS <= WEST_ZONE_MS + SKEW_MS) | (ahead - DAY_MS >= -MAX_ZONE_MS - SKEW_MS)
    return placed, twice


def gps_clock(log: TlgData, reference: np.ndarray | None, zone: np.timedelta64 | None) -> tuple[np.ndarray | None, int, int]:
    """GPS UTC per record where the GPS fields hold one (NaT elsewhere); how many records had to take their date
    from the terminal clock because their GPS date was implausible or not logged; and how many of those
    could not be dated (the terminal's zone unknown and two days possible). None when no GPS time is logged.

    A GPS time of day goes on the day of the terminal clock moved to UTC (by the offset the dated records
    show, else by the task's zone): a terminal at UTC+13 logs 10:00 when GPS says 21:00 the day before, so
    the terminal's own nearest day would be a day off."""
    gps_ms, gps_days = log.ptn_values("gps_time"), log.ptn_values("gps_date")
    if gps_ms is None:
        return None, 0, 0
    time_set = (gps_ms > 0) & (gps_ms <= LATEST_TIME_OF_DAY_MS)
    out = np.full(log.count, _NAT)
    if gps_days is not None:
        full = _date(np.where(time_set, gps_days, 0), np.where(time_set, gps_ms, 0))
        out = np.where(time_set & _plausible(full), full, _NAT)
    if reference is None:
        return out, 0, 0
    undated = np.isnat(out) & time_set & ~np.isnat(reference)
    if not undated.any():
        return out, 0, 0
    of_day = np.where(undated, gps_ms, 0)
    utc = _terminal_as_utc(out, reference, zone)
    if utc is not None:
        placed, twice = _on_day_of(np.where(undated, utc, EARLIEST), of_day), np.zeros(log.count, dtype=bool)
    else:
        placed, twice = _within_zones(np.where(undated, reference, EARLIEST), of_day)
    out = np.where(undated & ~twice, placed, out)
    return out, int(undated.sum()) if gps_days is not None else 0, int((undated & twice).sum())


def zone_offset(task: Task) -> tuple[np.timedelta64 | None, str | None]:
    """The UTC offset the task's own TIM/ASP times carry, if any (e.g. KRONE writes +01:00, CNH -05:00)."""
    for text in task.times:
        match = _ZONE.search(text.strip())
        if not match:
            continue
        zone = match.group(1)
        if zone == "Z":
            return np.timedelta64(0, "m"), "Z"
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        minutes = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        return np.timedelta64(minutes, "m"), zone
    return None, None


def _seconds(ms: float) -> str:
    return f"{ms / 1000:+.1f} s" if abs(ms) < 3_600_000 else f"{ms / 3_600_000:+.2f} h"


def _terminal_in_utc(terminal: np.ndarray, task: Task, why: str) -> tuple[np.ndarray, str]:
    offset, zone = zone_offset(task)
    if offset is not None:
        return terminal - offset.astype("timedelta64[ms]"), (
            f"terminal clock (TimeStart) read as local time at UTC{'' if zone == 'Z' else zone}, the zone of the "
            f"task's own times ({why})")
    return terminal, f"terminal clock (TimeStart) read as UTC: {why} and the task's times carry no zone"


def record_times(log: TlgData, task: Task) -> tuple[np.ndarray, str]:
    """UTC time per record (datetime64[ms], NaT where unknown) and a note saying which clock was used."""
    n = log.count
    terminal = terminal_clock(log)
    start = _start_time(log) if terminal is None else None
    reference = terminal if terminal is not None else (np.full(n, start) if start is not None else None)
    zone = zone_offset(task)[0]
    if terminal is None and start is not None and _ZONE.search((log.header.time_start or "").strip()):
        zone = np.timedelta64(0, "m")  # the start was given with its zone: it is in UTC already
    gps, on_terminal_day, undecided = gps_clock(log, reference, zone)
    if terminal is not None:
        if gps is None or np.isnat(gps).all():
            why = "no GPS time is logged" if gps is None else (
                "the GPS time of day (PTN H) fits two days in every record (no usable GPS date, the terminal's zone "
                "unknown)" if undecided else "the GPS time (PTN H) holds no time in any record")
            times, note = _terminal_in_utc(terminal, task, why)
        else:
            both = ~np.isnat(gps) & ~np.isnat(terminal)
            offsets = (gps[both] - terminal[both]).astype(np.int64)
            median = float(np.median(offsets)) if len(offsets) else 0.0
            agree = np.zeros(n, dtype=bool)
            agree[both] = np.abs(offsets - median) <= AGREE_MS
            if len(offsets) and 2 * int(agree.sum()) < len(offsets):
                times, note = _terminal_in_utc(terminal, task, "the GPS time (PTN H) does not run with the terminal "
                                                               f"clock in {len(offsets) - int(agree.sum())} of "
                                                               f"{len(offsets)} records, so it is not used")
            else:
                use = agree | (np.isnat(terminal) & ~np.isnat(gps))
                shifted = terminal + np.timedelta64(int(round(median)), "ms")
                times = np.where(use, gps, shifted)
                note = "time from GPS UTC " + ("date and time (PTN H, I)" if log.ptn_values("gps_date") is not None
                                               else "time of day (PTN H) on the terminal's date")
                if on_terminal_day:
                    note += (f"; {on_terminal_day} records with an implausible GPS date (PTN I) use their GPS time "
                             "of day on the terminal's date (its clock moved to UTC)")
                if undecided:
                    note += (f"; {undecided} records whose GPS time of day fits two days (the terminal's zone is "
                             "unknown) are not dated by GPS")
                if abs(median) > MAX_ZONE_MS:
                    note += (f"; GPS UTC and the terminal clock differ by {_seconds(median)}, more than any time zone "
                             "explains: one of them has the wrong date, and GPS is taken")
                fallback = int((~use & ~np.isnat(terminal)).sum())
                if fallback:
                    note += (f"; {fallback} records without a plausible GPS time use the terminal clock shifted by "
                             f"the median GPS - terminal offset ({_seconds(median)})")
    elif gps is not None and not np.isnat(gps).all():
        times = gps
        note = "time from GPS UTC (PTN H, I); the records carry no terminal time"
        if np.isnat(gps).any():
            note += f"; {int(np.isnat(gps).sum())} records without a plausible GPS time have no time"
    elif start is not None:
        times = np.full(n, start)
        note = "every record dated with the time log's start (TIM A): the records carry no time"
    else:
        return np.full(n, _NAT), "the time log has no time"
    times = times.astype("datetime64[ms]")
    implausible = ~np.isnat(times) & ~_plausible(times)
    if implausible.any():
        times = np.where(implausible, _NAT, times)
        note += f"; {int(implausible.sum())} records with a date before 1990 or after 2099 have no time"
    return times, note
