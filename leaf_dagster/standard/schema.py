"""Leaf's standard schema: operation types, required properties and column order."""

from __future__ import annotations

HARVEST_MASS = ["wetMass", "dryMass", "wetMassPerArea", "dryMassPerArea"]
HARVEST_VOLUME = ["wetVolume", "dryVolume", "wetVolumePerArea", "dryVolumePerArea"]


def required_properties(operation_type: str, crop_has_density: bool) -> list[str]:
    """Properties whose absence fails a file with `missing required properties`.

    Volumes are required only when the crop's bulk density is known (Leaf drops them for sugarcane,
    whose yield is not sold by volume; a crop we cannot name has no density either)."""
    if operation_type == "harvested":
        return ["crop", "harvestMoisture", *HARVEST_MASS, *(HARVEST_VOLUME if crop_has_density else [])]
    if operation_type == "planted":
        return ["crop", "seedRate"]
    if operation_type == "applied":
        return ["appliedRate", "products"]
    return []


COLUMN_ORDER = [
    "timestamp", "operationType", "originalOperationType", "crop", "variety", "area", "distance", "elevation",
    "heading", "speed", "equipmentWidth", "recordingStatus", "sectionId", "samplingInterval", "xOffset",
    "yOffset", "harvestMoisture", "wetMass", "dryMass", "wetMassPerArea", "dryMassPerArea", "wetVolume",
    "dryVolume", "wetVolumePerArea", "dryVolumePerArea", "cropFlow", "proteinPercentage", "seedRate",
    "seedRateTarget", "seedDepth", "singulation", "skips", "doubles", "downForce", "downForceMargin", "appliedRate",
    "appliedRateTarget", "products", "tillageDepthActual", "tillageDepthTarget", "fuelUsed",
]
