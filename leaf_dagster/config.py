"""Configurations with Leaf's names and defaults: one per API owner plus per-Leaf-user overrides.

    <data>/owners/<owner>/config.json                       {"cleanupStandardGeojson": false, ...}
    <data>/owners/<owner>/users/<leafUserId>/config.json

A data directory of the release before API owners (config/owner.json, config/users/<leafUserId>.json)
is moved into this layout the first time a configuration is read or written.

A Leaf user belongs to one API owner: two owners using the same leafUserId have two users, each with
its own configuration. A value set for a user wins over the owner's; anything unset falls back to the
owner's, then to Leaf's default. The command line and inbox drops without an owner use the local owner
(`storage.DEFAULT_OWNER`). Leaf applies changes to new files only; here re-materialising a file (a
backfill in the UI) applies the current configuration to it.
"""

from __future__ import annotations

import copy
import json
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .identifiers import ID_PATTERN
from .storage import DEFAULT_OWNER, Storage, owner_of

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

Requirement = dict[str, dict[str, dict[str, Literal["required", "optional"]]]]
# The properties Leaf's cleanup rules apply to: numbers compared with numbers, texts with EQ/NE and a text.
NUMBER_RULE_PROPERTIES = ("wetMass", "wetMassPerArea", "wetVolume", "wetVolumePerArea", "harvestMoisture", "appliedRate",
                          "seedRate", "tillageDepthActual", "area", "products")
TEXT_RULE_PROPERTIES = ("recordingStatus", "crop")


class CleanupRule(BaseModel):
    """One `{operator, value}` rule: a number for every operator, a text only for EQ/NE."""
    model_config = ConfigDict(extra="forbid", strict=True)
    operator: Literal["GT", "GTE", "LT", "LTE", "EQ", "NE"]
    value: Any

    @field_validator("value")
    @classmethod
    def _usable(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("each rule needs a value (a number, or a text for EQ/NE)")
        return value

    @model_validator(mode="after")
    def _comparable(self) -> "CleanupRule":
        if isinstance(self.value, str) and self.operator not in ("EQ", "NE"):
            raise ValueError(f"{self.operator} compares with a number, not {self.value!r}")
        return self


class Configuration(BaseModel):
    """Every configuration key with its JSON type, checked strictly: "yes" is not true, "3" is not 3, and
    null is no value. DEFAULTS holds the values; a stored configuration is checked merged over them."""
    model_config = ConfigDict(extra="forbid", strict=True)
    cleanupStandardGeojson: bool
    cleanupRules: dict[str, list[CleanupRule]]
    unitMeasurement: Literal["DEFAULT", "METRIC", "IMPERIAL"]
    enableGeoparquetOutput: bool
    enablePolygonOutput: bool
    operationsRemoveOutliers: bool
    operationsOutliersLimit: float = Field(gt=0)  # standard deviations
    originalOperationData: bool
    splitOperationsByField: bool
    enableOutsideFieldGeojson: bool
    fieldsAttachIntersection: float = Field(ge=0, le=100)  # percent of the field or of the file's coverage
    cropOptional: Requirement
    seedRateOptional: Requirement
    outOfStandardOperations: bool
    acceptDamagedShapefiles: bool

    @field_validator("cleanupRules")
    @classmethod
    def _leafs_properties(cls, rules: dict[str, list[CleanupRule]]) -> dict[str, list[CleanupRule]]:
        """Each rule on one of Leaf's cleanup properties, comparing like with like: a misspelt property would
        never apply, `crop GT 5` would stop every file at standardGeojson, and `recordingStatus EQ 1` or a
        number compared with a text would remove every point."""
        for prop, prop_rules in rules.items():
            if prop in TEXT_RULE_PROPERTIES:
                if any(r.operator not in ("EQ", "NE") or not isinstance(r.value, str) for r in prop_rules):
                    raise ValueError(f"{prop} is a text: its rules are EQ or NE with a text")
            elif prop in NUMBER_RULE_PROPERTIES:
                if any(isinstance(r.value, str) for r in prop_rules):
                    raise ValueError(f"{prop} is a number: its rules compare it with a number")
            else:
                raise ValueError(f"Leaf's cleanup has no rules for {prop} (its properties: "
                                 f"{', '.join(NUMBER_RULE_PROPERTIES + TEXT_RULE_PROPERTIES)})")
        return rules


# pydantic's type errors in JSON's words
_EXPECTED = {"bool_type": "must be true or false", "float_type": "must be a number", "dict_type": "must be a JSON object",
             "list_type": "must be a list", "string_type": "must be a text"}


def _problem(error: Any) -> str:
    """One pydantic error as a line that names the key, e.g. `enablePolygonOutput must be true or false, not "yes"`."""
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown configuration key {where}"
    expected = _EXPECTED.get(error["type"])
    text = f"{where} {expected}" if expected else f"{where}: {error['msg'].removeprefix('Value error, ')}"
    given = error.get("input")
    if error["type"] != "missing" and (given is None or isinstance(given, (str, int, float, bool))) \
            and len(repr(given)) <= 60:
        text += f", not {json.dumps(given)}"
    return text


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """`values` when every key is one of DEFAULTS' and every value has its type, else ConfigError naming
    each bad key."""
    if not isinstance(values, dict):
        raise ConfigError("a configuration is a JSON object of Leaf's configuration keys")
    try:
        Configuration.model_validate({**DEFAULTS, **values})
    except ValidationError as exc:
        raise ConfigError("; ".join(_problem(e) for e in exc.errors())) from None
    return values


def _location(storage: Storage, owner: str, leaf_user_id: str | None) -> Path:
    if leaf_user_id:
        return storage.user_path(owner, leaf_user_id, "config.json")
    return storage.owner_path(owner, "config.json")


def _path(storage: Storage, owner: str, leaf_user_id: str | None) -> Path:
    """Where a configuration lives, once any of the layout before API owners has moved there. An old file
    that cannot be read stops only the owners it was meant for (it names a Leaf user of theirs)."""
    unreadable = migrate_legacy(storage)
    if leaf_user_id in unreadable and owner in legacy_owners(storage, leaf_user_id):
        raise ConfigError(unreadable[leaf_user_id])
    return storage.fetch(_location(storage, owner, leaf_user_id))


def legacy_owners(storage: Storage, leaf_user_id: str | None) -> set[str]:
    """Who used a configuration or boundaries of the layout before API owners: the one owner-level
    configuration was every owner's (the local owner and each owner of a batch); a Leaf user's was the user
    of every owner that uploaded for it, else the local owner's."""
    owners = {owner_of(b) for b in storage.records.many("batches") if leaf_user_id in (None, b.get("leafUserId"))}
    return owners | {DEFAULT_OWNER} if leaf_user_id is None else owners or {DEFAULT_OWNER}


def migrate_legacy(storage: Storage) -> dict[str | None, str]:
    """Move the configurations of the layout before API owners (config/owner.json, config/users/<id>.json)
    into owners/<owner>/, once: each old file goes when it has moved. A value already set in the new place
    wins. A file named by no valid Leaf user id stays where it is (config/api-tokens.json stays too), and so
    does a file that cannot be read: returned as {Leaf user id (None for owner.json): why}."""
    old = storage.root / "config"
    users = old / "users"
    unreadable: dict[str | None, str] = {}
    legacy = [(old / "owner.json", None)] + [(p, p.stem) for p in sorted(users.glob("*.json"))]
    for path, leaf_user_id in legacy:
        if not path.is_file() or (leaf_user_id is not None and not ID_PATTERN.fullmatch(leaf_user_id)):
            continue
        try:
            values = json.loads(path.read_text())
            if not isinstance(values, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # kept in place: the user fixes it, and it moves then
            unreadable[leaf_user_id] = f"config/{path.relative_to(old)} cannot be read ({exc})"
            continue
        for owner in sorted(legacy_owners(storage, leaf_user_id)):
            target = _location(storage, owner, leaf_user_id)
            current = json.loads(target.read_text()) if target.exists() else {}
            with storage.atomic_path(target) as tmp:
                tmp.write_text(json.dumps({**values, **current}, indent=2))
        path.unlink(missing_ok=True)
    with suppress(OSError):
        users.rmdir()
    return unreadable


def _stored(path: Path) -> Any:
    """The configuration stored at `path` as written, before any check."""
    return json.loads(path.read_text()) if path.exists() else {}


def _read(path: Path) -> dict[str, Any]:
    return validate(_stored(path))


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
    """Write (merge into) the owner's or one of its users' configuration file. The merged result is what is
    checked, not the stored file alone, so a PATCH can replace a value the current rules refuse (one stored by
    an earlier release, whose checks were looser, or by hand); a PATCH that leaves it in place names it."""
    validate(values)
    path = _path(storage, owner, leaf_user_id)
    stored = _stored(path)
    current = validate({**stored, **values} if isinstance(stored, dict) else stored)
    with storage.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(current, indent=2))
