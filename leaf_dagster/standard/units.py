"""Unit labels as monitors write them, Leaf's unit strings, and conversions through pint.

Monitors label units in many ways ("tonne/ha", "bu1ac-1", "lb1ac-1", "prcnt", "(m³/s)"). `leaf_unit` folds a
label to the string Leaf's units map uses ("t/ha", "bu/ac", "lb/ac", "percentage"); `convert` converts
values between two Leaf unit strings with pint, so no conversion factor is written by hand.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TypeGuard, cast

import numpy as np
import pint

# Leaf unit string -> pint expression. Seeds are counts, so seeds/ac is a plain 1/acre.
_PINT = {
    "ft": "foot", "m": "meter", "in": "inch", "cm": "centimeter", "mm": "millimeter", "km": "kilometer",
    "mi": "mile", "yd": "yard",
    "m2": "meter**2", "ft2": "foot**2", "ac": "international_acre", "ha": "hectare",
    "lb": "pound", "kg": "kilogram", "t": "metric_ton", "g": "gram",
    "bu": "bushel", "L": "liter", "m3": "meter**3", "gal": "gallon", "floz": "fluid_ounce",
    "lb/ac": "pound/international_acre", "kg/ha": "kilogram/hectare", "t/ha": "metric_ton/hectare",
    "bu/ac": "bushel/international_acre", "L/ha": "liter/hectare", "m3/ha": "meter**3/hectare", "gal/ac": "gallon/international_acre",
    "floz/ac": "fluid_ounce/international_acre", "L/m2": "liter/meter**2",
    "seeds/ac": "1/international_acre", "seeds/ha": "1/hectare", "seeds/m2": "1/meter**2", "seeds": "dimensionless",
    "lb/s": "pound/second", "kg/s": "kilogram/second", "t/h": "metric_ton/hour", "kg/h": "kilogram/hour",
    "m3/s": "meter**3/second", "L/s": "liter/second",
    "mi/hr": "mile/hour", "km/h": "kilometer/hour", "m/s": "meter/second", "ft/s": "foot/second",
    "arcdeg": "degree", "percentage": "percent", "s": "second", "lbf": "force_pound", "kgf": "force_kilogram",
    "degC": "degree_Celsius", "degF": "degree_Fahrenheit",
    "N": "newton", "Pa": "pascal", "kPa": "kilopascal", "L/h": "liter/hour", "ml": "milliliter",
}

_ALIASES = {
    "feet": "ft", "foot": "ft", "meter": "m", "metre": "m", "meters": "m", "metres": "m", "inch": "in",
    "inches": "in", "metrs": "m", "mtrs": "m", "m²": "m2", "sqm": "m2", "acre": "ac", "acres": "ac", "hectare": "ha",
    "tonne": "t", "tonnes": "t", "mt": "t", "lbs": "lb", "pound": "lb", "pounds": "lb", "kgs": "kg",
    "bushel": "bu", "bushels": "bu", "l": "L", "liter": "L", "litre": "L", "m³": "m3",
    "%": "percentage", "prcnt": "percentage", "percent": "percentage", "pct": "percentage",
    "deg": "arcdeg", "degree": "arcdeg", "degrees": "arcdeg", "°": "arcdeg",
    "mph": "mi/hr", "mi/h": "mi/hr", "kph": "km/h", "km/hr": "km/h", "sec": "s", "second": "s", "seconds": "s",
    "°c": "degC", "°f": "degF", "c": "degC", "f": "degF",
    "ks/ac": "kseeds/ac",
}


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:
    ureg: pint.UnitRegistry = pint.UnitRegistry()
    # pint's `acre` is the US survey acre; monitors and Leaf mean 43,560 international square feet.
    ureg.define("international_acre = 43560 * foot ** 2")
    return ureg


def _fold_part(part: str) -> str:
    part = part.strip()
    low = part.lower()
    if part in _PINT:
        return part
    if low in _PINT:
        return low
    return _ALIASES.get(low, _ALIASES.get(part, part))


def leaf_unit(label: str | None) -> str | None:
    """Fold a monitor's unit label to Leaf's unit string, or None for an empty label."""
    if label is None:
        return None
    text = label.strip().strip("()[]").strip()
    if not text:
        return None
    # John Deere writes quotients as exponents: "bu1ac-1", "lb1ac-1", "seeds1ac-1".
    jd = re.fullmatch(r"([A-Za-z]+)1([A-Za-z]+)-1", text)
    if jd:
        text = f"{jd.group(1)}/{jd.group(2)}"
    whole = _fold_part(text)
    if whole in _PINT or whole == "kseeds/ac":
        return whole
    if "/" in text:
        num, _, den = text.partition("/")
        num_u, den_u = _fold_part(num), _fold_part(den)
        if den_u == "hr" or den_u == "hour" or den_u == "h":
            den_u = "hr" if num_u == "mi" else "h"
        candidate = f"{num_u}/{den_u}"
        if candidate in _PINT:
            return candidate
        if num_u in {"seed", "seeds", "count", "cnt", "k", "ks"}:
            return "seeds/" + den_u if num_u not in {"k", "ks"} else "kseeds/" + den_u
        return candidate
    return whole


def is_known(unit: str | None) -> TypeGuard[str]:
    return unit is not None and (unit in _PINT or unit.startswith("kseeds/"))


@lru_cache(maxsize=256)
def dimension(unit: str) -> str:
    """The physical dimension of a Leaf unit string ('[length]', '[mass] / [length] ** 2', ...); seeds are
    counts, so a seed rate is '1 / [length] ** 2'."""
    base = "seeds/" + unit.split("/", 1)[1] if unit.startswith("kseeds/") else unit
    return str(registry().Quantity(1.0, _PINT[base]).dimensionality)


def factor(src: str, dst: str) -> float:
    """Multiplicative factor from `src` to `dst` (both Leaf unit strings)."""
    if src == dst:
        return 1.0
    scale = 1.0
    if src.startswith("kseeds/"):
        src, scale = "seeds/" + src.split("/", 1)[1], 1000.0
    if dst.startswith("kseeds/"):
        dst, scale = "seeds/" + dst.split("/", 1)[1], scale / 1000.0
    ureg = registry()
    return scale * float(ureg.Quantity(1.0, _PINT[src]).to(_PINT[dst]).magnitude)


def convert(values: np.ndarray | float, src: str, dst: str) -> np.ndarray | float:
    """Convert values between two Leaf unit strings (offset units such as degC handled by pint)."""
    if src == dst:
        return values
    if src in {"degC", "degF"} or dst in {"degC", "degF"}:
        ureg = registry()
        return ureg.Quantity(np.asarray(values, dtype=float), _PINT[src]).to(_PINT[dst]).magnitude
    if np.isscalar(values):
        return cast(float, values) * factor(src, dst)  # a number: np.isscalar's guard also admits str and bytes
    return np.asarray(values, dtype=float) * factor(src, dst)


def system_of(unit: str | None) -> str:
    """'imperial' or 'metric': which family a unit belongs to, so derived values follow the source."""
    if unit is None:
        return "imperial"
    head = unit.split("/")[0]
    return "imperial" if head in {"lb", "bu", "ft", "in", "gal", "floz", "mi", "ac", "lbf"} or unit.endswith("/ac") else "metric"
