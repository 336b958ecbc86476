"""The work of each per-file step, independent of Dagster: the assets call these, tests can too.

A step takes the tables of the steps before it and returns its own (a `SourceTable`, a `PointTable`); the
IO manager (`defs/io_manager.py`) writes each table once as the step's GeoParquet and hands it to the next
steps. A step writes its own section of the file's record (`model.FILE_SECTIONS`) and never another step's
facts. `load_table` reads a step's table back for a step run on its own, in another run.
"""

from __future__ import annotations

import shutil
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from functools import cached_property
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely import MultiPolygon, Polygon

from .config import effective
from .derived.filters import cleanup_mask, filtered_mask
from .derived.geometry import point_rectangles, table_swaths, table_xy
from .derived.images import RAMP, aux_xml, covered_pixels, png_bytes, render, with_legend, zip_images
from .derived.raster import burn_index, covered_polygon, grid_for
from .derived.plausibility import Plausibility, assess
from .derived.summary import build_summary
from .geoparquet import (Geometry, GeoParquetWriter, column_types, rectangle_geometry, slice_geometry, take_geometry,
                         wkb_geometry)
from .derived.unit_systems import convert_frame
from .errors import DamagedShapefile, ReaderError, public_message
from . import merge
from .fields import match_file
from .ingest.batch import link_members
from .memory import release_memory
from .model import DetectedFile, PointTable, SourceTable, StandardResult
from .readers import read_machine_file
from .standard.crops import crops_in
from .standard.standardize import standardize
from .standard.times import format_utc
from .standard.units import convert
from .storage import Storage, owner_of

FILE_ID_COLUMN = "file_id"
CRS84 = "OGC:CRS84"
NO_POINTS = "no points passed the filter"
# Property images being encoded at once (one per core of a 2-core machine) while the next one is coloured.
_IMAGES_IN_FLIGHT = 2
# Rows a table is standardised and written in at a time: a bound on the copies a big file's steps make (a
# 1M-point file is two chunks, a usual file one).
CHUNK_ROWS = 1 << 19
# The steps whose output is a table, and the lake/ table of each one's GeoParquet.
TABLES = {"rawGeojson": "raw", "standardGeojson": "standard", "filteredGeojson": "filtered"}


class FileSteps:
    """Steps of one machine file, reading and writing through `storage`."""

    def __init__(self, storage: Storage, file_id: str, chunk_rows: int = CHUNK_ROWS):
        self.storage = storage
        self.file_id = file_id
        self.chunk_rows = max(chunk_rows, 2)  # the file's first point takes its direction from the second

    @property
    def record(self) -> dict[str, Any]:
        record = self.storage.records.get("files", self.file_id)
        if record is None:
            raise KeyError(f"machine file {self.file_id} is not registered")
        return record

    @cached_property
    def file_name(self) -> str:
        """The file's name as registered, which never changes: read once, not for every step's metadata."""
        return str(self.record["fileName"])

    def put(self, section: str, doc: dict[str, Any]) -> None:
        """Write this step's section of the file's record (whole: the step is its only writer)."""
        self.storage.records.put("files", self.file_id, section, doc)

    def store_original(self) -> tuple[dict[str, Any], list[Path]]:
        record = self.record
        placed = [] if record.get("origin") == "merged" else link_members(self.storage, record)
        return record, placed

    def _detected(self, record: dict[str, Any]) -> DetectedFile:
        folder = self.storage.synced(self.storage.original_dir(self.file_id))
        members = [folder / Path(m).name for m in record["members"]]
        return DetectedFile(record["fileName"], record["fileFormat"], folder / Path(record["primary"]).name,
                            members, layer=record.get("layer"), unsupported_reason=record.get("unsupportedReason"),
                            accept_damaged=bool(self.config["acceptDamagedShapefiles"]))

    def read_raw(self) -> SourceTable:
        """Read the source (the raw step's table); raises ReaderError for unreadable input."""
        record = self.record
        if record.get("origin") == "merged":
            frame = pd.concat(merge.source_points(self.storage, record, "raw"), ignore_index=True)
            source = SourceTable(frame=gpd.GeoDataFrame(frame, geometry="geometry", crs=CRS84), dialect="MERGED",
                                 notes=[f"raw records of {len(record['sources'])} merged files"])
            self.put("raw", {"raw": {"dialect": "MERGED", "notes": source.notes, "recordCount": source.point_count}})
            return source
        detected = self._detected(record)
        try:
            source = read_machine_file(detected)
        except DamagedShapefile:
            raise  # its problems name the set's members only
        except ReaderError as exc:  # libraries name the files they fail on by absolute path: keep the name only
            raise ReaderError(exc.file_name, public_message(exc.reason)) from exc
        except Exception as exc:  # a reader bug or an input no reader anticipated: still the file's failure
            raise ReaderError(record["fileName"], public_message(f"unexpected {type(exc).__name__}: {exc}")) from exc
        source.frame.columns = [str(c) for c in source.frame.columns]
        source.notes.extend(detected.warnings)
        self.put("raw", {"raw": {"dialect": source.dialect, "units": source.units, "hints": source.hints,
                                 "notes": source.notes, "warnings": detected.warnings, "sourceCrs": source.source_crs,
                                 "recordCount": source.point_count},
                         "terminalTotals": source.hints.get("terminalTotals")})
        release_memory()  # the reader's record batches
        return source

    def write_table(self, step: str, table: SourceTable | PointTable) -> None:
        """The one write of a step's table: GeoParquet with this file's id on every row (raw records keep
        their CRS as read; standard and filtered points are CRS84). A subset's rows are taken a chunk at a
        time, never copied whole."""
        if isinstance(table, SourceTable):
            self.write_geoparquet("raw", table.frame, table.frame.crs)
        else:
            rows = None if table.keep is None else np.flatnonzero(table.keep)
            self.write_geoparquet(TABLES[step], table.with_geometry(table.properties), CRS84, table.points,
                                  table.name, rows)
        release_memory()  # the Arrow chunks written

    def load_table(self, step: str) -> SourceTable | PointTable:
        """A step's table read back from its GeoParquet and its record section."""
        frame = self.storage.read_geoparquet(TABLES[step], self.file_id).drop(columns=[FILE_ID_COLUMN])
        record = self.record
        if step != "rawGeojson":
            return PointTable.of(frame, record.get("units") or {})
        raw = record.get("raw") or {}
        return SourceTable(frame=frame, dialect=raw.get("dialect", "GENERIC"), source_crs=raw.get("sourceCrs"),
                           units=raw.get("units", {}), hints=raw.get("hints", {}), notes=list(raw.get("notes", [])))

    @property
    def config(self) -> dict[str, Any]:
        """The configuration of the file's API owner and its Leaf user (the batch record carries both)."""
        record = self.record
        return effective(self.storage, record.get("leafUserId"), owner_of(record))

    def write_geoparquet(self, table: str, frame: pd.DataFrame, crs: Any, geometry: Geometry | None = None,
                         name: str | None = None, rows: np.ndarray | None = None) -> Path:
        """lake/<table>/<file id>.parquet, atomically: `frame` (its rows at the positions `rows`, when given)
        with this file's id on every row as its first column and `geometry` (WKB, bounds, types) in its column
        `name` when given, else the frame's own geometry. Written `chunk_rows` rows at a time (one Parquet
        writer), so the Arrow copy of a big table, and the copy of a subset's rows, is never whole."""
        target = self.storage.parquet_path(table, self.file_id)
        name = name or frame.geometry.name
        count = len(frame) if rows is None else len(rows)
        types = column_types(frame, self.chunk_rows, rows) if count > self.chunk_rows else None
        with self.storage.atomic_path(target) as tmp, GeoParquetWriter(tmp, crs, name, types) as writer:
            for start in range(0, max(count, 1), self.chunk_rows):
                stop = min(start + self.chunk_rows, count)
                if rows is None:
                    self._write_rows(writer, frame.iloc[start:stop], None if geometry is None
                                     else slice_geometry(geometry, start, stop))
                else:
                    taken = rows[start:stop]
                    self._write_rows(writer, frame.take(taken), None if geometry is None
                                     else take_geometry(geometry, taken))
        return target

    def _write_rows(self, writer: GeoParquetWriter, rows: pd.DataFrame, geometry: Geometry | None) -> None:
        columns = pd.DataFrame(rows.copy(deep=False))  # a new column list, no copy of the values
        if FILE_ID_COLUMN not in columns.columns:
            columns.insert(0, FILE_ID_COLUMN, self.file_id)
        writer.write(columns, wkb_geometry(rows.geometry.to_numpy()) if geometry is None else geometry)

    def write_polygons(self, table: PointTable) -> Path:
        """The polygon output: each standard point's swath rectangle, built and written a chunk of points at
        a time in the metric CRS and with the directions of the whole file."""
        target = self.storage.parquet_path("polygons", self.file_id)
        frame = table.with_geometry(table.columns)  # the table's own rows, as `point_rectangles` counts them
        types = column_types(frame, self.chunk_rows) if len(frame) > self.chunk_rows else None
        with self.storage.atomic_path(target) as tmp, GeoParquetWriter(tmp, CRS84, table.name, types) as writer:
            for chunk, rows, rings in point_rectangles(table, table.units, self.chunk_rows):
                part = frame.iloc[chunk]
                self._write_rows(writer, part if len(rows) == len(part) else part.take(rows), rectangle_geometry(rings))
                del part, rows, rings
                release_memory()  # the chunk's corners and rows
        return target

    def standardize(self, source: SourceTable) -> StandardResult:
        """Map to the standard schema, clean up invalid points, apply the unit system (and write the polygon
        output when enabled). Nothing is written for a file that fails its gate. The cleanup and the unit
        system are applied a chunk of rows at a time, as the rows are standardised. No step reads the raw
        records after this one, so `source` lets go of them (its frame is left empty)."""
        config = self.config
        record = self.record
        cleanup = bool(config["cleanupStandardGeojson"])
        counts = [0, 0]  # rows standardised, rows kept by the cleanup
        converted: dict[str, str] = {}

        def finish(rows: PointTable, units: dict[str, str]) -> PointTable:
            counts[0] += rows.point_count
            keep = cleanup_mask(rows.properties, config["cleanupRules"]) if cleanup else None
            if keep is not None and not keep.all():  # a chunk the cleanup keeps whole is not copied
                rows = replace(rows, properties=rows.properties[keep].reset_index(drop=True),
                               points=take_geometry(rows.points, keep))
            counts[1] += rows.point_count
            properties, found = convert_frame(rows.properties, units, config["unitMeasurement"])
            converted.update(found)
            return replace(rows, properties=properties)

        if record.get("origin") == "merged":
            frame, units = merge.combine(merge.source_points(self.storage, record, "standard"),
                                         merge.source_units(self.storage, record))
            kinds = crops_in(frame["crop"]) if "crop" in frame.columns else []
            result = StandardResult(merge.operation_type(self.storage, record), None, units=units,
                                    crop=", ".join(kinds) or None, evidence="merged from " + ", ".join(record["sources"]))
            result.table = finish(PointTable.of(frame, units), units)
            del frame
        else:
            if not source.point_count and (record.get("raw") or {}).get("recordCount"):
                # its records were let go by this step's earlier run in this process: read them back
                raw = self.load_table("rawGeojson")
                assert isinstance(raw, SourceTable)
                source = raw
            # no step reads the raw records after this one: they are let go as they are standardised
            result = standardize(source, self.chunk_rows, finish, let_go=True)
        changes: dict[str, Any] = {"operationType": result.operation_type,
                                   "originalOperationType": result.original_operation_type,
                                   "evidence": result.evidence, "pointCount": 0}
        missing = [p for p in result.missing if not _optional(config, result.operation_type, p)]
        # outOfStandardOperations: a file missing required properties is still processed, marked non-standard
        out_of_standard = bool(missing) and result.supported and config["outOfStandardOperations"]
        result.missing = [] if out_of_standard else missing
        if out_of_standard:
            result.notes.append(f"non-standard: missing required properties: {', '.join(missing)} "
                                "(processed because outOfStandardOperations is on)")
        if result.table is not None and self.schema_failure(result) is None:
            result.table.units = result.units = converted
            frame = result.table.properties
            if cleanup:
                result.notes.append(f"cleanup kept {counts[1]} of {counts[0]} points")
                if len(frame) == 0:
                    result.cleaned_out = True
            if len(frame) and config["enablePolygonOutput"]:
                release_memory()  # the raw records and the chunks, let go
                self.write_polygons(result.table)
            stamps = frame["timestamp"].dropna()
            changes.update(
                pointCount=len(frame), crops=crops_in(frame["crop"]) if "crop" in frame.columns else [],
                varieties=sorted(frame["variety"].dropna().astype(str).unique().tolist()) if "variety" in frame else [],
                units=result.units, unitMeasurement=config["unitMeasurement"], missingProperties=missing,
                standard=not out_of_standard,
                startTime=format_utc(stamps.min()) if len(stamps) else None,
                endTime=format_utc(stamps.max()) if len(stamps) else None,
            )
        changes["notes"] = result.notes
        changes["missingInputs"] = result.missing_inputs if result.missing else None
        self.put("standard", changes)
        release_memory()  # the chunks' intermediate columns and polygons
        return result

    def filter(self, standard: PointTable) -> PointTable:
        """filteredGeojson: standard points at 0.5 m/s or faster, and for harvest without yield outliers."""
        config = self.config
        keep = filtered_mask(standard.columns, standard.units, remove_outliers=config["operationsRemoveOutliers"],
                             outliers_limit=float(config["operationsOutliersLimit"]))
        filtered = standard.subset(keep)
        self.put("filtered", {"filteredPointCount": filtered.point_count})
        return filtered

    def plausibility(self, standard: PointTable) -> Plausibility:
        """Whether the standard points are physically plausible (widths against passes, speeds, times,
        yields); the figures are stored on the record (the `files` view in SQL)."""
        crops = self.record.get("crops") or []
        try:
            xy = table_xy(standard)[:2] if standard.point_count else None
            result = assess(standard.columns, standard.units, crops[0] if len(crops) == 1 else None, xy=xy)
        except Exception as exc:  # a warning-only check must not fail the file's run
            result = Plausibility(findings=[f"plausibility could not be assessed: {type(exc).__name__}: {exc}"])
        self.put("plausibility", {"plausibility": {"figures": result.figures, "findings": result.findings}})
        release_memory()
        return result

    def write_units(self, standard: PointTable) -> dict[str, str]:
        """The flat property -> unit map of the standard output."""
        units = {k: v for k, v in standard.units.items() if k in standard.properties.columns}
        self.put("units", {"unitMap": units})
        return units

    def summarize(self, standard: PointTable) -> tuple[dict[str, Any], bytes | None]:
        """The summary Feature (coverage from the point rectangles) and a small map thumbnail PNG with its
        legend drawn under it; the legend (property, unit, ramp, range) is also stored as `mapLegend`."""
        frame, units = standard.columns, standard.units  # the standard table's own: no copy
        covers = table_swaths(standard, units)
        geometry, area, thumbnail, legend = MultiPolygon(), 0.0, None, None
        if covers.valid.any():
            grid = grid_for(covers)
            index = burn_index(covers, grid)
            del covers  # the swaths are in the index now
            area = float((index >= 0).sum()) * grid.pixel_area
            # not simplified: its rings turn only at pixel corners (a half-pixel simplify took 7 s at 5M points
            # and removed under 1 % of the vertices)
            geometry = to_wgs84(covered_polygon(index, grid), grid.crs)
            release_memory()  # the coverage's rings
            column = _thumbnail_property(frame)
            if column:
                rgba, low, high = render(standard.values(column), index)
                legend = {"property": column, "unit": units.get(column), "min": low, "max": high, "ramp": RAMP}
                unit = f" ({units[column]})" if units.get(column) else ""
                thumbnail = with_legend(rgba, f"{column}{unit}", low, high)
                target = self.storage.file_dir(self.file_id) / "summary-map.png"
                with self.storage.atomic_path(target) as tmp:
                    tmp.write_bytes(thumbnail)
        record = self.record
        summary = build_summary(frame, units, record, geometry, area,
                                original_operation_data=self.config["originalOperationData"])
        worked = float(convert(frame["area"].sum(), units.get("area", "m2"), "m2")) if "area" in frame.columns else None
        # an unguessable name lets the Dagster UI show the map from the API without a token
        section = {"summary": summary, "areaM2": worked, "thumbnailToken": uuid.uuid4().hex if thumbnail else None,
                   "mapLegend": legend}
        self.put("summary", section)
        match_file(self.storage, self.file_id, record={**record, **section})
        release_memory()  # the index raster and the coverage
        return summary, thumbnail

    def render_images(self, filtered: PointTable, standard: PointTable) -> list[dict[str, Any]]:
        """propertiesPNGs from the filtered points (the standard ones when the filter left none)."""
        table = filtered if filtered.point_count else standard
        units = table.units
        folder = self.storage.images_dir(self.file_id)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        covers = table_swaths(table, units)
        images: list[dict[str, Any]] = []
        if not covers.valid.any():
            self.put("images", {"images": images})
            return images
        grid = grid_for(covers)
        index = burn_index(covers, grid)
        del covers  # the swaths are in the index now: the images need their memory
        release_memory()
        sidecar = aux_xml(grid)
        pixels = covered_pixels(index)

        def write(path: Path, rgba: Any) -> None:
            with self.storage.atomic_path(path) as tmp:
                tmp.write_bytes(png_bytes(rgba))
            path.with_name(path.name + ".aux.xml").write_text(sidecar)
            self.storage.publish(path.with_name(path.name + ".aux.xml"))

        # PNG encoding lets go of the GIL: the next image is coloured while the last ones are encoded; at most
        # _IMAGES_IN_FLIGHT images wait, so memory stays a few images whatever the grid
        with ThreadPoolExecutor(max_workers=_IMAGES_IN_FLIGHT) as pool:
            pending: deque[Future[None]] = deque()
            for column, values in numeric_properties(table):
                rgba, low, high = render(values, index, pixels)
                path = folder / f"{column}.png"
                pending.append(pool.submit(write, path, rgba))
                del rgba
                if len(pending) >= _IMAGES_IN_FLIGHT:
                    pending.popleft().result()
                images.append({"fileId": self.file_id, "property": column, "ramp": RAMP, "min": low, "max": high,
                               "unit": units.get(column), "path": str(path.relative_to(self.storage.root)),
                               "width": grid.width, "height": grid.height, "resolution": grid.resolution})
            for done in pending:
                done.result()
        self.put("images", {"images": images})
        release_memory()  # the grid and the images
        return images

    def zip_images(self) -> Path:
        images = (self.storage.records.section("files", self.file_id, "images") or {}).get("images") or []
        target = self.storage.images_dir(self.file_id) / "images.zip"
        with self.storage.atomic_path(target) as tmp:
            zip_images([self.storage.fetch(self.storage.root / image["path"]) for image in images], tmp)
        return target

    @staticmethod
    def schema_failure(result: StandardResult) -> str | None:
        """Leaf's message for a standard step that must fail, or None."""
        if not result.supported:
            return f"unsupported operation type: {result.operation_type}"
        if result.missing:
            return f"missing required properties: {', '.join(result.missing)}"
        if result.cleaned_out:
            return NO_POINTS
        return None


def numeric_properties(table: PointTable) -> Iterator[tuple[str, np.ndarray]]:
    """Properties that get an image, each with its values: every numeric column with at least one value (a
    column at a time, its values taken from the table's rows once)."""
    frame = table.properties
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            values = table.values(column)
            if not np.isnan(values).all():
                yield column, values


def _thumbnail_property(frame: gpd.GeoDataFrame) -> str | None:
    for column in ("dryVolumePerArea", "wetMassPerArea", "dryMassPerArea", "seedRate", "appliedRate",
                   "tillageDepthActual", "elevation"):
        if column in frame.columns and frame[column].notna().any():
            return column
    return None


def to_wgs84(polygon: Any, crs: Any) -> MultiPolygon:
    shape = gpd.GeoSeries([polygon], crs=crs).to_crs(CRS84).iloc[0]
    return MultiPolygon([shape]) if isinstance(shape, Polygon) else shape


def _optional(config: dict[str, Any], operation: str, prop: str) -> bool:
    """cropOptional / seedRateOptional make a required property optional for planted files."""
    setting = {"crop": "cropOptional", "seedRate": "seedRateOptional"}.get(prop)
    if setting is None or operation != "planted":
        return False
    return config[setting].get("standardGeoJson", {}).get("planted", {}).get(prop) == "optional"
