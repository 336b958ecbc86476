"""What a user sees in the Dagster UI, asked through Dagster's GraphQL API (what the UI itself reads): a file
that fails a Leaf gate has its failing step failed with Leaf's message and evidence, in the upload's run and in
a run of its own, the steps after it are not run (not failed, not materialised), materialisations name their file, the batch overview lists every file with its
status and reason, and the summary map carries its legend. Also the batch's statusDetails wording."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
import numpy as np
import pytest
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql
from PIL import Image

from leaf_dagster.definitions import defs
from leaf_dagster.defs.resources import LeafStorage
from leaf_dagster.defs.sensors import status_sensor
from leaf_dagster.derived.images import RAMP, legend_number
from leaf_dagster.errors import UNREADABLE
from leaf_dagster.defs.in_process import QUIET, process_upload
from leaf_dagster.status import OVERVIEW_JOB
from leaf_dagster.storage import DATA_DIR_ENV, Storage

from .conftest import JD_WHEAT_ZIP, MONTANA, REPO, SAMPLES, make_zip
from .test_pipeline import jd_valid_points

SMS = "area2_yield_ISO-8859-1"  # an SMS yield export whose every point the default cleanup removes
NO_POINTS = "no points passed the filter"
SKIPPED = ["filteredGeojson", "summary", "units", "propertiesPNGs", "zippedPNGs"]

RUN = """
query($runId: ID!) { runOrError(runId: $runId) { ... on Run {
  status tags { key value } stepStats { stepKey status }
  eventConnection { events { __typename
    ... on MessageEvent { stepKey level message }
    ... on MaterializationEvent { assetKey { path } }
    ... on ExecutionStepFailureEvent { error { message className }
        failureMetadata { description metadataEntries { label ... on TextMetadataEntry { text } } } }
    ... on RunFailureEvent { error { message className } } } } } } }
"""
PARTITIONS = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode { assetPartitionStatuses {
  ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } } } } }
"""
LATEST = """
query($key: AssetKeyInput!, $partition: String!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetMaterializations(partitions: [$partition], limit: 1) { metadataEntries { label __typename
    ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } ... on FloatMetadataEntry { floatValue }
    ... on TableMetadataEntry { table { records schema { columns { name } } } } } } } } }
"""


@dataclass
class Uploads:
    storage: Storage
    instance: dg.DagsterInstance
    context: Any  # Dagster's GraphQL request context over a code server of this repository
    cleaned_out: dict[str, Any]  # the SMS sample alone: read, then every point removed by the cleanup
    mixed: dict[str, Any]  # JD wheat yield, the SMS file, a shapefile without .dbf and an Ag Leader .yld
    unread_and_cleaned: dict[str, Any]  # the shapefile without .dbf and the SMS file

    def query(self, text: str, **variables: Any) -> dict[str, Any]:
        return execute_dagster_graphql(self.context, text, variables).data

    def file(self, result: dict[str, Any], name: str) -> dict[str, Any]:
        return next(f for f in result["files"] if f["fileName"] == name)


def _broken_shapefile(real: Path, target: Path) -> dict[str, Path]:
    """The JD wheat export's .shp, .shx and .prj without its .dbf, as members named `broken.*`."""
    with zipfile.ZipFile(real / MONTANA / JD_WHEAT_ZIP) as zf:
        zf.extractall(target)
    stem = JD_WHEAT_ZIP[:-4]
    return {f"broken{ext}": target / f"{stem}{ext}" for ext in (".shp", ".shx", ".prj")}


@pytest.fixture(scope="module")
def uploads(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uploads]:
    tmp = tmp_path_factory.mktemp("ui")
    data = tmp / "data"
    data.mkdir()
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv(DATA_DIR_ENV, str(data))
        storage = Storage(data)
        with zipfile.ZipFile(SAMPLES / "sms-yield-csv-victoria.zip") as zf:
            sms = zf.read(f"{SMS}.csv")
        broken = _broken_shapefile(real, tmp / "src")
        stem = JD_WHEAT_ZIP[:-4]
        wheat = {f"jd/{stem}{ext}": tmp / "src" / f"{stem}{ext}" for ext in (".shp", ".shx", ".dbf", ".prj")}
        mixed = make_zip(tmp / "mixed.zip", {**wheat, f"sms/{SMS}.csv": sms, **{f"bad/{k}": v for k, v in broken.items()},
                                             "monitor/20190816.yld": b"\x00\x01 Ag Leader PF3000 log"})
        both = make_zip(tmp / "both.zip", {f"sms/{SMS}.csv": sms, **{f"bad/{k}": v for k, v in broken.items()}})
        results = [process_upload(upload, storage, instance, leaf_user_id="grower", provider="AgLeader")
                   for upload in (SAMPLES / "sms-yield-csv-victoria.zip", mixed, both)]
        with define_out_of_process_context(str(REPO / "workspace.yaml"), None, instance) as context:
            yield Uploads(storage, instance, context, *results)


def _csv_records(csv: bytes) -> int:
    """Data rows of the SMS export, counted from the text: lines after the header."""
    return len([line for line in csv.decode("latin-1").splitlines()[1:] if line.strip()])


def test_a_failed_gate_fails_its_step_with_leafs_message_and_the_rest_is_not_run(uploads: Uploads) -> None:
    """In the upload's run: the file's failing step fails on its partition, with Leaf's message on its gate, the
    steps after it are not run, and the run says which files failed."""
    record = uploads.file(uploads.cleaned_out, SMS)
    run = uploads.instance.get_run_by_id(uploads.storage.records.get("files", record["id"])["lastRunId"])
    assert run is not None and run.job_name == "ingest_batch"
    data = uploads.query(RUN, runId=run.run_id)["runOrError"]
    assert data["status"] == "FAILURE"
    assert {s["stepKey"]: s["status"] for s in data["stepStats"]} == {"batch": "SUCCESS", "batchFiles": "FAILURE"}
    events = data["eventConnection"]["events"]
    (failure,) = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    assert failure["failureMetadata"]["description"] == "1 of 1 files failed; each file's status and the batch overview say why"
    errors = [e for e in events if e["__typename"] == "LogMessageEvent" and e["level"] == "ERROR"]
    (error,) = errors  # the run's log names the file, its failed step and Leaf's message
    assert error["message"] == f"{SMS} ({record['id']}): standardGeojson failed: {NO_POINTS}"
    materialised = {"/".join(e["assetKey"]["path"]) for e in events if e["__typename"] == "MaterializationEvent"}
    assert materialised == {"batch", "originalFile", "rawGeojson"}

    def statuses(asset: str) -> dict[str, list[str]]:
        return uploads.query(PARTITIONS, key={"path": [asset]})["assetNodeOrError"]["assetPartitionStatuses"]

    def failed_and_not_run() -> None:
        standard = statuses("standardGeojson")
        assert record["id"] in standard["failedPartitions"] and record["id"] not in standard["materializedPartitions"]
        assert record["id"] in statuses("rawGeojson")["materializedPartitions"]
        for asset in SKIPPED:
            assert record["id"] not in statuses(asset)["failedPartitions"] + statuses(asset)["materializedPartitions"]

    failed_and_not_run()

    key = dg.AssetCheckKey(dg.AssetKey("standardGeojson"), "standard_schema")
    check = uploads.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [key], partition_filter=PartitionKeyFilter(key=record["id"]))[key]
    assert check.status.value == "FAILED" and check.run_id == run.run_id
    evaluation = check.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
    assert evaluation.description == NO_POINTS
    assert "yield" in evaluation.metadata["evidence"].value

    # Leaf's per-file status for the API and CLI
    steps = uploads.storage.records.get("files", record["id"])["steps"]
    assert steps["standardGeojson"]["status"] == "failed" and steps["standardGeojson"]["message"] == NO_POINTS
    assert "yield" in steps["standardGeojson"]["details"]["evidence"]
    assert {name: steps[name] for name in SKIPPED} == {name: {"status": "skipped", "message": "skipped"} for name in SKIPPED}


def test_a_files_own_run_fails_its_step_with_leafs_message(uploads: Uploads) -> None:
    """A file re-run on its own (a retry, from the UI): the run's failing step is the file's, with Leaf's message
    and evidence, and the partitions' statuses stay as the upload's run left them."""
    record = uploads.file(uploads.cleaned_out, SMS)
    rerun = defs().resolve_job_def("process_file").execute_in_process(
        partition_key=record["id"], instance=uploads.instance, raise_on_error=False, run_config=QUIET,
        tags={"leaf/file_name": SMS})
    assert not rerun.success
    data = uploads.query(RUN, runId=rerun.run_id)["runOrError"]
    steps = {s["stepKey"]: s["status"] for s in data["stepStats"]}
    assert steps == {"originalFile": "SUCCESS", "rawGeojson": "SUCCESS", "standardGeojson": "FAILURE"}
    events = data["eventConnection"]["events"]
    (failure,) = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
    assert failure["stepKey"] == "standardGeojson" and failure["error"]["className"] == "Failure"
    assert failure["failureMetadata"]["description"] == NO_POINTS
    assert failure["error"]["message"].splitlines()[0].endswith(f"Failure: {NO_POINTS}")  # the headline
    evidence = {m["label"]: m.get("text") for m in failure["failureMetadata"]["metadataEntries"]}
    assert evidence["file_name"] == SMS and evidence["operation_type"] == "harvested" and "yield" in evidence["evidence"]
    (run_failure,) = [e for e in events if e["__typename"] == "RunFailureEvent"]
    assert run_failure["error"]["message"].splitlines()[0].endswith(NO_POINTS)
    assert not any("DagsterAssetCheckFailedError" in json.dumps(e) for e in events)
    assert not [e for e in events if e.get("stepKey") in SKIPPED and e["__typename"] == "ExecutionStepFailureEvent"]
    for asset in SKIPPED:
        partitions = uploads.query(PARTITIONS, key={"path": [asset]})["assetNodeOrError"]["assetPartitionStatuses"]
        assert record["id"] not in partitions["failedPartitions"] + partitions["materializedPartitions"]
    assert uploads.query(PARTITIONS, key={"path": ["standardGeojson"]})["assetNodeOrError"][
        "assetPartitionStatuses"]["failedPartitions"].count(record["id"]) == 1


def test_materialisations_are_found_by_file_name(uploads: Uploads) -> None:
    record = uploads.file(uploads.cleaned_out, SMS)
    latest = uploads.query(LATEST, key={"path": ["rawGeojson"]}, partition=record["id"])
    entries = {e["label"]: e for e in latest["assetNodeOrError"]["assetMaterializations"][0]["metadataEntries"]}
    assert entries["file_name"]["text"] == SMS


def test_status_details_name_the_cleanup_and_keep_leafs_text_for_unreadable_files(uploads: Uploads) -> None:
    assert uploads.cleaned_out["batch"]["status"] == "FAILED"
    assert uploads.cleaned_out["batch"]["statusDetails"] == f"{SMS}: standardGeojson failed: {NO_POINTS}"
    assert uploads.unread_and_cleaned["batch"]["status"] == "FAILED"
    assert uploads.unread_and_cleaned["batch"]["statusDetails"] == (
        f"{UNREADABLE} (broken); {SMS}: standardGeojson failed: {NO_POINTS}")
    assert uploads.mixed["batch"]["status"] == "PROCESSED" and uploads.mixed["batch"]["statusDetails"] is None


def test_the_batch_overview_lists_every_file_with_status_and_reason(real: Path, uploads: Uploads) -> None:
    batch_id = uploads.mixed["batch"]["id"]
    tick = status_sensor(dg.build_sensor_context(instance=uploads.instance,
                                                 resources={"storage": LeafStorage(data_dir=str(uploads.storage.root))}))
    requested = {r.partition_key for r in tick.run_requests}
    assert requested == {uploads.mixed["batch"]["id"], uploads.cleaned_out["batch"]["id"],
                         uploads.unread_and_cleaned["batch"]["id"]}  # every settled batch, once
    result = defs().resolve_job_def(OVERVIEW_JOB).execute_in_process(partition_key=batch_id, instance=uploads.instance)
    assert result.success

    latest = uploads.query(LATEST, key={"path": ["batchOverview"]}, partition=batch_id)
    entries = {e["label"]: e for e in latest["assetNodeOrError"]["assetMaterializations"][0]["metadataEntries"]}
    table = entries["files"]["table"]
    rows = {row["file_name"]: row for row in map(json.loads, table["records"])}
    assert set(rows) == {JD_WHEAT_ZIP[:-4], SMS, "broken", "20190816.yld"}
    assert [c["name"] for c in table["schema"]["columns"]][:6] == ["file_name", "format", "operation_type", "status",
                                                                   "failing_step", "message"]

    wheat = rows[JD_WHEAT_ZIP[:-4]]
    assert (wheat["status"], wheat["operation_type"], wheat["failing_step"]) == ("processed", "harvested", None)
    assert wheat["points"] == jd_valid_points(real / MONTANA / JD_WHEAT_ZIP)
    assert wheat["crop"] and wheat["time_span"].startswith("2019-08-")
    with zipfile.ZipFile(SAMPLES / "sms-yield-csv-victoria.zip") as zf:
        sms_records = _csv_records(zf.read(f"{SMS}.csv"))
    assert rows[SMS] == {**rows[SMS], "status": "failed", "failing_step": "standardGeojson", "message": NO_POINTS,
                         "records_read": sms_records, "points": 0, "format": "CSV"}
    assert (rows["broken"]["failing_step"], rows["broken"]["message"]) == (
        "rawGeojson", "Failed to convert file on provider batch processing")
    assert (rows["20190816.yld"]["status"], rows["20190816.yld"]["failing_step"], rows["20190816.yld"]["message"]) == (
        "failed", "originalFile", "Ag Leader yld files are not supported")
    assert {r["file_id"] for r in rows.values()} == set(uploads.storage.records.get("batches", batch_id)["leafFiles"])


def test_the_summary_map_has_a_legend(uploads: Uploads) -> None:
    file_id = uploads.file(uploads.mixed, JD_WHEAT_ZIP[:-4])["id"]
    record = uploads.storage.records.get("files", file_id)
    legend = record["mapLegend"]
    standard = uploads.storage.read_geoparquet("standard", file_id)
    values = standard[legend["property"]].to_numpy(dtype=float)
    assert legend["property"] == "dryVolumePerArea" and legend["unit"] == record["units"]["dryVolumePerArea"]
    assert (legend["min"], legend["max"]) == (np.nanmin(values), np.nanmax(values)) and legend["ramp"] == RAMP

    latest = uploads.query(LATEST, key={"path": ["summary"]}, partition=file_id)
    entries = {e["label"]: e for e in latest["assetNodeOrError"]["assetMaterializations"][0]["metadataEntries"]}
    assert entries["map_property"]["text"] == "dryVolumePerArea"
    assert entries["map_min"]["floatValue"] == pytest.approx(legend["min"])
    assert entries["map_max"]["floatValue"] == pytest.approx(legend["max"])
    assert "Colour: **dryVolumePerArea**" in entries["map"]["mdStr"] and f"{legend_number(legend['max'])}" in entries["map"]["mdStr"]

    # drawn on the PNG: under the map, a bar running from the ramp's red to its green
    png = Image.open(io.BytesIO((uploads.storage.file_dir(file_id) / "summary-map.png").read_bytes())).convert("RGB")
    pixels = np.asarray(png)
    red, green = RAMP["0%"], RAMP["100%"]
    bars = [y for y in range(pixels.shape[0]) if list(pixels[y, 4]) == red and list(pixels[y, -5]) == green]
    assert bars and min(bars) > pixels.shape[0] // 2
