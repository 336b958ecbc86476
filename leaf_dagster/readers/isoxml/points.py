"""One task x operation type of a TaskData as a table of points with Leaf standard property names.

Rows are TLG records (several time logs of a task concatenated in time order; logs that repeat the same
records with other DLVs, because a header addresses at most 256 DLVs, are joined side by side). Columns
come from the DLVs of the operation's device elements, forward-filled, scaled by DDI resolution and
converted to Leaf units; cumulative totals become per-record differences. Each property is read at the level
of the device-element tree it belongs to (see `elements`): the machine's work state or its sections', the
widths of the sections that are on, the rates of the bins with their products.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ...errors import ReaderError
from ...model import WGS84
from ...standard import crops
from . import clock, positions
from . import ddi as dd
from .elements import BIN, CONDENSED_WORK_STATES, WIDTH_DDIS, WORKING_KINDS, Elements, any_on, condensed_states
from .operations import SUPPORTED, OperationGroup
from .scaling import MOISTURE_RANGE, scale_choice
from .taskdata import Device, Presentation, Task, TaskData
from .tlg import TlgData

# ISO 11783 manufacturer codes of the client NAME we can name; the SOURCE notes of our real sets name
# these two (Krone 111, CNH 94); anything else is reported as "unknown".
MANUFACTURERS = {94: "CNH Industrial", 111: "Krone"}
MAX_FLOW_INTERVAL_S = 10.0  # a longer gap between records is a pause, not grain flowing all along
RATE_SCALE_BAND = 1.25  # how far a rate rescaled by a power of ten may stay from the machine's own count
RATE_SCALE_COVERAGE = 0.9  # share of the worked area the application counter must span to judge the rate by it
RATE_SCALE_POWERS = (1, 2)  # rate resolutions slipped by a writer: raw steps 10 or 100 times the dictionary's


@dataclass
class Stream:
    """Records logged together: one time log, or several that repeat the same records side by side.

    Only the records with a usable fix (`keep`) are shown: columns are forward-filled over all records first,
    so a value logged on a dropped record still holds for the records after it."""

    logs: list[TlgData]
    times: np.ndarray  # datetime64[ms] of the kept records, NaT where unknown
    notes: list[str]  # which clock dates the records, which records were dropped
    keep: np.ndarray  # per logged record: shown (has a usable fix)

    @property
    def count(self) -> int:
        return int(self.keep.sum())

    def locate(self, element: str, ddi: int) -> tuple[TlgData, int] | None:
        for log in self.logs:
            for spec in log.header.dlvs:
                if spec.element == element and spec.ddi == ddi:
                    return log, spec.index
        return None

    def column(self, element: str, ddi: int, fill: bool = True) -> np.ndarray:
        found = self.locate(element, ddi)
        if found is None:
            return np.full(self.count, np.nan)
        log, index = found
        filled = log.column(index)[self.keep]
        if fill:
            return filled
        # unfilled: a kept record shows a value where one was logged since the previous kept record
        logged = np.cumsum(~np.isnan(log.column(index, fill=False)))[self.keep]
        return np.where(np.diff(logged, prepend=0) > 0, filled, np.nan)

    def first_ptn(self, name: str) -> np.ndarray | None:
        """PTN field `name` of the kept records, from the first of the stream's logs that has it."""
        for log in self.logs:
            values = log.ptn_values(name)
            if values is not None:
                return values.astype(np.float64)[self.keep]
        return None


def streams_of(logs: list[TlgData], task: Task) -> list[Stream]:
    """Group time logs that repeat the same records (same times), keep the records with a usable fix, and
    order the groups in time."""
    streams: list[Stream] = []
    for log in logs:
        times, note = clock.record_times(log, task)
        for stream in streams:
            if stream.count == log.count and log.count and np.array_equal(stream.times, times, equal_nan=True):
                stream.logs.append(log)
                break
        else:
            streams.append(Stream([log], times, [note], np.ones(log.count, dtype=bool)))
    for stream in streams:
        north, east = stream.first_ptn("north"), stream.first_ptn("east")
        if north is not None and east is not None:
            name = ", ".join(log.header.name for log in stream.logs)
            stream.keep, fix_notes = positions.usable_fixes(north, east, stream.first_ptn("status"), name)
            stream.times = stream.times[stream.keep]
            stream.notes += fix_notes

    def first(stream: Stream) -> np.datetime64:
        valid = stream.times[~np.isnat(stream.times)]
        return valid.min() if len(valid) else np.datetime64("9999-01-01", "ms")

    return sorted(streams, key=first)


def _milliseconds(times: np.ndarray) -> np.ndarray:
    """datetime64 as float milliseconds, NaN where unknown."""
    ms = times.astype("datetime64[ms]").astype(np.int64).astype(float)
    ms[np.isnat(times)] = np.nan
    return ms


def spread_counter(counter: np.ndarray, steps: np.ndarray, outside: float = 1000.0) -> np.ndarray:
    """Per-record increments of a sparsely logged counter (raw, NaN where not logged): distance or yield mass.

    Totals are often logged every few seconds while positions come every record; giving each increase to
    the one record that carries it would leave most points with no distance (and so no area). Each increase
    is spread over the records since the counter's previous value in proportion to `steps` (metres between
    fixes); a span without movement puts it on its last record. The sum is the counter's last minus first;
    a drop (reset) adds nothing. Records before the first or after the last value get `steps` x `outside`
    (for a distance counter in mm, the metres between fixes x 1000; for a mass, nothing)."""
    out = steps * outside
    logged = np.flatnonzero(~np.isnan(counter))
    if len(logged) < 2:
        return out
    values = counter[logged]
    increments = np.diff(values)
    increments[increments < 0] = 0.0
    inside = np.arange(logged[0] + 1, logged[-1] + 1)
    segment = np.searchsorted(logged, inside, side="left") - 1
    weight = steps[inside]
    totals = np.bincount(segment, weights=weight, minlength=len(increments))
    share = np.where(totals[segment] > 0, weight / np.where(totals[segment] > 0, totals[segment], 1.0), 0.0)
    out[logged[0]] = 0.0
    out[inside] = share * increments[segment]
    still = totals <= 0
    if still.any():
        out[logged[1:][still]] = increments[still]
    return out


def ground_records(ms: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per time: the last record (of the ascending record times `ms`) at or before it; -1 where the time lies
    before the first record or after the last, ground the log never reached (a latency moves values there
    from the log's ends: they belong to no record, rather than to the first or last one)."""
    index = np.searchsorted(ms, times, side="right") - 1
    index[(times < ms[0]) | (times > ms[-1])] = -1
    return index


def moved_counter(counter: np.ndarray, ms: np.ndarray, latency: float) -> np.ndarray:
    """A counter's logged values (NaN elsewhere) put on the records of the ground they measured: a value logged
    at t belongs to t + latency (DDI 143), the last record at or before it. Where several land on one record
    the last one holds: a counter counts on, so no increase between them is lost. A value whose ground lies
    outside the log is dropped: what it counted was measured for no record of the log."""
    logged = np.flatnonzero(~np.isnan(counter))
    out = np.full(len(counter), np.nan)
    target = ground_records(ms, ms[logged] + latency)
    inside = target >= 0
    target, values = target[inside], counter[logged][inside]
    if not len(target):
        return out
    last = np.r_[target[1:] != target[:-1], True]  # targets ascend: the last value per record
    out[target[last]] = values[last]
    return out


@dataclass
class Builder:
    """Chooses which element's DLV feeds each property and assembles the columns over all streams."""

    data: TaskData
    task: Task
    group: OperationGroup
    streams: list[Stream]
    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    ddis: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    contributors: list[str] = field(default_factory=list)  # elements whose values made it into a column
    bin_rates: dict[str, list[np.ndarray]] = field(default_factory=dict)  # bin -> actual rate per stream
    latencies: list[float] = field(default_factory=list)  # per stream: actual value latency (DDI 143, ms) applied
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.available: set[tuple[str, int]] = {(s.element, s.ddi) for st in self.streams for log in st.logs
                                                for s in log.header.dlvs}
        logged_elements = list(dict.fromkeys(s.element for st in self.streams for log in st.logs
                                             for s in log.header.dlvs))
        near = list(self.group.elements)
        for element in self.group.elements:
            near += [a.id for a in self.data.ancestors(element)]
        devices = {self.data.elements[e].device for e in self.group.elements if e in self.data.elements}
        same_device = sorted((e for e in logged_elements if e in self.data.elements
                              and self.data.elements[e].device in devices), key=self.data.depth)

        def tractor_first(element: str) -> tuple[int, int]:
            device = self.data.device_of(element)
            return 0 if device is not None and device.device_class == 1 else 1, self.data.depth(element)

        others = sorted((e for e in logged_elements if e not in same_device), key=tractor_first)
        self.near = list(dict.fromkeys(near + same_device + others))
        self.tree = Elements(self.data)
        self.states = self.section_states()

    def _pick(self, targets: list[dd.Target], elements: list[str], exclude_types: tuple[int, ...] = ()) -> tuple[str, dd.Target] | None:
        for target in targets:
            for element in elements:
                det = self.data.elements.get(element)
                if det is not None and det.type in exclude_types:
                    continue
                if (element, target.ddi) in self.available:
                    return element, target
        return None

    def _put(self, name: str, per_stream: list[np.ndarray], unit: str | None, ddi: int | None, source: str,
             elements: tuple[str, ...] | list[str] = ()) -> None:
        self.columns[name] = per_stream
        self.contributors.extend(elements)
        if unit:
            self.units[name] = unit
        if ddi is not None:
            self.ddis[name] = ddi
        self.sources[name] = source

    def _label(self, element: str) -> str:
        det = self.data.elements.get(element)
        return f"{element} ({det.designator})" if det and det.designator else element

    def value(self, name: str, targets: list[dd.Target], elements: list[str], exclude_types: tuple[int, ...] = ()) -> dd.Target | None:
        picked = self._pick(targets, elements, exclude_types)
        if picked is None:
            return None
        element, target = picked
        self._put(name, [s.column(element, target.ddi) * target.factor for s in self.streams], target.unit, target.ddi,
                  f"DDI {target.ddi} of {self._label(element)}", (element,))
        return target

    def averaged(self, name: str, targets: list[dd.Target]) -> None:
        primary = self.group.elements[0]
        for target in targets:
            if (primary, target.ddi) in self.available:
                self.value(name, [target], [primary])
                return
            loggers = [e for e in self.group.elements if (e, target.ddi) in self.available]
            if loggers:
                per_stream = []
                for stream in self.streams:
                    stack = np.vstack([stream.column(e, target.ddi) for e in loggers])
                    with np.errstate(all="ignore"), _quiet():
                        per_stream.append(np.nanmean(stack, axis=0) * target.factor)
                self._put(name, per_stream, target.unit, target.ddi,
                          f"mean of DDI {target.ddi} over {len(loggers)} elements (rows/sections)", loggers)
                return

    def total(self, name: str, targets: list[dd.Target], elements: list[str]) -> bool:
        """Per-record differences of a cumulative counter (within each stream; a drop is a reset: no value)."""
        picked = self._pick(targets, elements)
        if picked is None:
            return False
        element, target = picked
        per_stream = [self._diff(s.column(element, target.ddi)) * target.factor for s in self.streams]
        self._put(name, per_stream, target.unit, target.ddi,
                  f"differences of total DDI {target.ddi} of {self._label(element)}", (element,))
        return True

    def _diff(self, counter: np.ndarray) -> np.ndarray:
        out = np.zeros(len(counter))
        if len(counter) > 1:
            step = np.diff(counter)
            step = np.where(np.isnan(step), 0.0, step)
            out[1:] = step
        resets = out < 0
        if resets.any():
            out[resets] = np.nan
            self.notes.append(f"a total counter dropped {int(resets.sum())} times (reset): those records have no difference")
        return out

    def constant_width(self) -> None:
        """Working width from a DPT (a device constant) when no DLV logs it."""
        for target in dd.COMMON_TARGETS["equipmentWidth"]:
            for element in self.near:
                det = self.data.elements.get(element)
                device = self.data.devices.get(det.device) if det else None
                if det is None or device is None or det.type in (4, 5):
                    continue
                value = device.constants(det).get(target.ddi)
                if value is not None and value > 0:
                    self._put("equipmentWidth", [np.full(s.count, value * target.factor) for s in self.streams],
                              target.unit, target.ddi, f"constant DDI {target.ddi} (DPT) of {self._label(element)}",
                              (element,))
                    return

    # ---------------------------------------------------------------- the machine, read level by level

    @property
    def machine_devices(self) -> list[str]:
        """Devices doing the operation (the first logging element's device when there is no operation group)."""
        ids = [self.data.elements[e].device for e in self.group.elements if e in self.data.elements]
        if not ids:
            ids = [self.data.elements[e].device for e in self.near if e in self.data.elements][:1]
        return list(dict.fromkeys(ids))

    def section_states(self) -> dict[str, list[np.ndarray]]:
        """On/off (1/0/NaN) per record of every section or unit of the machine whose state is logged: its own
        DDI 141, else its slot in a condensed work state (DDI 161-176) logged by its parent."""
        states: dict[str, list[np.ndarray]] = {}
        tree = self.tree
        for device in self.machine_devices:
            for element_id in self.data.devices[device].elements:
                if tree.kind(element_id) not in WORKING_KINDS:
                    continue
                if (element_id, 141) in self.available:
                    states[element_id] = [s.column(element_id, 141) for s in self.streams]
            for parent_id in self.data.devices[device].elements:
                children = [c for c in tree.children(parent_id) if c.type in WORKING_KINDS]
                for ddi in CONDENSED_WORK_STATES:
                    if (parent_id, ddi) not in self.available:
                        continue
                    first = 16 * (ddi - CONDENSED_WORK_STATES[0])
                    slots = children[first:first + 16]
                    decoded = [condensed_states(s.column(parent_id, ddi), len(slots)) for s in self.streams]
                    for position, child in enumerate(slots):
                        if child.id not in states:
                            states[child.id] = [per_stream[position] for per_stream in decoded]
        return states

    def work_state(self) -> None:
        """recordingStatus: the machine-level DDI 141 where the machine logs one, else "any section on"."""
        machine = [e for e in self.near if (e, 141) in self.available and self.tree.kind(e) not in WORKING_KINDS
                   and self.data.elements.get(e) is not None and self.data.elements[e].device in self.machine_devices]
        if machine:
            element = machine[0]
            parts = [s.column(element, 141) for s in self.streams]
            source = f"DDI 141 of {self._label(element)}"
        elif self.states:
            parts = [any_on([self.states[e][i] for e in self.states]) for i in range(len(self.streams))]
            source = f"any of {len(self.states)} sections on (their own work states; the machine logs none)"
        else:
            other = self._pick([dd.Target(141, "", 1.0)], self.near)
            if other is None:
                self.notes.append("no work state (DDI 141) is logged by any element: every record is kept as "
                                  "a working record")
                return
            element = other[0]
            parts = [s.column(element, 141) for s in self.streams]
            source = f"DDI 141 of {self._label(element)}"
        self._put("recordingStatus", [_on_off(p) for p in parts], None, 141, source)

    def section_width(self) -> bool:
        """equipmentWidth as the summed width of the sections that are on (logged DDI 67, else their DPT)."""
        widths: dict[str, list[np.ndarray] | float] = {}  # logged per record, or a constant
        for element_id in self.states:
            if (element_id, 67) in self.available:
                widths[element_id] = [np.nan_to_num(s.column(element_id, 67)) for s in self.streams]
                continue
            constant = next((self.tree.constant(element_id, d) for d in WIDTH_DDIS
                             if self.tree.constant(element_id, d)), None)
            if constant:
                widths[element_id] = float(constant)
        if not widths or len(widths) < len(self.states):
            return False
        parts = []
        for i, stream in enumerate(self.streams):
            total, known = np.zeros(stream.count), np.zeros(stream.count, dtype=bool)
            for element_id, width in widths.items():  # one pass per section: no (sections x records) copies
                state = self.states[element_id][i]
                total += (state == 1) * (width if isinstance(width, float) else width[i])
                known |= ~np.isnan(state)
            parts.append(np.where(known, total * 1e-3, np.nan))
        self._put("equipmentWidth", parts, "m", 67, f"sum of the widths of the sections that are on ({len(widths)} "
                  "sections)", list(widths))
        return True

    def counter_distance(self, steps: list[np.ndarray]) -> bool:
        """distance from the total distance counters (DDI 117, + 118 when logged), when they agree with the
        positions: a counter that holds something else (a time, a lifetime total) is noted and not used."""
        effective = self._pick([dd.Target(117, "m", 1e-3)], self.near)
        if effective is None:
            return False
        element = effective[0]
        both = (element, 118) in self.available
        counters = []
        for stream in self.streams:
            counter = stream.column(element, 117, fill=False)
            if both:
                other = stream.column(element, 118, fill=False)
                counter = np.nan_to_num(stream.column(element, 117)) + np.nan_to_num(stream.column(element, 118))
                counter[np.isnan(stream.column(element, 117, fill=False)) & np.isnan(other)] = np.nan
            counters.append(counter)
        counted = sum(float(np.clip(np.diff(c[~np.isnan(c)]), 0, None).sum()) for c in counters) * 1e-3
        working = self.columns.get("recordingStatus")
        if both or working is None:
            moved = sum(float(st.sum()) for st in steps)
        else:
            moved = sum(float(st[w == "On"].sum()) for st, w in zip(steps, working))
        what = f"DDI 117{' + 118' if both else ''} of {self._label(element)}"
        if moved > 100.0 and not 1 / 3 <= counted / moved <= 3:
            self.notes.append(f"{what} counts {counted:,.0f} m where the positions give {moved:,.0f} m "
                              f"({'all travel' if both or working is None else 'while working'}; ratio "
                              f"{counted / moved:.3g}): the counter does not hold a distance, so distances come "
                              "from the positions")
            return False
        self._put("distance", [spread_counter(c, st) * 1e-3 for c, st in zip(counters, steps)], "m", 117, what,
                  (element,))
        self.notes.append("distance from the total distance counters (DDI 117 effective"
                          + (" + 118 ineffective" if both else " only: non-working travel counts 0")
                          + f"; {counted:,.0f} m against {moved:,.0f} m between fixes): each counter increase is "
                            "spread over the records since the previous value, in proportion to the distance "
                            "between their fixes (records outside the counted span use that distance)")
        return True

    def align_yield(self, names: list[str]) -> None:
        """Move the crop measurements to the ground they were measured for, by the latency the machine declares.

        DDI 143 "Physical Actual Value Time Latency" (ms, ISO 11783-11) is the time from the moment an actual
        value is communicated to the moment it is physically applied: negative when the value is measured
        after the fact (a combine's yield sensor sits behind its header: Fendt logs -14999 ms, "Yield
        Delay"), positive when it is communicated ahead (a seed-tube sensor). The dictionary says neither the
        task controller nor the device shifts logged values, so the reader does: the value for a record at
        time t is the one logged at t - latency. The latency is taken where the card declares it: logged or
        fixed in a time log header (its median per stream), else a device property (DPT) of the element."""
        picked = self._pick([dd.Target(143, "ms", 1.0)], self.group.elements + self.near)
        constant: tuple[str, int] | None = None
        if picked is not None:
            element = picked[0]
        else:
            constant = next(((e, v) for e in self.group.elements + self.near
                             if (v := self.tree.constant(e, 143))), None)
            if constant is None:
                return
            element = constant[0]
        declared = f"DDI 143 of {self._label(element)}{' (DPT)' if constant is not None else ''}"
        self.latencies = [0.0] * len(self.streams)
        outside = 0  # records whose values were logged before or after their log
        for i, stream in enumerate(self.streams):
            if constant is not None:
                latency = float(constant[1])
            else:
                logged = stream.column(element, 143, fill=False)
                logged = logged[~np.isnan(logged)]
                latency = float(np.median(logged)) if len(logged) else 0.0
            ms = _milliseconds(stream.times)
            if not latency or not stream.count or not np.isfinite(ms).all():
                continue
            if abs(latency) > ms[-1] - ms[0]:
                self.notes.append(f"the actual value latency {declared} is {latency / 1000:g} s, longer than the "
                                  f"{(ms[-1] - ms[0]) / 1000:g} s the time log {', '.join(log.header.name for log in stream.logs)} "
                                  "spans: no record's crop was measured within the log, so its values are kept "
                                  "where they were logged")
                continue
            source = ground_records(ms, ms - latency)
            outside += int((source < 0).sum())
            for name in names:
                if name in self.columns:
                    self.columns[name][i] = np.where(source >= 0, self.columns[name][i][source], np.nan)
            self.latencies[i] = latency
        shifted = [latency / 1000 for latency in self.latencies if latency]
        if shifted:
            moved = [n for n in names if n in self.columns]
            how = ", ".join(f"{abs(s):g} s {'later' if s < 0 else 'earlier'}" for s in dict.fromkeys(shifted))
            self.notes.append(f"{', '.join(moved)}: each record shows the values logged {how} (actual value latency "
                              f"{declared}: the crop measured for that ground); {outside} records at the ends of "
                              "the logs have none, as their values were logged outside the log")

    def mass_total(self) -> bool:
        """wetMass per record from the yield total counter (DDI 90). The counter is logged every few seconds;
        each increase is spread over the records since its previous value in proportion to the mass flow
        (DDI 87) of each, so every harvesting record carries its share and the sum stays last - first. A
        counter measured with a latency (`align_yield`) is first moved to the ground it measured."""
        picked = self._pick(dd.HARVEST_TOTALS["wetMass"], self.group.elements)
        if picked is None:
            return False
        element, target = picked
        parts = []
        for i, stream in enumerate(self.streams):
            counter = stream.column(element, target.ddi, fill=False)
            if self.latencies and self.latencies[i]:
                counter = moved_counter(counter, _milliseconds(stream.times), self.latencies[i])
            flow = self.columns.get("cropFlow")
            weight = np.nan_to_num(flow[i]) if flow is not None else np.ones(stream.count)
            parts.append(spread_counter(counter, np.clip(weight, 0.0, None), outside=0.0) * target.factor)
        if any(self.latencies):
            self.notes.append(f"wetMass: the values of total DDI {target.ddi} are moved by the same latency to the "
                              "ground they measured before they are spread")
        self._put("wetMass", parts, target.unit, target.ddi, f"total DDI {target.ddi} of {self._label(element)}: each "
                  "increase spread over the records since the previous value in proportion to their mass flow"
                  if "cropFlow" in self.columns else f"total DDI {target.ddi} of {self._label(element)}: each increase "
                  "spread evenly over the records since the previous value", (element,))
        return True

    def mass_from_flow(self) -> bool:
        """wetMass per record from the mass flow (DDI 87, mg/s) times the time to the next record (a pause of more
        than 10 s counts 10 s). Used when no yield total counter (DDI 90) is logged: the flow is what the yield
        monitor measures, and its integral is the machine's own total."""
        picked = self._pick([dd.Target(87, "kg", 1e-6)], self.group.elements)
        if picked is None or "cropFlow" not in self.columns:
            return False
        parts = []
        for stream, flow in zip(self.streams, self.columns["cropFlow"]):
            interval = np.zeros(stream.count)
            if stream.count > 1:
                interval[:-1] = np.clip(np.nan_to_num(np.diff(_milliseconds(stream.times))) * 1e-3, 0.0,
                                        MAX_FLOW_INTERVAL_S)
            parts.append(np.nan_to_num(flow) / 3.6 * interval)  # t/h -> kg/s
        self._put("wetMass", parts, "kg", 87, f"mass flow DDI 87 of {self._label(picked[0])} x time to the next record",
                  (picked[0],))
        return True

    def moisture(self) -> None:
        """harvestMoisture from crop moisture (DDI 99), average crop moisture (262) or 100 - dry matter (314)."""
        for ddi, what in ((99, "crop moisture"), (262, "average crop moisture"), (314, "100 - crop dry matter")):
            picked = self._pick([dd.Target(ddi, "percentage", 1e-4)], self.group.elements + self.near)
            if picked is None:
                continue
            element = picked[0]
            raws = [s.column(element, ddi) for s in self.streams]
            logged = np.concatenate([s.column(element, ddi, fill=False) for s in self.streams])
            logged = logged[~np.isnan(logged)]
            if len(logged) >= 50 and (logged == logged[0]).all():
                self.notes.append(f"DDI {ddi} ({what}) of {self._label(element)} is {logged[0]:g} in all "
                                  f"{len(logged)} logged values: a fixed placeholder, not a measurement, so there "
                                  "is no harvestMoisture")
                return
            factor, note = scale_choice(ddi, logged, self.presentation(element, ddi), MOISTURE_RANGE)
            if note:
                self.notes.append(f"harvestMoisture: {note}")
            parts = [r * factor for r in raws]
            if ddi == 314:
                parts = [100.0 - p for p in parts]
            self._put("harvestMoisture", parts, "percentage", ddi, f"DDI {ddi} ({what}) of {self._label(element)}",
                      (element,))
            return

    def presentation(self, element_id: str, ddi: int) -> Presentation | None:
        element = self.data.elements.get(element_id)
        device = self.data.devices.get(element.device) if element else None
        return device.presentation(element, ddi) if element is not None and device is not None else None

    def rate(self, name: str, targets: list[dd.Target], actual: bool, pair: tuple[str, str]) -> None:
        """A rate where it belongs: summed over the bins that log it (one product each), else the first element."""
        if not actual and self.ddis.get(pair[0]) is not None:
            targets = [t for t in targets if t.ddi == dd.RATE_PAIRS.get(self.ddis[pair[0]])]
        for target in targets:
            bins = [e for e in self.group.elements if self.tree.kind(e) == BIN and (e, target.ddi) in self.available]
            if not bins:
                continue
            per_bin = {e: [s.column(e, target.ddi) * target.factor for s in self.streams] for e in bins}
            parts = []
            for i in range(len(self.streams)):
                stack = np.vstack([per_bin[e][i] for e in bins])
                parts.append(np.where(np.isnan(stack).all(axis=0), np.nan, np.nansum(stack, axis=0)))
            self._put(name, parts, target.unit, target.ddi, f"DDI {target.ddi} summed over {len(bins)} bin"
                      f"{'s' if len(bins) > 1 else ''} ({', '.join(self._label(e) for e in bins)})", bins)
            others = [e for e in self.group.elements if e not in bins and (e, target.ddi) in self.available]
            if others:
                levels = ", ".join(self._label(e) for e in others)
                self.notes.append(f"{name}: the bins' DDI {target.ddi} is used; the same DDI of {levels} (another "
                                  "level of the machine) is not added to it")
            if actual:
                self.bin_rates = per_bin
            return
        self.value(name, targets, self.group.elements)

    def rate_scale(self, name: str) -> None:
        """Check the actual rate against what the machine counted applied, and rescale a rate logged in a unit
        a power of ten off the DDI's.

        A rate integrated over the worked area (width x distance of the records that are on) is the product
        applied; a machine that logs an application total (DDI 80/81/82/351/352) counted the same product.
        Some writers log the rate at another resolution than the data dictionary's (a CNH task controller
        logs DDI 2 in mm3/m2, not 0.01 mm3/m2: its totals say 635 L where the rate in DDI units gives 5.8 L).
        The counter only measures what was applied between its first and last logged value, so the rate is
        integrated over those records alone (a record's distance is the travel that ends on it); a counter
        logged over less than `RATE_SCALE_COVERAGE` of the worked area is too little evidence to rescale the
        whole log. Only `RATE_SCALE_POWERS` are taken for a resolution slip (the rate's raw steps 10 or 100
        times the dictionary's, as the CNH log shows), and only when the two agree within `RATE_SCALE_BAND`
        once it is applied; any other disagreement is noted and the rate kept as logged."""
        unit = self.units.get(name, "")
        counters = dd.APPLICATION_TOTALS.get(unit.split("/")[0], [])
        needed = (name, "equipmentWidth", "distance", "recordingStatus")
        if not counters or not unit.endswith("/ha") or any(n not in self.columns for n in needed):
            return
        machine = [e for e in self.near if e in self.data.elements and self.data.elements[e].device in self.machine_devices]
        picked = self._pick(counters, machine)
        if picked is None:
            return
        target = picked[1]
        loggers = [e for e in machine if (e, target.ddi) in self.available]
        outermost = [e for e in loggers if not any(a.id in loggers for a in self.data.ancestors(e))]
        counted = integrated = spanned = worked = 0.0
        for i, stream in enumerate(self.streams):
            counted_span = np.zeros(stream.count, dtype=bool)  # records whose travel the counters measured
            for element in outermost:
                logged = stream.column(element, target.ddi, fill=False)
                at = np.flatnonzero(~np.isnan(logged))
                if len(at) < 2:
                    continue
                counted += float(np.clip(np.diff(logged[at]), 0, None).sum()) * target.factor
                counted_span[at[0] + 1:at[-1] + 1] = True
            rate, width, distance, state = (self.columns[n][i] for n in needed)
            area = np.nan_to_num(width * distance * (state == "On"))  # m2 per record
            worked += float(area.sum())
            spanned += float(area[counted_span].sum())
            integrated += float(np.nansum(rate * area * counted_span)) * 1e-4  # m2 -> ha
        if counted <= 0 or integrated <= 0:
            return
        power = round(float(np.log10(counted / integrated)))
        if power == 0:
            return
        rest = counted / integrated / 10.0 ** power
        coverage = spanned / worked
        what = (f"{name} integrated over the worked area the counter spans ({coverage:.1%} of it) gives "
                f"{integrated:,.4g} {target.unit} where the machine's total DDI {target.ddi} of "
                f"{', '.join(self._label(e) for e in outermost)} counted {counted:,.4g} {target.unit}")
        if coverage < RATE_SCALE_COVERAGE:
            self.notes.append(f"{what}: a factor {counted / integrated:.3g}, but the counter was logged over less "
                              f"than {RATE_SCALE_COVERAGE:.0%} of the worked area, so the rate is kept as logged")
            return
        if not 1 / RATE_SCALE_BAND <= rest <= RATE_SCALE_BAND:
            self.notes.append(f"{what}: they disagree by a factor {counted / integrated:.3g}, not explained by a "
                              "power of ten, so the rate is kept as logged")
            return
        if power not in RATE_SCALE_POWERS:
            self.notes.append(f"{what}: they differ by a factor {10.0 ** power:g}, not the 10 or 100 times coarser "
                              "raw steps a writer is known to log, so the rate is kept as logged")
            return
        factor = 10.0 ** power
        self.columns[name] = [part * factor for part in self.columns[name]]
        self.bin_rates = {e: [part * factor for part in parts] for e, parts in self.bin_rates.items()}
        self.notes.append(f"{what}: the rate's raw steps are {factor:g} times DDI {self.ddis[name]}'s resolution, so it "
                          f"is multiplied by {factor:g} (then {integrated * factor:,.4g} {target.unit}, {rest:.2f} of "
                          "the count)")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 'mean of empty slice' warning for records no element has logged yet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        yield


def _on_off(state: np.ndarray) -> np.ndarray:
    """A work state (DDI 141) as Leaf's recordingStatus: 'On' for 1, 'Off' for any other value, None where
    nothing was logged."""
    status = np.where(state == 1, "On", "Off").astype(object)
    status[np.isnan(state)] = None
    return status


def _allocation_names(data: TaskData, task: Task, elements: list[str]) -> list[tuple[str, pd.Timestamp | None, pd.Timestamp | None]]:
    """(product name, start, stop) of the PANs that apply to the elements (or to the whole task)."""
    related: set[str] = set(elements)
    for element in elements:
        related |= {a.id for a in data.ancestors(element)}
    related_desc = {e for e in data.elements if any(a.id in set(elements) for a in data.ancestors(e))}
    related |= related_desc
    found = []
    for allocation in task.allocations:
        if allocation.element is not None and allocation.element not in related:
            continue
        if allocation.product not in data.products:
            continue
        name = data.products[allocation.product][0].strip()
        if not name:
            continue
        found.append((name, _timestamp(allocation.start), _timestamp(allocation.stop)))
    return found


def _timestamp(text: str | None) -> pd.Timestamp | None:
    if not text:
        return None
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, OverflowError):
        return None
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def _products(allocations: list[tuple[str, pd.Timestamp | None, pd.Timestamp | None]], times: pd.Series) -> pd.Series:
    """Product per record: the allocation whose window holds the record, else the latest one started before."""
    names = sorted({a[0] for a in allocations})
    if len(names) == 1:
        return pd.Series(names[0], index=times.index, dtype="string")
    out = pd.Series(pd.NA, index=times.index, dtype="string")
    ordered = sorted(allocations, key=lambda a: a[1] or pd.Timestamp.min.tz_localize("UTC"))
    for name, start, _stop in ordered:
        mask = times.notna() if start is None else (times >= start)
        out = out.mask(mask.fillna(False).to_numpy(), name)
    return out.fillna(ordered[0][0])


def _bin_products(data: TaskData, task: Task, rates: dict[str, list[np.ndarray]], times: pd.Series) -> list[str]:
    """Per record, the JSON list of {name, rate} of the bins' products (the bin's PAN product at that time)."""
    names = {}
    for bin_id in rates:
        allocations = _allocation_names(data, task, [bin_id])
        own = [a for a in allocations if any(p.element == bin_id and data.products.get(p.product, ("",))[0].strip() == a[0]
                                             for p in task.allocations)]
        chosen = own or allocations
        names[bin_id] = _products(chosen, times).to_numpy() if chosen else np.full(len(times), bin_id, dtype=object)
    values = {bin_id: np.concatenate(parts) for bin_id, parts in rates.items()}
    out = []
    for i in range(len(times)):
        items = [{"name": str(names[b][i]), "rate": {"value": float(values[b][i])}} for b in rates
                 if np.isfinite(values[b][i])]
        out.append(json.dumps(items))
    return out


def _crop_and_variety(data: TaskData, task: Task, products: list[str]) -> tuple[str | None, str | None, str]:
    """Crop and variety from the field's CTP/CVT, else from a CVT that names the task's product."""
    pfd = data.fields.get(task.field or "", {})
    crop = data.crops.get(pfd.get("G", "")) if pfd.get("G") else None
    variety = None
    if pfd.get("H") and pfd.get("H") in data.varieties:
        variety, crop_ref, _ = data.varieties[pfd["H"]]
        crop = crop or data.crops.get(crop_ref)
    if crop:
        return crop.strip() or None, (variety or "").strip() or None, "the field's crop type (PFD G/H)"
    product_ids = {pid for pid, (name, _) in data.products.items() if name.strip() in products}
    for name, crop_ref, product in data.varieties.values():
        if product in product_ids:
            return (data.crops.get(crop_ref) or "").strip() or None, name.strip() or None, "the crop variety of the product (CVT)"
    if len(data.crops) == 1:
        (only,) = data.crops.values()
        if only.strip():
            return only.strip(), None, "the TaskData's only crop type (CTP)"
    found = ((crops.lookup(word), word) for word in [task.label, *task.label.split()])
    named = {hit.name: word for hit, word in found if hit}
    if len(named) == 1:
        (word,) = named.values()
        return word, None, "the task's name (no crop type is given)"
    return None, None, ""


def _machinery(data: TaskData, devices: list[str], self_propelled: set[str]) -> list[dict[str, Any]]:
    out = []
    for device_id in devices:
        device = data.devices.get(device_id)
        if device is None:
            continue
        manufacturer = device.manufacturer
        out.append({
            "name": device.designator.strip() or device.id,
            "type": "machine" if device.device_class in dd.MACHINE_CLASSES or device.id in self_propelled else "implement",
            "serialNumber": device.serial.strip() or None,
            "brand": MANUFACTURERS.get(manufacturer, "unknown") if manufacturer is not None else "unknown",
            "deviceClass": device.device_class,
            "manufacturerCode": manufacturer,
        })
    return out


def build_points(data: TaskData, task: Task, group: OperationGroup, logs: list[TlgData]) -> tuple[gpd.GeoDataFrame, dict[str, str], dict[str, Any], list[str]]:
    """(frame, units, hints, notes) for one task x operation type."""
    notes: list[str] = []
    streams = streams_of(logs, task)
    joined = [s for s in streams if len(s.logs) > 1]
    for stream in joined:
        notes.append(f"time logs {', '.join(log.header.name for log in stream.logs)} repeat the same {stream.logs[0].count} records "
                     "with different values (a header holds at most 256 DLVs): joined record by record")
    for stream in streams:
        notes += [n for n in stream.notes if n not in notes]
    b = Builder(data, task, group, streams)

    # positions
    lat_parts, lon_parts, up_parts = [], [], []
    for stream in streams:
        north, east = stream.first_ptn("north"), stream.first_ptn("east")
        if north is None or east is None:
            raise ReaderError(stream.logs[0].header.name, "the time log has no positions (PTN A/B absent)")
        lat_parts.append(north * 1e-7)
        lon_parts.append(east * 1e-7)
        up = stream.first_ptn("up")
        if up is not None:
            up_parts.append(up * 1e-3)
    if len(up_parts) == len(streams):
        b._put("elevation", up_parts, "m", None, "PTN C (PositionUp, mm)")
    steps, step_notes = positions.swath_steps(lat_parts, lon_parts)
    notes += step_notes

    # common properties
    b.value("speed", dd.COMMON_TARGETS["speed"], b.near)
    if not b.value("heading", dd.COMMON_TARGETS["heading"], b.near):
        b._put("heading", [positions.headings(la, lo, st) for la, lo, st in zip(lat_parts, lon_parts, steps)], "arcdeg", None,
               "computed from consecutive positions (no yaw angle DDI 144 logged)")
    b.work_state()
    # the machine's own actual width (it knows how its sections overlap), else the sections that are on
    machine = [e for e in b.near if e in data.elements and data.elements[e].device in b.machine_devices]
    if not b.value("equipmentWidth", dd.COMMON_TARGETS["equipmentWidth"][:1], machine, exclude_types=WORKING_KINDS) \
            and not b.section_width() \
            and not b.value("equipmentWidth", dd.COMMON_TARGETS["equipmentWidth"], b.near, exclude_types=WORKING_KINDS):
        b.constant_width()
    if "equipmentWidth" in b.ddis and b.ddis["equipmentWidth"] != 67:
        notes.append(f"working width from DDI {b.ddis['equipmentWidth']} ({dd.DDIS[b.ddis['equipmentWidth']].name}), "
                     "not the actual width DDI 67")
    if not b.counter_distance(steps):
        b._put("distance", steps, "m", None, "great-circle distance between consecutive fixes")
        notes.append("distance computed between consecutive positions (no usable total distance DDI logged)")
    b.total("fuelUsed", dd.TOTAL_TARGETS["fuelUsed"], b.near)

    # operation properties
    operation = group.operation
    targets = dd.OPERATION_TARGETS.get(operation, {})
    rate_names = {"planted": ("seedRate", "seedRateTarget"), "applied": ("appliedRate", "appliedRateTarget")}
    for name, choices in targets.items():
        if name in dd.AVERAGED:
            b.averaged(name, choices)
        elif name == "harvestMoisture":
            b.moisture()
        elif operation in rate_names and name in rate_names[operation]:
            b.rate(name, choices, actual=name == rate_names[operation][0], pair=rate_names[operation])
        else:
            b.value(name, choices, group.elements)
    if operation == "harvested":
        b.align_yield(list(targets))
        if not b.mass_total():
            b.mass_from_flow()
    if operation in rate_names:
        b.rate_scale(rate_names[operation][0])
    if operation in rate_names and rate_names[operation][0] not in b.columns:
        logged_target = rate_names[operation][1] in b.columns
        notes.append(f"no actual rate is logged{' (only the setpoint)' if logged_target else ''}: "
                     f"{rate_names[operation][0]} is missing")

    # assemble
    times = np.concatenate([s.times for s in streams]) if streams else np.empty(0, dtype="datetime64[ms]")
    lat = np.concatenate(lat_parts) if lat_parts else np.empty(0)
    lon = np.concatenate(lon_parts) if lon_parts else np.empty(0)
    frame = pd.DataFrame({"timestamp": pd.to_datetime(times).tz_localize("UTC")})
    for name, parts in b.columns.items():
        values = np.concatenate(parts) if parts else np.empty(0)
        frame[name] = values
    allocations = _allocation_names(data, task, group.elements)
    product_names = sorted({a[0] for a in allocations})
    if allocations:
        frame["product"] = _products(allocations, frame["timestamp"]).to_numpy()
    if b.bin_rates:
        frame["products"] = _bin_products(data, task, b.bin_rates, frame["timestamp"])
        notes.append("products: one per bin from the task's product allocations (PAN) at each record's time; "
                     "appliedRate is their sum")
    crop, variety, crop_source = _crop_and_variety(data, task, product_names)
    if crop:
        frame["crop"] = crop
    if variety:
        frame["variety"] = variety
    if crop:
        notes.append(f"crop '{crop}'{f' and variety {variety!r}' if variety else ''} from {crop_source}")
    for name in list(frame.columns):
        if name != "timestamp" and frame[name].isna().all():
            frame = frame.drop(columns=name)
            b.units.pop(name, None)
            b.ddis.pop(name, None)
    gdf = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon, lat), crs=WGS84)

    # hints
    devices = list(dict.fromkeys([data.elements[e].device for e in group.elements if e in data.elements]
                                 + [data.elements[e].device for e in b.contributors if e in data.elements]))
    # a harvester carries its own header: the device that yields is the machine, whatever its NAME class says
    harvesters = {data.elements[e].device for e in group.elements if e in data.elements} if operation == "harvested" else set()
    tractors = [d.id for d in _task_devices(data, streams) if d.device_class == 1 and d.id not in devices]
    hints: dict[str, Any] = {
        "operation": operation, "crop": crop, "products": product_names,
        "machinery": _machinery(data, devices + tractors, harvesters),
        "ddi": {k: v for k, v in b.ddis.items() if k in gdf.columns},
        "task": task.label, "taskId": task.id,
        "timeLogs": [log.header.name for s in streams for log in s.logs],
        "evidence": group.evidence,
    }
    if len(group.elements) > 1:
        notes.append(f"{len(group.elements)} elements do this operation; rates come from "
                     f"{b._label(group.elements[0])} first")
    for name, source in b.sources.items():
        if name in gdf.columns:
            notes.append(f"{name}: {source}")
    status = gdf["recordingStatus"] if "recordingStatus" in gdf.columns else None
    if operation in SUPPORTED and status is not None and len(gdf) and not (status == "On").any():
        hints["noWork"] = True
        notes.append(f"no work recorded: the work state is never on in {len(gdf)} records (the machine was "
                     "moved or idling), so no point is a working point")
    notes.extend(b.notes)
    units = {k: v for k, v in b.units.items() if k in gdf.columns}
    return gdf, units, hints, list(dict.fromkeys(notes))


def _task_devices(data: TaskData, streams: list[Stream]) -> list[Device]:
    ids = dict.fromkeys(data.elements[s.element].device for st in streams for log in st.logs for s in log.header.dlvs
                        if s.element in data.elements)
    return [data.devices[i] for i in ids if i in data.devices]
