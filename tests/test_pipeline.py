"""The Dagster side: sensors, batches, per-file status and failure messages, the catalog under a reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter

from leaf_dagster.catalog import query
from leaf_dagster.definitions import defs
from leaf_dagster.defs.resources import LeafStorage
from leaf_dagster.defs.sensors import inbox_sensor
from leaf_dagster.ingest.batch import batch_id_for
from leaf_dagster.defs.in_process import load_definitions, process_upload, run_files
from leaf_dagster.status import STEP_ORDER
from leaf_dagster.storage import Storage

from .conftest import JD_WHEAT_ZIP, MONTANA, REPO, make_zip



def jd_valid_points(zip_path: Path) -> int:
    """Points of a John Deere yield export that pass Leaf's default cleanup, counted from the source."""
    import pyogrio

    src = pyogrio.read_dataframe(f"/vsizip/{zip_path}/{zip_path.stem}.shp")
    valid = (src["Moisture"] > 0) & (src["Moisture"] < 100) & (src["WetMass"] > 0) & (src["DISTANCE"] * src["SWATHWIDTH"] > 0)
    return int(valid.sum())


def _settled(path: Path) -> Path:
    """Backdate an upload so the sensor treats it as completely written."""
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def _sensor_context(instance: dg.DagsterInstance, storage: Storage, cursor: str | None = None):
    return dg.build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"storage": LeafStorage(data_dir=str(storage.root))})


def test_definitions_load() -> None:
    d = defs()
    assert {j.name for j in d.jobs} >= {"ingest_batch", "process_file"}  # type: ignore[union-attr]
    sensors = {s.name: s for s in d.sensors}  # type: ignore[union-attr]
    assert set(sensors) == {"inbox_sensor", "requested_runs_sensor", "status_sensor", "recovery_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    d.resolve_job_def("process_file")
    assert {k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys()} == {"batch", "batchFiles", "batchOverview",
                                                                                         *STEP_ORDER}


def test_inbox_sensor_new_same_again_and_restart(real: Path, storage: Storage, instance: dg.DagsterInstance) -> None:
    storage.inbox.mkdir()
    upload = storage.inbox / "jd.zip"
    upload.write_bytes((real / MONTANA / JD_WHEAT_ZIP).read_bytes())
    (storage.inbox / "jd.json").write_text(json.dumps({"leafUserId": "grower-7", "provider": "JohnDeere"}))
    fresh = storage.inbox / "still-uploading.zip"
    fresh.write_bytes(b"PK\x03\x04 partial")
    _settled(upload)

    first = inbox_sensor(_sensor_context(instance, storage))
    assert isinstance(first, dg.SensorResult)
    batch_id = batch_id_for(upload, "grower-7", "JohnDeere")
    assert [r.partition_key for r in first.run_requests] == [batch_id]  # the unsettled upload waits
    assert first.run_requests[0].run_key == batch_id
    assert first.dynamic_partitions_requests[0].partition_keys == [batch_id]
    batch = storage.records.get("batches", batch_id)
    assert batch["status"] == "RECEIVED" and batch["leafUserId"] == "grower-7" and batch["provider"] == "JohnDeere"

    instance.add_dynamic_partitions("batches", [batch_id])  # what the daemon does with the request
    again = inbox_sensor(_sensor_context(instance, storage, cursor=None))  # a later tick or a restarted daemon
    assert isinstance(again, dg.SkipReason)


def test_one_run_per_upload_gives_each_file_its_partitions(real: Path, storage: Storage, instance: dg.DagsterInstance) -> None:
    storage.inbox.mkdir()
    upload = _settled(make_zip(storage.inbox / "two.zip", {
        "a/" + JD_WHEAT_ZIP: real / MONTANA / JD_WHEAT_ZIP,
        "planting.gpkg": real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg"}))
    tick = inbox_sensor(_sensor_context(instance, storage))
    instance.add_dynamic_partitions("batches", tick.dynamic_partitions_requests[0].partition_keys)
    batch_job = defs().resolve_job_def("ingest_batch")
    assert batch_job.execute_in_process(partition_key=batch_id_for_record(storage), instance=instance).success
    assert not upload.exists()  # stored in the batch folder, gone from the inbox
    batch = storage.records.get("batches", batch_id_for_record(storage))
    assert len(batch["leafFiles"]) == 2 and batch["status"] == "PROCESSED"
    assert set(instance.get_dynamic_partitions("machine_files")) == set(batch["leafFiles"])
    assert instance.get_runs_count(dg.RunsFilter(job_name="process_file")) == 0  # the files ran in the upload's run
    for step in STEP_ORDER:  # each file has its own materialisation of every step
        assert instance.get_materialized_partitions(dg.AssetKey(step)) == set(batch["leafFiles"]), step
    for record in storage.records.many("files", batch["leafFiles"]):
        assert record["status"] == "processed" and set(record["steps"]) == set(STEP_ORDER)


def batch_id_for_record(storage: Storage) -> str:
    (record,) = storage.records.many("batches")
    return record["id"]


def _statuses(result: dict) -> dict[str, dict]:
    return {f["fileName"]: f for f in result["files"]}


def test_bad_files_fail_with_leaf_messages_and_the_rest_succeed(real: Path, storage: Storage,
                                                                 instance: dg.DagsterInstance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    import zipfile

    with zipfile.ZipFile(real / MONTANA / JD_WHEAT_ZIP) as zf:
        zf.extractall(src)
    stem = JD_WHEAT_ZIP[:-4]
    members = {f"good/{stem}{ext}": src / f"{stem}{ext}" for ext in (".shp", ".shx", ".dbf", ".prj")}
    members.update({f"nodbf/broken{ext}": src / f"{stem}{ext}" for ext in (".shp", ".shx", ".prj")})
    members["boundary/field.gpkg"] = real / "carpentries-ohio-planting-nh3" / "boundary.gpkg"
    members["monitor/20190816.yld"] = b"\x00\x01 Ag Leader PF3000 log"
    members["readme.txt"] = "not machine data"
    upload = make_zip(tmp_path / "mixed.zip", members)

    result = process_upload(upload, storage, instance, leaf_user_id="grower-1", provider="Other")
    files = _statuses(result)
    assert set(files) == {stem, "broken", "field", "20190816.yld"}

    good = files[stem]
    assert good["status"] == "processed" and good["pointCount"] == jd_valid_points(real / MONTANA / JD_WHEAT_ZIP)
    assert {s["status"] for s in good["steps"].values()} == {"processed"}

    broken = storage.records.get("files", files["broken"]["id"])
    assert broken["steps"]["originalFile"]["status"] == "processed"
    assert broken["steps"]["rawGeojson"]["status"] == "failed"
    assert broken["steps"]["rawGeojson"]["message"] == "Failed to convert file on provider batch processing"
    assert "shapefile set 'broken' is missing its .dbf" in broken["steps"]["rawGeojson"]["details"]["reason"]
    assert broken["steps"]["standardGeojson"] == {"status": "skipped", "message": "skipped"}
    assert broken["steps"]["zippedPNGs"] == {"status": "skipped", "message": "skipped"}

    assert files["field"]["steps"]["standardGeojson"] == {"status": "failed",
                                                          "message": "unsupported operation type: unknown"}
    yld = files["20190816.yld"]
    assert yld["fileFormat"] == "YLD"
    assert yld["steps"]["originalFile"] == {"status": "failed", "message": "Ag Leader yld files are not supported"}
    assert yld["steps"]["rawGeojson"]["status"] == "skipped"

    assert result["batch"]["status"] == "PROCESSED"
    # the in-process path materialises the batch's overview table too, one row per file with its failure
    (overview,) = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("batchOverview"), asset_partitions=[result["batch"]["id"]]), limit=1).records
    table = overview.asset_materialization.metadata["files"].value  # type: ignore[union-attr]
    by_name = {r.data["file_name"]: r.data for r in table.records}
    assert set(by_name) == set(files)
    assert by_name["broken"]["failing_step"] == "rawGeojson" and by_name[stem]["points"] == good["pointCount"]
    _, rows = query(storage, "select step, status, message from file_status where status = 'failed' order by 1")
    assert ("rawGeojson", "failed", "Failed to convert file on provider batch processing") in rows
    assert ("originalFile", "failed", "Ag Leader yld files are not supported") in rows

    # in the upload's run, a failed gate is recorded on the file's partition with Leaf's message
    converted = dg.AssetCheckKey(dg.AssetKey("rawGeojson"), "converted")
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [converted], partition_filter=PartitionKeyFilter(key=broken["id"]))[converted]
    assert check.status.value == "FAILED"
    evaluation = check.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
    assert evaluation.description == "Failed to convert file on provider batch processing"
    # and a file's own run (a retry, a re-run from the UI) records the status the upload's run recorded
    ran = {f["id"]: storage.records.get("files", f["id"])["steps"] for f in result["files"] if f["fileFormat"] != "YLD"}
    run_files(storage, instance, load_definitions(storage), list(ran))
    assert {file_id: storage.records.get("files", file_id)["steps"] for file_id in ran} == ran


def test_missing_prj_lonlat_is_read_as_wgs84_and_projected_fails(real: Path, storage: Storage,
                                                                  instance: dg.DagsterInstance, tmp_path: Path) -> None:
    import zipfile

    src = tmp_path / "src"
    for name in (JD_WHEAT_ZIP, "FarmerB_YE_YLD_2014_sec1west.zip"):
        with zipfile.ZipFile(real / MONTANA / name) as zf:
            zf.extractall(src)
    lonlat, utm = JD_WHEAT_ZIP[:-4], "FarmerB_YE_YLD_2014_sec1west"
    members = {f"{lonlat}{ext}": src / f"{lonlat}{ext}" for ext in (".shp", ".shx", ".dbf")}
    members.update({f"utm{ext}": src / f"{utm}{ext}" for ext in (".shp", ".shx", ".dbf")})
    result = process_upload(make_zip(tmp_path / "noprj.zip", members), storage, instance,
                            leaf_user_id="g", provider="Other")
    files = _statuses(result)
    assert files[lonlat]["status"] == "processed"
    record = storage.records.get("files", files[lonlat]["id"])
    assert any("read as WGS84" in note for note in record["raw"]["notes"])
    failed = storage.records.get("files", files["utm"]["id"])["steps"]["rawGeojson"]
    assert failed["message"] == "Failed to convert file on provider batch processing"
    assert "has no CRS (.prj missing)" in failed["details"]["reason"]


@pytest.mark.parametrize("kind", ["corrupt", "empty", "traversal"])
def test_unusable_uploads_fail_the_batch(storage: Storage, instance: dg.DagsterInstance, tmp_path: Path, kind: str) -> None:
    if kind == "corrupt":
        upload = tmp_path / "corrupt.zip"
        upload.write_bytes(b"PK\x03\x04" + os.urandom(2000))
        expected = "corrupt.zip: not a readable zip archive"
    elif kind == "empty":
        upload = make_zip(tmp_path / "nothing.zip", {"notes.txt": "hello", "photo.jpg": b"\xff\xd8\xff"})
        expected = "No valid files found"
    else:
        upload = make_zip(tmp_path / "evil.zip", {"../../escape.csv": "lat,lon\n1,2\n", "ok.txt": "x"})
        expected = "escapes the extraction folder"
    result = process_upload(upload, storage, instance, leaf_user_id="g", provider="Other")
    assert result["batch"]["status"] == "FAILED"
    assert expected in result["batch"]["statusDetails"]
    assert result["files"] == []
    assert not (storage.root.parent / "escape.csv").exists() and not (storage.root / "escape.csv").exists()
    run = instance.get_runs(dg.RunsFilter(job_name="ingest_batch"), limit=1)[0]
    evaluation = next(e.dagster_event.event_specific_data for e in instance.all_logs(run.run_id)
                      if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert not evaluation.passed


def _hold_catalog(path: Path, read_only: bool) -> subprocess.Popen:
    code = ("import duckdb, sys, time\n"
            f"con = duckdb.connect({str(path)!r}, read_only={read_only})\n"
            "con.execute('select count(*) from files').fetchall()\n"
            "print('open', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(con.execute('select count(*) from files').fetchone()[0], flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


@pytest.mark.parametrize("read_only", [True, False])
def test_an_open_catalog_reader_does_not_block_the_pipeline(real: Path, storage: Storage, instance: dg.DagsterInstance,
                                                            tmp_path: Path, read_only: bool) -> None:
    first = make_zip(tmp_path / "one.zip", {"planted.gpkg": real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg"})
    process_upload(first, storage, instance, leaf_user_id="g", provider="Other")
    reader = _hold_catalog(storage.catalog_path, read_only)
    try:
        second = make_zip(tmp_path / "two.zip", {"applied.gpkg": real / "carpentries-ohio-planting-nh3" / "asapplied.gpkg"})
        result = process_upload(second, storage, instance, leaf_user_id="g", provider="Other")
        assert result["files"][0]["status"] == "processed"
        # the open reader's views read the lake at query time, so it sees the new file too
        out, _ = reader.communicate("\n", timeout=30)
        assert out.strip() == "2"
    finally:
        reader.kill()
    _, rows = query(storage, "select count(*) from files")
    assert rows[0][0] == 2


def _cli(*args: str, data: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["LEAF_DATA_DIR"] = str(data)
    return subprocess.run([str(REPO / ".venv" / "bin" / "leaf-dagster"), *args] if (REPO / ".venv" / "bin" / "leaf-dagster").exists()
                          else [sys.executable, "-m", "leaf_dagster.cli", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_process_json_sql_and_status(real: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = _cli("process", str(real / MONTANA / JD_WHEAT_ZIP), "--leaf-user-id", "grower-9", "--provider",
                "JohnDeere", "--json", data=data)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["batch"]["status"] == "PROCESSED" and out["batch"]["leafUserId"] == "grower-9"
    (file,) = out["files"]
    valid = jd_valid_points(real / MONTANA / JD_WHEAT_ZIP)
    assert file["operationType"] == "harvested" and file["status"] == "processed" and file["pointCount"] == valid
    assert file["steps"] == {s: {"status": "processed", "message": "ok"} for s in STEP_ORDER}

    status = _cli("files", "status", file["id"], "--json", data=data)
    assert json.loads(status.stdout) == file["steps"]
    import pyogrio

    source = pyogrio.read_dataframe(f"/vsizip/{real / MONTANA / JD_WHEAT_ZIP}/{JD_WHEAT_ZIP[:-4]}.shp")
    wet = source.loc[(source["WetMass"] > 0) & (source["DISTANCE"] > 0), "WetMass"]
    sql = _cli("sql", "select count(*) as n, avg(wetMassPerArea) as w from standard_points", "--json", data=data)
    assert json.loads(sql.stdout) == [{"n": valid, "w": pytest.approx(wet.mean(), rel=1e-9)}]
    table = _cli("process", str(real / MONTANA / JD_WHEAT_ZIP), "--leaf-user-id", "g", "--provider", "JohnDeere", data=tmp_path / "d2")
    assert "harvested" in table.stdout and str(valid) in table.stdout and "extracting" in table.stderr
    bad = _cli("sql", "select nope from files", data=data)
    assert bad.returncode == 1 and bad.stderr.startswith("SQL error:")


def test_a_step_that_raises_fails_its_file_alone_as_its_own_run_would(real: Path, storage: Storage,
                                                                      instance: dg.DagsterInstance, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in one step for one file (here the summary of the planting file raises): in the upload's run that
    file's summary fails with the error's root cause, its steps not after the summary still run, the other file
    is processed, and the file's own run records the same status."""
    from leaf_dagster.files import FileSteps

    upload = make_zip(tmp_path / "two.zip", {"a/" + JD_WHEAT_ZIP: real / MONTANA / JD_WHEAT_ZIP,
                                             "planting.gpkg": real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg"})
    summarize = FileSteps.summarize

    def exploding(self: FileSteps, standard):  # noqa: ANN001, ANN202
        if self.record["fileName"] == "planting":
            raise RuntimeError("the summary exploded")
        return summarize(self, standard)

    monkeypatch.setattr(FileSteps, "summarize", exploding)
    result = process_upload(upload, storage, instance, leaf_user_id="grower", provider="Other")
    files = _statuses(result)
    planting = storage.records.get("files", files["planting"]["id"])
    assert planting["steps"]["summary"] == {"status": "failed", "message": "RuntimeError: the summary exploded"}
    assert {planting["steps"][s]["status"] for s in ("filteredGeojson", "units", "propertiesPNGs", "zippedPNGs")} == {"processed"}
    assert files[JD_WHEAT_ZIP[:-4]]["status"] == "processed" and result["batch"]["status"] == "PROCESSED"

    run_files(storage, instance, load_definitions(storage), [planting["id"]])
    assert storage.records.get("files", planting["id"])["steps"] == planting["steps"]
