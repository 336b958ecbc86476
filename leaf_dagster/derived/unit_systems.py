"""Leaf's `unitMeasurement`: DEFAULT keeps source units, METRIC and IMPERIAL convert (through pint)."""

from __future__ import annotations

import pandas as pd

from ..standard.units import convert, factor, is_known

# property -> (METRIC unit, IMPERIAL unit), after leaf-spec 4.2; `area` and rates by what they measure.
_BY_PROPERTY = {
    "speed": ("m/s", "ft/s"), "distance": ("m", "ft"), "elevation": ("m", "ft"), "equipmentWidth": ("m", "ft"),
    "xOffset": ("m", "ft"), "yOffset": ("m", "ft"), "area": ("ha", "ac"), "downForce": ("kgf", "lbf"),
    "downForceMargin": ("kgf", "lbf"), "tillageDepthActual": ("cm", "in"), "tillageDepthTarget": ("cm", "in"),
    "seedDepth": ("cm", "in"), "fuelUsed": ("L", "gal"), "cropFlow": ("t/h", "lb/s"),
    "totalArea": ("ha", "ac"), "totalDistance": ("m", "ft"), "totalFuelUsed": ("L", "gal"),
}
# unit families for mass, volume, rates (chosen by the unit the value has now)
_BY_UNIT = {
    "lb": ("t", "lb"), "kg": ("t", "lb"), "t": ("t", "lb"),
    "bu": ("m3", "bu"), "L": ("m3", "bu"), "m3": ("m3", "bu"),
    "lb/ac": ("t/ha", "lb/ac"), "kg/ha": ("t/ha", "lb/ac"), "t/ha": ("t/ha", "lb/ac"),
    "bu/ac": ("m3/ha", "bu/ac"), "L/ha": ("m3/ha", "bu/ac"), "m3/ha": ("m3/ha", "bu/ac"),
    "seeds/ac": ("seeds/ha", "seeds/ac"), "seeds/ha": ("seeds/ha", "seeds/ac"),
    "gal/ac": ("L/ha", "gal/ac"), "floz/ac": ("L/ha", "gal/ac"),
}
# Application volumes are not bushels: liquid rates and totals keep their own family.
_LIQUID = {"appliedRate", "appliedRateTarget", "totalApplied"}
_LIQUID_UNITS = {"L/ha": ("L/ha", "gal/ac"), "gal/ac": ("L/ha", "gal/ac"), "L": ("L", "gal"), "gal": ("L", "gal"),
                 "m3/ha": ("L/ha", "gal/ac")}


def target_unit(prop: str, unit: str | None, system: str) -> str | None:
    """The unit `prop` should have in `system` (None: keep as is)."""
    if system == "DEFAULT" or not is_known(unit):
        return None
    index = 0 if system == "METRIC" else 1
    if prop in _LIQUID and unit in _LIQUID_UNITS:
        return _LIQUID_UNITS[unit][index]
    if prop in _BY_PROPERTY:
        return _BY_PROPERTY[prop][index]
    if unit in _BY_UNIT:
        return _BY_UNIT[unit][index]
    return None


def convert_frame(frame: pd.DataFrame, units: dict[str, str], system: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Convert every numeric property with a known unit to `system`; returns a new frame and units map."""
    if system == "DEFAULT":
        return frame, dict(units)
    out, new_units = frame.copy(), dict(units)
    for prop, unit in units.items():
        target = target_unit(prop, unit, system)
        if target and target != unit and prop in out.columns:
            out[prop] = convert(out[prop].to_numpy(dtype=float), unit, target)
            new_units[prop] = target
        if prop == "appliedRate" and "products" in out.columns and target and target != unit:
            scale = factor(unit, target)
            out["products"] = [[{**p, "rate": {"value": None if p["rate"]["value"] is None else p["rate"]["value"] * scale}}
                                for p in (items if items is not None else [])] for items in out["products"]]
    return out, new_units
