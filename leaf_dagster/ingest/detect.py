"""Find the machine files inside an extracted upload.

Monitors and farm software write one logical file as several members (a shapefile is .shp + .shx + .dbf
+ .prj, a John Deere export adds a metadata JSON), so detection groups members into machine files and
names each one's format. Formats we recognise but cannot decode are still returned, with the reason, so
the pipeline reports them instead of silently skipping them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pyogrio

from ..model import DetectedFile
from ..readers.delimited import LAT_NAMES, LON_NAMES
from ..readers.isoxml import detect_tasks, is_taskdata
from ..readers.text_layouts import decode, is_agleader_family, split_rows
from ..readers.vector import DEERE_METADATA_SUFFIX

SHAPEFILE_PARTS = {".shp", ".shx", ".dbf", ".prj", ".cpg", ".qpj", ".sbn", ".sbx", ".xml"}


# Proprietary layouts: (format label, test on a relative posix path (lower case), message).
_PROPRIETARY_FOLDERS: list[tuple[str, re.Pattern[str], str]] = [
    ("CN1", re.compile(r"(^|/)[^/]+\.cn1/index\.vy1$"), "CN1 (CNH Pro 700 / IntelliView IV) files are not supported"),
    ("GEN4", re.compile(r"(^|/)jd-data/log/.*\.jdl$"), "John Deere Gen4 (JD-Data .jdl) files are not supported"),
]
_PROPRIETARY_EXTENSIONS = {
    ".agdata": ("AGDATA", "Ag Leader agdata files are not supported"),
    ".ilf": ("ILF", "Ag Leader ilf files are not supported"),
    ".yld": ("YLD", "Ag Leader yld files are not supported"),
    ".2020": ("2020", "Precision Planting 20|20 (.2020) files are not supported"),
    ".jdp": ("JDP", "Raven Viper (.jdp) files are not supported"),
    ".cn1": ("CN1", "CN1 (CNH Pro 700 / IntelliView IV) files are not supported"),
}


def _is_junk(relative: Path) -> bool:
    """macOS resource forks and Finder files that ride along in zips made on a Mac."""
    return "__MACOSX" in relative.parts or relative.name.startswith("._") or relative.name == ".DS_Store"


def _is_geojson(path: Path) -> bool:
    try:
        head = path.read_bytes()[:65536].decode("utf-8", errors="ignore")
    except OSError:
        return False
    match = re.search(r'"type"\s*:\s*"(FeatureCollection|Feature|Point|MultiPoint|Polygon|MultiPolygon)"', head)
    return match is not None


def _header_tokens(line: str) -> list[str]:
    delimiter = max([",", ";", "\t", "|"], key=line.count)
    return [t.strip().strip('"').strip() for t in line.split(delimiter)]


def _base_name(token: str) -> str:
    return re.sub(r"\(.*?\)", "", token).strip().lower().replace(" ", "_")


def sniff_text(path: Path) -> str | None:
    """'CSV' for a delimited file whose header names positions, 'AGLEADER_TEXT' for header-less text of the
    Ag Leader / Yield Editor family (its layout is chosen when it is read), None otherwise."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError:
        return None
    text, _ = decode(head)
    lines = [ln for ln in text.splitlines() if ln.strip()][:3]
    if not lines:
        return None
    tokens = _header_tokens(lines[0])
    names = {_base_name(t) for t in tokens}
    if names & LAT_NAMES and names & LON_NAMES:
        return "CSV"
    try:
        first = split_rows(lines[0], limit=1)
    except Exception:  # csv.Error: not comma-separated text
        return None
    if first and is_agleader_family(first[0]):
        return "AGLEADER_TEXT"
    return None


ISOXML_FORMAT = "ISO11783"


def _detect_isoxml(files: list[Path]) -> tuple[list[DetectedFile], set[Path]]:
    """ISO 11783-10 TaskData: a TASKDATA.XML (any case, in a folder of any name) whose root element is
    ISO11783_TaskData. Every file in its folder belongs to it (time logs, XFR externals, grids, vendor
    extras), and each task x operation type becomes one machine file."""
    found: list[DetectedFile] = []
    claimed: set[Path] = set()
    for primary in files:
        if primary.name.upper() != "TASKDATA.XML" or not is_taskdata(primary):
            continue
        members = [p for p in files if p.parent == primary.parent]
        claimed.update(members)
        for layer, name in detect_tasks(primary, members):
            found.append(DetectedFile(name, ISOXML_FORMAT, primary, members, layer=layer))
    return found, claimed


# Native John Deere GreenStar data cards (isoxml.md 6): one card holds many logs, each a .fdl (XML setup
# and meter list) + .fdd (binary EvenByteDelta records) + optional .fdr, which only John Deere's closed
# plugins decode. The card is reported once, naming the display generation.
GREENSTAR_LOG_SUFFIXES = {".fdl", ".fdd"}
GREENSTAR_SUFFIXES = GREENSTAR_LOG_SUFFIXES | {".fdr"}
GREENSTAR_DISPLAYS = {"GS2": "John Deere GreenStar 2 (2600)", "GS3": "John Deere GreenStar 3 (2630)",
                      "GREENSTAR": "John Deere GreenStar"}
_SOURCE_APP = re.compile(r"<SourceApp\b([^>]*)>")


def _fdl_generation(path: Path) -> str | None:
    """'GS2' or 'GS3' from a .fdl's own words: the display's documentation application (RCDFieldDoc)
    carries the display software generation as its major version (1-2 on a GreenStar 2, 3 on a
    GreenStar 3); None when the file says nothing usable."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8192).decode("utf-8-sig", errors="ignore")
    except OSError:
        return None
    match = _SOURCE_APP.search(head)
    if "RCDLogFile" not in head or match is None:
        return None
    attributes = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
    if attributes.get("nameSourceApp") != "RCDFieldDoc" or not attributes.get("major", "").isdigit():
        return None
    return {1: "GS2", 2: "GS2", 3: "GS3"}.get(int(attributes["major"]))


def _greenstar_card(relative: Path) -> tuple[Path, str | None]:
    """The card folder of a GreenStar log and the generation its layout implies: a GreenStar 3 writes
    <card>/<profile>/RCD/EIC/Documentation/.., a GreenStar 2 <card>/RCD/*.fdl; loose logs are their folder."""
    folders = relative.parts[:-1]
    lower = [part.lower() for part in folders]
    if "eic" in lower:
        rcd = lower.index("eic") - 1
        return Path(*folders[:max(rcd - 1, 0)]), "GS3"
    if "rcd" in lower:
        return Path(*folders[:lower.index("rcd")]), "GS2"
    return Path(*folders), None


def _detect_greenstar(root: Path, files: list[Path], claimed: set[Path]) -> list[DetectedFile]:
    """One machine file per GreenStar card, failing with the display generation (from its .fdl files,
    else from the folder layout), however the card folder was renamed or nested."""
    cards: dict[Path, list[tuple[Path, str | None]]] = defaultdict(list)
    for path in files:
        if path in claimed or path.suffix.lower() not in GREENSTAR_LOG_SUFFIXES:
            continue
        card, layout = _greenstar_card(path.relative_to(root))
        cards[card].append((path, layout))
    found = []
    for card, logs in sorted(cards.items()):
        generations = {g for path, _ in logs if path.suffix.lower() == ".fdl" and (g := _fdl_generation(path))}
        if not generations and not any(p.suffix.lower() == ".fdl" for p, _ in logs):
            continue  # .fdd files alone, outside a card layout, are not evidence enough
        layouts = {layout for _, layout in logs if layout}
        generation = max(generations or layouts or {"GREENSTAR"})  # the newest generation seen ("GS3" > "GS2")
        members = [p for p in files if p not in claimed and p.relative_to(root).parts[:len(card.parts)] == card.parts
                   and (p.suffix.lower() in GREENSTAR_SUFFIXES
                        or {"rcd", "eic"} & {part.lower() for part in p.relative_to(root / card).parts[:-1]})]
        primary = min(p for p, _ in logs if p.suffix.lower() == ".fdl")
        name = card.name or next(iter(primary.relative_to(root).parts[:-1]), primary.parent.name)
        claimed.update(members)
        found.append(DetectedFile(name, generation, primary, members,
                                  unsupported_reason=f"{GREENSTAR_DISPLAYS[generation]} files are not supported"))
    return found


def detect_machine_files(root: Path) -> list[DetectedFile]:
    """Every machine file under `root`, in a stable order."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _is_junk(p.relative_to(root)))
    found, claimed = _detect_isoxml(files)
    found += _detect_greenstar(root, files, claimed)

    for path in files:
        rel = path.relative_to(root).as_posix().lower()
        for label, pattern, message in _PROPRIETARY_FOLDERS:
            if pattern.search(rel):
                found.append(DetectedFile(path.parent.name, label, path, [path], unsupported_reason=message))
                claimed.add(path)
                break

    groups: dict[tuple[Path, str], list[Path]] = defaultdict(list)
    for path in files:
        if path in claimed:
            continue
        suffix = path.suffix.lower()
        if suffix in SHAPEFILE_PARTS - {".xml"}:
            groups[(path.parent, path.stem.lower())].append(path)

    metadata = {p for p in files if p.name.lower().endswith(DEERE_METADATA_SUFFIX)}
    for (folder, stem), members in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        exts = {m.suffix.lower() for m in members}
        if not exts & {".shp", ".dbf", ".shx"}:
            continue  # a lone .prj or .cpg is not a machine file
        primary = next((m for m in members if m.suffix.lower() == ".shp"), members[0])
        sidecar = [m for m in metadata if m.parent == folder and m.name.lower() == stem + DEERE_METADATA_SUFFIX]
        all_members = sorted(members) + sidecar
        claimed.update(all_members)
        found.append(DetectedFile(primary.stem, "SHAPEFILE", primary, all_members))

    for path in files:
        if path in claimed:
            continue
        suffix = path.suffix.lower()
        if suffix in _PROPRIETARY_EXTENSIONS:
            label, message = _PROPRIETARY_EXTENSIONS[suffix]
            found.append(DetectedFile(path.name, label, path, [path], unsupported_reason=message))
        elif suffix == ".gpkg":
            try:
                layers = [str(row[0]) for row in pyogrio.list_layers(path)]
            except Exception:  # unreadable GeoPackage: still a machine file, the reader reports why
                layers = [None]  # type: ignore[list-item]
            for layer in layers:
                name = path.stem if len(layers) == 1 else f"{path.stem}-{layer}"
                found.append(DetectedFile(name, "GEOPACKAGE", path, [path], layer=layer if len(layers) > 1 else None))
        elif suffix in {".geojson", ".json"} and path not in metadata and _is_geojson(path):
            found.append(DetectedFile(path.stem, "GEOJSON", path, [path]))
        elif suffix in {".csv", ".txt"}:
            kind = sniff_text(path)
            if kind:
                found.append(DetectedFile(path.stem, kind, path, [path]))
    return sorted(found, key=lambda f: f.relative_to(root))
