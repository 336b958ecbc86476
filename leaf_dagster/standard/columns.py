"""Which source column can hold which property: the column dictionary and name matching.

Monitor software writes the same quantity under many names. Ag Leader SMS writes `Yld Vol(Wet)(bu/ac)` in
CSV, `Yld_Vol_We` in a shapefile (10-character names) and `yld_vl_w` after a trip through PostGIS; John
Deere writes `SWATHWIDTH`, which R's shapefile writer shortens to `SWATHWI`; a researcher writes `moist` or
`DRY_BU_AC`, a French monitor `Humidité`. The dictionary (`reference/columns.csv`) lists per property its
aliases, candidate units and plausible range; this module matches names only. Exact names, consonant
skeletons (`yldvlw`), a unit left at the end of a name (`Distance_f`, `Speed_mph_`, `DRY_BU_AC`) and
truncations are tried in that order. Which unit a column is in is settled from the values afterwards
(`standard.evidence`): names give only a hint, and a software's convention only a prior.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources

from .units import dimension, factor, is_known, leaf_unit, system_of

# Exact name, name + unit suffix (it says more than a bare spelling), consonant skeleton, truncated name.
EXACT, WITH_UNIT, SKELETON, TRUNCATED = 1.0, 0.95, 0.9, 0.7
# One- and two-letter leftovers that shapefile writers keep of a unit (`Distance_f`, `trck_d_`, `Tgt_Rate_k`).
_UNIT_SUFFIXES = {"f": "ft", "ft": "ft", "m": "m", "n": "in", "in": "in", "mph": "mi/hr", "mp": "mi/hr",
                  "dg": "arcdeg", "d": "arcdeg", "deg": "arcdeg", "s": "s", "lb": "lb", "lbs": "lb"}
_THOUSANDS = "k"
# Conventions of the software that wrote a file: the unit system its unlabelled numbers are usually in.
CONVENTIONS = {"SMS": "imperial", "JOHN_DEERE": "imperial", "YIELD_EDITOR": "imperial", "AGLEADER_TEXT": "imperial"}


@dataclass(frozen=True)
class Entry:
    """One row of the column dictionary."""

    prop: str
    units: tuple[str, ...]
    ranges: dict[str, tuple[float, float, str]]  # dimension -> (low, high, unit of low/high)
    aliases: tuple[str, ...]

    def range_in(self, unit: str) -> tuple[float, float] | None:
        """The plausible range expressed in `unit` (the dictionary states it once per dimension)."""
        found = self.ranges.get(dimension(unit))
        if found is None:
            return None
        low, high, ref = found
        scale = factor(ref, unit)
        return low * scale, high * scale


@dataclass(frozen=True)
class Match:
    column: str
    unit: str | None
    scale: float = 1.0
    # where the unit came from: "stated" (header, sidecar, reader), "name" (a suffix), "convention", "values"
    unit_source: str | None = None
    candidates: tuple[str, ...] = field(default=())
    how: str = ""


def skeleton(name: str) -> str:
    """Lower-case consonant skeleton: the first letter plus every later non-vowel letter or digit."""
    letters = _alnum(name)
    return letters[:1] + re.sub(r"[aeiouéèêàâîôûäöüáíóúãõç]", "", letters[1:]) if letters else ""


def _alnum(name: str) -> str:
    return re.sub(r"[^a-z0-9éèêàâîôûäöüáíóúãõçñß]", "", name.lower())


@lru_cache(maxsize=1)
def dictionary() -> dict[str, Entry]:
    """The column dictionary, property -> entry."""
    text = resources.files("leaf_dagster").joinpath("reference/columns.csv").read_text(encoding="utf-8")
    entries: dict[str, Entry] = {}
    for row in csv.DictReader(text.splitlines()):
        ranges: dict[str, tuple[float, float, str]] = {}
        for spec in filter(None, (s.strip() for s in row["range"].split(";"))):
            bounds, unit = spec.rsplit(" ", 1)
            match = re.fullmatch(r"(-?[\d.]+)-(-?[\d.]+)", bounds)
            if match is None:
                raise ValueError(f"reference/columns.csv: {row['property']}'s range '{spec}' is not 'low-high unit'")
            low, high = match.groups()
            ranges[dimension(unit)] = (float(low), float(high), unit)
        units = tuple(u for u in row["units"].split("|") if u)
        entries[row["property"]] = Entry(row["property"], units, ranges, tuple(row["aliases"].split("|")))
    return entries


@lru_cache(maxsize=1)
def _alias_keys() -> list[tuple[str, str, str, Entry]]:
    """(alias alnum, alias skeleton, alias, entry) for every alias."""
    return [(_alnum(a), skeleton(a), a, e) for e in dictionary().values() for a in e.aliases]


def _unit_tail(column: str) -> tuple[str, str | None, float] | None:
    """('Distance', 'ft', 1) for 'Distance_f'; ('DRY', 'bu/ac', 1) for 'DRY_BU_AC'; ('Tgt Rate', None, 1000)
    for 'Tgt_Rate_k'. None when the name does not end in a unit."""
    tokens = [t for t in re.split(r"[^A-Za-z0-9²³]+", column) if t]
    for k in (2, 1):
        if len(tokens) <= k:
            continue
        tail, base = tokens[-k:], " ".join(tokens[:-k])
        if k == 1 and tail[0].lower() == _THOUSANDS:
            return base, None, 1000.0
        label = "/".join(tail) if k == 2 else tail[0]
        unit = _UNIT_SUFFIXES.get(label.lower()) if k == 1 else None
        unit = unit or leaf_unit(label)
        if is_known(unit):
            return base, unit, 1.0
    return None


def _name_scores(column: str) -> list[tuple[float, int, Entry, str | None, float, str]]:
    """Every (quality, alias length, entry, unit hint, scale, how) under which the column can be a property."""
    col_full, col_sk = _alnum(column), skeleton(column)
    tail = _unit_tail(column)
    base_full = _alnum(tail[0]) if tail else None
    base_sk = skeleton(tail[0]) if tail else None
    found: list[tuple[float, int, Entry, str | None, float, str]] = []
    for a_full, a_sk, alias, entry in _alias_keys():
        if col_full == a_full:
            found.append((EXACT, len(a_sk), entry, None, 1.0, f"name '{alias}'"))
        elif len(a_sk) >= 4 and col_sk == a_sk:
            found.append((SKELETON, len(a_sk), entry, None, 1.0, f"consonants of '{alias}'"))
        elif tail and (base_full == a_full or len(a_sk) >= 4 and base_sk == a_sk):
            found.append((WITH_UNIT, len(a_sk), entry, tail[1], tail[2], f"'{alias}' with a unit suffix"))
        elif _cut(col_full, a_full, a_sk):
            found.append((TRUNCATED, len(a_sk), entry, None, 1.0, f"'{alias}' shortened"))
    return found


def _cut(column: str, alias: str, alias_skeleton: str) -> bool:
    """Whether a column name is the alias cut short by a writer: at R's 7 or dBASE's 10 characters or more,
    or keeping most of the name; `Area` is not `Area Count`, nor `Head` `Header Width`."""
    if len(column) < 4 or len(alias_skeleton) < 3:
        return False
    if not (alias.startswith(column) or alias_skeleton.startswith(column)):
        return False
    return len(column) >= 7 or len(column) >= 0.6 * len(alias)


def _stated_unit(column: str, source_units: dict[str, str]) -> tuple[str, str] | None:
    """The unit the source states for a column: under its own name, or under the full name a sidecar uses
    for a column a writer shortened (a metadata JSON says `AppliedRate` where the table says `AppldRt`)."""
    if column in source_units:
        return source_units[column], column
    col_full, col_sk = _alnum(column), skeleton(column)
    for name, unit in source_units.items():
        full = _alnum(name)
        if len(col_full) >= 4 and (full.startswith(col_full) or skeleton(name) == col_sk
                                   or skeleton(name).startswith(col_sk) and len(col_sk) >= 4):
            return unit, name
    return None


def _fits(entry: Entry, unit: str) -> bool:
    return not entry.units or any(dimension(u) == dimension(unit) for u in entry.units if is_known(u))


def match_columns(columns: list[str], dialect: str, source_units: dict[str, str]) -> dict[str, Match]:
    """Map properties to source columns by name. Each match carries the unit the source states, else the
    one its name ends with, else the first of the property's units in the convention of the software that
    wrote the file (unlabelled numbers from an unknown writer get none); `standard.evidence` then checks
    that unit against the values."""
    if dialect == "STANDARD":
        return _standard_matches(columns, source_units)
    convention = CONVENTIONS.get(dialect)
    candidates = []
    for column in columns:
        stated = _stated_unit(column, source_units)
        for quality, length, entry, hint, scale, how in _name_scores(column):
            unit = stated[0] if stated else hint
            if unit is not None and not _fits(entry, unit):
                if stated:
                    continue  # a stated unit of another dimension rules the property out
                unit = None  # a suffix of another dimension (`flw_lbs` is lb/s) is no hint
            candidates.append((quality, length, column, entry, unit, scale, how, stated))
    candidates.sort(key=lambda c: (-c[0], -c[1]))
    taken: dict[str, Match] = {}
    taken_cols: set[str] = set()
    for _, _, column, entry, unit, scale, how, stated in candidates:
        if entry.prop in taken or column in taken_cols:
            continue
        source = "stated" if stated else "name" if unit else None
        if stated and stated[1] != column:
            how += f"; unit as the source states it for '{stated[1]}'"
        if unit is None and len(entry.units) == 1:
            unit, source = entry.units[0], "dictionary"
        if unit is None and convention and entry.units:
            unit = next((u for u in entry.units if system_of(u) == convention), None)
            source = "convention" if unit else None
        taken[entry.prop] = thousands(Match(column, unit, scale, source, entry.units, how))
        taken_cols.add(column)
    return taken


def thousands(match: Match) -> Match:
    """Thousands of seeds as seeds, with the factor on the values."""
    if match.unit and match.unit.startswith("kseeds/"):
        return replace(match, unit="seeds/" + match.unit.split("/", 1)[1], scale=match.scale * 1000.0)
    return match


# Readers that already name columns with Leaf standard property names (the ISOXML reader). Units come from
# the reader's SourceTable.units; rates map to the internal props the standardiser resolves by operation.
_STANDARD_INTERNAL = {
    "seedRate": "rate", "appliedRate": "rate", "seedRateTarget": "rateTarget", "appliedRateTarget": "rateTarget",
    "timestamp": "datetime", "product": "product", "crop": "crop", "variety": "variety",
}
_STANDARD_NAMES = [
    "elevation", "speed", "heading", "equipmentWidth", "distance", "recordingStatus", "sectionId", "area",
    "samplingInterval", "xOffset", "yOffset", "harvestMoisture", "wetMass", "dryMass", "wetMassPerArea",
    "dryMassPerArea", "wetVolume", "dryVolume", "wetVolumePerArea", "dryVolumePerArea", "cropFlow",
    "proteinPercentage", "seedDepth", "singulation", "skips", "doubles", "downForce", "downForceMargin",
    "tillageDepthActual", "tillageDepthTarget", "fuelUsed",
]


def _standard_matches(columns: list[str], source_units: dict[str, str]) -> dict[str, Match]:
    names = {**_STANDARD_INTERNAL, **{n: n for n in _STANDARD_NAMES}}
    found: dict[str, Match] = {}
    for column in columns:
        prop = names.get(column)
        if prop and prop not in found:
            unit = source_units.get(column)
            found[prop] = Match(column, unit, 1.0, "stated" if unit else None, how="Leaf's own name")
    return found
