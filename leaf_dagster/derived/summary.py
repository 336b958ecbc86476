"""Leaf's file summary: a GeoJSON Feature with the coverage MultiPolygon, statistics and totals.

Statistics are {avg, min, max, unit} over the points; totals are {value, unit} sums over the points
(`totalArea` is the area worked, the sum of point areas; `coverageArea` is the area of the geometry,
where overlapping passes count once).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import shapely

from ..standard.times import format_utc
from ..standard.units import convert, is_known

_NOT_STATS = {"sectionId"}
_TOTALS = {"wetMass": "totalWetMass", "dryMass": "totalDryMass", "wetVolume": "totalWetVolume",
           "dryVolume": "totalDryVolume", "distance": "totalDistance", "fuelUsed": "totalFuelUsed"}
# The columns a variety's figures read.
_PLANTED_VARIETY = ("seedRate", "seedRateTarget", "area")
_HARVEST_VARIETY = ("harvestMoisture", "wetMass", "dryMass", "wetVolume", "dryVolume", "area")


def _number(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def stats(values: pd.Series, unit: str | None) -> dict[str, Any]:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"avg": None, "min": None, "max": None, "unit": unit}
    return {"avg": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "unit": unit}


def total(values: pd.Series, unit: str | None) -> dict[str, Any]:
    return {"value": float(np.nansum(pd.to_numeric(values, errors="coerce").to_numpy(dtype=float))), "unit": unit}


def rate_total(frame: pd.DataFrame, rate: str, units: dict[str, str], area_unit: str) -> dict[str, Any] | None:
    """Total of a per-area rate over the points' areas: seeds/ac x ac = seeds, gal/ac x ac = gal."""
    unit = units.get(rate)
    if rate not in frame.columns or not unit or "/" not in unit or "area" not in frame.columns or not is_known(unit):
        return None
    numerator, denominator = unit.split("/", 1)
    area = np.asarray(convert(frame["area"].to_numpy(dtype=float), area_unit, denominator))
    return {"value": float(np.nansum(frame[rate].to_numpy(dtype=float) * area)), "unit": numerator}


def _groups(frame: pd.DataFrame, column: str, needed: tuple[str, ...]) -> list[tuple[str, pd.DataFrame]]:
    """The rows of each value of `column`, with only the `needed` columns: a group is a copy of its rows, and
    a file's one variety is every row."""
    if column not in frame.columns:
        return []
    columns = frame[[c for c in frame.columns if c in needed]]
    return [(str(name), group) for name, group in columns.groupby(frame[column].astype("string"), dropna=True)]


def build_summary(frame: pd.DataFrame, units: dict[str, str], record: dict[str, Any], geometry: shapely.MultiPolygon,
                  coverage_area_m2: float, *, original_operation_data: bool = True) -> dict[str, Any]:
    operation = record.get("operationType")
    area_unit = units.get("area", "m2")
    props: dict[str, Any] = {"operationType": operation, "originalOperationType": record.get("originalOperationType"),
                             "standard": record.get("standard", True)}
    stamps = frame["timestamp"].dropna() if "timestamp" in frame.columns else pd.Series(dtype="datetime64[ns, UTC]")
    props["startTime"] = format_utc(stamps.min()) if len(stamps) else None
    props["endTime"] = format_utc(stamps.max()) if len(stamps) else None
    if "crop" in frame.columns:
        props["crop"] = sorted(frame["crop"].dropna().astype(str).unique().tolist())
    props["totalArea"] = total(frame["area"], area_unit) if "area" in frame.columns else {"value": None, "unit": area_unit}
    props["coverageArea"] = {"value": float(convert(coverage_area_m2, "m2", area_unit)), "unit": area_unit}
    for column in frame.columns:
        if column in _NOT_STATS or column in ("geometry", "file_id") or not pd.api.types.is_numeric_dtype(frame[column]):
            continue
        props[column] = stats(frame[column], units.get(column))
        if column in _TOTALS:
            props[_TOTALS[column]] = total(frame[column], units.get(column))
    if operation == "planted":
        props["totalPlanted"] = rate_total(frame, "seedRate", units, area_unit)
        props["varieties"] = [_planted_variety(name, g, units, area_unit)
                              for name, g in _groups(frame, "variety", _PLANTED_VARIETY)]
    elif operation == "applied":
        props["totalApplied"] = rate_total(frame, "appliedRate", units, area_unit)
        props["products"] = _products(frame, units, area_unit)
        props["tankMix"] = bool(frame["products"].map(lambda p: len(p) > 1 if p is not None else False).any()) \
            if "products" in frame.columns else False
    elif operation == "harvested":
        props["varieties"] = [_harvest_variety(name, g, units, area_unit)
                              for name, g in _groups(frame, "variety", _HARVEST_VARIETY)]
    props["machinery"] = record.get("machinery") or []
    if original_operation_data:
        props["originalOperationData"] = {k: v for k, v in {
            "originalOperationType": record.get("originalOperationType"),
            "originalOperationFarm": (record.get("raw") or {}).get("hints", {}).get("farm"),
            "originalOperationField": (record.get("raw") or {}).get("hints", {}).get("field"),
            "originalOperationGrower": (record.get("raw") or {}).get("hints", {}).get("grower"),
        }.items() if v}
    return {"type": "Feature", "properties": props, "geometry": shapely.geometry.mapping(geometry)}


def _planted_variety(name: str, g: pd.DataFrame, units: dict[str, str], area_unit: str) -> dict[str, Any]:
    rate = stats(g["seedRate"], units.get("seedRate")) if "seedRate" in g.columns else {}
    if "seedRateTarget" in g.columns:
        target = stats(g["seedRateTarget"], units.get("seedRateTarget"))
        rate.update(minTarget=target["min"], maxTarget=target["max"], avgTarget=target["avg"])
    return {"name": name, "rate": rate, "area": total(g["area"], area_unit) if "area" in g.columns else None,
            "totalPlanted": rate_total(g, "seedRate", units, area_unit)}


def _harvest_variety(name: str, g: pd.DataFrame, units: dict[str, str], area_unit: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if "harvestMoisture" in g.columns:
        out["harvestMoisture"] = stats(g["harvestMoisture"], units.get("harvestMoisture"))
    for column in ("wetMass", "dryMass", "wetVolume", "dryVolume", "area"):
        if column in g.columns:
            out[column] = total(g[column], units.get(column, area_unit if column == "area" else None))
    return out


def _products(frame: pd.DataFrame, units: dict[str, str], area_unit: str) -> list[dict[str, Any]]:
    if "products" not in frame.columns:
        return []
    rows = [(p.get("name"), (p.get("rate") or {}).get("value"), area)
            for items, area in zip(frame["products"], frame["area"] if "area" in frame.columns else [np.nan] * len(frame))
            for p in (items if items is not None else [])]
    table = pd.DataFrame(rows, columns=["name", "rate", "area"])
    unit = units.get("appliedRate")
    out = []
    for name, g in table.groupby("name"):
        item: dict[str, Any] = {"name": name, "type": "Component", "rate": {"value": _number(g["rate"].mean()), "unit": unit},
                                "area": total(g["area"], area_unit)}
        applied = rate_total(g.rename(columns={"rate": "appliedRate"}), "appliedRate", units, area_unit)
        if applied:
            item["totalApplied"] = applied
        out.append(item)
    return out
