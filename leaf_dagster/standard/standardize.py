"""Raw records to Leaf's standard point schema.

Values keep the units the source gives (Leaf's DEFAULT unit system) and every property's unit is
recorded. What the source lacks is derived: point area from working width and distance (or the polygon
a coverage export already draws), wet/dry mass and volume from whichever of them the source has, using
the crop's bulk density and standard moisture. Source values always win over derived ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..derived.geometry import metric_crs
from ..geoparquet import concat_geometry, geometry_objects, slice_geometry, wkb_geometry
from ..memory import release_memory
from ..model import WGS84, PointTable, SourceTable, StandardResult
from . import crops, evidence, schema, times
from .columns import Match, match_columns
from .units import convert, dimension, factor, is_known, system_of

_OPERATION_NAMES = {
    "harvest": "harvested", "harvesting": "harvested", "harvested": "harvested",
    "seeding": "planted", "planting": "planted", "sowingandplanting": "planted", "planted": "planted",
    "application": "applied", "applying": "applied", "cropprotection": "applied", "fertilizing": "applied",
    "applied": "applied", "tillage": "tillage",
}
# Numeric properties carried over as the source gives them (ISOXML logs the planter and tillage ones).
PASS_THROUGH = ("distance", "elevation", "heading", "speed", "equipmentWidth", "samplingInterval", "xOffset", "yOffset",
                "downForceMargin", "downForce", "seedDepth", "singulation", "skips", "doubles", "tillageDepthActual",
                "tillageDepthTarget", "fuelUsed", "proteinPercentage")
# In order of preference: the unit system of the first one present is the system of the derived values.
_HARVEST_EVIDENCE = ("wetMassPerArea", "dryMassPerArea", "wetVolumePerArea", "dryVolumePerArea", "dryYield", "wetYield",
                     "wetMass", "dryMass", "cropFlow")


# File-name tokens: weak evidence of the operation (a name is chosen by a person and can be wrong).
_NAME_TOKENS = (("asapplied", "applied"), ("application", "applied"), ("applied", "applied"), ("yield", "harvested"),
                ("harvest", "harvested"), ("seeding", "planted"), ("planting", "planted"), ("planted", "planted"))
_STRONG, _MEDIUM, _WEAK = 2.0, 1.0, 0.5
# Properties read by the whole-file decisions only (times, the crop), never by the rows' columns (`_standard_rows`).
_WHOLE_FILE_PROPERTIES = {"datetime", "date", "time", "gpsTime", "unixTime", "excelTime", "crop", "cropCode"}
_COUNT = dimension("seeds/ac")


def _rate_kind(match: Match | None, options: list[str]) -> str | None:
    """'planted' for a seed count rate, 'applied' for a mass or volume rate, None when its unit is open."""
    units = [match.unit] if match is not None and match.unit else options
    kinds = {"planted" if dimension(u) == _COUNT else "applied" for u in units}
    return kinds.pop() if len(kinds) == 1 else None


def detect_operation(source: SourceTable, matches: dict[str, Match],
                     options: dict[str, list[str]] | None = None) -> tuple[str, str | None, str]:
    """(operation type, the source's own operation name, the evidence used).

    A sidecar's operation decides. Otherwise the properties found vote: yields and grain flow for a
    harvest, seed count rates for planting, mass and volume rates for an application; a target rate alone
    and a file-name token are weak votes. Below one medium or two weak votes, or on a tie, the type is
    unknown and the evidence says why."""
    hint = source.hints.get("operation")
    if hint:
        key = re.sub(r"[^a-z]", "", str(hint).lower())
        return _OPERATION_NAMES.get(key, key or "unknown"), str(hint), f"operation '{hint}' in the metadata sidecar"
    options = options or {}
    props = set(matches)
    votes: dict[str, float] = {}
    reasons: list[str] = []

    def vote(kind: str, weight: float, why: str) -> None:
        votes[kind] = votes.get(kind, 0.0) + weight
        if why not in reasons:
            reasons.append(why)

    harvest = sorted(matches[p].column for p in props.intersection(_HARVEST_EVIDENCE))
    if harvest:
        vote("harvested", _STRONG, f"yield columns {harvest}")
    for prop in ("rateCount", "rateMass", "rateVolume", "rate"):
        if prop not in props:
            continue
        kind = {"rateCount": "planted", "rateMass": "applied", "rateVolume": "applied"}.get(prop) \
            or _rate_kind(matches[prop], options.get(prop, []))
        if kind:
            vote(kind, _STRONG, f"{'seed' if kind == 'planted' else 'application'} rate column '{matches[prop].column}'"
                                f"{f' in {matches[prop].unit}' if matches[prop].unit else ''}")
        else:
            kind = "planted" if "variety" in props else "applied"
            vote(kind, _MEDIUM, f"rate column '{matches[prop].column}' with{'' if kind == 'planted' else 'out'} a variety")
        break
    else:
        if "rateTarget" in props:
            kind = _rate_kind(matches["rateTarget"], options.get("rateTarget", []))
            for k in [kind] if kind else ["planted", "applied"]:
                vote(k, _WEAK, f"only a target rate '{matches['rateTarget'].column}'")
    name = re.sub(r"[^a-z]", "", (source.hints.get("fileName") or "").lower())
    token = next(((t, kind) for t, kind in _NAME_TOKENS if t in name), None)
    if token:
        vote(token[1], _WEAK, f"'{token[0]}' in the file name")
    if votes:
        ranked = sorted(votes.items(), key=lambda kv: -kv[1])
        best, weight = ranked[0]
        if weight < _MEDIUM:
            why = ": target rates alone are a prescription or trial design, not a record of what a machine did" \
                if "rateTarget" in props else ": a file name alone does not make an operation"
            return "unknown", None, "; ".join(reasons) + why
        if len(ranked) > 1 and ranked[1][1] == weight:
            return "unknown", None, f"the columns point to both {best} and {ranked[1][0]}: " + "; ".join(reasons)
        return best, None, "; ".join(reasons)
    columns = [str(c) for c in source.frame.columns]
    if any(re.fullmatch(r"sp\d+", c.lower()) for c in columns) and any(c.lower() == "protein" for c in columns):
        return "unknown", None, "columns are grain-quality analyser samples (Protein, spectra Sp1..), not a machine operation"
    return "unknown", None, "no yield, seeding, application or tillage columns"


def _numbers(frame: pd.DataFrame, match: Match) -> np.ndarray:
    return pd.to_numeric(frame[match.column], errors="coerce").to_numpy(dtype=float) * match.scale


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as trimmed text, empty strings missing; each distinct value converted once (a monitor
    repeats a handful of names, crops or statuses over every point)."""
    codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
    values = pd.Series(uniques, dtype=object).astype("string").str.strip()
    values = values.mask(values == "")
    return pd.Series(values.array.take(codes, allow_fill=True), index=frame.index)


def _timestamps(frame: pd.DataFrame, m: dict[str, Match]) -> tuple[pd.Series | None, list[str]]:
    notes: list[str] = []
    candidates: list[Callable[[], tuple[pd.Series, str | None]]] = []  # parsed only when they can still win
    if "datetime" in m:
        candidates.append(lambda: times.parse_datetimes(frame[m["datetime"].column]))
    if "date" in m and "time" in m:
        time_text = frame[m["time"].column].astype("string")
        if time_text.str.contains(r"^\s*\d{1,2}:\d{2}", regex=True).fillna(False).all():
            candidates.append(lambda: times.combine_date_and_time(frame[m["date"].column], frame[m["time"].column]))
    if "time" in m:
        candidates.append(lambda: times.parse_datetimes(frame[m["time"].column]))
    if "date" in m:
        candidates.append(lambda: times.parse_datetimes(frame[m["date"].column]))
    if "gpsTime" in m:
        candidates.append(lambda: times.from_gps_seconds(frame[m["gpsTime"].column]))
    if "unixTime" in m:
        candidates.append(lambda: times.from_unix_seconds(frame[m["unixTime"].column]))
    if "excelTime" in m:
        candidates.append(lambda: times.from_excel_days(frame[m["excelTime"].column]))
    best: pd.Series | None = None
    parsed_notes: list[str | None] = []
    for candidate in candidates:
        series, note = candidate()
        parsed_notes.append(note)
        if series.notna().any() and (best is None or series.notna().sum() > best.notna().sum()
                                     or _has_time_of_day(series) and not _has_time_of_day(best)):
            if best is None or series.notna().sum() >= best.notna().sum():
                best, best_note = series, note
        if best is not None and best.notna().all() and _has_time_of_day(best):
            break  # a later candidate wins only with more times or a time of day: this one has both
    if best is None:
        notes.extend(n for n in parsed_notes if n)
        return None, notes + ["the source has no usable time"]
    if best_note:
        notes.append(best_note)
    if not _has_time_of_day(best):
        notes.append("the source gives dates only; times of day are 00:00 UTC")
    return best.astype("datetime64[ms, UTC]"), notes


def _has_time_of_day(series: pd.Series) -> bool:
    valid = series.dropna()
    return bool(len(valid)) and bool((valid != valid.dt.normalize()).any())


def _crop_names(frame: pd.DataFrame, m: dict[str, Match], source: SourceTable, operation: str) -> tuple[pd.Series, list[str]]:
    """Leaf's crop name per point, found by a chain of steps, each recorded in the notes: names in a crop
    column (any language), vendor codes in it, the sidecar's crop, a harvest product or seed brand, words of
    the file name, and last the crop the file's own yield numbers imply (marked inferred)."""
    index = frame.index
    notes: list[str] = []
    found: pd.Series | None = None
    column = m.get("crop") or m.get("cropCode")  # numbers in a crop column are a vendor's crop ids
    if column is not None:
        raw = _text(frame, column.column)
        names: dict[str, str] = {}
        for value in raw.dropna().unique():
            hit = crops.resolve(value)
            if hit is None and crops.is_code(value):
                hit = crops.resolve_code(crops.JOHN_DEERE if source.dialect == crops.JOHN_DEERE else None, value)
            if hit is not None:
                names[value] = hit.crop.name
                notes.append(f"crop {hit.crop.name}: '{column.column}' column value {hit.evidence}")
            elif not crops.is_code(value):
                names[value] = crops.fold(value)
                notes.append(f"crop '{names[value]}': '{column.column}' column value '{value}' is not in Leaf's "
                             "crop list, kept as written")
            else:
                notes.append(f"'{column.column}' column value {value} is a crop code we have no table entry for")
        if names:
            codes, distinct = pd.factorize(raw, use_na_sentinel=True)  # map the few names, not every point
            found = pd.Series(pd.Series(distinct, dtype=object).map(names).astype("string").array.take(
                codes, allow_fill=True), index=raw.index)
    if found is None or found.isna().any():
        file_crop, reasons = _file_crop(frame, m, source, operation)
        notes.extend(reasons)
        filler = file_crop or crops.UNKNOWN_CROP
        found = pd.Series(filler, index=index, dtype="string") if found is None else found.fillna(filler)
    kinds = found.unique()
    crop = crops.lookup(kinds[0]) if len(kinds) == 1 else None
    figures = _yield_figures(frame, m) if crop is not None and operation == "harvested" else None
    said = crops.agreement(crop, figures) if crop is not None and figures is not None else ""
    if said and not any("inferred" in n for n in notes):
        notes.append(f"the file's own numbers: {said}")
    return found, notes


def _file_crop(frame: pd.DataFrame, m: dict[str, Match], source: SourceTable, operation: str) -> tuple[str | None, list[str]]:
    """One crop for the whole file from the steps after the crop column, and the notes saying why."""
    notes: list[str] = []
    hint = source.hints.get("crop")
    if hint:
        hit = crops.resolve(hint)
        if hit:
            return hit.crop.name, notes + [f"crop {hit.crop.name}: named by the sidecar or the reader, {hit.evidence}"]
        notes.append(f"the crop '{hint}' the sidecar names is not in Leaf's crop list")
    if "product" in m:
        raw = _text(frame, m["product"].column).dropna().unique()
        finder = crops.lookup if operation == "harvested" else crops.crop_from_seed_name
        kinds = {kind for kind in map(finder, raw) if kind is not None}
        if len(kinds) == 1:
            crop = kinds.pop()
            return crop.name, notes + [f"crop {crop.name}: from the product name in '{m['product'].column}'"]
    # an application's file is named after its products ("Corn Rescue" is a herbicide), not its crop
    hit, reason = crops.from_file_name(source.hints.get("fileName")) if operation in ("harvested", "planted") \
        else (None, None)
    if hit:
        return hit.crop.name, notes + [f"crop {hit.crop.name}: {hit.evidence}"]
    if reason:
        notes.append(reason)
    figures = _yield_figures(frame, m) if operation == "harvested" else None
    if figures is not None:
        hit, reason = crops.infer_crop(figures)
        if hit:
            return hit.crop.name, notes + [f"crop {hit.crop.name}, {hit.evidence}"]
        notes.append(reason)
    return None, notes + ["the source names no crop"]


def _yield_figures(frame: pd.DataFrame, m: dict[str, Match]) -> crops.Figures | None:
    """The bulk density and standard moisture the file's own yield columns imply (lb/ac and bu/ac)."""
    def column(prop: str, unit: str) -> np.ndarray | None:
        match = m.get(prop)
        if match is None or not is_known(match.unit):
            return None
        return np.asarray(convert(_numbers(frame, match), match.unit, unit), dtype=float)

    moisture = _numbers(frame, m["harvestMoisture"]) if "harvestMoisture" in m else None
    return crops.file_figures(column("wetMassPerArea", "lb/ac"), column("wetVolumePerArea", "bu/ac"),
                              column("dryMassPerArea", "lb/ac"), column("dryVolumePerArea", "bu/ac"), moisture)


def _has_polygons(frame: gpd.GeoDataFrame) -> bool:
    """Whether any record is a Polygon or MultiPolygon (then every record is placed by `_points_and_area`)."""
    return bool(np.isin(shapely.get_type_id(frame.geometry.values._data), (3, 6)).any())


def _points_and_area(shapes: gpd.GeoSeries, metric: Any) -> tuple[gpd.GeoSeries, np.ndarray]:
    """Point per record (polygon centroids in the file's `metric` CRS) and their area in m2."""
    projected = shapes.to_crs(metric)
    centroids = projected.centroid
    # a concave or sliver polygon's centroid can fall outside it; then take a point that is inside
    inside = centroids.within(projected)
    points = centroids.where(inside, projected.representative_point())
    return gpd.GeoSeries(points, crs=metric).to_crs(WGS84), projected.area.to_numpy()


def standardize(source: SourceTable, chunk_rows: int | None = None,
                then: Callable[[PointTable, dict[str, str]], PointTable] | None = None,
                let_go: bool = False) -> StandardResult:
    """Map one machine file's raw records onto the standard schema of its operation type (the row-by-row
    columns built `chunk_rows` rows at a time: the same table as in one chunk, with less held at once).

    `then`, when given, is applied to each chunk of standard rows and their units as the chunk is built (the
    standard step's cleanup and unit system), so no whole-file copy is made for it; on a file that then fails
    its gate, its work is discarded with the rows.

    The records' points are encoded once the operation is known (WKB and bounds, as `PointTable` holds
    them): the whole-file decisions read columns only, and a point record's encoded point is its standard
    point, so no shapely point per record is held past that (polygon records are decoded a chunk at a
    time for their centroids). The columns only the whole-file decisions read (times, crops, unmapped
    ones) are dropped before the rows are built, and each chunk of records once it is standardised. With
    `let_go`, the source's records are its own: its points are let go as they are encoded and its frame is
    emptied (also when encoding fails, so a re-run reads the records back rather than finding them gone)."""
    placed = (source.frame.geometry.notna() & ~source.frame.geometry.is_empty).to_numpy()
    frame = source.frame if placed.all() else source.frame[placed]  # no copy of a big file's records when all have one
    columns = [c for c in frame.columns if c != frame.geometry.name]
    named = match_columns(columns, source.dialect, source.units)
    # ISO 11783 data dictionary entries carry their units, so only other sources need the values to tell
    reader_units = source.dialect == "STANDARD"
    resolution = evidence.Resolution(named) if reader_units else evidence.resolve(frame, named)
    m = resolution.matches
    operation, original, found = detect_operation(source, m, resolution.options)
    result = StandardResult(operation, original, evidence=found, notes=list(source.notes),
                            mapping={prop: match.column for prop, match in m.items()})
    if not result.supported:
        return result
    if len(frame) < len(source.frame):
        result.notes.append(f"{len(source.frame) - len(frame)} records without a position are not points")
    polygons = _has_polygons(frame)
    metric = metric_crs(frame) if polygons else None
    step = chunk_rows or max(len(frame), 1)
    try:
        records = _records(frame, step, let_go)
    finally:
        if let_go:
            source.frame = source.frame.iloc[:0].copy()  # a view of no rows would still hold every record
    del frame
    release_memory()  # the records' shapely points, when they were the source's own
    frame = records.properties

    out: dict[str, Any] = {}  # output column -> its values: arrays, series or one value for every point
    units: dict[str, str] = {}

    def put(name: str, values: object, unit: str | None = None) -> None:
        out[name] = values
        if unit:
            units[name] = unit

    stamps, notes = _timestamps(frame, m)
    result.notes.extend(notes)
    put("timestamp", stamps if stamps is not None else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ms, UTC]"))
    put("operationType", operation)
    if original:
        put("originalOperationType", original)
    crop_series, crop_notes = _crop_names(frame, m, source, operation)
    if operation in ("harvested", "planted") or (crop_series != crops.UNKNOWN_CROP).any():
        result.notes.extend(crop_notes)
        put("crop", crop_series)
    else:
        crop_series = pd.Series(dtype="string")
    crop_values = crop_series.dropna().unique()
    result.crop = str(crop_values[0]) if len(crop_values) == 1 else (",".join(map(str, crop_values)) or None)
    crop = crops.lookup(result.crop) if len(crop_values) == 1 else None
    if operation == "harvested" and crop is not None and crop.density_lb_per_bu and not reader_units:
        # the crop's bulk density and standard moisture make the yield cross-checks exact
        resolution = evidence.resolve(frame, named, evidence.Crop(crop.density_lb_per_bu, crop.standard_moisture_pct))
        m = resolution.matches
        result.mapping = {prop: match.column for prop, match in m.items()}
    result.notes.extend(resolution.notes)
    result.unresolved = resolution.unresolved

    # Every decision that needs the whole file is taken above (mapping, units, times, crop); the columns
    # below are row by row, so they are built `chunk_rows` rows at a time and the chunks make the same table
    plan = _RowPlan(m, resolution.unresolved, operation, crop, source.dialect, dict(units), fixed=out,
                    polygons=polygons, metric=metric)
    rows = max(len(frame), 1)
    # the rows read only the mapped columns the whole-file decisions did not take (times, crops are in `out`)
    read = {match.column for prop, match in m.items() if prop not in _WHOLE_FILE_PROPERTIES} | {"products"}
    records.properties = frame[[c for c in frame.columns if c in read]]
    del frame
    release_memory()
    chunks = _split(records, step)  # each chunk of records let go once standardised
    del records
    parts: list[PointTable] = []
    first_notes: list[str] = []
    required = schema.required_properties(operation, crop is not None and crop.density_lb_per_bu is not None
                                          and "sugar" not in crop.name)
    names: list[str] = []  # the standard columns
    present: set[str] = set()  # required properties with a value on some row
    chunks.reverse()  # popped from the end: the first chunk first
    for start in range(0, rows, step):
        part, part_units, part_notes = _standard_rows(chunks.pop(), start, plan)
        names = list(part.properties.columns)
        present.update(c for c in required if c in names and part.properties[c].notna().any())
        units.update(part_units)
        parts.append(part if then is None else then(part, {k: v for k, v in units.items() if k in names}))
        del part
        release_memory()  # the chunk's intermediate columns
        # the notes of the rows say which way a column was made, the same for every chunk: said once
        new = part_notes if start == 0 else [n for n in part_notes if n not in first_notes]
        first_notes.extend(new)
        result.notes.extend(new)
    result.units = {k: v for k, v in units.items() if k in names}
    result.table = PointTable.joined(parts, result.units)
    result.missing = [p for p in required if p not in present]
    if source.hints.get("noWork") and result.missing:
        # nothing was worked: the cleanup drops every point, which says more than the missing values
        result.notes.append(f"no work recorded, so {', '.join(result.missing)} were never measured")
        result.missing = []
    if result.missing:
        result.missing_inputs = missing_inputs(operation, m, result.unresolved, crop, set(units))
    return result


def _records(frame: gpd.GeoDataFrame, step: int, let_go: bool) -> PointTable:
    """The records' columns (a row index from 0) and their points encoded, `step` rows at a time. With
    `let_go`, each chunk's shapely points are let go once encoded (the frame's geometry is emptied as it
    goes), so the file's points are never held twice."""
    name = frame.geometry.name
    shapes = frame.geometry.values._data
    parts = []
    for start in range(0, max(len(shapes), 1), step):
        parts.append(wkb_geometry(shapes[start:start + step]))
        if let_go:
            shapes[start:start + step] = None
    properties = pd.DataFrame(frame, copy=False).drop(columns=[name]).reset_index(drop=True)
    return PointTable(properties, concat_geometry(parts), {}, frame.crs, name, list(frame.columns).index(name))


def _split(table: PointTable, step: int) -> list[PointTable]:
    """A whole table of records as chunks of `step` rows, each owning its columns, split a column at a time
    and each column popped from the table once split: a chunk's records are then let go once the chunk is
    standardised, not only once the whole file is. A chunk keeps a block per column (no consolidated copy of
    them); its points are a slice of the table's (WKB and bounds are compact: they stay whole)."""
    frame = table.properties
    starts = range(0, max(len(table.points[1]), 1), step)
    pieces: list[dict[str, pd.Series]] = [{} for _ in starts]
    for name in list(frame.columns):
        column = frame.pop(name)
        for piece, start in zip(pieces, starts):
            piece[name] = column.iloc[start:start + step].copy()
        del column
        release_memory()
    chunks = []
    for piece, start in zip(pieces, starts):
        points = slice_geometry(table.points, start, start + step)
        index = pd.RangeIndex(start, start + len(points[1]))  # the rows', also when no column is read
        chunks.append(replace(table, properties=pd.DataFrame(piece, index=index, copy=False), points=points))
    return chunks


@dataclass
class _RowPlan:
    """What the whole file decided, for building its standard columns a chunk of rows at a time: the mapping,
    the operation and crop, the units found so far, the whole-file columns (`fixed`: times, crop, operation;
    a series is taken by row position), and whether records are polygons (and the metric CRS of their areas)."""
    m: dict[str, Match]
    unresolved: dict[str, str]
    operation: str
    crop: crops.Crop | None
    dialect: str
    units: dict[str, str]
    fixed: dict[str, Any]
    polygons: bool
    metric: Any = None


def _standard_rows(records: PointTable, start: int, plan: _RowPlan) -> tuple[PointTable, dict[str, str], list[str]]:
    """The standard table of the rows `records` (from row `start` of the file), their units and the notes."""
    m, operation, crop = plan.m, plan.operation, plan.crop
    frame = records.properties
    out: dict[str, Any] = {name: value.iloc[start:start + len(frame)].set_axis(frame.index)
                           if isinstance(value, pd.Series) else value for name, value in plan.fixed.items()}
    units = dict(plan.units)
    result = StandardResult(operation, None)  # gathers the notes of these rows

    def put(name: str, values: object, unit: str | None = None) -> None:
        out[name] = values
        if unit:
            units[name] = unit

    if "variety" in m:
        put("variety", _text(frame, m["variety"].column))
    elif operation == "planted" and "product" in m:
        put("variety", _text(frame, m["product"].column))

    for prop in PASS_THROUGH:
        if prop in m and (m[prop].unit or prop not in plan.unresolved):
            put(prop, _numbers(frame, m[prop]), m[prop].unit)
    if "sectionId" in m:
        put("sectionId", pd.to_numeric(frame[m["sectionId"].column], errors="coerce").astype("Int64"))
    if "recordingStatus" in m:
        put("recordingStatus", _text(frame, m["recordingStatus"].column))

    points, area = records.points, None
    if plan.polygons:  # decoded a chunk at a time: a point per record, its polygon's
        shapes = gpd.GeoSeries(geometry_objects(points), index=frame.index, crs=records.crs)
        centroids, area = _points_and_area(shapes, plan.metric)
        points = wkb_geometry(centroids.to_numpy())
        del shapes, centroids
    if area is None and {"distance", "equipmentWidth"} <= units.keys() and is_known(units["distance"]) \
            and is_known(units["equipmentWidth"]):
        area = np.asarray(convert(out["distance"], units["distance"], "m")
                          * convert(out["equipmentWidth"], units["equipmentWidth"], "m"), dtype=float)
    if area is not None:
        put("area", area, "m2")
    else:
        result.notes.append("no working width and distance with known units, so point areas are unknown")
    if "speed" not in out and "distance" in out and "samplingInterval" in out and is_known(units.get("distance")):
        interval = np.asarray(out["samplingInterval"], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            speed = convert(out["distance"], units["distance"], "m") / np.where(interval > 0, interval, np.nan)
        put("speed", speed, "m/s")

    if operation == "harvested":
        _harvest(frame, m, out, units, crop, result)
    elif operation == "planted":
        rate = next((m[p] for p in ("rateCount", "rate", "rateMass", "rateVolume") if p in m and m[p].unit), None)
        if rate:
            put("seedRate", _numbers(frame, rate), rate.unit)
            if "rateTarget" in m:
                put("seedRateTarget", _numbers(frame, m["rateTarget"]), m["rateTarget"].unit or rate.unit)
    elif operation == "applied":
        rate = next((m[p] for p in ("rateMass", "rateVolume", "rate", "rateCount") if p in m and m[p].unit), None)
        if rate:
            applied = _numbers(frame, rate)
            put("appliedRate", applied, rate.unit)
            if "rateTarget" in m:
                put("appliedRateTarget", _numbers(frame, m["rateTarget"]), m["rateTarget"].unit or rate.unit)
            if plan.dialect == "STANDARD" and "products" in frame.columns:  # a tank mix, per point
                put("products", [json.loads(v) if isinstance(v, str) else [] for v in frame["products"]])
            else:
                names = _text(frame, m["product"].column).fillna("unknown") if "product" in m \
                    else pd.Series("unknown", index=frame.index)
                put("products", [[{"name": str(n), "rate": {"value": None if np.isnan(v) else float(v)}}]
                                 for n, v in zip(names.to_numpy(), applied)])
                if "product" not in m:
                    result.notes.append("the source names no product; products are named 'unknown'")

    ordered = {k: out[k] for k in schema.COLUMN_ORDER if k in out}
    # a block per column (no consolidated copy of them), so the chunks are joined a column at a time (`PointTable.joined`)
    standard = pd.DataFrame(ordered, index=frame.index, copy=False).reset_index(drop=True)
    return PointTable(standard, points, {}, WGS84, "geometry", len(standard.columns)), units, result.notes


def missing_inputs(operation: str, m: dict[str, Match], unresolved: dict[str, str], crop: crops.Crop | None,
                   with_units: set[str]) -> dict[str, str]:
    """What the file lacks, each with what it would unlock: the details of a `missing required properties`."""
    lacks: dict[str, str] = {}
    for prop, reason in unresolved.items():
        column = m[prop].column if prop in m else prop
        lacks[f"unit of '{column}'"] = f"{reason}; a unit in its header or a sidecar would unlock {prop}"
    if operation == "harvested":
        if not set(m).intersection(_HARVEST_EVIDENCE):
            lacks["yield"] = "a yield column (mass or volume per area, or grain mass per point or grain flow) is what " \
                             "every harvest property is derived from"
        if crop is None:
            lacks["crop"] = ("the crop's bulk density and standard moisture: dry mass from dry volume (and volume from "
                             "mass), dry values from wet ones")
        elif crop.standard_moisture_pct is None:
            lacks["crop standard moisture"] = f"'{crop.name}' has none in the crop table: dry values repeat wet values"
        if "harvestMoisture" not in m:
            lacks["harvestMoisture"] = "grain moisture: dry mass from wet mass and wet mass from dry mass"
        for prop, label in (("equipmentWidth", "working width"), ("distance", "distance travelled")):
            if "area" not in with_units and prop not in with_units:
                lacks[prop] = (f"{label} (with {'distance' if prop == 'equipmentWidth' else 'working width'}): the point "
                               "area, which turns mass per point or grain flow into yield per area and back")
        if "cropFlow" in m and "samplingInterval" not in m and "gpsTime" not in m:
            lacks["samplingInterval"] = "logging interval: grain mass per point = grain flow x interval"
    elif operation in ("planted", "applied"):
        rate = "seedRate" if operation == "planted" else "appliedRate"
        if not any(p in m and m[p].unit for p in ("rate", "rateCount", "rateMass", "rateVolume")):
            target = f" (only the target rate '{m['rateTarget'].column}' is there)" if "rateTarget" in m else ""
            lacks[rate] = f"an actual rate column{target}: {rate} is what the machine did, the target what it was told"
        if operation == "planted" and crop is None:
            lacks["crop"] = "a crop column, a seed brand or a crop in the sidecar or file name names the crop"
    return lacks


def _harvest(frame: pd.DataFrame, m: dict[str, Match], out: dict, units: dict, crop: crops.Crop | None,
             result: StandardResult) -> None:
    """Wet/dry mass and volume, per area and per point, from whatever the source gives."""
    def per_area(prop: str, imperial: str) -> np.ndarray | None:
        match = m.get(prop)
        if match is not None and is_known(match.unit):
            return np.asarray(convert(_numbers(frame, match), match.unit, imperial), dtype=float)
        return None

    moisture = _numbers(frame, m["harvestMoisture"]) if "harvestMoisture" in m else None
    if moisture is not None:
        out["harvestMoisture"] = moisture
        units["harvestMoisture"] = "percentage"
    if "cropFlow" in m and is_known(m["cropFlow"].unit):
        out["cropFlow"], units["cropFlow"] = _numbers(frame, m["cropFlow"]), m["cropFlow"].unit

    wet, dry = per_area("wetMassPerArea", "lb/ac"), per_area("dryMassPerArea", "lb/ac")
    wet_vol, dry_vol = per_area("wetVolumePerArea", "bu/ac"), per_area("dryVolumePerArea", "bu/ac")
    area = out.get("area")
    area_ac = None if area is None else np.asarray(area) * factor("m2", "ac")
    for basis in ("wet", "dry"):
        match = m.get(f"{basis}Mass")
        if wet is None and dry is None and match is not None and is_known(match.unit) and area_ac is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                per_ac = np.where(area_ac > 0, convert(_numbers(frame, match), match.unit, "lb") / area_ac, np.nan)
            wet, dry = (per_ac, None) if basis == "wet" else (None, per_ac)
            result.notes.append(f"{basis} mass per area from the mass per point '{match.column}' / (distance x width)")
    if wet is None and dry is None and wet_vol is None and dry_vol is None and area_ac is not None \
            and "cropFlow" in units and "samplingInterval" in out:
        mass_lb = convert(out["cropFlow"], units["cropFlow"], "lb/s") * np.asarray(out["samplingInterval"], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            wet = np.where(area_ac > 0, mass_lb / area_ac, np.nan)
        result.notes.append("wet mass per area from grain flow x logging interval / (distance x swath)")

    density = crop.density_lb_per_bu if crop else None
    standard_moisture = crop.standard_moisture_pct if crop else None
    if dry is None and dry_vol is not None and density:
        dry = dry_vol * density
    if wet is None and wet_vol is not None and density:
        wet = wet_vol * density
    if wet is None and dry is not None:
        if standard_moisture is None:
            wet = dry
        elif moisture is not None:
            wet = dry * (100.0 - standard_moisture) / (100.0 - moisture)
    if dry is None and wet is not None:
        if standard_moisture is None:
            dry = wet
            result.notes.append("the crop has no standard moisture: dry values repeat the wet values")
        elif moisture is not None:
            dry = wet * (100.0 - moisture) / (100.0 - standard_moisture)
    if density:
        wet_vol = wet / density if wet_vol is None and wet is not None else wet_vol
        dry_vol = dry / density if dry_vol is None and dry is not None else dry_vol

    source_units = [m[p].unit for p in _HARVEST_EVIDENCE if p in m]
    imperial = system_of(next((u for u in source_units if u), "lb/ac")) == "imperial"
    targets = {"MassPerArea": "lb/ac" if imperial else "t/ha", "VolumePerArea": "bu/ac" if imperial else "m3/ha",
               "Mass": "lb" if imperial else "t", "Volume": "bu" if imperial else "m3"}
    for basis, mass_pa, vol_pa in (("wet", wet, wet_vol), ("dry", dry, dry_vol)):
        for kind, values, internal in (("Mass", mass_pa, "lb/ac"), ("Volume", vol_pa, "bu/ac")):
            if values is None:
                continue
            name = f"{basis}{kind}PerArea"
            if name in m and is_known(m[name].unit):
                unit = m[name].unit
                out[name] = _numbers(frame, m[name])
            else:
                unit = targets[f"{kind}PerArea"]
                out[name] = convert(values, internal, unit)
            units[name] = unit
            if area_ac is not None:
                out[f"{basis}{kind}"] = convert(values * area_ac, internal.split("/")[0], targets[kind])
                units[f"{basis}{kind}"] = targets[kind]
    implied = None
    if not density and wet is not None and wet_vol is not None:  # lb/ac over bu/ac: the source's own lb/bu
        with np.errstate(divide="ignore", invalid="ignore"):
            implied = np.where((wet > 0) & (wet_vol > 0), wet / wet_vol, np.nan)
    _source_masses(frame, m, out, units, moisture, density or implied, standard_moisture, targets["Volume"], result)


def _source_masses(frame: pd.DataFrame, m: dict[str, Match], out: dict, units: dict, moisture: np.ndarray | None,
                   density: float | np.ndarray | None, standard_moisture: float | None, volume_unit: str,
                   result: StandardResult) -> None:
    """Per-point masses and volumes from the source's own harvested mass (a machine counter, its mass flow over
    time, a mass column), which win over yield per area x point area: that is a reconstruction. Masses keep
    the unit of the source's column; the other basis follows from moisture as the yields do."""
    stated = {p: m[p].unit for p in ("wetMass", "dryMass") if p in m}
    given = {p: u for p, u in stated.items() if is_known(u)}  # mass column -> its unit
    if not given:
        return
    unit = next(iter(given.values()))
    masses = {p[:3]: convert(_numbers(frame, m[p]), u, "lb") for p, u in given.items()}
    if len(masses) == 1:  # the other basis: the same pounds for a crop without a standard moisture, else by moisture
        (basis, pounds), = masses.items()
        other = "dry" if basis == "wet" else "wet"
        if standard_moisture is None:
            masses[other] = pounds
        elif moisture is not None:
            wet_share, dry_share = 100.0 - moisture, 100.0 - standard_moisture
            masses[other] = pounds * (wet_share / dry_share if basis == "wet" else dry_share / wet_share)
    for basis, pounds in masses.items():
        out[f"{basis}Mass"], units[f"{basis}Mass"] = convert(pounds, "lb", unit), unit
        if density is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"{basis}Volume"] = convert(np.where(pounds > 0, pounds / density, 0.0), "bu", volume_unit)
            units[f"{basis}Volume"] = volume_unit
    result.notes.append(f"{' and '.join(f'{b}Mass' for b in sorted(masses))} per point from the source's harvested "
                        f"mass {', '.join(repr(m[p].column) for p in given)}, not yield per area x point area")
