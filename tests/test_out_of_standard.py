"""Leaf's outOfStandardOperations: a file missing a required property is processed and marked non-standard."""

from __future__ import annotations

import zipfile
from pathlib import Path

import dagster as dg
import pyogrio
import pytest

from leaf_dagster import config
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.errors import ConfigError
from leaf_dagster.query import list_files
from leaf_dagster.storage import Storage

from .conftest import JD_WHEAT, JD_WHEAT_ZIP, MONTANA, make_zip


def _without_moisture(real: Path, tmp_path: Path) -> Path:
    """The John Deere wheat yield export with its Moisture column removed: a harvest that, like a potato
    harvester, logs no moisture."""
    source = tmp_path / "src"
    with zipfile.ZipFile(real / MONTANA / JD_WHEAT_ZIP) as zf:
        zf.extractall(source)
    frame = pyogrio.read_dataframe(source / f"{JD_WHEAT}.shp")
    frame = frame.set_geometry(frame.geometry.force_2d())  # its PointZ has NaN heights, which GDAL will not write
    assert "Moisture" in frame.columns
    (tmp_path / "out").mkdir()
    pyogrio.write_dataframe(frame.drop(columns=["Moisture"]), tmp_path / "out" / f"{JD_WHEAT}.shp")
    members = {p.name: p for p in (tmp_path / "out").iterdir()}
    return make_zip(tmp_path / "no-moisture.zip", members)


def test_missing_moisture_fails_then_processes_out_of_standard(real: Path, tmp_path: Path) -> None:
    upload = _without_moisture(real, tmp_path)
    storage = Storage(tmp_path / "data")
    with dg.instance_for_test() as instance:
        (strict,) = process_upload(upload, storage, instance, leaf_user_id="strict", provider="JohnDeere")["files"]
        config.save(storage, {"outOfStandardOperations": True}, leaf_user_id="lenient")
        (lenient,) = process_upload(upload, storage, instance, leaf_user_id="lenient", provider="JohnDeere")["files"]

    assert strict["steps"]["standardGeojson"] == {"status": "failed",
                                                  "message": "missing required properties: harvestMoisture"}
    assert lenient["status"] == "processed" and lenient["steps"]["standardGeojson"]["message"] == "ok"
    assert lenient["standard"] is False and lenient["operationType"] == "harvested"
    record = storage.records.get("files", lenient["id"])
    assert record["missingProperties"] == ["harvestMoisture"]
    assert record["summary"]["properties"]["standard"] is False
    assert any("non-standard: missing required properties: harvestMoisture" in n for n in record["notes"])
    source = pyogrio.read_dataframe(f"/vsizip/{real / MONTANA / JD_WHEAT_ZIP}/{JD_WHEAT}.shp")
    kept = (source["WetMass"] > 0) & (source["DISTANCE"] * source["SWATHWIDTH"] > 0)
    assert lenient["pointCount"] == int(kept.sum())  # Leaf's cleanup still applies, without a moisture rule
    # Leaf's `standard` filter separates the two
    assert [f["id"] for f in list_files(storage, standard="false", leafUserId="lenient").items] == [lenient["id"]]
    assert list_files(storage, standard="true", leafUserId="lenient").items == []


def test_out_of_standard_setting_is_validated(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    assert config.effective(storage, None)["outOfStandardOperations"] is False
    with pytest.raises(ConfigError, match="outOfStandardOperations must be true or false"):
        config.save(storage, {"outOfStandardOperations": "yes"})
