"""TASKDATA.XML (ISO 11783-10, versions 2 to 4) as plain Python objects.

Terminals differ in how they write a TaskData card: file names in any case (`TLG00001.bin` next to
`TASKDATA.XML`), the folder not always named TASKDATA, top-level objects split into external files
(`<XFR A="TSK00000"/>` pointing at `TSK00000.XML` whose root is `XFC`), and a LINKLIST.XML that ties
object ids to UUIDs. `load_taskdata` folds all of that into one `TaskData`; it reads ElementTree only,
and raises ReaderError with the file and reason for anything it cannot use.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ReaderError

ROOT_TAG = "ISO11783_TaskData"
TASKDATA_NAME = "TASKDATA.XML"


def int_attr(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass
class DeviceElement:
    """A DET: one part of a device (device, function, bin, section, unit, connector, navigation)."""

    id: str
    device: str
    object_id: int | None
    type: int | None
    designator: str
    number: int | None
    parent_object: int | None
    refs: list[int] = field(default_factory=list)  # DOR object ids: its DPDs and DPTs


@dataclass(frozen=True)
class Presentation:
    """A DVP: display value = (raw + offset) x scale, shown with `decimals` and the free-text `unit`."""

    offset: int
    scale: float
    decimals: int | None
    unit: str


@dataclass
class Device:
    """A DVC with its elements, process data (DPD), properties (DPT) and value presentations (DVP)."""

    id: str
    designator: str
    client_name: str
    serial: str
    elements: dict[str, DeviceElement] = field(default_factory=dict)
    dpd: dict[int, tuple[int, str]] = field(default_factory=dict)  # object id -> (DDI, designator)
    dpt: dict[int, tuple[int, int, str]] = field(default_factory=dict)  # object id -> (DDI, value, designator)
    dvp: dict[int, Presentation] = field(default_factory=dict)  # object id -> value presentation
    presentation_of: dict[int, int] = field(default_factory=dict)  # DPD/DPT object id -> DVP object id

    @property
    def name_bytes(self) -> bytes | None:
        text = self.client_name.strip()
        if not re.fullmatch(r"[0-9A-Fa-f]{16}", text):
            return None
        return bytes.fromhex(text)

    @property
    def device_class(self) -> int | None:
        """Bits 49-55 of the client NAME (isoxml.md 5.2), for industry group 2 (agriculture)."""
        name = self.name_bytes
        return None if name is None else name[1] >> 1

    @property
    def industry_group(self) -> int | None:
        name = self.name_bytes
        return None if name is None else (name[0] >> 4) & 7

    @property
    def manufacturer(self) -> int | None:
        """Bits 21-31 of the client NAME."""
        name = self.name_bytes
        return None if name is None else (name[4] << 3) | (name[5] >> 5)

    def element_by_object(self, object_id: int | None) -> DeviceElement | None:
        for element in self.elements.values():
            if element.object_id == object_id:
                return element
        return None

    def presentation(self, element: DeviceElement, ddi: int) -> Presentation | None:
        """The DVP of the element's process data (DPD) for `ddi`: how the terminal shows its values."""
        for ref in element.refs:
            if ref in self.dpd and self.dpd[ref][0] == ddi and ref in self.presentation_of:
                return self.dvp.get(self.presentation_of[ref])
        return None

    def constants(self, element: DeviceElement) -> dict[int, int]:
        """DPT values (DDI -> raw value) the element references."""
        return {self.dpt[r][0]: self.dpt[r][1] for r in element.refs if r in self.dpt}


@dataclass
class Allocation:
    """A PAN: product `product` allocated to element `element` (None = the whole task) over a time window."""

    product: str
    element: str | None
    start: str | None
    stop: str | None


@dataclass
class TimeElement:
    """One TIM of a task: its type, span and DLV values (DDI, element) -> raw value (the terminal's totals)."""

    type: int | None
    start: str | None
    stop: str | None
    values: dict[tuple[int, str], int] = field(default_factory=dict)


@dataclass
class Task:
    id: str
    designator: str
    status: int | None
    field: str | None
    customer: str | None
    farm: str | None
    # `dataclasses.field` in full: the attribute `field` above shadows the bare name in this class body
    time_logs: list[str] = dataclasses.field(default_factory=list)
    allocations: list[Allocation] = dataclasses.field(default_factory=list)
    time_elements: list[TimeElement] = dataclasses.field(default_factory=list)  # its TIMs, in document order
    times: list[str] = dataclasses.field(default_factory=list)  # TIM / ASP start and stop texts, for the clock's zone
    devices: list[str] = dataclasses.field(default_factory=list)  # DAN device refs

    @property
    def label(self) -> str:
        return self.designator.strip() or self.id


@dataclass
class TaskData:
    folder: Path
    files: dict[str, Path]  # upper-case file name -> path
    version_major: int | None
    version_minor: int | None
    attributes: dict[str, str]
    tasks: list[Task] = field(default_factory=list)
    devices: dict[str, Device] = field(default_factory=dict)
    elements: dict[str, DeviceElement] = field(default_factory=dict)
    products: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # PDT id -> (name, quantity DDI)
    crops: dict[str, str] = field(default_factory=dict)  # CTP id -> name
    varieties: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)  # CVT id -> (name, CTP, PDT)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)  # PFD id -> attributes
    boundaries: dict[str, list[list[tuple[float, float]]]] = field(default_factory=dict)  # PFD id -> outer rings (lon, lat)
    links: dict[str, str] = field(default_factory=dict)  # object id -> LINKLIST link value
    notes: list[str] = field(default_factory=list)

    def task(self, task_id: str) -> Task | None:
        return next((t for t in self.tasks if t.id == task_id), None)

    def file(self, name: str) -> Path | None:
        return self.files.get(name.upper())

    def device_of(self, element_id: str) -> Device | None:
        element = self.elements.get(element_id)
        return self.devices.get(element.device) if element else None

    def parent(self, element: DeviceElement) -> DeviceElement | None:
        device = self.devices.get(element.device)
        if device is None or element.parent_object is None or element.parent_object == element.object_id:
            return None
        return device.element_by_object(element.parent_object)

    def ancestors(self, element_id: str) -> list[DeviceElement]:
        """The element's parents up to its device root, nearest first."""
        found: list[DeviceElement] = []
        element = self.elements.get(element_id)
        seen = {element_id}
        while element is not None:
            element = self.parent(element)
            if element is None or element.id in seen:
                break
            seen.add(element.id)
            found.append(element)
        return found

    def depth(self, element_id: str) -> int:
        return len(self.ancestors(element_id))


def is_taskdata(path: Path) -> bool:
    """True when `path` is an XML file whose root element is ISO11783_TaskData (the rest may be broken)."""
    try:
        with path.open("rb") as fh:
            for _, element in ET.iterparse(fh, events=("start",)):
                return element.tag == ROOT_TAG
    except (ET.ParseError, OSError, ValueError, RecursionError):
        return False
    return False


def _parse(path: Path, what: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ReaderError(path.name, f"{what} is not valid XML ({exc})") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise ReaderError(path.name, f"{what} cannot be read ({type(exc).__name__}: {exc})") from None


def file_map(primary: Path, members: list[Path] | None = None) -> dict[str, Path]:
    """Upper-case name -> path for the files beside TASKDATA.XML (the detected members when given)."""
    paths = list(members) if members else [p for p in primary.parent.iterdir() if p.is_file()]
    files: dict[str, Path] = {}
    for path in sorted(paths):
        files.setdefault(path.name.upper(), path)
    files.setdefault(TASKDATA_NAME, primary)
    return files


def _device(node: ET.Element) -> Device:
    device = Device(node.get("A", ""), node.get("B", ""), node.get("D", ""), node.get("E", ""))
    for det in node.findall("DET"):
        element = DeviceElement(det.get("A", ""), device.id, int_attr(det.get("B")), int_attr(det.get("C")),
                                det.get("D", "") or "", int_attr(det.get("E")), int_attr(det.get("F")),
                                [r for r in (int_attr(o.get("A")) for o in det.findall("DOR")) if r is not None])
        device.elements[element.id] = element
    for dpd in node.findall("DPD"):
        object_id, ddi = int_attr(dpd.get("A")), hex_attr(dpd.get("B"))
        if object_id is not None and ddi is not None:
            device.dpd[object_id] = (ddi, dpd.get("E", "") or "")
            presentation = int_attr(dpd.get("F"))
            if presentation is not None:
                device.presentation_of[object_id] = presentation
    for dpt in node.findall("DPT"):
        object_id, ddi, value = int_attr(dpt.get("A")), hex_attr(dpt.get("B")), int_attr(dpt.get("C"))
        if object_id is not None and ddi is not None and value is not None:
            device.dpt[object_id] = (ddi, value, dpt.get("D", "") or "")
    for dvp in node.findall("DVP"):
        object_id, offset, scale = int_attr(dvp.get("A")), int_attr(dvp.get("B")), _float(dvp.get("C"))
        if object_id is not None and scale is not None:
            device.dvp[object_id] = Presentation(offset or 0, scale, int_attr(dvp.get("D")), dvp.get("E", "") or "")
    return device


def _float(value: str | None) -> float | None:
    try:
        number = float((value or "").strip())
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def hex_attr(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def _task(node: ET.Element) -> Task:
    task = Task(node.get("A", ""), node.get("B", "") or "", int_attr(node.get("G")), node.get("E"), node.get("C"),
                node.get("D"))
    for tlg in node.findall("TLG"):
        if tlg.get("A"):
            task.time_logs.append(tlg.get("A", ""))
    for tim in node.findall("TIM"):
        task.times += [t for t in (tim.get("A"), tim.get("B")) if t]
        element = TimeElement(int_attr(tim.get("D")), tim.get("A"), tim.get("B"))
        for dlv in tim.findall("DLV"):
            ddi, value = hex_attr(dlv.get("A")), int_attr(dlv.get("B"))
            if ddi is not None and value is not None:
                element.values[(ddi, dlv.get("C") or "")] = value
        task.time_elements.append(element)
    for pan in node.findall("PAN"):
        asp = pan.find("ASP")
        start, stop = (asp.get("A"), asp.get("B")) if asp is not None else (None, None)
        task.times += [t for t in (start, stop) if t]
        task.allocations.append(Allocation(pan.get("A", ""), pan.get("E"), start, stop))
    for dan in node.findall("DAN"):
        if dan.get("C"):
            task.devices.append(dan.get("C", ""))
        for asp in dan.findall("ASP"):
            task.times += [t for t in (asp.get("A"), asp.get("B")) if t]
    return task


def _outer_rings(pfd: ET.Element) -> list[list[tuple[float, float]]]:
    """The exterior rings (LSG type 1) of every polygon (PLN) of a partfield, as (lon, lat) from PNT D / C.

    Every PLN type lies on the field (boundary, headland, obstacle, treatment zone), so each tells where the
    field is; interior rings (holes) do not change that. A ring needs 3 points with usable coordinates."""
    rings = []
    for lsg in pfd.iterfind("PLN/LSG"):
        if (lsg.get("A") or "").strip() != "1":
            continue
        ring = [(lon, lat) for lat, lon in ((_float(p.get("C")), _float(p.get("D"))) for p in lsg.findall("PNT"))
                if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180]
        if len(ring) >= 3:
            rings.append(ring)
    return rings


def load_taskdata(primary: Path, members: list[Path] | None = None) -> TaskData:
    """Read TASKDATA.XML, merge its XFR external files and read LINKLIST.XML."""
    files = file_map(primary, members)
    root = _parse(primary, "TASKDATA.XML")
    if root.tag != ROOT_TAG:
        raise ReaderError(primary.name, f"root element is <{root.tag[:40]}>, not <{ROOT_TAG}>")
    data = TaskData(primary.parent, files, int_attr(root.get("VersionMajor")), int_attr(root.get("VersionMinor")),
                    dict(root.attrib))
    nodes = list(root)
    for xfr in root.findall("XFR"):
        name = (xfr.get("A") or "").strip()
        path = files.get(name.upper() + ".XML")
        if not name or path is None:
            raise ReaderError(primary.name, f"external file {name or '(unnamed)'}.XML named by XFR is missing")
        external = _parse(path, f"external file {path.name}")
        nodes.extend(list(external))
    for node in nodes:
        if node.tag == "DVC":
            device = _device(node)
            data.devices[device.id] = device
            data.elements.update(device.elements)
        elif node.tag == "TSK":
            data.tasks.append(_task(node))
        elif node.tag == "PDT":
            data.products[node.get("A", "")] = (node.get("B", "") or "", hex_attr(node.get("E")))
        elif node.tag == "CTP":
            data.crops[node.get("A", "")] = node.get("B", "") or ""
            for cvt in node.findall("CVT"):
                data.varieties[cvt.get("A", "")] = (cvt.get("B", "") or "", node.get("A", ""), cvt.get("C"))
        elif node.tag == "PFD":
            data.fields[node.get("A", "")] = dict(node.attrib)
            data.boundaries[node.get("A", "")] = _outer_rings(node)
    linklist = files.get("LINKLIST.XML")
    if linklist is not None:
        try:
            links = _parse(linklist, "LINKLIST.XML")
            for lnk in links.iter("LNK"):
                if lnk.get("A") and lnk.get("B"):
                    data.links.setdefault(lnk.get("A", ""), lnk.get("B", ""))
        except ReaderError as exc:
            data.notes.append(f"LINKLIST.XML ignored: {exc.reason}")
    return data


@dataclass(frozen=True)
class TimeLogState:
    """The sizes of a time log's header and binary on the card (None: the file is missing)."""

    header: int | None
    binary: int | None

    @property
    def unwritten(self) -> bool:
        """Header and binary both 0 bytes (or no binary): opened by the terminal, nothing ever written."""
        return self.header == 0 and not self.binary

    @property
    def status(self) -> str:
        """"missing" (header or binary absent), "empty" (a 0-byte binary: no records) or "ok"."""
        if self.header is None or self.binary is None:
            return "missing"
        return "empty" if self.binary == 0 else "ok"


def time_log_state(data: TaskData, name: str) -> TimeLogState:
    """What the card holds of time log `name`: the one place that decides whether a log is there and empty."""
    def size(path: Path | None) -> int | None:
        try:
            return path.stat().st_size if path is not None else None
        except OSError:
            return None

    return TimeLogState(size(data.file(f"{name}.XML")), size(data.file(f"{name}.BIN")))


def time_log_files(data: TaskData, name: str) -> tuple[Path, Path]:
    """The header and binary of time log `name` (any case); ReaderError when either is missing."""
    header = data.file(f"{name}.XML")
    binary = data.file(f"{name}.BIN")
    if header is None:
        raise ReaderError(f"{name}.XML", "time log header named by the task is missing")
    if binary is None:
        raise ReaderError(f"{name}.BIN", "time log binary named by the task is missing")
    return header, binary
