"""Our summary totals against the totals the machine's terminal recorded for the same work.

A terminal counts area, yield, product, distance and fuel on the machine while it works (ISOXML TIM
totals, see `readers.isoxml.totals`). Our totals are rebuilt from the logged points, so agreement within
a few per cent says the points were read and cleaned right; a larger gap says something (work state,
width, scaling, lost records) went wrong. The comparison never blocks a file: it is a warning.

Tolerances: 2 % for every total, 5 % for area (the terminal's area counts overlaps and headland turns
by its own rules). Values are compared in the terminal's unit after converting ours with pint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pint

from ..standard.units import convert

TOLERANCE = 0.02
AREA_TOLERANCE = 0.05
_COUNT_UNITS = {"count", "seeds"}


@dataclass(frozen=True)
class Pair:
    """One quantity: our summary key and the terminal keys that can hold it (first convertible one wins)."""

    ours: str
    terminal: tuple[str, ...]
    tolerance: float = TOLERANCE


PAIRS = (
    Pair("totalArea", ("totalArea",), AREA_TOLERANCE),
    Pair("totalWetMass", ("totalWetMass",)),
    Pair("totalWetVolume", ("totalWetVolume",)),
    Pair("totalApplied", ("totalAppliedVolume", "totalAppliedMass", "totalAppliedCount")),
    Pair("totalPlanted", ("totalAppliedCount",)),
    Pair("totalDistance", ("totalDistance",)),
    Pair("totalFuelUsed", ("totalFuelUsed",)),
)
# What each terminal total is called in messages.
NAMES = {"totalArea": "area", "totalWetMass": "yield mass", "totalWetVolume": "yield volume",
         "totalAppliedVolume": "applied volume", "totalAppliedMass": "applied mass",
         "totalAppliedCount": "applied count", "totalDistance": "distance", "totalFuelUsed": "fuel",
         "totalYieldCount": "bale count", "totalEffectiveTime": "effective time"}


@dataclass
class Row:
    """One total: ours converted to the terminal's unit, theirs, ours/theirs, and whether they agree."""

    name: str
    ours: float | None
    terminal: float
    unit: str
    ratio: float | None
    tolerance: float
    within: bool | None  # None: not compared

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ours": self.ours, "terminal": self.terminal, "unit": self.unit,
                "ratio": self.ratio, "tolerance": self.tolerance, "within": self.within}


@dataclass
class Reconciliation:
    passed: bool
    description: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _in_unit(total: dict[str, Any] | None, unit: str) -> float | None:
    """A summary total {value, unit} in `unit`; None when absent or of another kind (volume vs mass)."""
    if not total or total.get("value") is None:
        return None
    source = total.get("unit")
    if not source:  # a total without a unit says nothing comparable
        return None
    if source == unit or (source in _COUNT_UNITS and unit in _COUNT_UNITS):
        return float(total["value"])
    try:
        return float(convert(float(total["value"]), source, unit))
    except (KeyError, pint.PintError):  # a unit we do not know, or another kind of quantity
        return None


def _rows(summary: dict[str, Any], terminal: dict[str, Any]) -> list[Row]:
    """One row per terminal total: compared with ours where the summary has the same quantity."""
    rows: list[Row] = []
    used: set[str] = set()
    for pair in PAIRS:
        for key in (k for k in pair.terminal if k in terminal and k not in used):
            ours = _in_unit(summary.get(pair.ours), terminal[key]["unit"])
            if ours is None:
                continue
            used.add(key)
            value = float(terminal[key]["value"])
            ratio = ours / value if value else None
            within = abs(ratio - 1) <= pair.tolerance if ratio is not None else ours == 0
            rows.append(Row(NAMES.get(key, key), ours, value, terminal[key]["unit"], ratio, pair.tolerance, within))
            break
    for key, total in terminal.items():
        if key not in used:  # a total we do not compute (bale count, effective time): shown, not compared
            rows.append(Row(NAMES.get(key, key), None, float(total["value"]), total["unit"], None, TOLERANCE, None))
    return rows


def reconcile(summary: dict[str, Any], terminal: dict[str, Any] | None) -> Reconciliation:
    """Compare the summary's properties with a file's `terminalTotals`."""
    if not terminal or not terminal.get("totals"):
        return Reconciliation(True, "no terminal totals in this file: nothing to compare")
    rows = _rows(summary, terminal["totals"])
    notes = list(terminal.get("notes") or [])
    compared = [r for r in rows if r.within is not None]
    if not terminal.get("complete", True):
        for row in rows:
            row.within = None
        return Reconciliation(True, "not compared: the terminal's totals count work whose logs are missing or empty",
                              rows, notes)
    if not compared:
        return Reconciliation(True, "no total both here and in the terminal's totals", rows, notes)
    bad = [r for r in compared if not r.within]
    if not bad:
        return Reconciliation(True, f"{len(compared)} totals agree with the terminal's", rows, notes)
    described = "; ".join(f"{r.name} {_figure(r.ours)} vs {_figure(r.terminal)} {r.unit}"
                          + (f" (x{r.ratio:.3f}, tolerance {r.tolerance:.0%})" if r.ratio is not None else "")
                          for r in bad)
    return Reconciliation(False, f"totals differ from the terminal's: {described}", rows, notes)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.6g}"


def markdown(result: Reconciliation) -> str:
    """The comparison as a Markdown table for the Dagster UI."""
    lines = ["| total | ours | terminal | unit | ratio | tolerance | result |", "|---|---|---|---|---|---|---|"]
    for r in result.rows:
        outcome = {True: "ok", False: "**mismatch**", None: "not compared"}[r.within]
        ratio = "n/a" if r.ratio is None else f"{r.ratio:.4f}"
        lines.append(f"| {r.name} | {_figure(r.ours)} | {_figure(r.terminal)} | {r.unit} | {ratio} | "
                     f"{r.tolerance:.0%} | {outcome} |")
    return "\n".join(lines)
