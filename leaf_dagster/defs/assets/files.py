"""The per-file steps, named as Leaf names them:

    originalFile -> rawGeojson -> standardGeojson -> filteredGeojson -> propertiesPNGs -> zippedPNGs
                                                  -> summary, units

The raw, standard and filtered steps return their table, which the `step_tables` IO manager writes once
(GeoParquet per file and step) and hands to the steps after them; each step writes its own record section.
Steps can be re-run one at a time from the UI (their inputs are then read back). Partitions are file ids
(UUIDs, as Leaf's); every materialisation names its file (`file_name`), and so do the runs' tags
(`leaf/file_name`) and the batch's `batchOverview`.

Each step's work is a function of the file's steps and its input tables that returns an `Outcome`: the
asset yields it (its table, metadata and checks, or a failed gate), and an upload's run makes the same
outcomes per file partition (`in_batch_run`) and logs them (`assets/batch.py`), so a batch of files costs one
run, not one per file.
"""

import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from dagster._utils.error import serializable_error_info_from_exc_info
from typing import Any

import dagster as dg

from ...derived.images import legend_words
from ...derived.reconcile import markdown, reconcile
from ...errors import CONVERSION_FAILED, DamagedShapefile, ReaderError
from ...files import FileSteps
from ...storage import Storage
from ...model import PointTable, SourceTable
from ..checks import fail, gate, gate_spec, plan, warning, warning_spec
from ..metadata import preview, time_span
from ..plausibility import plausibility_check
from ..run_status import failed_check_step, step_error
from ..partitions import machine_files
from ..resources import LeafStorage

GROUP = "machine_files"
TABLES = "step_tables"  # the IO manager of the steps' tables (io_manager.py)


@dataclass
class Outcome:
    """What one step made of one file: its table (None for steps that write files only), the metadata
    shown with it, its checks, and its failed gate when it failed (the metadata is then the evidence)."""
    metadata: dict[str, Any]
    checks: list[dg.AssetCheckResult] = field(default_factory=list)
    table: SourceTable | PointTable | None = None
    failed: dg.AssetCheckResult | None = None


def emit(context: dg.AssetExecutionContext, outcome: Outcome) -> Iterator[Any]:
    """An outcome as an asset's events: its output and checks, or its failed gate failing the step."""
    if outcome.failed is not None:
        yield from fail(context, outcome.failed, *outcome.checks, **outcome.metadata)
    yield dg.MaterializeResult(metadata=outcome.metadata) if outcome.table is None \
        else dg.Output(outcome.table, metadata=outcome.metadata)
    yield from outcome.checks


def original_outcome(steps: FileSteps) -> Outcome:
    record, placed = steps.store_original()
    if record.get("unsupportedReason"):
        return Outcome({"file_name": record["fileName"]}, failed=gate(
            "recognised_format", record["unsupportedReason"], file_format=record["fileFormat"]))
    return Outcome({
        "file_name": record["fileName"], "file_format": record["fileFormat"], "batch_id": record["batchId"],
        "members": dg.MetadataValue.md("\n".join(f"- {p.name}" for p in placed)), "size_bytes": record["sizeInBytes"],
    }, [gate("recognised_format", None, file_format=record["fileFormat"])])


@dg.asset(key="originalFile", partitions_def=machine_files, group_name=GROUP, kinds={"file"},
          check_specs=[gate_spec("originalFile", "recognised_format", "The file is in a format we can decode")])
def original_file(context: dg.AssetExecutionContext, storage: LeafStorage):
    """The machine file's members as uploaded, kept in files/<id>/original/."""
    yield from emit(context, original_outcome(FileSteps(storage.store(), context.partition_key)))


def raw_outcome(steps: FileSteps) -> Outcome:
    try:
        source = steps.read_raw()
    except ReaderError as exc:
        return Outcome({"file_name": steps.file_name},
                       [intact_check(exc.problems if isinstance(exc, DamagedShapefile) else [])],
                       failed=gate("converted", CONVERSION_FAILED, reason=str(exc)))
    return Outcome(named(
        steps, point_count=source.point_count, dialect=source.dialect, source_crs=source.source_crs or "unknown",
        notes=dg.MetadataValue.md("\n".join(f"- {n}" for n in source.notes) or "none"),
        source_units=dg.MetadataValue.json(source.units), preview=preview(source.frame)),
        [gate("converted", None), intact_check((steps.record.get("raw") or {}).get("warnings") or [])], source)


@dg.asset(key="rawGeojson", deps=["originalFile"], partitions_def=machine_files, group_name=GROUP,
          kinds={"geoparquet"}, io_manager_key=TABLES, check_specs=[
              gate_spec("rawGeojson", "converted", "The source records could be read"),
              warning_spec("rawGeojson", "source_intact",
                           "No damage found in the source (a shapefile's .shp, .shx and .dbf agree)")])
def raw_geojson(context: dg.AssetExecutionContext, storage: LeafStorage):
    """Source records as read: source column names and units kept, positions in WGS84."""
    yield from emit(context, raw_outcome(FileSteps(storage.store(), context.partition_key)))


def intact_check(damage: list[str]) -> dg.AssetCheckResult:
    """A warning, not a gate: damage fails the file through `converted` unless the user accepts it."""
    return warning("source_intact", not damage, "; ".join(damage) or "no damage found")


def standard_outcome(steps: FileSteps, raw: SourceTable) -> Outcome:
    result = steps.standardize(raw)
    notes = dg.MetadataValue.md("\n".join(f"- {n}" for n in result.notes) or "none")
    check = gate("standard_schema", FileSteps.schema_failure(result), evidence=result.evidence,
                 missing=", ".join(result.missing) or None,
                 missing_inputs=dg.MetadataValue.json(result.missing_inputs) if result.missing else None)
    if not check.passed:
        return Outcome({"file_name": steps.file_name, "operation_type": result.operation_type, "notes": notes},
                       failed=check)
    table = result.table
    assert table is not None  # a result without points fails its gate above
    metadata: dict[str, Any] = {
        "operation_type": result.operation_type, "evidence": result.evidence, "point_count": table.point_count,
        "crop": result.crop or "unknown", "units": dg.MetadataValue.json(result.units),
        "preview": preview(table.head(5)), **time_span(table.properties)}
    return Outcome(named(steps, **metadata, notes=notes), [check], table)


@dg.asset(key="standardGeojson", ins={"raw": dg.AssetIn("rawGeojson")}, partitions_def=machine_files,
          group_name=GROUP, kinds={"geoparquet"}, io_manager_key=TABLES,
          check_specs=[gate_spec("standardGeojson", "standard_schema",
                                 "Supported operation type and Leaf's required properties present")])
def standard_geojson(context: dg.AssetExecutionContext, storage: LeafStorage, raw: SourceTable):
    """Points in Leaf's standard schema for their operation type, with the unit of every property."""
    yield from emit(context, standard_outcome(FileSteps(storage.store(), context.partition_key), raw))


STANDARD = {"standard": dg.AssetIn("standardGeojson")}


def filtered_outcome(steps: FileSteps, standard: PointTable) -> Outcome:
    filtered = steps.filter(standard)
    kept = filtered.point_count
    return Outcome(named(steps, point_count=kept, removed=standard.point_count - kept, preview=preview(filtered.head(5))),
                   table=filtered)


@dg.asset(key="filteredGeojson", ins=STANDARD, partitions_def=machine_files, group_name=GROUP,
          kinds={"geoparquet"}, io_manager_key=TABLES)
def filtered_geojson(context: dg.AssetExecutionContext, storage: LeafStorage, standard: PointTable):
    """Standard points without slow points (< 0.5 m/s) and, for harvest, yield outliers (config)."""
    yield from emit(context, filtered_outcome(FileSteps(storage.store(), context.partition_key), standard))


def units_outcome(steps: FileSteps, standard: PointTable) -> Outcome:
    return Outcome(named(steps, units=dg.MetadataValue.json(steps.write_units(standard))))


@dg.asset(key="units", ins=STANDARD, partitions_def=machine_files, group_name=GROUP, kinds={"json"})
def units(context: dg.AssetExecutionContext, storage: LeafStorage, standard: PointTable):
    """Leaf's flat property -> unit map of the file's standard output."""
    yield from emit(context, units_outcome(FileSteps(storage.store(), context.partition_key), standard))


def summary_outcome(steps: FileSteps, standard: PointTable) -> Outcome:
    feature, thumbnail = steps.summarize(standard)
    props = feature["properties"]
    figures = {k: v for k, v in props.items() if k.startswith("total") or k == "coverageArea"}
    metadata: dict = {"operation_type": props.get("operationType"), "crop": ", ".join(props.get("crop") or []) or "n/a",
                      "start_time": props.get("startTime") or "n/a", "end_time": props.get("endTime") or "n/a",
                      "key_figures": dg.MetadataValue.md("\n".join(
                          f"- **{k}**: {v['value']:,.2f} {v['unit'] or ''}" for k, v in figures.items()
                          if v and v.get("value") is not None))}
    record = steps.record  # read once: it holds the coverage, megabytes of GeoJSON for a season-sized file
    token, legend = record.get("thumbnailToken"), record.get("mapLegend")
    if thumbnail and token:
        # Dagster's Markdown only shows http(s) images: the map is served by the HTTP API
        api = os.environ.get("LEAF_API_URL", "http://127.0.0.1:8000").rstrip("/")
        metadata["map"] = dg.MetadataValue.md(f"![coverage map]({api}/thumbnails/{steps.file_id}/{token}.png)"
                                              + (f"\n\n{legend_words(legend)}" if legend else ""))
    if legend:
        metadata.update({"map_property": legend["property"], "map_unit": legend["unit"] or "n/a",
                         "map_min": legend["min"], "map_max": legend["max"], "map_ramp": dg.MetadataValue.json(legend["ramp"])})
    terminal = record.get("terminalTotals")
    result = reconcile(props, terminal)
    return Outcome(named(steps, **metadata), [warning(
        "totals_match_terminal", result.passed, result.description,
        source=f"{terminal['source']}, task {terminal.get('task')}" if terminal else None,
        comparison=dg.MetadataValue.md(markdown(result)) if result.rows else None,
        totals=dg.MetadataValue.json([r.as_dict() for r in result.rows]) if result.rows else None,
        notes=dg.MetadataValue.md("\n".join(f"- {n}" for n in result.notes)) if result.notes else None)])


@dg.asset(key="summary", ins=STANDARD, partitions_def=machine_files, group_name=GROUP, kinds={"json"},
          check_specs=[warning_spec("summary", "totals_match_terminal",
                                    "Our totals agree with the terminal's own (2 %, area 5 %)")])
def summary(context: dg.AssetExecutionContext, storage: LeafStorage, standard: PointTable):
    """Leaf's summary Feature: coverage MultiPolygon, statistics and totals; a map thumbnail in the UI.
    The totals are checked against the terminal's own totals (a warning, never a failure)."""
    yield from emit(context, summary_outcome(FileSteps(storage.store(), context.partition_key), standard))


def images_outcome(steps: FileSteps, filtered: PointTable, standard: PointTable) -> Outcome:
    images = steps.render_images(filtered, standard)
    return Outcome(named(steps, images=len(images), properties=", ".join(i["property"] for i in images),
                         size_px=f"{images[0]['width']} x {images[0]['height']}" if images else "n/a"))


@dg.asset(key="propertiesPNGs", ins={"filtered": dg.AssetIn("filteredGeojson"), **STANDARD},
          partitions_def=machine_files, group_name=GROUP, kinds={"png"})
def properties_pngs(context: dg.AssetExecutionContext, storage: LeafStorage, filtered: PointTable,
                    standard: PointTable):
    """One georeferenced PNG per numeric property, Leaf's colour ramp, about 1 m per pixel (from the standard
    points when the filter left none)."""
    yield from emit(context, images_outcome(FileSteps(storage.store(), context.partition_key), filtered, standard))


def zipped_outcome(steps: FileSteps) -> Outcome:
    path = steps.zip_images()
    return Outcome(named(steps, path=str(path), size_bytes=path.stat().st_size))


@dg.asset(key="zippedPNGs", deps=["propertiesPNGs"], partitions_def=machine_files, group_name=GROUP, kinds={"zip"})
def zipped_pngs(context: dg.AssetExecutionContext, storage: LeafStorage):
    """The property PNGs and their .aux.xml sidecars in one zip."""
    yield from emit(context, zipped_outcome(FileSteps(storage.store(), context.partition_key)))


def named(steps: FileSteps, **metadata: Any) -> dict[str, Any]:
    """A materialisation's metadata, naming its file: partitions are ids, users know files by name."""
    return {"file_name": steps.file_name, **metadata}


# Every step in run order with the function making its outcome, and the checks evaluated outside it.
FILE_STEPS: list[tuple[dg.AssetsDefinition, Callable[..., Outcome]]] = [
    (original_file, original_outcome), (raw_geojson, raw_outcome), (standard_geojson, standard_outcome),
    (filtered_geojson, filtered_outcome), (summary, summary_outcome), (units, units_outcome),
    (properties_pngs, images_outcome), (zipped_pngs, zipped_outcome)]
LATER_CHECKS: dict[str, Callable[[FileSteps, Any], dg.AssetCheckResult]] = {"standardGeojson": plausibility_check}
SKIPPED = {"status": "skipped", "message": "skipped"}


def step_inputs(asset: dg.AssetsDefinition, make: Callable[..., Outcome]) -> dict[str, str]:
    """{argument: step} of the tables a step's outcome function takes (its arguments after the file's steps)."""
    return {arg: asset.keys_by_input_name[arg].to_user_string() for arg in list(inspect.signature(make).parameters)[1:]}


# The step after which no step reads a table: a big file's raw records are let go once it is standardised.
LAST_READER = {table: max(i for i, (asset, make) in enumerate(FILE_STEPS) if table in step_inputs(asset, make).values())
               for asset, make in FILE_STEPS for table in step_inputs(asset, make).values()}


# What an upload's run records for one file, in order: a step's materialisation or check evaluation, or the
# key of a step it planned and did not materialise (`checks.plan`).
FileEvent = dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.AssetKey


@dataclass
class FileRun:
    """One file's steps in its upload's run: Leaf's per-step status and the events to record for them."""
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[FileEvent] = field(default_factory=list)


def in_batch_run(context: dg.AssetExecutionContext, store: Storage, file_id: str) -> FileRun:
    """Every step of one file inside its upload's run: each step's outcome as the events of the file's
    partition (its materialisation and check evaluations, as the file's own run records them, logged by
    `log_file_events`), its table written as the IO manager writes it and handed to the later steps in
    memory. A step whose gate fails, or that raises, stops the steps after it, not the run: the upload's other
    files go on. The per-step status is read from the same outcomes as `run_status.run_steps` reads a file
    run's events."""
    steps = FileSteps(store, file_id)
    tables: dict[str, Any] = {}
    run = FileRun()
    status = run.status
    for number, (asset, make) in enumerate(FILE_STEPS):
        for table in [t for t, last in LAST_READER.items() if last < number]:
            tables.pop(table, None)
        name = asset.key.to_user_string()
        if any(status[key.to_user_string()]["status"] != "processed" for key in asset.dependency_keys):
            status[name] = SKIPPED
            continue
        inputs = {arg: tables[table] for arg, table in step_inputs(asset, make).items()}
        try:
            outcome = make(steps, **inputs)
            if outcome.failed is None and outcome.table is not None:
                steps.write_table(name, outcome.table)
            later = [check(steps, outcome.table) for check in [LATER_CHECKS.get(name)] if check and outcome.failed is None]
        except Exception:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            status[name] = step_error(error)
            context.log.error(f"{file_id}: {name} raised\n{error.to_string()}")
            run.events.append(asset.key)
            continue
        if outcome.failed is None:
            run.events.append(dg.AssetMaterialization(asset_key=name, partition=file_id, metadata=outcome.metadata))
            tables[name] = outcome.table
        else:
            run.events.append(asset.key)
        status[name] = {"status": "processed", "message": "ok"}
        for check in [*outcome.checks, *later, *([outcome.failed] if outcome.failed else [])]:
            evaluation = dg.AssetCheckEvaluation(
                asset_key=asset.key, check_name=check.check_name or "", passed=check.passed, severity=check.severity,
                description=check.description, metadata=check.metadata, partition=file_id)
            run.events.append(evaluation)
            failed = failed_check_step(evaluation)
            status[name] = failed if failed else status[name]
    return run


def log_file_events(context: dg.AssetExecutionContext, file_id: str, events: list[FileEvent]) -> None:
    """Record one file's events of an upload's run against its partition, in the order its steps made them."""
    for event in events:
        if isinstance(event, dg.AssetKey):
            plan(context, event, file_id)
        else:
            context.log_event(event)
