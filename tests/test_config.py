"""Configuration values are checked when they are saved, so a bad rule is refused at the PATCH, not by every
later file of the user."""

from __future__ import annotations

import pytest

from leaf_dagster.config import DEFAULTS, ConfigError, validate


@pytest.mark.parametrize("rules", [[{"operator": "GT"}], [{"operator": "GT", "value": "abc"}],
                                   [{"operator": "GT", "value": None}], [{"operator": "LT", "value": True}]])
def test_a_cleanup_rule_without_a_usable_value_is_refused(rules: list) -> None:
    with pytest.raises(ConfigError, match="cleanupRules.harvestMoisture"):
        validate({"cleanupRules": {"harvestMoisture": rules}})


def test_leafs_default_rules_pass_their_own_check() -> None:
    assert validate({"cleanupRules": DEFAULTS["cleanupRules"]})["cleanupRules"] == DEFAULTS["cleanupRules"]
