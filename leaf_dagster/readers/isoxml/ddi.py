"""The data-dictionary facts the reader needs: DDI number, short name, unit and resolution.

Numbers, units and resolutions are those of the ISO 11783-11 data dictionary export version 2025012101 as
tabulated in docs isoxml.md section 4 (cross-checked there against the 2019110401 snapshot). Only numeric
facts and short names are kept, for the few dozen DDIs we map; no definition texts.

A logged raw value times the resolution is the value in the DDI's unit; `Target` adds the factor from the
raw integer straight to the Leaf unit of a standard property.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ddi:
    number: int
    name: str
    unit: str
    resolution: float
    total: bool = False  # a cumulative counter: per-record values are differences


def _d(number: int, name: str, unit: str, resolution: float = 1.0, total: bool = False) -> Ddi:
    return Ddi(number, name, unit, resolution, total)


DDIS: dict[int, Ddi] = {d.number: d for d in [
    # application rates (isoxml.md 4.3, 4.4)
    _d(1, "Setpoint Volume Per Area Application Rate", "mm3/m2", 0.01),
    _d(2, "Actual Volume Per Area Application Rate", "mm3/m2", 0.01),
    _d(6, "Setpoint Mass Per Area Application Rate", "mg/m2"),
    _d(7, "Actual Mass Per Area Application Rate", "mg/m2"),
    _d(11, "Setpoint Count Per Area Application Rate", "1/m2", 0.001),
    _d(12, "Actual Count Per Area Application Rate", "1/m2", 0.001),
    _d(16, "Setpoint Spacing Application Rate", "mm"),
    _d(17, "Actual Spacing Application Rate", "mm"),
    _d(22, "Actual Volume Per Volume Application Rate", "mm3/m3"),
    _d(27, "Actual Mass Per Mass Application Rate", "mg/kg"),
    _d(36, "Setpoint Volume Per Time Application Rate", "mm3/s"),
    _d(37, "Actual Volume Per Time Application Rate", "mm3/s"),
    _d(41, "Setpoint Mass Per Time Application Rate", "mg/s"),
    _d(42, "Actual Mass Per Time Application Rate", "mg/s"),
    _d(46, "Setpoint Count Per Time Application Rate", "1/s", 0.001),
    _d(47, "Actual Count Per Time Application Rate", "1/s", 0.001),
    _d(140, "Setpoint Percentage Application Rate", "ppm"),
    _d(308, "Actual Percentage Application Rate", "ppm"),
    _d(588, "Setpoint Volume Per Area Application Rate as [ml/m2]", "ml/m2", 0.1),
    _d(589, "Actual Volume Per Area Application Rate as [ml/m2]", "ml/m2", 0.1),
    _d(72, "Actual Volume Content", "ml"),
    _d(75, "Actual Mass Content", "g"),
    _d(80, "Application Total Volume", "L", total=True),
    _d(81, "Application Total Mass", "kg", total=True),
    _d(82, "Application Total Count", "#", total=True),
    _d(351, "Application Total Volume in [ml]", "ml", total=True),
    _d(352, "Application Total Mass in [g]", "g", total=True),
    _d(194, "Actual Product Pressure", "Pa", 0.1),
    # planting (4.3)
    _d(56, "Setpoint Seeding Depth", "mm"),
    _d(57, "Actual Seeding Depth", "mm"),
    _d(415, "Actual Seed Singulation Percentage", "ppm"),
    _d(417, "Actual Seed Skip Percentage", "ppm"),
    _d(419, "Actual Seed Multiple Percentage", "ppm"),
    _d(421, "Actual Seed Spacing Deviation", "mm"),
    _d(423, "Coefficient of Variation of Seed Spacing Percentage", "ppm"),
    _d(365, "Setpoint Downforce Pressure", "Pa"),
    _d(366, "Actual Downforce Pressure", "Pa"),
    _d(427, "Actual Downforce as Force", "N"),
    # tillage (4.5)
    _d(51, "Setpoint Tillage Depth", "mm"),
    _d(52, "Actual Tillage Depth", "mm"),
    _d(53, "Default Tillage Depth", "mm"),
    _d(529, "Setpoint Tillage Disc Gang Angle", "deg", 0.001),
    _d(530, "Actual Tillage Disc Gang Angle", "deg", 0.001),
    # harvest (4.2)
    _d(83, "Volume Per Area Yield", "ml/m2"),
    _d(84, "Mass Per Area Yield", "mg/m2"),
    _d(85, "Count Per Area Yield", "1/m2", 0.001),
    _d(86, "Volume Per Time Yield", "ml/s"),
    _d(87, "Mass Per Time Yield", "mg/s"),
    _d(88, "Count Per Time Yield", "1/s", 0.001),
    _d(89, "Yield Total Volume", "L", total=True),
    _d(90, "Yield Total Mass", "kg", total=True),
    _d(91, "Yield Total Count", "#", total=True),
    _d(93, "Mass Per Area Crop Loss", "mg/m2"),
    _d(98, "Percentage Crop Loss", "ppm"),
    _d(99, "Crop Moisture", "ppm"),
    _d(181, "Dry Mass Per Area Yield", "mg/m2"),
    _d(182, "Dry Mass Per Time Yield", "mg/s"),
    _d(183, "Yield Total Dry Mass", "kg", total=True),
    _d(184, "Reference Moisture For Dry Mass", "ppm"),
    _d(239, "Yield Hold Status", "enum"),
    _d(314, "Actual Percentage Crop Dry Matter", "ppm"),
    _d(406, "Actual Protein Content", "ppm"),
    # common (4.1)
    _d(66, "Setpoint Working Width", "mm"),
    _d(67, "Actual Working Width", "mm"),
    _d(68, "Default Working Width", "mm"),
    _d(70, "Maximum Working Width", "mm"),
    _d(116, "Total Area", "m2", total=True),
    _d(117, "Effective Total Distance", "mm", total=True),
    _d(118, "Ineffective Total Distance", "mm", total=True),
    _d(119, "Effective Total Time", "s", total=True),
    _d(120, "Ineffective Total Time", "s", total=True),
    _d(141, "Actual Work State", "enum"),
    _d(144, "Yaw Angle", "deg", 0.001),
    _d(148, "Total Fuel Consumption", "ml", total=True),
    _d(149, "Instantaneous Fuel Consumption per Time", "mm3/s"),
    *[_d(161 + i, f"Actual Condensed Work State ({16 * i + 1}-{16 * i + 16})", "bitfield") for i in range(16)],
    _d(179, "Actual Cultural Practice", "enum"),
    _d(289, "Setpoint Work State", "enum"),
    _d(350, "Function or Operation Technique", "enum"),
    _d(397, "Actual Speed", "mm/s"),
    _d(400, "Speed Source", "enum"),
    _d(514, "GNSS Quality", "enum"),
]}

REQUEST_DEFAULT_PROCESS_DATA = 0xDFFF
PGN_BASED_DATA = 0xDFFE
FIRST_PROPRIETARY = 0xE000  # 0xE000-0xFFFE: proprietary, no dictionary entry (isoxml.md 3.4)

# DDI 179 "Actual Cultural Practice" values (isoxml.md 5.1) and what they are for us.
CULTURAL_PRACTICES = {
    0: "unknown", 1: "fertilizing", 2: "sowingandplanting", 3: "cropprotection", 4: "tillage", 5: "baling",
    6: "mowing", 7: "wrapping", 8: "harvesting", 9: "forageharvesting", 10: "transport", 11: "swathing",
    12: "slurrymanureapplication", 13: "selfloadingwagon", 14: "tedding", 15: "measuring", 16: "irrigation",
    17: "feedingmixing", 18: "mulching",
}
PRACTICE_OPERATION = {1: "applied", 3: "applied", 12: "applied", 16: "applied", 2: "planted", 4: "tillage",
                      8: "harvested", 9: "harvested"}

# Device classes of the client NAME (industry group 2), isoxml.md 5.2.
DEVICE_CLASS_NAMES = {
    0: "non-specific system", 1: "tractor", 2: "primary soil tillage", 3: "secondary soil tillage",
    4: "planter/seeder", 5: "fertilizer", 6: "sprayer", 7: "harvester", 8: "root harvester", 9: "forage harvester",
    10: "irrigation", 11: "transport/trailer", 12: "farmyard work", 13: "powered auxiliary unit",
    14: "special crops", 15: "municipal work", 16: "skidder", 17: "sensor system", 19: "timber harvester",
    20: "forwarder", 21: "timber loader", 22: "timber processing", 23: "mulcher", 24: "utility vehicle",
    25: "slurry applicator", 26: "feeder/mixer", 27: "weeder", 28: "turf/lawn care mower",
    29: "product material handling",
}
CLASS_OPERATION = {2: "tillage", 3: "tillage", 4: "planted", 5: "applied", 6: "applied", 7: "harvested",
                   8: "harvested", 9: "harvested", 10: "applied", 25: "applied"}
# Self-propelled classes: their device is the machine, not an implement.
MACHINE_CLASSES = {1, 7, 8, 9, 13, 16, 19, 20, 24}


@dataclass(frozen=True)
class Target:
    """A standard property from one DDI: raw integer x factor = value in `unit`."""

    ddi: int
    unit: str
    factor: float


# Evidence per operation type (isoxml.md 5.3), checked on the DDIs an element logs.
HARVEST_DDIS = frozenset({*range(83, 92), 181, 182, 183, *range(185, 191)})
PLANTING_ONLY_DDIS = frozenset({56, 57, *range(415, 425)})
COUNT_RATE_DDIS = frozenset({11, 12})
APPLICATION_DDIS = frozenset({1, 2, 6, 7, 588, 589, 36, 37, 41, 42, *range(432, 452)})
TILLAGE_DDIS = frozenset({51, 52, 53, 54, 55, 529, 530})
APPLICATION_TOTAL_DDIS = frozenset({80, 81, 82, 351, 352})
# Baler DDIs (bale width 102, bale diameter setpoint/actual/limits 111-115, pressing force 219, last bale mass
# 223, last bale diameter 360, bales dropped 459): a machine logging them bales, even when it logs yield totals.
BALE_DDIS = frozenset({102, 111, 112, 114, 115, 219, 223, 360, 459})

# Standard properties per operation type, in order of preference (first logged DDI wins).
COMMON_TARGETS: dict[str, list[Target]] = {
    "speed": [Target(397, "m/s", 1e-3)],
    "heading": [Target(144, "arcdeg", 1e-3)],
    "equipmentWidth": [Target(67, "m", 1e-3), Target(68, "m", 1e-3), Target(66, "m", 1e-3), Target(70, "m", 1e-3)],
}
TOTAL_TARGETS: dict[str, list[Target]] = {
    "fuelUsed": [Target(148, "L", 1e-3)],
}
OPERATION_TARGETS: dict[str, dict[str, list[Target]]] = {
    "harvested": {
        "wetMassPerArea": [Target(84, "t/ha", 1e-5)],
        "dryMassPerArea": [Target(181, "t/ha", 1e-5)],
        "wetVolumePerArea": [Target(83, "L/ha", 10.0)],
        "harvestMoisture": [Target(99, "percentage", 1e-4)],
        "cropFlow": [Target(87, "t/h", 3.6e-6)],
        "proteinPercentage": [Target(406, "percentage", 1e-4)],
    },
    "planted": {
        "seedRate": [Target(12, "seeds/ha", 10.0), Target(7, "kg/ha", 0.01)],
        "seedRateTarget": [Target(11, "seeds/ha", 10.0), Target(6, "kg/ha", 0.01)],
        "seedDepth": [Target(57, "cm", 0.1)],
        "singulation": [Target(415, "percentage", 1e-4)],
        "skips": [Target(417, "percentage", 1e-4)],
        "doubles": [Target(419, "percentage", 1e-4)],
        "downForce": [Target(427, "N", 1.0)],
    },
    "applied": {
        "appliedRate": [Target(2, "L/ha", 1e-4), Target(589, "L/ha", 1.0), Target(7, "kg/ha", 0.01),
                        Target(12, "seeds/ha", 10.0)],
        "appliedRateTarget": [Target(1, "L/ha", 1e-4), Target(588, "L/ha", 1.0), Target(6, "kg/ha", 0.01),
                              Target(11, "seeds/ha", 10.0)],
    },
    "tillage": {
        "tillageDepthActual": [Target(52, "cm", 0.1)],
        "tillageDepthTarget": [Target(51, "cm", 0.1)],
    },
}
# Application total counters per kind of rate (the rate unit's numerator): what the machine counted applied.
APPLICATION_TOTALS: dict[str, list[Target]] = {
    "L": [Target(80, "L", 1.0), Target(351, "L", 1e-3)],
    "kg": [Target(81, "kg", 1.0), Target(352, "kg", 1e-3)],
    "seeds": [Target(82, "seeds", 1.0)],
}
# Harvest totals kept as per-record differences.
HARVEST_TOTALS: dict[str, list[Target]] = {"wetMass": [Target(90, "kg", 1.0)]}
# A target rate must be in the same family as the actual one (seeds with seeds, kg with kg).
RATE_PAIRS = {12: 11, 7: 6, 2: 1, 589: 588}
# Properties measured per row unit or section: averaged over the elements that log them.
AVERAGED = frozenset({"singulation", "skips", "doubles", "downForce", "seedDepth"})
