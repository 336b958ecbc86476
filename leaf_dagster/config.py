"""Configurations with Leaf's names and defaults: an owner-level file plus per-Leaf-user overrides.

    <data>/config/owner.json            {"cleanupStandardGeojson": false, ...}
    <data>/config/users/<leafUserId>.json

A value set for a user wins over the owner's; anything unset falls back to the owner's, then to Leaf's
default. Leaf applies changes to new files only; here re-materialising a file (a backfill in the UI)
applies the current configuration to it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .storage import Storage

DEFAULT_CLEANUP_RULES: dict[str, list[dict[str, Any]]] = {
    "harvestMoisture": [{"operator": "GT", "value": 0.0}, {"operator": "LT", "value": 100.0}],
    "tillageDepthActual": [{"operator": "GTE", "value": 0.0}],
    "recordingStatus": [{"operator": "EQ", "value": "On"}],
    "appliedRate": [{"operator": "GT", "value": 0.0}],
    "wetVolume": [{"operator": "GT", "value": 0.0}],
    "wetVolumePerArea": [{"operator": "GT", "value": 0.0}],
    "wetMass": [{"operator": "GT", "value": 0.0}],
    "wetMassPerArea": [{"operator": "GT", "value": 0.0}],
    "seedRate": [{"operator": "GT", "value": 0.0}],
    "crop": [{"operator": "NE", "value": "unknown"}],
    "products": [{"operator": "GTE", "value": 0.0}],
}

DEFAULTS: dict[str, Any] = {
    "cleanupStandardGeojson": True,
    "cleanupRules": DEFAULT_CLEANUP_RULES,
    "unitMeasurement": "DEFAULT",
    "enableGeoparquetOutput": True,
    "enablePolygonOutput": False,
    "operationsRemoveOutliers": True,
    "operationsOutliersLimit": 3,
    "originalOperationData": True,
    "splitOperationsByField": True,
    "enableOutsideFieldGeojson": False,
    "fieldsAttachIntersection": 0.01,
    "cropOptional": {"standardGeoJson": {"planted": {"crop": "required"}}},
    "seedRateOptional": {"standardGeoJson": {"planted": {"seedRate": "required"}}},
    # Not Leaf's: read a shapefile whose .shp/.shx/.dbf disagree anyway, with a note and a warning check.
    "acceptDamagedShapefiles": False,
}

UNIT_SYSTEMS = ("DEFAULT", "METRIC", "IMPERIAL")


class ConfigError(ValueError):
    """A configuration value Leaf would refuse."""


def validate(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    if "unitMeasurement" in values and values["unitMeasurement"] not in UNIT_SYSTEMS:
        raise ConfigError(f"unitMeasurement must be one of {', '.join(UNIT_SYSTEMS)}")
    if "operationsOutliersLimit" in values and not isinstance(values["operationsOutliersLimit"], (int, float)):
        raise ConfigError("operationsOutliersLimit must be a number")
    if "acceptDamagedShapefiles" in values and not isinstance(values["acceptDamagedShapefiles"], bool):
        raise ConfigError("acceptDamagedShapefiles must be true or false")
    for prop, rules in (values.get("cleanupRules") or {}).items():
        for rule in rules:
            if rule.get("operator") not in {"GT", "GTE", "LT", "LTE", "EQ", "NE"}:
                raise ConfigError(f"cleanupRules.{prop}: unknown operator {rule.get('operator')!r}")
    return values


def _read(storage: Storage, *parts: str) -> dict[str, Any]:
    path = storage.root.joinpath("config", *parts)
    if not path.exists():
        return {}
    return validate(json.loads(path.read_text()))


def owner_config(storage: Storage) -> dict[str, Any]:
    return _read(storage, "owner.json")


def user_config(storage: Storage, leaf_user_id: str) -> dict[str, Any]:
    return _read(storage, "users", f"{leaf_user_id}.json")


def effective(storage: Storage, leaf_user_id: str | None) -> dict[str, Any]:
    """Leaf defaults, overridden by the owner's file, overridden by the user's file."""
    merged = copy.deepcopy(DEFAULTS)
    merged.update(owner_config(storage))
    if leaf_user_id:
        merged.update(user_config(storage, leaf_user_id))
    return merged


def save(storage: Storage, values: dict[str, Any], leaf_user_id: str | None = None) -> None:
    """Write (merge into) the owner's or a user's configuration file."""
    validate(values)
    parts = ("users", f"{leaf_user_id}.json") if leaf_user_id else ("owner.json",)
    current = _read(storage, *parts)
    current.update(values)
    path = storage.root.joinpath("config", *parts)
    with storage.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(current, indent=2))
