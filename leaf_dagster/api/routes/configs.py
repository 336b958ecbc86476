"""Leaf's configurations: the API owner's, and each of its Leaf users' (merged over the owner's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from ... import config as configuration
from ...identifiers import check_id
from ..deps import CONFIG, ERRORS, LeafRoute, Owner, StorageDep

# The answer is documented as config.Configuration, the model every stored configuration is checked
# against on its way in and out, and sent as effective() builds it (3 stays 3, not 3.0).
ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"model": configuration.Configuration, "description": "The effective configuration"}}
router = APIRouter(prefix=f"{CONFIG}/configs", tags=["configurations"], responses={**ERRORS, **ANSWER},
                   route_class=LeafRoute)


@router.get("", summary="Get the API owner's configuration", response_model=None)
def get_owner_config(who: Owner, storage: StorageDep) -> dict[str, Any]:
    return configuration.effective(storage, None, who)


@router.patch("", summary="Change the API owner's configuration", response_model=None)
def patch_owner_config(who: Owner, storage: StorageDep, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    configuration.save(storage, body, owner=who)
    return configuration.effective(storage, None, who)


@router.get("/{leaf_user_id}", summary="Get a Leaf user's configuration", response_model=None)
def get_user_config(leaf_user_id: str, who: Owner, storage: StorageDep) -> dict[str, Any]:
    return configuration.effective(storage, check_id("leafUserId", leaf_user_id), who)


@router.patch("/{leaf_user_id}", summary="Change a Leaf user's configuration", response_model=None)
def patch_user_config(leaf_user_id: str, who: Owner, storage: StorageDep,
                      body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    configuration.save(storage, body, leaf_user_id=check_id("leafUserId", leaf_user_id), owner=who)
    return configuration.effective(storage, leaf_user_id, who)
