"""Configuration values are checked when they are saved, so a bad rule is refused at the PATCH, not by every
later file of the user."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from leaf_dagster.api.app import create_app
from leaf_dagster.config import DEFAULTS, validate
from leaf_dagster.errors import ConfigError
from leaf_dagster.storage import Storage

CONFIG = "/services/config/api/configs"


@pytest.mark.parametrize("rules", [[{"operator": "GT"}], [{"operator": "GT", "value": "abc"}],
                                   [{"operator": "GT", "value": None}], [{"operator": "LT", "value": True}]])
def test_a_cleanup_rule_without_a_usable_value_is_refused(rules: list) -> None:
    with pytest.raises(ConfigError, match="cleanupRules.harvestMoisture"):
        validate({"cleanupRules": {"harvestMoisture": rules}})


def test_leafs_default_rules_pass_their_own_check() -> None:
    assert validate({"cleanupRules": DEFAULTS["cleanupRules"]})["cleanupRules"] == DEFAULTS["cleanupRules"]


# a value of another JSON kind than each key's default: "yes" for true, "3" for 3, a list for an object
_WRONG = {bool: "yes", int: "3", float: "0.5", str: 1, dict: []}


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_key_is_type_checked_and_named(key: str) -> None:
    wrong = _WRONG[type(DEFAULTS[key])]
    with pytest.raises(ConfigError) as refused:
        validate({key: wrong})
    assert str(refused.value).startswith(f"{key} must be ") or str(refused.value).startswith(f"{key}: ")
    with pytest.raises(ConfigError, match=f"^{key} must be .*, not null$|^{key}: .*, not null$"):
        validate({key: None})
    assert validate({key: DEFAULTS[key]}) == {key: DEFAULTS[key]}


@pytest.mark.parametrize("values,message", [
    ({"enablePolygonOutput": "yes"}, 'enablePolygonOutput must be true or false, not "yes"'),
    ({"operationsOutliersLimit": 0}, "operationsOutliersLimit: Input should be greater than 0, not 0"),
    ({"fieldsAttachIntersection": 100.5}, "fieldsAttachIntersection: Input should be less than or equal to 100, not 100.5"),
    ({"cleanupRules": {"crop": [{"operator": "LIKE", "value": "corn"}]}},
     "cleanupRules.crop.0.operator: Input should be 'GT', 'GTE', 'LT', 'LTE', 'EQ' or 'NE', not \"LIKE\""),
    ({"cleanupStandardGeojson": 1, "nope": True}, "cleanupStandardGeojson must be true or false, not 1; "
                                                  "unknown configuration key nope"),
])
def test_messages_name_the_key_and_the_value(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        validate(values)
    assert str(refused.value) == message


def test_a_patch_replaces_a_stored_value_the_rules_now_refuse(storage: Storage) -> None:
    """A value the earlier, looser checks let through (any number for operationsOutliersLimit) or written by hand
    does not lock the configuration: the PATCH that replaces it is taken, one that leaves it is refused naming it."""
    path = storage.owner_path("alice", "config.json")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"operationsOutliersLimit": 0, "unitMeasurement": "METRIC"}))
    client = TestClient(create_app(storage, tokens={"t": "alice"}), headers={"Authorization": "Bearer t"})
    kept = client.patch(CONFIG, json={"enablePolygonOutput": True})
    assert kept.status_code == 400
    assert kept.json()["message"] == "operationsOutliersLimit: Input should be greater than 0, not 0"
    fixed = client.patch(CONFIG, json={"operationsOutliersLimit": 2})
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["operationsOutliersLimit"], fixed.json()["unitMeasurement"]) == (2, "METRIC")
    assert json.loads(path.read_text()) == {"operationsOutliersLimit": 2, "unitMeasurement": "METRIC"}


@pytest.mark.parametrize("rules,message", [
    ({"harvestMoisure": [{"operator": "GT", "value": 0}]}, "cleanupRules: Leaf's cleanup has no rules for harvestMoisure"),
    ({"crop": [{"operator": "GT", "value": 5}]}, "cleanupRules: crop is a text: its rules are EQ or NE with a text"),
    ({"recordingStatus": [{"operator": "EQ", "value": 1}]},
     "cleanupRules: recordingStatus is a text: its rules are EQ or NE with a text"),
    ({"harvestMoisture": [{"operator": "EQ", "value": "dry"}]},
     "cleanupRules: harvestMoisture is a number: its rules compare it with a number"),
])
def test_cleanup_rules_name_leafs_properties_and_compare_like_with_like(rules: dict, message: str) -> None:
    """Rules that would never apply (a misspelt property), stop every file (a text compared by size) or remove
    every point (a text compared with a number) are refused when saved."""
    with pytest.raises(ConfigError) as refused:
        validate({"cleanupRules": rules})
    assert str(refused.value).startswith(message)
    assert validate({"cleanupRules": {"harvestMoisture": [{"operator": "NE", "value": 0}]}})  # a number, by equality
