"""Figures that show whether a standardised file is physically plausible, and what looks wrong.

A file can pass every schema rule and still be wrong: a width read in inches as feet makes each point's
area 12 times too large, GPS seconds read as Unix seconds move a harvest ten years, a unit slip puts
yields beyond anything ever harvested. These figures compare the file with itself and with physics:

- **working width against pass spacing.** A machine drives its passes about one working width apart, so
  the median distance between neighbouring passes is measured from the positions alone and compared with
  the logged width (sections logged at one instant are added up to the machine's width first).
- **speed**: logged or implied by positions and times; field machines do not go beyond 15 m/s (54 km/h),
  so more than a tenth of the points beyond it is a unit or clock error rather than GPS noise.
- **time span**: not in the future, not before GPS yield monitors (1990).
- **yield**: a field's median dry yield above the world record for its crop cannot be right.

Each finding is a sentence; the figures go to the check's metadata. Nothing here changes the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from ..standard.crops import general_name
from ..standard.units import convert, is_known
from .filters import MIN_SPEED_M_S
from .geometry import metres, metric_crs

MAX_FIELD_SPEED_M_S = 15.0
# GPS jumps and gaps make a few steps look fast; a tenth of them is a unit or clock error.
MAX_FAST_SHARE = 0.10
# A working width more than 2.5 pass spacings means every point overlaps its neighbours 2.5 deep: a unit
# error (inches read as feet is 12x, metres as feet 3.3x). Narrower than a fifth of the spacing is only
# suspicious when the width never changes (section control switches parts of a boom off).
WIDTH_TO_SPACING = (0.2, 2.5)
EARLIEST = pd.Timestamp("1990-01-01", tz="UTC")
# Neighbouring passes are looked for within this distance; wider implements are not measured.
_SEARCH_M = 60.0
_SAMPLE = 2000
# Passes closer than this are the same line driven again; no implement is narrower.
_SAME_LINE_M = 1.0
# More rows than this per timestamp is a coarse clock (dates only), not the sections of one instant.
_MAX_SECTIONS = 128
# Positions and times give a speed only over short steps of a continuous log.
_STEP_SECONDS = (0.5, 10.0)
# World-record dry yields (t/ha, rounded up): corn 623.8 bu/ac (2023), soybeans 206.9 bu/ac (2023), wheat
# 17.96 t/ha (2020), barley 13.8 t/ha (2015), canola / rapeseed 7.3 t/ha; a field median above them is a unit
# or crop error. Other crops are not judged (forage yields are fresh biomass, tens of tonnes).
RECORD_T_HA = {"corn": 40.0, "soybeans": 14.0, "wheat": 18.0, "barley": 14.0, "oats": 14.0, "canola": 8.0,
               "rapeseed": 8.0}


@dataclass
class Plausibility:
    figures: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.findings


def _records(frame: pd.DataFrame, x: np.ndarray, y: np.ndarray, units: dict[str, str]) -> pd.DataFrame:
    """One row per logged instant in travel order (`x`, `y`: the points in metres): mean position of its
    sections, summed width, time."""
    table = pd.DataFrame({"x": x, "y": y})
    width = metres(frame, units, "equipmentWidth")
    table["width"] = width if width is not None else np.nan
    stamps = frame["timestamp"] if "timestamp" in frame.columns else pd.Series(pd.NaT, index=frame.index)
    table["time"] = pd.to_datetime(stamps).reset_index(drop=True)
    instant = (table["time"] != table["time"].shift()).cumsum().rename("instant")
    runs = instant.value_counts()
    if table["time"].notna().all() and runs.median() <= _MAX_SECTIONS:
        # sections logged together share a timestamp: a run of one timestamp (in file order) is one instant
        table = table.groupby(instant, sort=False).agg(x=("x", "mean"), y=("y", "mean"), width=("width", "sum"),
                                                       time=("time", "first"), sections=("x", "size"))
        table = table.reset_index(drop=True)
    else:
        # no times, or times too coarse to tell instants apart (a date per file): every row is a record
        table["time"], table["sections"] = pd.NaT, 1
    return table[np.isfinite(table["x"]) & np.isfinite(table["y"])].reset_index(drop=True)


def _pass_spacing(records: pd.DataFrame) -> float | None:
    """The distance across the direction of travel to the nearest point of another, parallel pass.

    Another pass is a parallel stretch the machine reached after travelling more than twice the search
    radius: a wobble or a stop on one track never qualifies, a neighbouring pass across a headland turn does."""
    if len(records) < 50:
        return None
    x, y = records["x"].to_numpy(), records["y"].to_numpy()
    dx, dy = np.diff(x, prepend=np.nan), np.diff(y, prepend=np.nan)
    step = np.hypot(dx, dy)
    moving = step > 0.05
    if records["time"].notna().all():
        # at work, not idling: GPS wander of a parked machine draws no passes (Leaf's 0.5 m/s filter speed)
        seconds = records["time"].diff().dt.total_seconds().to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            moving &= step / seconds >= MIN_SPEED_M_S
    with np.errstate(divide="ignore", invalid="ignore"):
        ux, uy = np.where(moving, dx / step, np.nan), np.where(moving, dy / step, np.nan)
    travelled = np.cumsum(np.where(moving, step, 0.0))
    typical = float(np.nanmedian(step[moving])) if moving.any() else np.nan
    usable = np.flatnonzero(np.isfinite(ux))
    if len(usable) < 50 or not np.isfinite(typical):
        return None
    queries = usable[np.linspace(0, len(usable) - 1, min(_SAMPLE, len(usable))).astype(int)]
    tree = shapely.STRtree(shapely.points(x, y))
    q, c = tree.query(shapely.points(x[queries], y[queries]), predicate="dwithin", distance=_SEARCH_M)
    q = queries[q]
    other = (np.abs(travelled[c] - travelled[q]) > 2 * _SEARCH_M) & np.isfinite(ux[c])
    parallel = np.abs(ux[q] * ux[c] + uy[q] * uy[c]) > 0.95
    ex, ey = x[c] - x[q], y[c] - y[q]
    along = np.abs(ex * ux[q] + ey * uy[q])
    across = np.abs(ex * uy[q] - ey * ux[q])
    # a pass driven again on the same line (a windrow picked up twice, a headland) is not a neighbour
    keep = other & parallel & (along < max(3 * typical, 2.0)) & (across > _SAME_LINE_M)
    if keep.sum() < 20:
        return None
    nearest = pd.Series(across[keep]).groupby(q[keep]).min()
    # passes driven again over the same ground (headlands, overlaps) pull some nearest distances down; the
    # upper quartile is the spacing of passes laid side by side
    return float(nearest.quantile(0.75)) if len(nearest) >= 20 else None


def assess(frame: gpd.GeoDataFrame, units: dict[str, str], crop: str | None = None,
           now: pd.Timestamp | None = None) -> Plausibility:
    """The plausibility figures of one file's standard points (in the units `units` gives)."""
    if len(frame) == 0:
        return Plausibility()
    points = frame.geometry.values._data
    x, y = Transformer.from_crs(frame.crs, metric_crs(frame), always_xy=True).transform(
        shapely.get_x(points), shapely.get_y(points))
    return assess_points(frame, x, y, units, crop, now)


def assess_points(frame: pd.DataFrame, x: np.ndarray, y: np.ndarray, units: dict[str, str],
                  crop: str | None = None, now: pd.Timestamp | None = None) -> Plausibility:
    """`assess` of points given as their coordinates in metres (a metric CRS: `geometry.metric_crs`) beside
    their properties (`frame`): a big file's points need no geometry object each."""
    now = now or pd.Timestamp.now(tz="UTC")
    out = Plausibility()
    if len(frame) == 0:
        return out
    records = _records(frame, x, y, units)
    width = float(np.nanmedian(records["width"])) if records["width"].notna().any() else None
    spacing = _pass_spacing(records)
    out.figures.update(working_width_m=_round(width), pass_spacing_m=_round(spacing),
                       sections_per_record=int(records["sections"].median()) if len(records) else None)
    if width and spacing:
        ratio = width / spacing
        constant = bool(np.nanmax(records["width"]) - np.nanmin(records["width"]) < 1e-6)
        out.figures["width_to_spacing"] = round(ratio, 2)
        if ratio > WIDTH_TO_SPACING[1] or constant and ratio < WIDTH_TO_SPACING[0]:
            out.findings.append(f"working width {width:.1f} m is {ratio:.2f} times the {spacing:.1f} m between "
                                "neighbouring passes")
    _speeds(frame, units, records, out)
    _time_span(frame, now, out)
    _yields(frame, units, crop, out)
    return out


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _speeds(frame: pd.DataFrame, units: dict[str, str], records: pd.DataFrame, out: Plausibility) -> None:
    speeds = []
    if "speed" in frame.columns and is_known(units.get("speed")):
        speeds.append(("logged", np.asarray(convert(frame["speed"].to_numpy(dtype=float), units["speed"], "m/s"))))
    # positions give a speed only in a point log (each point the distance travelled since the previous one),
    # not in exported polygons, whose order says nothing about travel
    if "distance" in frame.columns and records["time"].notna().all() and len(records) > 1:
        seconds = records["time"].diff().dt.total_seconds().to_numpy()
        metres = np.hypot(records["x"].diff().to_numpy(), records["y"].diff().to_numpy())
        steady = (seconds >= _STEP_SECONDS[0]) & (seconds <= _STEP_SECONDS[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            speeds.append(("from positions and times", np.where(steady, metres / seconds, np.nan)))
    for what, values in speeds:
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        fast = float((values > MAX_FIELD_SPEED_M_S).mean())
        key = "speed" if what == "logged" else "speed_from_positions"
        out.figures[f"{key}_p99_m_s"] = _round(float(np.percentile(values, 99)))
        out.figures[f"{key}_share_over_15_m_s"] = round(fast, 4)
        if fast > MAX_FAST_SHARE:
            out.findings.append(f"{fast:.1%} of the speeds {what} exceed {MAX_FIELD_SPEED_M_S:.0f} m/s, "
                                "faster than any field machine")


def _time_span(frame: pd.DataFrame, now: pd.Timestamp, out: Plausibility) -> None:
    if "timestamp" not in frame.columns:
        return
    stamps = pd.to_datetime(frame["timestamp"]).dropna()
    if stamps.empty:
        return
    start, end = stamps.min(), stamps.max()
    out.figures.update(start=start.isoformat(), end=end.isoformat(),
                       span_hours=_round((end - start).total_seconds() / 3600))
    if end > now + pd.Timedelta(days=1):
        out.findings.append(f"the time span ends {end:%Y-%m-%d}, in the future")
    if start < EARLIEST:
        out.findings.append(f"the time span starts {start:%Y-%m-%d}, before GPS yield monitors existed")


def _yields(frame: pd.DataFrame, units: dict[str, str], crop: str | None, out: Plausibility) -> None:
    prop = "dryMassPerArea"
    if prop not in frame.columns or not is_known(units.get(prop)):
        return
    values = np.asarray(convert(frame[prop].to_numpy(dtype=float), units[prop], "t/ha"), dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return
    median = float(np.median(values))
    out.figures["median_dry_yield_t_ha"] = _round(median)
    # a kind of a grain (winter wheat, durum wheat) has the grain's ceiling; silage is forage, not grain
    kind = general_name(crop) if crop and "silage" not in crop else None
    ceiling = RECORD_T_HA.get(crop or "") or RECORD_T_HA.get(kind or "")
    if ceiling is None:  # forage and unknown crops: fresh biomass yields have no grain ceiling
        return
    out.figures["record_dry_yield_t_ha"] = ceiling
    if median > ceiling:
        out.findings.append(f"the median dry yield {median:.1f} t/ha is above the {ceiling:.0f} t/ha record for {crop}")
