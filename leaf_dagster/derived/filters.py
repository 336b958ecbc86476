"""Leaf's valid-point cleanup (on the standard output) and the filtered output (speed and outliers)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..standard.units import convert, is_known

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "GT": operator.gt, "GTE": operator.ge, "LT": operator.lt, "LTE": operator.le, "EQ": operator.eq, "NE": operator.ne,
}
MIN_SPEED_M_S = 0.5


def _rule_values(frame: pd.DataFrame, prop: str) -> pd.Series:
    if prop == "products":  # a tank mix passes when every product's rate passes
        def worst(products: Any) -> float:
            rates = [p.get("rate", {}).get("value") for p in (products if products is not None else [])]
            rates = [r for r in rates if r is not None]
            return min(rates) if rates else np.nan
        return frame[prop].map(worst).astype(float)
    return frame[prop]


def cleanup_mask(frame: pd.DataFrame, rules: dict[str, list[dict[str, Any]]]) -> np.ndarray:
    """True for points that satisfy every rule. A rule applies only where the point has the property."""
    keep = np.ones(len(frame), dtype=bool)
    for prop, prop_rules in rules.items():
        if prop not in frame.columns:
            continue
        values = _rule_values(frame, prop)
        present = values.notna().to_numpy()
        for rule in prop_rules:
            passed = _OPERATORS[rule["operator"]](values, rule["value"])
            keep &= ~present | np.asarray(passed.fillna(False), dtype=bool)
    return keep


def outlier_column(frame: pd.DataFrame) -> str | None:
    """The harvested quantity outliers are judged on: volume per area, else mass per area."""
    for column in ("wetVolumePerArea", "dryVolumePerArea", "wetMassPerArea", "dryMassPerArea"):
        if column in frame.columns and frame[column].notna().any():
            return column
    return None


def filtered_mask(frame: pd.DataFrame, units: dict[str, str], *, remove_outliers: bool, outliers_limit: float) -> np.ndarray:
    """Points kept in filteredGeojson: speed of at least 0.5 m/s, and for harvest no yield outliers."""
    keep = np.ones(len(frame), dtype=bool)
    if "speed" in frame.columns and is_known(units.get("speed")):
        speed = convert(frame["speed"].to_numpy(dtype=float), units["speed"], "m/s")
        keep &= ~(speed < MIN_SPEED_M_S)
    column = outlier_column(frame) if remove_outliers and (frame.get("operationType") == "harvested").any() else None
    if column:
        values = frame[column].to_numpy(dtype=float)
        kept = values[keep & np.isfinite(values)]
        if len(kept) > 1:
            mean, std = kept.mean(), kept.std()
            keep &= ~(np.abs(values - mean) > outliers_limit * std)
    return keep
