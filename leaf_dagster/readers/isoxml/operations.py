"""Operation type per device element, and so per task (isoxml.md section 5).

One implement can do two jobs at once (a planter that also places fertilizer, an air cart with a seed and
a fertilizer tank), so the operation type is decided per device element that logs a rate, and a task
yields one machine file per operation type it contains. Evidence, strongest first:

1. DDI 179 Actual Cultural Practice, as a DPT of the element or an ancestor, or logged for it;
2. the DDIs the element logs (yield -> harvested, seeding depth/singulation -> planted, volume rates ->
   applied, tillage depth -> tillage, count rates -> planted unless the device is a sprayer/spreader,
   mass rates -> planted on a seeder that has no count-rate element, else applied);
3. the device class of the client NAME, which alone is unreliable (a real forage harvester says class 0;
   KRONE balers, rakes and mowers say class 9, the ISO 11783 "forage" class).

A baler logs yield totals (mass, bale count) but is no harvest: its bale DDIs name it "baling". A machine
that logs no rate and no practice (an anonymised mower) is named from its designators when they say what
it is ("Grossmaeher"), and the evidence says that this is a name.

A task whose elements log no rate at all is a tractor or data-collection log: its type is reported as
"datacollection" (or the unsupported practice DDI 179 names, e.g. "baling") so the pipeline can say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import ddi as dd
from .taskdata import TaskData
from .tlg import TlgHeader

SUPPORTED = ("harvested", "planted", "applied", "tillage")


@dataclass
class OperationGroup:
    """The elements of one task that do one operation, best rate source first."""

    operation: str
    elements: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


def logged_ddis(headers: Iterable[TlgHeader]) -> dict[str, set[int]]:
    """DDIs each element logs in the task's time logs (measurement DDIs only, not 0xDFFE/0xDFFF)."""
    found: dict[str, set[int]] = {}
    for header in headers:
        for spec in header.dlvs:
            if spec.ddi < dd.PGN_BASED_DATA:
                found.setdefault(spec.element, set()).add(spec.ddi)
    return found


def practice_of(data: TaskData, element_id: str, logged_practice: dict[str, int]) -> int | None:
    """DDI 179 for the element: logged or fixed in a time log, else a DPT of the element or its ancestors."""
    chain = [element_id] + [e.id for e in data.ancestors(element_id)]
    for candidate in chain:
        if candidate in logged_practice:
            return logged_practice[candidate]
        element = data.elements.get(candidate)
        device = data.devices.get(element.device) if element else None
        if element is not None and device is not None:
            value = device.constants(element).get(179)
            if value is not None:
                return value
    return None


def _by_ddis(ddis: set[int], device_class: int | None, seeder_has_count_rate: bool) -> tuple[str | None, str]:
    if ddis & dd.HARVEST_DDIS:
        return "harvested", f"yield DDIs {sorted(ddis & dd.HARVEST_DDIS)}"
    if ddis & dd.PLANTING_ONLY_DDIS:
        return "planted", f"seeding DDIs {sorted(ddis & dd.PLANTING_ONLY_DDIS)}"
    volume = ddis & {1, 2, 588, 589, 36, 37}
    if volume:
        return "applied", f"volume rate DDIs {sorted(volume)}"
    if ddis & dd.COUNT_RATE_DDIS:
        if device_class in (5, 6, 10, 25):
            return "applied", f"count rate on a device of class {device_class}"
        return "planted", f"count rate DDIs {sorted(ddis & dd.COUNT_RATE_DDIS)}"
    mass = ddis & {6, 7, 41, 42}
    if mass:
        if device_class == 4 and not seeder_has_count_rate:
            return "planted", f"mass rate DDIs {sorted(mass)} on a planter/seeder"
        return "applied", f"mass rate DDIs {sorted(mass)}"
    if ddis & dd.APPLICATION_DDIS:
        return "applied", f"application DDIs {sorted(ddis & dd.APPLICATION_DDIS)}"
    if ddis & dd.TILLAGE_DDIS:
        return "tillage", f"tillage DDIs {sorted(ddis & dd.TILLAGE_DDIS)}"
    # application totals alone (no rate logged): weaker, but still what the element does
    if ddis & {80, 351}:
        return "applied", f"application total volume DDIs {sorted(ddis & {80, 351})}"
    if ddis & {82}:
        if device_class in (5, 6, 10, 25):
            return "applied", f"application total count on a device of class {device_class}"
        return "planted", "application total count DDI 82"
    if ddis & {81, 352}:
        if device_class == 4 and not seeder_has_count_rate:
            return "planted", "application total mass on a planter/seeder"
        return "applied", f"application total mass DDIs {sorted(ddis & {81, 352})}"
    return None, ""


RATE_EVIDENCE = dd.HARVEST_DDIS | dd.PLANTING_ONLY_DDIS | dd.COUNT_RATE_DDIS | dd.APPLICATION_DDIS | dd.TILLAGE_DDIS \
    | dd.APPLICATION_TOTAL_DDIS


def classify(data: TaskData, headers: list[TlgHeader], logged_practice: dict[str, int] | None = None) -> list[OperationGroup]:
    """Operation groups of one task's time logs. Always returns at least one group; a task without any
    supported operation gets one group whose `operation` names what it is instead."""
    logged_practice = logged_practice or {}
    ddis = logged_ddis(headers)
    order = {element: i for i, element in enumerate(ddis)}
    count_rate_devices = {data.elements[e].device for e, d in ddis.items() if d & (dd.COUNT_RATE_DDIS | {82})
                          and e in data.elements}
    groups: dict[str, OperationGroup] = {}
    unsupported: list[tuple[str, str]] = []
    for element_id, logged in ddis.items():
        device = data.device_of(element_id)
        device_class = device.device_class if device else None
        practice = practice_of(data, element_id, logged_practice)
        rate_ddis = logged & RATE_EVIDENCE
        operation, evidence = None, ""
        if practice in dd.PRACTICE_OPERATION and rate_ddis:
            operation = dd.PRACTICE_OPERATION[practice]
            evidence = f"DDI 179 cultural practice {practice} ({dd.CULTURAL_PRACTICES[practice]})"
        elif practice is not None and practice in dd.CULTURAL_PRACTICES and practice not in (0,) \
                and practice not in dd.PRACTICE_OPERATION:
            unsupported.append((dd.CULTURAL_PRACTICES[practice], f"DDI 179 cultural practice {practice}"))
            continue
        elif logged & dd.BALE_DDIS:
            unsupported.append(("baling", f"bale DDIs {sorted(logged & dd.BALE_DDIS)} on {element_id} (a baler's "
                                          "yield totals count bales, not a harvest)"))
            continue
        elif rate_ddis:
            operation, evidence = _by_ddis(logged, device_class, device is not None and device.id in count_rate_devices)
            if operation is None and device_class in dd.CLASS_OPERATION:
                operation = dd.CLASS_OPERATION[device_class]
                evidence = f"device class {device_class} ({dd.DEVICE_CLASS_NAMES[device_class]})"
        if operation is None:
            continue
        group = groups.setdefault(operation, OperationGroup(operation))
        group.elements.append(element_id)
        label = data.elements[element_id].designator if element_id in data.elements else element_id
        group.evidence.append(f"{element_id} ({label or 'unnamed'}): {evidence}")
    for group in groups.values():
        group.elements.sort(key=lambda e: (data.depth(e), order[e]))
    if groups:
        return [groups[op] for op in SUPPORTED if op in groups]
    if unsupported:
        name, evidence = unsupported[0]
        return [OperationGroup(name, [], [evidence])]
    named = _named_machine(data, ddis)
    if named:
        return [OperationGroup(named[0], [], [named[1]])]
    if any(logged & RATE_EVIDENCE for logged in ddis.values()):
        return [OperationGroup("unknown", [], ["rate DDIs whose operation could not be told"])]
    logged_any = sorted({d for logged in ddis.values() for d in logged})
    return [OperationGroup("datacollection", [], [f"no rate DDIs; the log holds only DDIs {logged_any}"
                                                  if logged_any else "the log holds no process data"])]


# Machines that log no rate and no cultural practice, told by what their maker calls them (device or element
# designators, in the languages terminals write): weaker evidence, used only when nothing else names the work.
_MACHINE_NAMES = (
    ("baling", re.compile(r"baler|ballenpresse|rundballen|quaderballen|presse\b|pressa|balle", re.IGNORECASE)),
    ("mowing", re.compile(r"m(ä|ae)h|mower|faucheuse|slåtter|slatter", re.IGNORECASE)),
    ("tedding", re.compile(r"wender|kreiselheuer|tedder|faneuse", re.IGNORECASE)),
    ("raking", re.compile(r"schwader|\brake\b|r[aâ]teau|andaineur", re.IGNORECASE)),
)


def _named_machine(data: TaskData, ddis: dict[str, set[int]]) -> tuple[str, str] | None:
    """(operation, evidence) from the designators of the devices the task logs, when exactly one kind matches."""
    devices = {data.elements[e].device for e in ddis if e in data.elements}
    found: dict[str, str] = {}
    for device_id in sorted(devices):
        device = data.devices[device_id]
        for text in [device.designator] + [e.designator for e in device.elements.values()]:
            for operation, pattern in _MACHINE_NAMES:
                if text and pattern.search(text):
                    found.setdefault(operation, f"{device_id} is named {device.designator.strip()!r}"
                                     + (f" (element {text.strip()!r})" if text != device.designator else "")
                                     + f": a {operation} machine; it logs no rate and no cultural practice")
    return next(iter(found.items())) if len(found) == 1 else None
