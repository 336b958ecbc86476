"""The per-file steps, named as Leaf names them:

    originalFile -> rawGeojson -> standardGeojson -> filteredGeojson -> propertiesPNGs -> zippedPNGs
                                                  -> summary, units

The raw, standard and filtered steps return their table, which the `step_tables` IO manager writes once
(GeoParquet per file and step) and hands to the steps after them; each step writes its own record section.
Steps can be re-run one at a time from the UI (their inputs are then read back). Partitions are file ids
(UUIDs, as Leaf's); every materialisation names its file (`file_name`), and so do the runs' tags
(`leaf/file_name`) and the batch's `batchOverview`.
"""

import os
from typing import Any

import dagster as dg

from ...derived.images import legend_words
from ...derived.reconcile import markdown, reconcile
from ...errors import CONVERSION_FAILED, DamagedShapefile, ReaderError
from ...files import FileSteps
from ...model import PointTable, SourceTable
from ..checks import fail, gate, gate_spec, warning, warning_spec
from ..metadata import preview, time_span
from ..partitions import machine_files
from ..resources import LeafStorage

GROUP = "machine_files"
TABLES = "step_tables"  # the IO manager of the steps' tables (io_manager.py)


@dg.asset(key="originalFile", partitions_def=machine_files, group_name=GROUP, kinds={"file"},
          check_specs=[gate_spec("originalFile", "recognised_format", "The file is in a format we can decode")])
def original_file(context: dg.AssetExecutionContext, storage: LeafStorage):
    """The machine file's members as uploaded, kept in files/<id>/original/."""
    steps = FileSteps(storage.store(), context.partition_key)
    record, placed = steps.store_original()
    if record.get("unsupportedReason"):
        yield from fail(context, gate("recognised_format", record["unsupportedReason"], file_format=record["fileFormat"]),
                        file_name=record["fileName"])
    yield dg.MaterializeResult(metadata={
        "file_name": record["fileName"], "file_format": record["fileFormat"], "batch_id": record["batchId"],
        "members": dg.MetadataValue.md("\n".join(f"- {p.name}" for p in placed)), "size_bytes": record["sizeInBytes"],
    })
    yield gate("recognised_format", None, file_format=record["fileFormat"])


@dg.asset(key="rawGeojson", deps=["originalFile"], partitions_def=machine_files, group_name=GROUP,
          kinds={"geoparquet"}, io_manager_key=TABLES, check_specs=[
              gate_spec("rawGeojson", "converted", "The source records could be read"),
              warning_spec("rawGeojson", "source_intact",
                           "No damage found in the source (a shapefile's .shp, .shx and .dbf agree)")])
def raw_geojson(context: dg.AssetExecutionContext, storage: LeafStorage):
    """Source records as read: source column names and units kept, positions in WGS84."""
    steps = FileSteps(storage.store(), context.partition_key)
    try:
        source = steps.read_raw()
    except ReaderError as exc:
        yield from fail(context, gate("converted", CONVERSION_FAILED, reason=str(exc)),
                        intact_check(exc.problems if isinstance(exc, DamagedShapefile) else []),
                        file_name=steps.record["fileName"])
    yield dg.Output(source, metadata=named(
        steps, point_count=source.point_count, dialect=source.dialect, source_crs=source.source_crs or "unknown",
        notes=dg.MetadataValue.md("\n".join(f"- {n}" for n in source.notes) or "none"),
        source_units=dg.MetadataValue.json(source.units), preview=preview(source.frame)))
    yield gate("converted", None)
    yield intact_check((steps.record.get("raw") or {}).get("warnings") or [])


def intact_check(damage: list[str]) -> dg.AssetCheckResult:
    """A warning, not a gate: damage fails the file through `converted` unless the user accepts it."""
    return warning("source_intact", not damage, "; ".join(damage) or "no damage found")


@dg.asset(key="standardGeojson", ins={"raw": dg.AssetIn("rawGeojson")}, partitions_def=machine_files,
          group_name=GROUP, kinds={"geoparquet"}, io_manager_key=TABLES,
          check_specs=[gate_spec("standardGeojson", "standard_schema",
                                 "Supported operation type and Leaf's required properties present")])
def standard_geojson(context: dg.AssetExecutionContext, storage: LeafStorage, raw: SourceTable):
    """Points in Leaf's standard schema for their operation type, with the unit of every property."""
    steps = FileSteps(storage.store(), context.partition_key)
    result = steps.standardize(raw)
    notes = dg.MetadataValue.md("\n".join(f"- {n}" for n in result.notes) or "none")
    check = gate("standard_schema", FileSteps.schema_failure(result), evidence=result.evidence,
                 missing=", ".join(result.missing) or None,
                 missing_inputs=dg.MetadataValue.json(result.missing_inputs) if result.missing else None)
    if not check.passed:
        yield from fail(context, check, file_name=steps.record["fileName"], operation_type=result.operation_type, notes=notes)
    metadata: dict[str, Any] = {"operation_type": result.operation_type, "evidence": result.evidence}
    if result.frame is not None:
        metadata.update({"point_count": len(result.frame), "crop": result.crop or "unknown",
                         "units": dg.MetadataValue.json(result.units), "preview": preview(result.frame),
                         **time_span(result.frame)})
    assert result.frame is not None  # a result without points fails its gate above
    yield dg.Output(PointTable(result.frame, result.units), metadata=named(steps, **metadata, notes=notes))
    yield check


STANDARD = {"standard": dg.AssetIn("standardGeojson")}


@dg.asset(key="filteredGeojson", ins=STANDARD, partitions_def=machine_files, group_name=GROUP,
          kinds={"geoparquet"}, io_manager_key=TABLES)
def filtered_geojson(context: dg.AssetExecutionContext, storage: LeafStorage, standard: PointTable) -> dg.Output:
    """Standard points without slow points (< 0.5 m/s) and, for harvest, yield outliers (config)."""
    steps = FileSteps(storage.store(), context.partition_key)
    filtered = steps.filter(standard)
    kept = len(filtered.frame)
    return dg.Output(filtered, metadata=named(steps, point_count=kept, removed=len(standard.frame) - kept,
                                              preview=preview(filtered.frame)))


@dg.asset(key="units", ins=STANDARD, partitions_def=machine_files, group_name=GROUP, kinds={"json"})
def units(context: dg.AssetExecutionContext, storage: LeafStorage, standard: PointTable) -> dg.MaterializeResult:
    """Leaf's flat property -> unit map of the file's standard output."""
    steps = FileSteps(storage.store(), context.partition_key)
    return dg.MaterializeResult(metadata=named(steps, units=dg.MetadataValue.json(steps.write_units(standard))))


@dg.asset(key="summary", ins=STANDARD, partitions_def=machine_files, group_name=GROUP, kinds={"json"},
          check_specs=[warning_spec("summary", "totals_match_terminal",
                                    "Our totals agree with the terminal's own (2 %, area 5 %)")])
def summary(context: dg.AssetExecutionContext, storage: LeafStorage, standard: PointTable):
    """Leaf's summary Feature: coverage MultiPolygon, statistics and totals; a map thumbnail in the UI.
    The totals are checked against the terminal's own totals (a warning, never a failure)."""
    steps = FileSteps(storage.store(), context.partition_key)
    feature, thumbnail = steps.summarize(standard)
    props = feature["properties"]
    figures = {k: v for k, v in props.items() if k.startswith("total") or k == "coverageArea"}
    metadata: dict = {"operation_type": props.get("operationType"), "crop": ", ".join(props.get("crop") or []) or "n/a",
                      "start_time": props.get("startTime") or "n/a", "end_time": props.get("endTime") or "n/a",
                      "key_figures": dg.MetadataValue.md("\n".join(
                          f"- **{k}**: {v['value']:,.2f} {v['unit'] or ''}" for k, v in figures.items()
                          if v and v.get("value") is not None))}
    token, legend = steps.record.get("thumbnailToken"), steps.record.get("mapLegend")
    if thumbnail and token:
        # Dagster's Markdown only shows http(s) images: the map is served by the HTTP API
        api = os.environ.get("LEAF_API_URL", "http://127.0.0.1:8000").rstrip("/")
        metadata["map"] = dg.MetadataValue.md(f"![coverage map]({api}/thumbnails/{context.partition_key}/{token}.png)"
                                              + (f"\n\n{legend_words(legend)}" if legend else ""))
    if legend:
        metadata.update({"map_property": legend["property"], "map_unit": legend["unit"] or "n/a",
                         "map_min": legend["min"], "map_max": legend["max"], "map_ramp": dg.MetadataValue.json(legend["ramp"])})
    yield dg.MaterializeResult(metadata=named(steps, **metadata))
    terminal = steps.record.get("terminalTotals")
    result = reconcile(props, terminal)
    yield warning("totals_match_terminal", result.passed, result.description,
                  source=f"{terminal['source']}, task {terminal.get('task')}" if terminal else None,
                  comparison=dg.MetadataValue.md(markdown(result)) if result.rows else None,
                  totals=dg.MetadataValue.json([r.as_dict() for r in result.rows]) if result.rows else None,
                  notes=dg.MetadataValue.md("\n".join(f"- {n}" for n in result.notes)) if result.notes else None)


@dg.asset(key="propertiesPNGs", ins={"filtered": dg.AssetIn("filteredGeojson"), **STANDARD},
          partitions_def=machine_files, group_name=GROUP, kinds={"png"})
def properties_pngs(context: dg.AssetExecutionContext, storage: LeafStorage, filtered: PointTable,
                    standard: PointTable) -> dg.MaterializeResult:
    """One georeferenced PNG per numeric property, Leaf's colour ramp, about 1 m per pixel (from the standard
    points when the filter left none)."""
    steps = FileSteps(storage.store(), context.partition_key)
    images = steps.render_images(filtered, standard)
    return dg.MaterializeResult(metadata=named(
        steps, images=len(images), properties=", ".join(i["property"] for i in images),
        size_px=f"{images[0]['width']} x {images[0]['height']}" if images else "n/a"))


@dg.asset(key="zippedPNGs", deps=["propertiesPNGs"], partitions_def=machine_files, group_name=GROUP, kinds={"zip"})
def zipped_pngs(context: dg.AssetExecutionContext, storage: LeafStorage) -> dg.MaterializeResult:
    """The property PNGs and their .aux.xml sidecars in one zip."""
    steps = FileSteps(storage.store(), context.partition_key)
    path = steps.zip_images()
    return dg.MaterializeResult(metadata=named(steps, path=str(path), size_bytes=path.stat().st_size))


def named(steps: FileSteps, **metadata: Any) -> dict[str, Any]:
    """A materialisation's metadata, naming its file: partitions are ids, users know files by name."""
    return {"file_name": steps.record["fileName"], **metadata}
