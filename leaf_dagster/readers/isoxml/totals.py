"""The terminal's own totals of a task: the DLVs of its TIM elements in TASKDATA.XML.

A task controller closes every effective time span of a task (`<TIM D="4">`) with the task totals at
that moment: area, yield mass, applied volume, distance, fuel, time (ISO 11783-10; isoxml-dotnet reads a
task total the same way, from the last effective TIM that carries the DDI). They are the only figures in
a card that were computed on the machine, so they are what our own totals are checked against.

How the value of a total is chosen, from evidence in the file:

- Planned TIMs (D=1) are plans, not measurements, and are ignored; so are TIMs of other types.
- Task totals accumulate over the task: KRONE Smart Connect repeats the running totals in every TIM and
  the last one holds the task total (a Trimble FmX does the same: its effective time grows by less than
  the span of the TIM while the TIM value exceeds that span). A writer that restarts its counters in every
  TIM shows up as a counter that decreases from one TIM to the next; its TIMs are then added up.
- A DDI logged on several elements of one device (a mower's area on the machine and on its cutter bar) is
  counted once, on the outermost element. Applied totals of elements that are not nested add up (two
  product bins); other totals of unrelated elements (a combine's and its header's effective time) measure
  the same work, so the largest is taken and the notes say so.
- Values are scaled by the DDI resolution and unit of the data dictionary (`ddi.DDIS`), never by the DVP:
  a Fendt DVP presents 0x005A (kg) with a gram-to-pound factor, 1000 times off.
- Proprietary DDIs (0xE000-0xFFFE) have no dictionary entry, so their unit and meaning are the writer's
  own (Trimble's E114 "task total dry grain"): they are kept as raw values with their designator and are
  never compared.
- A time log whose binary is missing or empty leaves the logs short of what the totals count when its
  span changed a total; the totals then say they cannot be compared with the logs (`complete` false).
"""

from __future__ import annotations

from typing import Any

from ...standard.units import convert
from . import ddi as dd
from .taskdata import Task, TaskData, TimeElement, time_log_state

EFFECTIVE = 4
PLANNED = 1

# DDI -> (key of the total, unit it is reported in). Keys follow the summary's total names where the
# summary has the same quantity; applied totals keep their kind (volume, mass, count).
TOTALS: dict[int, tuple[str, str]] = {
    116: ("totalArea", "m2"),
    90: ("totalWetMass", "kg"),
    89: ("totalWetVolume", "L"),
    91: ("totalYieldCount", "count"),  # bales for a baler
    80: ("totalAppliedVolume", "L"),
    351: ("totalAppliedVolume", "L"),
    81: ("totalAppliedMass", "kg"),
    352: ("totalAppliedMass", "kg"),
    82: ("totalAppliedCount", "count"),  # seeds for a planter
    117: ("totalDistance", "m"),
    148: ("totalFuelUsed", "L"),
    119: ("totalEffectiveTime", "s"),
}
# Counters that show whether the TIMs accumulate (never decrease) or restart.
_COUNTERS = frozenset(TOTALS) | {118, 120}
# Totals that add up over elements that are not nested (one per product bin).
_ADDITIVE = frozenset({80, 81, 82, 351, 352})


def _cumulative(effective: list[TimeElement]) -> bool:
    """False when some counter decreases from one effective TIM to the next (a writer that restarts)."""
    last: dict[tuple[int, str], int] = {}
    for tim in effective:
        for key, value in tim.values.items():
            if key[0] in _COUNTERS:
                if key in last and value < last[key]:
                    return False
                last[key] = value
    return True


def _task_values(effective: list[TimeElement], cumulative: bool) -> dict[tuple[int, str], int]:
    values: dict[tuple[int, str], int] = {}
    for tim in effective:
        for key, value in tim.values.items():
            values[key] = value if cumulative else values.get(key, 0) + value
    return values


def _outermost(data: TaskData, elements: list[str]) -> list[str]:
    """Elements none of whose ancestors is in the list: a total on a parent already holds its children's."""
    chosen = set(elements)
    return [e for e in elements if not any(a.id in chosen for a in data.ancestors(e))]


def _scaled(number: int, raw: float, unit: str) -> float:
    entry = dd.DDIS[number]
    value = raw * entry.resolution
    if entry.unit in ("#", unit):
        return float(value)
    return float(convert(value, entry.unit, unit))


def _designator(data: TaskData, number: int, element: str) -> str:
    device = data.device_of(element)
    if device is None:
        return ""
    return next((name for ddi_number, name in device.dpd.values() if ddi_number == number), "")


def _changed(previous: dict[tuple[int, str], int], tim: TimeElement, cumulative: bool) -> list[int]:
    """Standard total DDIs whose value this TIM changed."""
    return sorted({k[0] for k, v in tim.values.items() if k[0] in TOTALS
                   and (v != previous.get(k, 0) if cumulative else v != 0)})


def _completeness(data: TaskData, task: Task, effective: list[TimeElement], cumulative: bool) -> tuple[bool, list[str]]:
    """Whether the task's logs hold everything its totals count, and why not."""
    status = {name: time_log_state(data, name).status for name in task.time_logs}
    short = [name for name, state in status.items() if state != "ok"]
    if not short:
        return True, []
    if len(effective) != len(task.time_logs):
        return False, [f"time logs {', '.join(f'{n} ({status[n]})' for n in short)} are not all readable and the "
                       f"{len(effective)} effective TIMs cannot be paired with the {len(task.time_logs)} logs"]
    notes: list[str] = []
    complete = True
    previous: dict[tuple[int, str], int] = {}
    for name, tim in zip(task.time_logs, effective):
        changed = _changed(previous, tim, cumulative)
        if status[name] != "ok":
            what = "binary is missing" if status[name] == "missing" else "binary is empty (0 bytes)"
            if changed:
                complete = False
                notes.append(f"{name}: {what} while its TIM changed "
                             f"{', '.join(f'0x{n:04X} {dd.DDIS[n].name}' for n in changed)}: the logs miss part of the task")
            else:
                notes.append(f"{name}: {what}; its TIM changed no task total")
        previous.update(tim.values)
    return complete, notes


def terminal_totals(data: TaskData, task: Task) -> dict[str, Any] | None:
    """The task's totals as the terminal recorded them, in SI/Leaf units; None when it recorded none."""
    elements = task.time_elements
    effective = [t for t in elements if t.type == EFFECTIVE]  # one per time log, some without values
    if not any(t.values for t in effective):
        return None
    cumulative = _cumulative(effective)
    values = _task_values(effective, cumulative)
    if sum(1 for t in effective if t.values) == 1:
        notes = ["one effective TIM holds the task totals"]
    elif cumulative:
        notes = [f"{len(effective)} effective TIMs hold running task totals: the last value of each is the task's"]
    else:
        notes = [f"{len(effective)} effective TIMs restart their counters (a total decreases between TIMs): summed"]
    planned = sum(1 for t in elements if t.type == PLANNED)
    if planned:
        notes.append(f"{planned} planned TIMs (D=1) ignored")
    totals: dict[str, dict[str, Any]] = {}
    by_ddi: dict[int, list[str]] = {}
    for number, element in values:
        by_ddi.setdefault(number, []).append(element)
    for number in sorted(by_ddi):
        if number not in TOTALS or number not in dd.DDIS:
            continue
        key, unit = TOTALS[number]
        if key in totals:  # 351/352 are 80/81 at a finer resolution: the same quantity, counted once
            notes.append(f"0x{number:04X} {dd.DDIS[number].name} repeats {key} (from {totals[key]['ddi'][0]}): not added")
            continue
        used = _outermost(data, by_ddi[number])
        scaled = {e: _scaled(number, values[(number, e)], unit) for e in used}
        if number not in _ADDITIVE and len(used) > 1:
            used = [max(used, key=lambda e: scaled[e])]
            notes.append(f"0x{number:04X} {dd.DDIS[number].name} is given by {len(scaled)} unrelated elements "
                         f"({', '.join(f'{e}: {v:g}' for e, v in scaled.items())}): the largest is taken")
        value = sum(scaled[e] for e in used)
        entry = totals.setdefault(key, {"value": 0.0, "unit": unit, "ddi": [], "elements": []})
        entry["value"] += value
        entry["ddi"].append(f"0x{number:04X}")
        entry["elements"] += [e for e in used if e not in entry["elements"]]
    proprietary = [{"ddi": f"0x{number:04X}", "element": element, "raw": value,
                    "designator": _designator(data, number, element)}
                   for (number, element), value in sorted(values.items()) if number >= dd.FIRST_PROPRIETARY]
    if proprietary:
        notes.append(f"{len(proprietary)} proprietary totals (0xE000-0xFFFE) kept raw and not compared: their unit and "
                     "meaning are the manufacturer's")
    complete, log_notes = _completeness(data, task, effective, cumulative)
    if not totals and not proprietary:
        return None
    return {"source": "ISOXML TIM", "task": task.label, "totals": totals, "proprietary": proprietary,
            "complete": complete, "notes": notes + log_notes}


__all__ = ["TOTALS", "TimeElement", "terminal_totals"]
