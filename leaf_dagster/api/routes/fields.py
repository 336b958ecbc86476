"""Field boundaries of an owner's Leaf users (Leaf's fields service)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from ...identifiers import check_id
from ..deps import ERRORS, FIELDS, LeafRoute, Owner, StorageDep
from ..models import FieldObject, ListedField

router = APIRouter(prefix=f"{FIELDS}/users/{{leaf_user_id}}/fields", tags=["fields"], responses=ERRORS,
                   route_class=LeafRoute)


@router.get("", summary="Get a user's fields", response_model=list[ListedField])
def get_fields(leaf_user_id: str, who: Owner, storage: StorageDep) -> list[dict[str, Any]]:
    from ...fields import list_fields

    return list_fields(storage, check_id("leafUserId", leaf_user_id), owner=who)


@router.post("", summary="Add field boundaries (a GeoJSON body)", response_model=list[FieldObject],
             description="A FeatureCollection, Feature, Polygon or MultiPolygon, or Leaf's field body {name, geometry}; "
                         "each field keeps the `name` given (a feature's own, else the body's).")
def post_fields(leaf_user_id: str, who: Owner, storage: StorageDep,
                body: Annotated[dict[str, Any], Body()]) -> list[dict[str, Any]]:
    from ...fields import add_geojson

    return add_geojson(storage, check_id("leafUserId", leaf_user_id), body, owner=who)
