"""The device-element tree of a task: which element is the machine, which are its bins and sections.

A DVC describes a machine as a tree of DETs (ISO 11783-10): the device itself (type 1), functions (2), bins
that hold a product (3), sections (4) and units (5) that work a strip of ground, connectors (6) and the
navigation reference (7). Each property belongs to one level: the machine's work state is logged at
device or function level, or only per section; widths and rates are per section or per bin. `Elements`
answers the questions the point builder asks of that tree, and turns section-level logs into per-record
machine-level values (any section on; the summed width of the sections that are on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .taskdata import DeviceElement, TaskData

BIN, SECTION, UNIT = 3, 4, 5  # DET types (C attribute) the reader treats apart
WORKING_KINDS = (SECTION, UNIT)  # elements that work a strip of ground
CONDENSED_WORK_STATES = range(161, 177)  # DDI 161-176: 2 bits per child section, 16 children each
WIDTH_DDIS = (67, 68, 66, 70)  # actual, default, setpoint, maximum working width (mm)
_STATE_OF_BITS = np.array([0.0, 1.0, np.nan, np.nan])  # condensed state bits: off, on, error, not available


@dataclass
class Elements:
    """Questions about the DET tree of a TaskData (parents are object ids within one DVC)."""

    data: TaskData

    def kind(self, element_id: str) -> int | None:
        element = self.data.elements.get(element_id)
        return element.type if element else None

    def children(self, element_id: str) -> list[DeviceElement]:
        """Direct children in element-number order (the order condensed work states count them in)."""
        element = self.data.elements.get(element_id)
        device = self.data.devices.get(element.device) if element else None
        if element is None or device is None:
            return []
        found = [e for e in device.elements.values()
                 if e.parent_object == element.object_id and e.id != element.id]
        return sorted(found, key=lambda e: (e.number if e.number is not None else 1 << 30, e.object_id or 0))

    def constant(self, element_id: str, ddi: int) -> int | None:
        """A DPT value of the element (a device constant such as a section's width)."""
        element = self.data.elements.get(element_id)
        device = self.data.devices.get(element.device) if element else None
        if element is None or device is None:
            return None
        return device.constants(element).get(ddi)


def condensed_states(raw: np.ndarray, count: int) -> list[np.ndarray]:
    """On (1.0) / off (0.0) / unknown (NaN) of the first `count` children from a condensed work state value:
    two bits per child, the first child in the lowest bits; 0 off, 1 on, 2 error, 3 n/a."""
    value = np.nan_to_num(raw).astype(np.int64) & 0xFFFFFFFF
    missing = np.isnan(raw)
    out = []
    for position in range(count):
        state = _STATE_OF_BITS[value >> (2 * position) & 3]
        state[missing] = np.nan
        out.append(state)
    return out



def any_on(states: list[np.ndarray]) -> np.ndarray:
    """1 where any state is on, 0 where all known ones are off, NaN where none is known yet."""
    on = np.zeros(len(states[0]), dtype=bool)
    known = np.zeros(len(states[0]), dtype=bool)
    for state in states:
        on |= state == 1
        known |= ~np.isnan(state)
    return np.where(on, 1.0, np.where(known, 0.0, np.nan))
