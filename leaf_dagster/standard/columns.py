"""Which source column holds which property, per column-naming dialect.

Monitor software writes the same quantity under many names. Ag Leader SMS writes `Yld Vol(Wet)(bu/ac)` in
CSV, `Yld_Vol_We` in a shapefile (10-character names) and `yld_vl_w` after a trip through PostGIS; John
Deere writes `SWATHWIDTH`, which R's shapefile writer shortens to `SWATHWI`. Comparing consonant
skeletons (`yldvlw`) matches all of these against one canonical name, and a short leftover such as the
`f` of `Distance_f` is read as a unit hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Internal property names beyond Leaf's: `time`/`date` become `timestamp`; `rate*` and `rateTarget` become
# seedRate/appliedRate by operation type; `product` is a variety when planting and a product when applying.


@dataclass(frozen=True)
class Alias:
    canonical: str
    prop: str
    unit: str | None = None


@dataclass(frozen=True)
class Match:
    column: str
    unit: str | None
    scale: float = 1.0


def skeleton(name: str) -> str:
    """Lower-case consonant skeleton: the first letter plus every later non-vowel letter or digit."""
    letters = re.sub(r"[^a-z0-9]", "", name.lower())
    return letters[:1] + re.sub(r"[aeiou]", "", letters[1:]) if letters else ""


_UNIT_SUFFIXES = {"f": "ft", "ft": "ft", "m": "m", "n": "in", "in": "in", "mph": "mi/hr", "mp": "mi/hr",
                  "dg": "arcdeg", "d": "arcdeg", "s": "s", "k": None, "l": None, "lb": "lb", "lbs": "lb"}

SMS = [
    Alias("Distance", "distance", "ft"), Alias("Track", "heading", "arcdeg"), Alias("Heading", "heading", "arcdeg"),
    Alias("Elevation", "elevation", "ft"), Alias("Swth Wdth", "equipmentWidth", "ft"),
    Alias("Swath Width", "equipmentWidth", "ft"), Alias("Speed", "speed", "mi/hr"),
    Alias("Duration", "samplingInterval", "s"), Alias("Moisture", "harvestMoisture", "percentage"),
    Alias("Yld Mass(Wet)", "wetMassPerArea", "lb/ac"), Alias("Yld Mass(Dry)", "dryMassPerArea", "lb/ac"),
    Alias("Yld Vol(Wet)", "wetVolumePerArea", "bu/ac"), Alias("Yld Vol(Dry)", "dryVolumePerArea", "bu/ac"),
    Alias("Crop Flw(M)", "cropFlow", "lb/s"),
    Alias("Rt Apd Ct", "rateCount", "seeds/ac"), Alias("Rt Apd Ms", "rateMass", "lb/ac"),
    Alias("Rt Apd Lq", "rateVolume", "gal/ac"), Alias("Rt Apd Vl", "rateVolume", "gal/ac"),
    Alias("Tgt Rate", "rateTarget", None), Alias("DF Margin", "downForceMargin", "lbf"),
    Alias("Product", "product"), Alias("Variety", "variety"), Alias("Crop", "crop"), Alias("Crop Type", "crop"),
    Alias("Area Count", "recordingStatus"), Alias("Time", "time"), Alias("Date", "date"),
    Alias("Date Time", "datetime"), Alias("DateStamp", "date"), Alias("TimeStamp", "time"),
    Alias("Y Offset", "yOffset", "ft"), Alias("X Offset", "xOffset", "ft"), Alias("Section Id", "sectionId"),
]

JOHN_DEERE = [
    Alias("DISTANCE", "distance", "ft"), Alias("SWATHWIDTH", "equipmentWidth", "ft"),
    Alias("VRYIELDVOL", "dryVolumePerArea", "bu/ac"), Alias("WetMass", "wetMassPerArea", "lb/ac"),
    Alias("Moisture", "harvestMoisture", "percentage"), Alias("Heading", "heading", "arcdeg"),
    Alias("Elevation", "elevation", "ft"), Alias("IsoTime", "datetime"), Alias("Time", "time"),
    Alias("VARIETY", "variety"), Alias("Crop", "crop"), Alias("SECTIONID", "sectionId"), Alias("Machine", "machineIndex"),
    Alias("AppliedRate", "rate", "lb/ac"), Alias("TargetRate", "rateTarget", "lb/ac"),
    Alias("VRAPPRATEV", "rateVolume", "gal/ac"), Alias("VRAPPRATEM", "rateMass", "lb/ac"),
    Alias("VRSEEDRATE", "rateCount", "seeds/ac"), Alias("Product", "product"), Alias("Speed", "speed", "mi/hr"),
]

YIELD_EDITOR = [
    Alias("yield", "dryVolumePerArea", "bu/ac"), Alias("moistur", "harvestMoisture", "percentage"),
    Alias("swth_w_", "equipmentWidth", "in"), Alias("dist_in", "distance", "in"), Alias("flw_lbs", "cropFlow", "lb/s"),
    Alias("gps_tim", "excelTime"), Alias("crop", "crop"), Alias("hdng_dg", "heading", "arcdeg"),
    Alias("z_metrs", "elevation", "m"),
]

AGLEADER_TEXT = [
    Alias("flow", "cropFlow", "lb/s"), Alias("gps_time", "gpsTime", "s"), Alias("unix_time", "unixTime", "s"),
    Alias("interval", "samplingInterval", "s"),
    Alias("distance", "distance", "in"), Alias("swath", "equipmentWidth", "in"),
    Alias("moisture", "harvestMoisture", "percentage"), Alias("crop", "crop"), Alias("variety", "variety"),
    Alias("altitude", "elevation", "ft"),
]

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
STANDARD = [Alias(name, prop) for name, prop in _STANDARD_INTERNAL.items()] + [Alias(n, n) for n in _STANDARD_NAMES]

DIALECTS = {"SMS": SMS, "GENERIC": SMS, "JOHN_DEERE": JOHN_DEERE, "YIELD_EDITOR": YIELD_EDITOR, "AGLEADER_TEXT": AGLEADER_TEXT,
            "STANDARD": STANDARD}
_EXACT_ONLY = {"YIELD_EDITOR", "AGLEADER_TEXT", "STANDARD"}


def _score(column_skeleton: str, alias_skeleton: str) -> tuple[int, str | None] | None:
    """(quality, suffix) when the column can be the alias; higher quality is better."""
    if column_skeleton == alias_skeleton:
        return 3, None
    if column_skeleton.startswith(alias_skeleton):
        suffix = column_skeleton[len(alias_skeleton):]
        if suffix in _UNIT_SUFFIXES:
            return 2, suffix
        return None
    return None


def _truncated(column: str, canonical: str) -> bool:
    """The column name is the canonical name cut short (dBASE keeps 10 characters, R's writer 7)."""
    letters = re.sub(r"[^a-z0-9]", "", column.lower())
    full = re.sub(r"[^a-z0-9]", "", canonical.lower())
    return len(letters) >= 4 and (full.startswith(letters) or skeleton(canonical).startswith(letters))


def match_columns(columns: list[str], dialect: str, source_units: dict[str, str]) -> dict[str, Match]:
    """Map properties to source columns. Units come from the source when it states them, else from the
    column's unit suffix, else the dialect's default (GENERIC sources have no default: an unlabelled
    number from an unknown monitor has no unit we could honestly assume)."""
    aliases = DIALECTS[dialect]
    candidates: list[tuple[int, int, str, Alias, str | None]] = []
    for column in columns:
        col_sk = skeleton(column)
        for alias in aliases:
            if dialect in _EXACT_ONLY:
                scored = (3, None) if column.lower() == alias.canonical.lower() else None
            else:
                scored = _score(col_sk, skeleton(alias.canonical))
                if scored is None and _truncated(column, alias.canonical):
                    scored = (1, None)
            if scored:
                candidates.append((scored[0], len(skeleton(alias.canonical)), column, alias, scored[1]))
    candidates.sort(key=lambda c: (-c[0], -c[1]))
    taken_props: dict[str, Match] = {}
    taken_cols: set[str] = set()
    for _, _, column, alias, suffix in candidates:
        if alias.prop in taken_props or column in taken_cols:
            continue
        unit, scale = (None if dialect == "GENERIC" else alias.unit), 1.0
        if suffix is not None and _UNIT_SUFFIXES.get(suffix):
            unit = _UNIT_SUFFIXES[suffix]
        if suffix == "k":
            scale = 1000.0
        if column in source_units:
            unit, scale = source_units[column], 1.0
        taken_props[alias.prop] = Match(column, unit, scale)
        taken_cols.add(column)
    return taken_props
