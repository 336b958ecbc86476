"""Which unit each matched column is in, chosen from the values.

A name says what a column holds, rarely in what unit: `DISTANCE` is feet in a John Deere export and
inches in an Ag Leader table a researcher saved as a shapefile. So every unit a column could be in is
scored against the values of a sample of rows:

- plausible ranges (the column dictionary's, per unit): a 288 wide swath is inches, not feet;
- travel: distance / logging interval must be a speed a machine drives, and equal the speed column;
- mass balance: grain flow x interval must equal yield x (distance x width), the monitor's own arithmetic;
- bulk density: a mass yield over a volume yield is the crop's weight per bushel; with no crop, grain flow x
  interval over a volume yield x area is, and it must be some grain's (20-80 lb/bu).

The values rank the assignments of units. A stated unit (header, sidecar, reader) is kept and only checked;
the convention of the software that wrote the file breaks ties the values leave open, and nothing else does
(reading every column in one unit system orders the rest but decides no unit). When the values fit two
units alike and nothing else decides, the column gets no unit and the reason is returned: the file then
fails for what it lacks instead of carrying a guess.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from . import times
from .columns import Entry, Match, dictionary, thousands
from .units import dimension, factor

SAMPLE_ROWS = 4000
_BLOCKS = 4
# A unit whose range holds this share of the non-zero values fits; below the lower share it does not.
_FITS, _MISFITS = 0.9, 0.5
_PRIOR = 0.5
_AMBIGUOUS = 0.25
_MIXED_SYSTEMS = 1.0
_METRIC_HEADS = {"m", "km", "cm", "mm", "kg", "g", "t", "L", "l", "m3", "ha"}
_IMPERIAL_HEADS = {"lb", "bu", "ft", "in", "gal", "floz", "mi", "ac", "lbf"}
_MAX_COMBINATIONS = 4096
_SPEED_MS = {"harvest": (0.2, 4.5), "any": (0.2, 15.0)}
_GRAIN_DENSITY_KG_M3 = (20 * 0.45359237 / 0.03523907, 80 * 0.45359237 / 0.03523907)  # 20-80 lb/bu
_HARVEST_PROPS = {"cropFlow", "wetMassPerArea", "dryMassPerArea", "wetVolumePerArea", "dryVolumePerArea", "dryYield",
                  "wetYield", "wetMass", "dryMass"}
# Properties whose unit takes part in the cross-checks (the others are settled by range and convention alone).
_LINKED = {"distance", "equipmentWidth", "speed", "cropFlow", "wetMass", "dryMass", "wetMassPerArea", "dryMassPerArea",
           "wetVolumePerArea", "dryVolumePerArea", "dryYield", "wetYield"}
_YIELD_PER_AREA = ("wetMassPerArea", "wetYield", "dryMassPerArea", "wetVolumePerArea", "dryVolumePerArea", "dryYield")


@dataclass
class Resolution:
    """The matches with their units settled, what decided each, and why some could not be."""

    matches: dict[str, Match]
    notes: list[str] = field(default_factory=list)
    unresolved: dict[str, str] = field(default_factory=dict)  # property -> reason
    options: dict[str, list[str]] = field(default_factory=dict)  # property -> units its values fit


@dataclass(frozen=True)
class Crop:
    density_lb_per_bu: float | None = None
    standard_moisture_pct: float | None = None


def sample(frame: pd.DataFrame) -> pd.DataFrame:
    """A few contiguous blocks of rows (consecutive rows give logging intervals), never the whole file."""
    if len(frame) <= SAMPLE_ROWS:
        return frame
    size = SAMPLE_ROWS // _BLOCKS
    starts = np.linspace(0, len(frame) - size, _BLOCKS).astype(int)
    return pd.concat([frame.iloc[s:s + size] for s in starts])


def _values(rows: pd.DataFrame, match: Match) -> np.ndarray:
    return pd.to_numeric(rows[match.column], errors="coerce").to_numpy(dtype=float) * match.scale


def _intervals(rows: pd.DataFrame, m: dict[str, Match]) -> tuple[np.ndarray | None, str]:
    """Seconds between each row and the previous one: the interval column, else differences of a time column.
    NaN where unknown (block boundaries, equal times of the sections of one logging instant)."""
    if "samplingInterval" in m:
        return _values(rows, m["samplingInterval"]), f"'{m['samplingInterval'].column}'"
    seconds = None
    for prop in ("gpsTime", "excelTime", "datetime", "time"):
        if prop not in m:
            continue
        column = rows[m[prop].column]
        if prop in ("gpsTime", "excelTime"):
            seconds = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float) * (86400.0 if prop == "excelTime" else 1)
        else:
            parsed, _ = times.parse_datetimes(column)
            if parsed.notna().mean() < 0.9 or not (parsed.dropna() != parsed.dropna().dt.normalize()).any():
                continue
            seconds = (parsed - times.GPS_EPOCH).dt.total_seconds().to_numpy(dtype=float)
        source = f"differences of '{m[prop].column}'"
        break
    if seconds is None:
        return None, ""
    dt = np.diff(seconds, prepend=np.nan)
    block = np.diff(np.asarray(rows.index), prepend=-1) != 1
    dt[block] = np.nan
    return np.where((dt > 0) & (dt <= 60), dt, np.nan), source


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) >= 5 else None


def _range_score(entry: Entry, values: np.ndarray, unit: str) -> float:
    bounds = entry.range_in(unit)
    nonzero = values[np.isfinite(values) & (values != 0)]
    if bounds is None or len(nonzero) == 0:
        return 0.0
    share = float(np.mean((nonzero >= bounds[0]) & (nonzero <= bounds[1])))
    return 0.0 if share >= _FITS else -1.0 if share >= _MISFITS else -4.0


class _Checks:
    """Cross-checks between columns for one candidate assignment of units."""

    def __init__(self, rows: pd.DataFrame, m: dict[str, Match], crop: Crop, harvest: bool):
        self.values = {p: _values(rows, match) for p, match in m.items() if p in _LINKED or p == "harvestMoisture"}
        self.interval, self.interval_source = _intervals(rows, m)
        self.crop = crop
        self.speed_range = _SPEED_MS["harvest" if harvest else "any"]

    def _si(self, prop: str, units: dict[str, str], si: str) -> np.ndarray | None:
        unit = units.get(prop)
        if prop not in self.values or unit is None or dimension(unit) != dimension(si):
            return None
        return self.values[prop] * factor(unit, si)

    def score(self, units: dict[str, str]) -> tuple[float, list[str]]:
        total, notes = 0.0, []
        for check in (self._travel, self._mass_balance, self._implied_density, self._density, self._point_yield):
            result = check(units)
            if result:
                total += result[0]
                notes.append(result[1])
        return total, notes

    def _travel(self, units: dict[str, str]) -> tuple[float, str] | None:
        distance = self._si("distance", units, "m")
        if distance is None or self.interval is None:
            return None
        speed = self._si("speed", units, "m/s")
        with np.errstate(divide="ignore", invalid="ignore"):
            travel = np.where(distance > 0, distance / self.interval, np.nan)
            ratios = None if speed is None else np.where(speed > 0, travel / speed, np.nan)
        if ratios is not None:
            ratio = _median(ratios)
            if ratio is not None:
                ok = 0.8 <= ratio <= 1.25
                return (3.0 if ok else -3.0), (f"distance / interval {'equals' if ok else 'contradicts'} the speed "
                                               f"column (ratio {ratio:.2f})")
        typical = _median(travel)
        if typical is None:
            return None
        low, high = self.speed_range
        ok = low <= typical <= high
        return (1.0 if ok else -3.0), f"distance / interval ({self.interval_source}) gives {typical:.2f} m/s"

    def _area(self, units: dict[str, str]) -> np.ndarray | None:
        distance, width = self._si("distance", units, "m"), self._si("equipmentWidth", units, "m")
        return None if distance is None or width is None else distance * width

    def _yield_kg_m2(self, units: dict[str, str]) -> tuple[np.ndarray, str, bool] | None:
        """A yield column per m2 as wet mass (kg/m2) when possible: (values, column property, exact?)."""
        moisture = self.values.get("harvestMoisture")
        for prop in _YIELD_PER_AREA:
            unit = units.get(prop)
            if prop not in self.values or unit is None:
                continue
            values = self.values[prop]
            is_mass = dimension(unit) == dimension("t/ha")
            dry = prop.startswith("dry")
            per_m2 = values * factor(unit, "t/ha") / 10.0 if is_mass else values * factor(unit, "m3/ha") / 10_000.0
            exact = True
            if not is_mass:
                if not self.crop.density_lb_per_bu:
                    continue  # a volume with no crop is weighed by `_implied_density`
                per_m2 = per_m2 * self.crop.density_lb_per_bu * 0.45359237 / 0.03523907
            if dry:
                std = self.crop.standard_moisture_pct
                if std is not None and moisture is not None:
                    per_m2 = per_m2 * (100.0 - std) / (100.0 - moisture)
                elif std is not None or not self.crop.density_lb_per_bu:
                    exact = False
            return per_m2, prop, exact
        return None

    def _mass_balance(self, units: dict[str, str]) -> tuple[float, str] | None:
        flow, area = self._si("cropFlow", units, "kg/s"), self._area(units)
        if flow is None or area is None or self.interval is None:
            return None
        found = self._yield_kg_m2(units)
        if found is None:
            return None
        per_m2, prop, exact = found
        keep = np.isfinite(flow * self.interval * area * per_m2) & (area > 0)
        if keep.sum() < 5:
            return None
        ratio = float(np.sum(flow[keep] * self.interval[keep]) / max(np.sum(per_m2[keep] * area[keep]), 1e-12))
        tolerance = (0.8, 1.25) if exact else (0.7, 1.45)
        ok = tolerance[0] <= ratio <= tolerance[1]
        return (4.0 if ok else -3.0), (f"grain flow x interval {'matches' if ok else 'contradicts'} yield x distance x "
                                       f"width (ratio {ratio:.2f})")

    def _implied_density(self, units: dict[str, str]) -> tuple[float, str] | None:
        """With no crop, a volume yield is weighed by the grain flow: flow x interval / area over the volume per
        area is the grain's weight per bushel, which for any grain lies in 20-80 lb/bu."""
        if self.crop.density_lb_per_bu:
            return None
        flow, area = self._si("cropFlow", units, "kg/s"), self._area(units)
        volume = next((p for p in ("wetVolumePerArea", "dryVolumePerArea", "wetYield", "dryYield") if p in self.values
                       and units.get(p) and dimension(units[p]) == dimension("m3/ha")), None)
        if flow is None or area is None or self.interval is None or volume is None:
            return None
        m3 = self.values[volume] * factor(units[volume], "m3/ha") / 10_000.0 * area
        keep = np.isfinite(flow * self.interval * m3) & (m3 > 0)
        if keep.sum() < 5:
            return None
        kg_m3 = float(np.sum(flow[keep] * self.interval[keep]) / np.sum(m3[keep]))
        ok = _GRAIN_DENSITY_KG_M3[0] <= kg_m3 <= _GRAIN_DENSITY_KG_M3[1]
        lb_bu = kg_m3 * 0.03523907 / 0.45359237
        return (4.0 if ok else -3.0), (f"grain flow x interval over volume yield x distance x width gives {lb_bu:.1f} "
                                       f"lb/bu, {'a' if ok else 'no'} grain's weight per bushel (20-80)")

    def _density(self, units: dict[str, str]) -> tuple[float, str] | None:
        mass = next((p for p in ("wetMassPerArea", "dryMassPerArea", "wetYield", "dryYield") if p in units
                     and dimension(units[p]) == dimension("t/ha")), None)
        volume = next((p for p in ("dryVolumePerArea", "wetVolumePerArea", "dryYield", "wetYield") if p in units
                       and dimension(units[p]) == dimension("m3/ha")), None)
        if mass is None or volume is None or mass == volume:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            kg_m3 = _median(np.where(self.values[volume] > 0, self.values[mass] * factor(units[mass], "t/ha") * 1000
                                     / (self.values[volume] * factor(units[volume], "m3/ha")), np.nan))
        if kg_m3 is None:
            return None
        if self.crop.density_lb_per_bu:
            expected = self.crop.density_lb_per_bu * 0.45359237 / 0.03523907
            ok = 0.8 <= kg_m3 / expected <= 1.25
        else:
            ok = _GRAIN_DENSITY_KG_M3[0] <= kg_m3 <= _GRAIN_DENSITY_KG_M3[1]
        lb_bu = kg_m3 * 0.03523907 / 0.45359237
        return (2.0 if ok else -3.0), f"mass / volume yield gives {lb_bu:.1f} lb/bu"

    def _point_yield(self, units: dict[str, str]) -> tuple[float, str] | None:
        area = self._area(units)
        mass = self._si("wetMass", units, "kg")
        if mass is None and "cropFlow" in units and self.interval is not None and not any(p in units for p in _YIELD_PER_AREA):
            flow = self._si("cropFlow", units, "kg/s")
            mass = None if flow is None else flow * self.interval
        if area is None or mass is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            t_ha = _median(np.where((area > 0) & (mass > 0), mass / area * 10.0, np.nan))
        if t_ha is None:
            return None
        ok = 0.1 <= t_ha <= 30.0
        return (1.0 if ok else -3.0), f"mass per point / area gives {t_ha:.2f} t/ha"


def _family(unit: str | None) -> str | None:
    """'metric' or 'imperial' for units of length, mass, volume or area (in any of their quotients); None for
    units every monitor shares (seconds, percent, degrees)."""
    heads = set(re.split(r"[/*]", unit or ""))
    if heads & _IMPERIAL_HEADS:
        return "imperial"
    return "metric" if heads & _METRIC_HEADS else None


def resolve(frame: pd.DataFrame, m: dict[str, Match], crop: Crop | None = None) -> Resolution:
    """Settle the unit of every matched column from the values of a sample of rows."""
    entries = dictionary()
    rows = sample(frame)
    crop = crop or Crop()
    harvest = bool(set(m) & _HARVEST_PROPS)
    values = {p: _values(rows, match) for p, match in m.items() if p in entries and entries[p].units}
    options: dict[str, list[tuple[str, float, float]]] = {}  # prop -> (unit, values' score, convention's bonus)
    notes: list[str] = []
    for prop, match in m.items():
        entry = entries.get(prop)
        if entry is None or not entry.units or match.unit_source in ("stated", "name", "dictionary"):
            continue
        units = list(entry.units)
        if prop == "rateTarget":  # a target is in the dimension of the actual rate beside it
            actual = next((p for p in ("rateCount", "rateMass", "rateVolume", "rate") if p in m), None)
            kinds = {dimension(u) for u in entries[actual].units} if actual and actual != "rate" else \
                {dimension(m[actual].unit)} if actual and m[actual].unit_source in ("stated", "name") else set()
            units = [u for u in units if dimension(u) in kinds] or units
        scored = [(u, _range_score(entry, values[prop], u), _PRIOR if u == match.unit else 0.0) for u in units]
        best = max(s + bonus for _, s, bonus in scored)
        options[prop] = [(u, s, bonus) for u, s, bonus in scored if s + bonus > -4.0 or best <= -4.0]

    fixed = {p: match.unit for p, match in m.items() if match.unit and p not in options}
    checks = _Checks(rows, m, crop, harvest)
    linked = [p for p in options if p in _LINKED]
    while linked and np.prod([len(options[p]) for p in linked]) > _MAX_COMBINATIONS:
        widest = max(linked, key=lambda p: len(options[p]))
        options[widest] = sorted(options[widest], key=lambda o: -o[1] - o[2])[:2]
    # (values alone, with the writer's convention, less the one-system preference, units, notes)
    combos: list[tuple[float, float, float, dict[str, str], list[str]]] = []
    for choice in itertools.product(*(options[p] for p in linked)):
        reading = {**fixed, **{p: u for p, (u, _, _) in zip(linked, choice)}}
        score, check_notes = checks.score(reading)
        values_only = score + sum(s for _, s, _ in choice)
        with_convention = values_only + sum(b for _, _, b in choice)
        # one equation can balance two wrong units whose factors cancel (ft with t/h against m with kg/s): a
        # monitor writes its unlabelled columns in one system, so a guess that mixes systems ranks lower
        mixed = len({_family(u) for u, _, _ in choice} - {None}) > 1
        combos.append((values_only, with_convention, with_convention - (_MIXED_SYSTEMS if mixed else 0.0), reading,
                       check_notes))
    # The values rank the readings. The writer's convention breaks the ties they leave; the one-system
    # preference only orders what is left, and a unit it alone would pick stays open.
    best_values = max(c[0] for c in combos)  # never empty: with nothing to choose there is one, empty, choice
    contenders = sorted((c for c in combos if best_values - c[0] < _AMBIGUOUS), key=lambda c: -c[2])
    _, best_convention, best_ranked, best_units, best_notes = contenders[0]

    resolved = dict(m)
    unresolved: dict[str, str] = {}
    for prop, opts in options.items():
        match = m[prop]
        order = lambda u: entries[prop].units.index(u) if u in entries[prop].units else 99  # noqa: E731
        if prop in linked:
            unit = best_units[prop]
            tied = [c for c in contenders if c[3][prop] != unit]  # readings the values support as well
            alike_combos = [c for c in tied if best_convention - c[1] < _AMBIGUOUS]  # ... and the convention too
            alike = {c[3][prop] for c in alike_combos}
            unfit = all(s <= -4.0 for _, s, _ in opts) and bool(tied)
            rival = tied[0][3][prop] if tied else None
            only_one_system = bool(alike_combos) and all(best_ranked > c[2] for c in alike_combos)
        else:
            ranked = sorted(((u, s + bonus) for u, s, bonus in opts), key=lambda o: -o[1])
            unit, top = ranked[0]
            margin = top - max((score for _, score in ranked[1:]), default=-np.inf)
            alike = {u for u, score in ranked[1:] if top - score < _AMBIGUOUS}
            unfit = all(s + bonus <= -4.0 for _, s, bonus in opts) and margin < 1.0
            rival = ranked[1][0] if margin < 1.0 else None
            only_one_system = False
        if unfit:
            unresolved[prop] = f"'{match.column}': no unit of {'/'.join(entries[prop].units)} fits its values"
            resolved[prop] = replace(match, unit=None, unit_source=None)
        elif alike:
            units = [unit, *sorted(alike, key=order)]
            unresolved[prop] = (f"'{match.column}': its values fit {', '.join(units)} alike and nothing in the file "
                                "states which" + (f" (only reading every column in one unit system would prefer "
                                                  f"{unit})" if only_one_system else ""))
            resolved[prop] = replace(match, unit=None, unit_source=None)
        else:
            by_convention = rival is not None and match.unit_source == "convention" and unit == match.unit
            resolved[prop] = thousands(replace(match, unit=unit, unit_source="convention" if by_convention else "values"))
            why = f"the writer's convention (the values fit {rival} as well)" if by_convention else "its values"
            notes.append(f"'{match.column}' read as {unit} from {why}")
    notes.extend(f"evidence: {n}" for n in best_notes)
    plausible = {p: [u for u, score, bonus in opts if score + bonus > -1.0] for p, opts in options.items()}
    resolved = _by_dimension(resolved)
    if "crop" in resolved and _all_numbers(rows[resolved["crop"].column]):
        # `Crop = 174` in a John Deere export is the crop's id in the vendor's table, not a name
        resolved["cropCode"] = resolved.pop("crop")
        notes.append(f"'{resolved['cropCode'].column}' holds numeric crop codes, not crop names")
    return Resolution(resolved, notes, unresolved, plausible)


def _all_numbers(column: pd.Series) -> bool:
    text = column.dropna().astype(str).str.strip()
    text = text[text != ""]
    return bool(len(text)) and bool(pd.to_numeric(text, errors="coerce").notna().all())


def _by_dimension(m: dict[str, Match]) -> dict[str, Match]:
    """A plain 'yield' column is dry mass or dry volume per area (a 'wet' one wet), whichever its unit says."""
    out = dict(m)
    for generic, basis in (("dryYield", "dry"), ("wetYield", "wet")):
        match = out.pop(generic, None)
        if match is not None and match.unit:
            out.setdefault(f"{basis}MassPerArea" if dimension(match.unit) == dimension("t/ha") else f"{basis}VolumePerArea",
                           match)
        elif match is not None:
            out[generic] = match
    return out
