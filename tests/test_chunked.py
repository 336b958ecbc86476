"""A file's steps run in chunks of a few rows give the outputs of the same steps run with the whole file as one
chunk: every column's values in the raw, standard, filtered and polygon GeoParquet, the record sections the
steps write (summary, units, standard facts, plausibility), and the pixels of every image.

The files: real John Deere exports (a harvest with its metadata sidecar, a seeding), an as-applied file of
polygons (centroids and areas in one metric CRS for the whole file), a Yield Editor export, an ISOXML
task set and a generated JD harvest like the
benchmark's (made here, a few thousand points). Chunks of 97 rows do not divide any of them evenly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from benchmarks.generate import write_harvest_zip
from benchmarks.shapefile import step_calls
from leaf_dagster.config import save
from leaf_dagster.files import FileSteps
from leaf_dagster.ingest.batch import batch_id_for, ingest_batch, new_batch
from leaf_dagster.model import SourceTable
from leaf_dagster.storage import Storage

from .conftest import JD_WHEAT, MONTANA

TINY = 97
WHOLE = 1 << 40
# Sections whose facts come from the rows (ids, times of the run and paths aside).
SECTIONS = ("raw", "standard", "filtered", "plausibility", "summary", "units", "images")
_RUN_FACTS = {"thumbnailToken", "updatedTime"}


def _run(upload: Path, root: Path, chunk_rows: int) -> tuple[Storage, str]:
    """Every per-file step of the upload's first machine file that passes its standard step, its tables written and handed on as in a run."""
    storage = Storage(root)
    save(storage, {"enablePolygonOutput": True})
    batch_id = batch_id_for(upload, "chunks", "JohnDeere")
    new_batch(storage, batch_id, upload, "chunks", "JohnDeere", move=False)
    outcome = ingest_batch(storage, batch_id)
    assert not outcome.error and outcome.files
    for file in sorted(outcome.files, key=lambda f: f["fileName"]):
        steps = FileSteps(storage, file["id"], chunk_rows=chunk_rows)
        calls = list(step_calls(steps).values())
        results = [call() for call in calls[:3]]
        if steps.schema_failure(results[2]) is None:
            for call in calls[3:]:
                call()
            return storage, file["id"]
    raise AssertionError(f"no machine file of {upload.name} passes its standard step")


def _facts(storage: Storage, file_id: str) -> dict[str, Any]:
    record = storage.records.get("files", file_id)
    assert record is not None
    facts = {}
    for section in SECTIONS:
        doc = storage.records.section("files", file_id, section) or {}
        facts[section] = {k: v for k, v in doc.items() if k not in _RUN_FACTS}
    for image in facts["images"].get("images", []):
        image.pop("fileId")
        image.pop("path")
    return json.loads(json.dumps(facts, default=str).replace(file_id, "FILE"))


def _same_outputs(tiny: tuple[Storage, str], whole: tuple[Storage, str]) -> None:
    (a, a_id), (b, b_id) = tiny, whole
    for table in ("raw", "standard", "filtered", "polygons"):
        left, right = pq.read_table(a.parquet_path(table, a_id)), pq.read_table(b.parquet_path(table, b_id))
        assert left.num_rows == right.num_rows > 0, table
        assert left.schema.equals(right.schema, check_metadata=True), table
        for name in left.column_names:
            if name == "file_id":
                continue
            assert left[name].combine_chunks().equals(right[name].combine_chunks()), f"{table}.{name}"
        geo_a = json.loads(pq.read_metadata(a.parquet_path(table, a_id)).metadata[b"geo"])
        geo_b = json.loads(pq.read_metadata(b.parquet_path(table, b_id)).metadata[b"geo"])
        assert geo_a == geo_b, table
    assert pq.ParquetFile(a.parquet_path("raw", a_id)).num_row_groups > 1  # it was written in chunks
    assert _facts(a, a_id) == _facts(b, b_id)
    images_a = sorted(p.name for p in a.images_dir(a_id).glob("*.png"))
    assert images_a and images_a == sorted(p.name for p in b.images_dir(b_id).glob("*.png"))
    for name in images_a:
        pixels_a = np.asarray(Image.open(a.images_dir(a_id) / name))
        assert np.array_equal(pixels_a, np.asarray(Image.open(b.images_dir(b_id) / name))), name
    thumb_a, thumb_b = a.file_dir(a_id) / "summary-map.png", b.file_dir(b_id) / "summary-map.png"
    assert thumb_a.exists() == thumb_b.exists()
    if thumb_a.exists():
        assert np.array_equal(np.asarray(Image.open(thumb_a)), np.asarray(Image.open(thumb_b)))


def _compare(upload: Path, root: Path) -> None:
    _same_outputs(_run(upload, root / "tiny", TINY), _run(upload, root / "whole", WHOLE))


@pytest.mark.parametrize("name", [JD_WHEAT, "FarmerC Hill Farms-FarmerC Hill Farms-Millview-Wheat (Hrd Rd Spr) seeding",
                                  "FarmerB_AA1617_POLY_AA_N_sec35middle", "FarmerB_YE_YLD_2014_sec1west"])
def test_real_shapefiles(real: Path, tmp_path: Path, name: str) -> None:
    _compare(real / MONTANA / f"{name}.zip", tmp_path)


def test_real_isoxml(real: Path, tmp_path: Path) -> None:
    _compare(real / "isoxml-cnh-planter-aircart" / "Another-single-ACP.zip", tmp_path)


def test_generated_harvest(tmp_path: Path) -> None:
    upload, _ = write_harvest_zip(tmp_path / "generated", 3_001, keep_shapefile=False)
    _compare(upload, tmp_path)
    shutil.rmtree(tmp_path / "generated")


def _read_generated(tmp_path: Path) -> tuple[FileSteps, SourceTable]:
    """The steps of a generated 1,001-point harvest in 97-row chunks, and its raw records as read."""
    upload, _ = write_harvest_zip(tmp_path / "generated", 1_001, keep_shapefile=False)
    storage = Storage(tmp_path / "data")
    batch_id = batch_id_for(upload, "letgo", "JohnDeere")
    new_batch(storage, batch_id, upload, "letgo", "JohnDeere", move=False)
    (file,) = ingest_batch(storage, batch_id).files
    steps = FileSteps(storage, file["id"], chunk_rows=TINY)
    steps.store_original()
    return steps, steps.read_raw()


def test_standard_step_again_reads_back_the_records_it_let_go(tmp_path: Path) -> None:
    """The standard step lets go of the raw records it standardises (no later step reads them); run again in the
    same process on the same table, as the IO manager keeps it, it reads them back from the raw GeoParquet and
    gives the same points."""
    steps, source = _read_generated(tmp_path)
    steps.write_table("rawGeojson", source)
    first = steps.standardize(source)
    assert source.point_count == 0
    again = steps.standardize(source)
    assert first.frame is not None and again.frame is not None and len(first.frame) > 800
    pd.testing.assert_frame_equal(pd.DataFrame(again.frame), pd.DataFrame(first.frame))


def _root(array: np.ndarray) -> object:
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


def test_standard_step_holds_nothing_of_the_records_it_let_go(tmp_path: Path) -> None:
    """Once standardised, the raw records are gone: every shapely point of them let go as its chunk was
    encoded, and the source's emptied frame no view of their columns (an empty view still holds every row)."""
    steps, source = _read_generated(tmp_path)
    points = source.frame.geometry.values._data
    columns = {c: _root(source.frame[c].to_numpy()) for c in source.frame.columns if c != "geometry"}
    result = steps.standardize(source)
    assert result.table is not None and result.table.point_count > 800
    assert all(point is None for point in points)
    assert len(source.frame) == 0
    for column, root in columns.items():
        assert _root(source.frame[column].to_numpy()) is not root, column


def test_reader_batches_match_pyogrio_dataframe(real: Path, tmp_path: Path) -> None:
    """The shapefile reader decodes record batches of 65,536 records; its frame is pyogrio's whole-file
    `read_dataframe` (2D), column for column and geometry for geometry, for a file of several batches."""
    import zipfile

    import pandas as pd
    import pyogrio

    from benchmarks.generate import harvest_frame, write_shapefile
    from leaf_dagster.readers.vector import _read_frame

    generated = write_shapefile(harvest_frame(70_001), tmp_path / "generated", "generated")
    with zipfile.ZipFile(real / MONTANA / f"{JD_WHEAT}.zip") as archive:
        archive.extractall(tmp_path / "real")
    for shp in [generated, next((tmp_path / "real").rglob("*.shp"))]:
        theirs = pyogrio.read_dataframe(shp, use_arrow=True)
        theirs = theirs.set_geometry(theirs.geometry.force_2d())
        ours = _read_frame(shp, None)
        pd.testing.assert_frame_equal(pd.DataFrame(ours.drop(columns="geometry")),
                                      pd.DataFrame(theirs.drop(columns="geometry")))
        assert ours.crs == theirs.crs and not ours.geometry.has_z.any()
        assert (ours.geometry.to_wkb() == theirs.geometry.to_wkb()).all()
