"""Turning the many ways monitors write time into UTC instants.

Sources give ISO strings with a zone (John Deere `IsoTime`), US-style local strings (`8/16/2019 6:52:48 PM`),
day-first dates (`27/11/2032`), dates with no time of day, Excel serial days (Yield Editor), or GPS or
Unix seconds (Ag Leader text; `choose_epoch` tells which from the evidence). Strings without a zone are read as UTC: John Deere's `Time` column equals its
`IsoTime`, and the others carry nothing better; the caller records that assumption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import EpochUndecided

GPS_EPOCH = pd.Timestamp("1980-01-06", tz="UTC")
UNIX_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
EXCEL_EPOCH = pd.Timestamp("1899-12-30", tz="UTC")
# GPS time runs ahead of UTC by the leap seconds since 1980: (first UTC instant, offset in seconds).
_LEAP = [("1999-01-01", 13), ("2006-01-01", 14), ("2009-01-01", 15), ("2012-07-01", 16), ("2015-07-01", 17),
         ("2017-01-01", 18)]
# GPS seconds below this (1990-01-01) are a relative counter, not a time since the GPS epoch.
_MIN_ABSOLUTE_GPS = 315_619_200.0

_FORMATS = ["%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p",
            "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%m/%d/%Y", "%d/%m/%Y", "%Y-%m-%d", "%Y/%m/%d"]


def format_utc(instant: pd.Timestamp | None) -> str | None:
    """Leaf's date format, yyyy-MM-dd'T'HH:mm:ss.SSS'Z'."""
    if instant is None or pd.isna(instant):
        return None
    return pd.Timestamp(instant).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _day_first(values: pd.Series) -> bool | None:
    """True/False when slashed dates show which part is the day, None when every date is ambiguous."""
    parts = values.str.extract(r"^\s*(\d{1,2})/(\d{1,2})/\d{2,4}")
    first = pd.to_numeric(parts[0], errors="coerce")
    second = pd.to_numeric(parts[1], errors="coerce")
    if (first > 12).any():
        return True
    if (second > 12).any():
        return False
    return None


def parse_datetimes(values: pd.Series) -> tuple[pd.Series, str | None]:
    """Parse a column of date/time values to UTC; returns the series and a note on any assumption.

    Monitors log several points per second (one per section), so each distinct string is parsed once."""
    if not pd.api.types.is_datetime64_any_dtype(values) and len(values) > 1000:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        if len(uniques) < len(values) // 2:
            parsed, note = parse_datetimes(pd.Series(uniques))
            # take on the datetime array itself: its numpy form is one Timestamp object per point
            return pd.Series(parsed.array.take(codes, allow_fill=True), index=values.index), note
    if pd.api.types.is_datetime64_any_dtype(values):
        series = pd.to_datetime(values)
        if series.dt.tz is None:
            return series.dt.tz_localize("UTC"), "times without a zone read as UTC"
        return series.dt.tz_convert("UTC"), None
    text = values.astype("string").str.strip()
    sample = text.dropna()
    if sample.empty:
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ms, UTC]"), None
    iso = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    if iso.notna().mean() > 0.95:
        has_zone = sample.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True).all()
        return iso, None if has_zone else "times without a zone read as UTC"
    day_first = _day_first(sample)
    best, best_format = None, None
    for fmt in _FORMATS:
        if fmt.startswith("%d/") and day_first is False or fmt.startswith("%m/") and day_first is True:
            continue
        parsed = pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
        if best is None or parsed.notna().sum() > best.notna().sum():
            best, best_format = parsed, fmt
        if parsed.notna().all():
            break
    assert best is not None
    note = "times without a zone read as UTC"
    if day_first is None and best_format and best_format.startswith("%m/"):
        note += "; dates are ambiguous (no day above 12), read month first"
    return best, note


def combine_date_and_time(dates: pd.Series, times: pd.Series) -> tuple[pd.Series, str | None]:
    """Join a date column and a time-of-day column (`27/11/2032` + `8:04:24`)."""
    joined = dates.astype("string").str.strip() + " " + times.astype("string").str.strip()
    return parse_datetimes(joined)


def from_gps_seconds(seconds: pd.Series) -> tuple[pd.Series, str | None]:
    """GPS seconds since 1980-01-06 to UTC, or all missing when the column is a relative counter."""
    values = pd.to_numeric(seconds, errors="coerce").astype(float)
    if not (values.dropna() >= _MIN_ABSOLUTE_GPS).all() or values.dropna().empty:
        return (pd.Series(pd.NaT, index=seconds.index, dtype="datetime64[ms, UTC]"),
                f"GPS time column is a relative counter (values {values.min():.0f} to {values.max():.0f}), "
                "so the points have no absolute time")
    instants = GPS_EPOCH + pd.to_timedelta(values, unit="s")
    offsets = np.zeros(len(values))
    for start, leap in _LEAP:
        offsets = np.where(instants >= pd.Timestamp(start, tz="UTC"), leap, offsets)
    return instants - pd.to_timedelta(offsets, unit="s"), "GPS seconds converted to UTC (leap seconds removed)"


def from_unix_seconds(seconds: pd.Series) -> tuple[pd.Series, str | None]:
    """Seconds since 1970-01-01 UTC (Unix time has no leap seconds to remove)."""
    values = pd.to_numeric(seconds, errors="coerce").astype(float)
    return UNIX_EPOCH + pd.to_timedelta(values, unit="s"), "Unix seconds converted to UTC"


# Yield monitors with GPS positions appeared in the early 1990s: an earlier reading is not a harvest date.
EARLIEST_PLAUSIBLE = pd.Timestamp("1990-01-01", tz="UTC")
# A year stands apart from letters: "2019_corn" names one, a model number like "GPS2000" or "YM2000" does not.
_YEAR = re.compile(r"(?<![A-Za-z\d])(199\d|20\d\d)(?![A-Za-z\d])")


@dataclass(frozen=True)
class EpochChoice:
    """The epoch a seconds column counts from ("GPS", "Unix", or None for a relative counter), and why."""

    epoch: str | None
    evidence: str


def years_in(texts: dict[str, list[str]]) -> dict[int, str]:
    """Four-digit years (1990 onwards) in labelled texts (the file name, load labels): year -> where seen."""
    found: dict[int, str] = {}
    for where, values in texts.items():
        for value in values:
            for match in _YEAR.finditer(str(value)):
                found.setdefault(int(match.group(1)), f"{where} '{value}'")
    return found


def choose_epoch(seconds: pd.Series, documented: str | None, years: dict[int, str],
                 now: pd.Timestamp | None = None) -> EpochChoice:
    """Whether a column of seconds counts from the GPS epoch (1980-01-06) or the Unix epoch (1970-01-01).

    The same numbers read both ways land about ten years apart (a 2007 harvest in Unix seconds reads as 2017
    in GPS seconds), so the choice is made on evidence: a year written in the file, its name or a load label
    decides when exactly one reading falls in it; a reading in the future or before 1990 is impossible; when
    both readings stay possible and nothing names a year, the layout's documented epoch is taken (and the
    notes say the other reading was possible). Raises EpochUndecided when the evidence contradicts itself
    or decides nothing."""
    now = now or pd.Timestamp.now(tz="UTC")
    values = pd.to_numeric(seconds, errors="coerce").astype(float).dropna()
    if values.empty or values.min() < _MIN_ABSOLUTE_GPS:
        low, high = (values.min(), values.max()) if len(values) else (float("nan"), float("nan"))
        return EpochChoice(None, f"the time column is a relative counter (values {low:.0f} to {high:.0f}), not "
                                 "seconds since an epoch, so the points have no absolute time")
    readings = {"GPS": from_gps_seconds(values)[0], "Unix": from_unix_seconds(values)[0]}
    spans = {name: (r.min(), r.max()) for name, r in readings.items()}
    shown = "; ".join(f"as {name} seconds {a:%Y-%m-%d} to {b:%Y-%m-%d}" for name, (a, b) in spans.items())
    possible = [name for name, (a, b) in spans.items() if a >= EARLIEST_PLAUSIBLE and b <= now + pd.Timedelta(days=1)]
    if years:
        named = ", ".join(f"{year} ({where})" for year, where in sorted(years.items()))
        fitting = [name for name in possible if any(spans[name][0].year <= y <= spans[name][1].year for y in years)]
        if len(fitting) == 1:
            return EpochChoice(fitting[0], f"time read as {fitting[0]} seconds: the year {named} fits only that "
                                           f"reading ({shown})")
        raise EpochUndecided(f"the year {named} fits {'both' if fitting else 'neither'} of the time readings "
                             f"({shown}), so the epoch of the time column is unknown")
    if len(possible) == 1:
        other = next(n for n in spans if n != possible[0])
        return EpochChoice(possible[0], f"time read as {possible[0]} seconds: read as {other} seconds the points "
                                        f"would lie {'in the future' if spans[other][1] > now else 'before 1990'} "
                                        f"({shown})")
    if not possible:
        raise EpochUndecided(f"the time column fits no epoch ({shown}: both impossible)")
    if documented:
        return EpochChoice(documented, f"time read as {documented} seconds, the epoch the layout documents; no year "
                                       f"in the file, its name or its load labels rules out the other reading "
                                       f"({shown})")
    raise EpochUndecided(f"no year in the file, its name or its load labels tells the time's epoch ({shown})")


def from_excel_days(days: pd.Series) -> tuple[pd.Series, str | None]:
    """Excel serial day numbers (Yield Editor's GPS time) to UTC."""
    values = pd.to_numeric(days, errors="coerce").astype(float)
    return EXCEL_EPOCH + pd.to_timedelta(values * 86400.0, unit="s"), "Excel serial days read as UTC"
