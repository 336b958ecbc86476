"""Do a task's records lie on its partfield?

A task names its field (TSK attribute E, a PFD) and the field carries its boundary (PLN / LSG / PNT). Records
logged far from that boundary were moved after logging, or belong to another field: the anonymised KRONE v0
mower card shifted its positions but not its boundary (records near Shetland, its field in Lower Saxony,
1,105 km apart); the CNH planter / air-cart test card files simulator runs in Germany and Iowa under fields
on other continents (7,161 to 9,312 km). The points stay as they were logged; the reader says how far off they are.

The rule: the records are off their field when none of them lies inside it AND their median position is more
than MISMATCH_KM from its boundary. On the 37 logging tasks with field boundaries in our corpora, the 29 on
their own field have their median inside it (0 km) or, with no record inside, at most 0.1 km from it (short
simulator runs beside their field on the CNH card); the 8 mismatches are all over 1,000 km. A few km is more
than the width of any field we hold (the largest is 1.7 km across) and less than the way between a farm's
fields, so a task logged beside its field is not flagged but a shifted or misfiled one is.

A task that names no field (KRONE Smart Connect AUTOLOG tasks) is compared with every field of the card
that has a boundary: off only when it is far from all of them. A task whose field has no boundary gets no
verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import Point, Polygon

from ...model import WGS84
from .taskdata import Task, TaskData

MISMATCH_KM = 5.0


@dataclass(frozen=True)
class OffField:
    """The records of a task lie `km` from partfield `pfd` (the task's own, or the card's nearest)."""

    km: float
    pfd: str
    name: str
    named: bool  # the task names this field (TSK E); else the nearest of `fields` the card holds
    fields: int
    records: int
    median: tuple[float, float]  # (lon, lat)

    @property
    def note(self) -> str:
        lon, lat = self.median
        where = (f"partfield '{self.name}' ({self.pfd}) the task names" if self.named else
                 f"any of the card's {self.fields} partfields (the task names none; nearest '{self.name}', {self.pfd})")
        return (f"records off their partfield: none of the {self.records:,} records lies inside {where}, and their "
                f"median position ({lat:.4f}, {lon:.4f}) is {self.km:,.1f} km from its boundary; the positions were "
                "shifted after logging (anonymised or simulated) or the task belongs to another field. The points "
                "are kept as logged")


def field_shapes(data: TaskData, task: Task) -> dict[str, shapely.Geometry]:
    """PFD id -> the area its boundary rings cover: the task's own field, or every field when it names none."""
    if task.field and task.field in data.fields:
        chosen = {task.field: data.boundaries.get(task.field, [])}
    else:
        chosen = data.boundaries
    return {pfd: shapely.union_all([shapely.make_valid(Polygon(ring)) for ring in rings])
            for pfd, rings in chosen.items() if rings}


def km_from(lon: float, lat: float, shape: shapely.Geometry) -> float:
    """Kilometres from (lon, lat) to the nearest point of `shape`, 0 inside it.

    Measured in an azimuthal equidistant projection centred on the point, where every distance from the centre
    is the geodesic one on the WGS84 ellipsoid."""
    local = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    to_local = Transformer.from_crs(WGS84, local, always_xy=True)
    projected = shapely.transform(shape, lambda xy: np.column_stack(to_local.transform(xy[:, 0], xy[:, 1])))
    return float(projected.distance(Point(0.0, 0.0))) / 1000.0


def off_field(data: TaskData, task: Task, lon: np.ndarray, lat: np.ndarray) -> OffField | None:
    """The mismatch when the records (positions in degrees) lie off their partfield, else None."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    shapes = field_shapes(data, task)
    if not shapes or not len(lon):
        return None
    if any(shapely.intersects_xy(shape, lon, lat).any() for shape in shapes.values()):
        return None
    median = (float(np.median(lon)), float(np.median(lat)))
    distances = {pfd: km_from(*median, shape) for pfd, shape in shapes.items()}
    pfd = min(distances, key=distances.__getitem__)
    if distances[pfd] <= MISMATCH_KM:
        return None
    name = (data.fields.get(pfd, {}).get("C") or "").strip() or pfd
    return OffField(distances[pfd], pfd, name, pfd == task.field, len(shapes), len(lon), median)
