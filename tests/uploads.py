"""Multi-file uploads cut from one real machine file, for the tests that run many files through the daemon or the
cluster: small, so each file's run is short and a test is about the layout, not the reading."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pyogrio

from .conftest import JD_WHEAT_ZIP, MONTANA


def wheat_fields(real: Path, tmp_path: Path, count: int, points: int, name: str) -> tuple[Path, dict[str, int]]:
    """`count` fields' worth of the real John Deere wheat export (`points` consecutive points each, written back as
    2D shapefiles by GDAL) in one zip, tmp_path/`name`.zip. Also returns, per file (by name), the points Leaf's
    default cleanup keeps, counted from the source columns."""
    source = pyogrio.read_dataframe(f"/vsizip/{real / MONTANA / JD_WHEAT_ZIP}/{Path(JD_WHEAT_ZIP).stem}.shp")
    if count * points > len(source):
        raise ValueError(f"{JD_WHEAT_ZIP} has {len(source)} points, not {count} x {points}")
    folder = tmp_path / name
    folder.mkdir()
    upload, kept = tmp_path / f"{name}.zip", {}
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_DEFLATED) as zf:
        for field in range(count):
            stem = f"FarmerB Farms Inc.-FarmerB Family LLC-field {field}-Wheat (Hrd Rd Wtr)-1"
            part = source.iloc[field * points:(field + 1) * points]
            part = part.set_geometry(part.geometry.force_2d())  # its elevation is NaN, which GDAL will not write
            pyogrio.write_dataframe(part, folder / f"{stem}.shp")
            kept[stem] = int(((part["Moisture"] > 0) & (part["Moisture"] < 100) & (part["WetMass"] > 0)
                              & (part["DISTANCE"] * part["SWATHWIDTH"] > 0)).sum())
            for member in sorted(folder.glob(f"{stem}.*")):
                zf.write(member, member.name)
    return upload, kept
