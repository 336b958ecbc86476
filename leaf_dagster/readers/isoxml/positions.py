"""Which TLG positions are fixes, and which steps between them can be swaths.

A record without a fix must go before distances, headings and swaths are computed: one record at latitude 0 /
longitude 0 makes a 5,800 km swath, a map grid of 10,000 x 3,600 pixels and a minute-long upload. A record
has no usable fix when

- its PTN status (D) says so: 0 "no GPS fix" or 14 "error" (ISO 11783-10). 15 "not available" says nothing
  about the fix: KRONE CCI terminals write 15 in every record of sound logs, so it is judged by position;
- its position is 0 / 0, or outside +-90 / +-180 degrees, or missing.

A simulated fix (status 8) is kept and flagged. After the no-fix records are gone, a step between consecutive
fixes that is much longer than the card's usual step is no swath (a GPS jump, a log resumed elsewhere, a
simulator hopping between continents, as on the CNH test card): it counts no distance and gives no heading.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NO_FIX_STATUS = (0, 14)  # "no GPS fix", "error"
SIMULATED_STATUS = 8
SWATH_FACTOR = 50.0  # a step longer than this many median steps is no swath ...
SWATH_FLOOR_M = 100.0  # ... unless it is shorter than this (cards that mostly stand have a tiny median step)
_EARTH_RADIUS_M = 6_371_008.8


def usable_fixes(north: np.ndarray, east: np.ndarray, status: np.ndarray | None, name: str) -> tuple[np.ndarray, list[str]]:
    """Per record (raw PTN A/B in 1e-7 degrees, PTN D or None): does it hold a fix? And notes saying why not."""
    lat, lon = north * 1e-7, east * 1e-7
    reasons: list[tuple[str, np.ndarray]] = []
    if status is not None:
        for value, label in zip(NO_FIX_STATUS, ("no GPS fix", "error")):
            reasons.append((f"PTN status {value} ({label})", status == value))
    reasons.append(("position 0 / 0", (north == 0) & (east == 0)))
    reasons.append(("position missing or outside +-90 / +-180 degrees",
                    ~np.isfinite(lat) | ~np.isfinite(lon) | (np.abs(lat) > 90) | (np.abs(lon) > 180)))
    dropped = np.zeros(len(north), dtype=bool)
    parts = []
    for label, mask in reasons:
        new = mask & ~dropped
        if new.any():
            parts.append(f"{int(new.sum())} with {label}")
            dropped |= new
    notes = []
    if dropped.any():
        notes.append(f"{name}: {int(dropped.sum())} of {len(north)} records have no usable fix and were dropped "
                     f"before distances, headings and swaths were computed ({'; '.join(parts)})")
    if status is not None:
        simulated = int(((status == SIMULATED_STATUS) & ~dropped).sum())
        if simulated:
            notes.append(f"{name}: {simulated} records carry a simulated fix (PTN status 8); kept, but their "
                         "positions are not measured")
    return ~dropped, notes


def step_lengths(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Metres from the previous fix (0 for the first), great circle."""
    phi, lam = np.radians(lat), np.radians(lon)
    dphi, dlam = np.diff(phi), np.diff(lam)
    a = np.sin(dphi / 2) ** 2 + np.cos(phi[:-1]) * np.cos(phi[1:]) * np.sin(dlam / 2) ** 2
    out = np.zeros(len(lat))
    out[1:] = 2 * _EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    return out


def swath_steps(lat_parts: list[np.ndarray], lon_parts: list[np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """Step lengths per part (stream), 0 for a step too long to be a swath, and a note saying how many.

    Too long: over SWATH_FACTOR times the median of the card's moving steps and over SWATH_FLOOR_M. On the 98
    real logs of our corpus the longest true step is 53 m, and 175 times the median (a combine logging at 10 Hz
    that mostly stands); the hops of the CNH and Kverneland simulator cards are 2,264-9,329 km, millions of
    times it, and are the only steps excluded."""
    steps = [step_lengths(la, lo) for la, lo in zip(lat_parts, lon_parts)]
    moving = np.concatenate([s[s > 0] for s in steps]) if steps else np.empty(0)
    if len(moving) == 0:
        return steps, []
    median = float(np.median(moving))
    limit = max(SWATH_FACTOR * median, SWATH_FLOOR_M)
    excluded = sum(int((s > limit).sum()) for s in steps)
    if not excluded:
        return steps, []
    longest = max(float(s.max()) for s in steps)
    note = (f"{excluded} steps between consecutive fixes are too long to be swaths (over {limit:,.0f} m: "
            f"{SWATH_FACTOR:.0f} times the median step of {median:.2f} m, and at least {SWATH_FLOOR_M:.0f} m; the "
            f"longest {longest / 1000:,.1f} km): they count no distance and give no heading")
    return [np.where(s > limit, 0.0, s) for s in steps], [note]


def headings(lat: np.ndarray, lon: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Direction of travel from the previous fix in degrees from north, over the steps that count (> 0);
    repeats the last heading when standing or after an excluded step."""
    out = np.full(len(lat), np.nan)
    if len(lat) < 2:
        return out
    phi, lam = np.radians(lat), np.radians(lon)
    dlam = np.diff(lam)
    y = np.sin(dlam) * np.cos(phi[1:])
    x = np.cos(phi[:-1]) * np.sin(phi[1:]) - np.sin(phi[:-1]) * np.cos(phi[1:]) * np.cos(dlam)
    out[1:] = np.where(steps[1:] > 0, (np.degrees(np.arctan2(y, x)) + 360.0) % 360.0, np.nan)
    out[0] = out[1]
    return pd.Series(out).ffill().bfill().to_numpy()
