"""Configurations with Leaf's names and defaults: one per API owner plus per-Leaf-user overrides.

    <data>/owners/<owner>/config.json                       {"cleanupStandardGeojson": false, ...}
    <data>/owners/<owner>/users/<leafUserId>/config.json

A Leaf user belongs to one API owner: two owners using the same leafUserId have two users, each with
its own configuration. A value set for a user wins over the owner's; anything unset falls back to the
owner's, then to Leaf's default. The command line and inbox drops without an owner use the local owner
(`storage.DEFAULT_OWNER`). Leaf applies changes to new files only; here re-materialising a file (a
backfill in the UI) applies the current configuration to it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any


from .storage import DEFAULT_OWNER, Storage

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
    "outOfStandardOperations": False,
    # Not Leaf's: read a shapefile whose .shp/.shx/.dbf disagree anyway, with a note and a warning check.
    "acceptDamagedShapefiles": False,
}

UNIT_SYSTEMS = ("DEFAULT", "METRIC", "IMPERIAL")


class ConfigError(ValueError):
    """A configuration value Leaf would refuse."""


def _kind(value: Any) -> str:
    """The JSON kind of a value, as configuration messages name it."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", dict: "a JSON object", list: "a list"}.get(type(value), "null")


def validate(values: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError("a configuration is a JSON object of Leaf's configuration keys")
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    for key, value in values.items():
        if _kind(value) != _kind(DEFAULTS[key]):
            raise ConfigError(f"{key} must be {_kind(DEFAULTS[key])}, not {_kind(value)}")
    if "unitMeasurement" in values and values["unitMeasurement"] not in UNIT_SYSTEMS:
        raise ConfigError(f"unitMeasurement must be one of {', '.join(UNIT_SYSTEMS)}")
    rule_sets = values.get("cleanupRules") or {}
    if not isinstance(rule_sets, dict) or not all(isinstance(r, list) and all(isinstance(x, dict) for x in r)
                                                   for r in rule_sets.values()):
        raise ConfigError("cleanupRules maps a property to a list of {operator, value} rules")
    for prop, rules in rule_sets.items():
        for rule in rules:
            if rule.get("operator") not in {"GT", "GTE", "LT", "LTE", "EQ", "NE"}:
                raise ConfigError(f"cleanupRules.{prop}: unknown operator {rule.get('operator')!r}")
            value = rule.get("value")
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ConfigError(f"cleanupRules.{prop}: each rule needs a value (a number, or a text for EQ/NE)")
            if isinstance(value, str) and rule["operator"] not in ("EQ", "NE"):
                raise ConfigError(f"cleanupRules.{prop}: {rule['operator']} compares with a number, not {value!r}")
    return values


def _path(storage: Storage, owner: str, leaf_user_id: str | None) -> Path:
    if leaf_user_id:
        return storage.user_path(owner, leaf_user_id, "config.json")
    return storage.owner_path(owner, "config.json")


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    return validate(json.loads(path.read_text()))


def owner_config(storage: Storage, owner: str = DEFAULT_OWNER) -> dict[str, Any]:
    return _read(_path(storage, owner, None))


def user_config(storage: Storage, leaf_user_id: str, owner: str = DEFAULT_OWNER) -> dict[str, Any]:
    return _read(_path(storage, owner, leaf_user_id))


def effective(storage: Storage, leaf_user_id: str | None, owner: str = DEFAULT_OWNER) -> dict[str, Any]:
    """Leaf defaults, overridden by the owner's file, overridden by the file of the owner's user."""
    merged = copy.deepcopy(DEFAULTS)
    merged.update(owner_config(storage, owner))
    if leaf_user_id:
        merged.update(user_config(storage, leaf_user_id, owner))
    return merged


def save(storage: Storage, values: dict[str, Any], leaf_user_id: str | None = None,
         owner: str = DEFAULT_OWNER) -> None:
    """Write (merge into) the owner's or one of its users' configuration file."""
    validate(values)
    path = _path(storage, owner, leaf_user_id)
    current = _read(path)
    current.update(values)
    with storage.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(current, indent=2))
