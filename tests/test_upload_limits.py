"""Every bad upload is bounded: in disk (the extraction budget), in entries, in machine files and in runs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import dagster as dg
import pytest

from leaf_dagster.catalog import query
from leaf_dagster.errors import NO_VALID_FILES, UNREADABLE
from leaf_dagster.ingest.batch import MAX_FILES_ENV, batch_id_for, ingest_batch, new_batch
from leaf_dagster.ingest.safe_zip import ExtractionLimits
from leaf_dagster.defs.in_process import process_upload
from leaf_dagster.status import BATCH_JOB, FILE_JOB, STEP_ORDER
from leaf_dagster.storage import Storage

from .conftest import make_zip

MiB = 2**20
CSV = "latitude,longitude,Yld Mass(Dry)(tonne/ha)\n46.03,-109.17,5.1\n"


def repeated_member_zip(path: Path, names: list[str], data: bytes) -> Path:
    """A zip whose members all hold `data`, compressed once: writing 2,000 x 1 MiB through zipfile would
    deflate 2 GB. The layout is plain PKZIP (local headers, data, central directory, end record)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = packer.compress(data) + packer.flush()
    crc, dos_date = zlib.crc32(data), (1 << 5) | 1
    central, offset = [], 0
    with open(path, "wb") as out:
        for name in names:
            encoded = name.encode()
            local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, dos_date, crc, len(body), len(data),
                                len(encoded), 0)
            out.write(local + encoded + body)
            central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, dos_date, crc, len(body),
                                       len(data), len(encoded), 0, 0, 0, 0, 0o644 << 16, offset) + encoded)
            offset += len(local) + len(encoded) + len(body)
        directory = b"".join(central)
        out.write(directory)
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(names), len(names), len(directory), offset, 0))
    return path


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def received(storage: Storage, upload: Path) -> str:
    batch_id = batch_id_for(upload, "grower", "Other")
    new_batch(storage, batch_id, upload, "grower", "Other", move=False)
    return batch_id


def test_zip_of_zero_filled_members_is_refused_before_anything_is_written(storage: Storage, tmp_path: Path) -> None:
    """The issue's 2.3 MB zip of 2,000 x 1 MiB zero files: each member is exactly 1 MiB, so the per-member ratio
    test never looks at it, and it left 2.0 GB on disk. Now the whole upload's expansion is bounded."""
    upload = repeated_member_zip(tmp_path / "zeros.zip", [f"zeros/{i:04d}.bin" for i in range(2000)], bytes(MiB))
    size = upload.stat().st_size
    assert size < 3 * MiB
    batch_id = received(storage, upload)
    before = disk_bytes(storage.root)

    outcome = ingest_batch(storage, batch_id)

    budget = ExtractionLimits().budget(size)
    assert budget == 100 * size  # 227 MB for this 2.3 MB zip instead of 2.1 GB
    assert outcome.error == (f"zeros.zip: uncompressed size of {2000 * MiB} bytes in total exceeds the limit of "
                             f"{budget} bytes for an upload of this size (100x its size, at least {64 * MiB} bytes)")
    batch = storage.records.get("batches", batch_id)
    assert batch["status"] == "FAILED" and batch["statusDetails"] == outcome.error and batch["leafFiles"] == []
    assert not storage.extracted_dir(batch_id).exists()
    # the stored upload (kept for a retry) and two small records: disk grew by less than the upload + 64 KiB
    assert disk_bytes(storage.root) - before < size + 64 * 1024


def test_upload_ratio_counts_every_member_however_small(tmp_path: Path) -> None:
    """The cumulative bound with a small floor: 300 members of 64 KiB zeros, none of them checked alone."""
    upload = repeated_member_zip(tmp_path / "small.zip", [f"{i}.bin" for i in range(300)], bytes(64 * 1024))
    limits = ExtractionLimits(min_budget_bytes=MiB)
    from leaf_dagster.errors import UnsafeArchiveError
    from leaf_dagster.ingest.safe_zip import extract_archive

    with pytest.raises(UnsafeArchiveError, match="exceeds the limit of"):
        extract_archive(upload, tmp_path / "out", limits)
    assert not (tmp_path / "out").exists()
    # real machine files expand 2-17x as a whole (SOURCE.md sets): far inside the 100x bound
    assert extract_archive(make_zip(tmp_path / "ok.zip", {"a.csv": CSV * 1000}), tmp_path / "ok", limits)


def test_many_tiny_entries_are_refused_from_the_central_directory(storage: Storage, tmp_path: Path) -> None:
    """100,000 one-byte entries took 78 s and left 395 MB (a block per file); 30,000 stay in one 16-bit zip."""
    upload = repeated_member_zip(tmp_path / "tiny.zip", [f"t/{i}.txt" for i in range(30_000)], b"x")
    batch_id = received(storage, upload)

    outcome = ingest_batch(storage, batch_id)

    assert outcome.error == "tiny.zip: too many entries (30000 in total, limit 20000)"
    assert not storage.extracted_dir(batch_id).exists()


def test_no_valid_files_removes_the_extraction(storage: Storage, tmp_path: Path) -> None:
    upload = make_zip(tmp_path / "notes.zip", {"readme.txt": "not machine data", "photos/a.jpg": b"\xff\xd8" * 500})
    batch_id = received(storage, upload)

    outcome = ingest_batch(storage, batch_id)

    assert outcome.batch["status"] == "FAILED" and outcome.batch["statusDetails"] == NO_VALID_FILES
    assert not storage.extracted_dir(batch_id).exists()
    assert (storage.upload_dir(batch_id) / "notes.zip").exists()  # kept: the batch can be retried


def test_machine_files_per_upload_are_capped(storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_FILES_ENV, "3")
    upload = make_zip(tmp_path / "four.zip", {f"field{i}.csv": CSV for i in range(4)})
    batch_id = received(storage, upload)

    outcome = ingest_batch(storage, batch_id)

    assert outcome.error == ("four.zip: 4 machine files found, more than the limit of 3 per upload; "
                             "split the upload into smaller zips")
    assert outcome.files == [] and outcome.batch["status"] == "FAILED"
    assert not storage.extracted_dir(batch_id).exists()
    monkeypatch.setenv(MAX_FILES_ENV, "4")
    assert len(ingest_batch(storage, batch_id).files) == 4


def test_unsupported_files_are_settled_in_the_batch_run(real: Path, storage: Storage, tmp_path: Path,
                                                       instance: dg.DagsterInstance) -> None:
    """A 19 KB zip of 200 one-byte .yld entries: recognised-but-undecodable files fail originalFile in the
    batch step, with their members kept, and cost neither steps nor a partition of their own."""
    planted = real / "carpentries-ohio-planting-nh3" / "asplanted.gpkg"
    upload = make_zip(tmp_path / "yld.zip", {**{f"agleader/{i:03d}.yld": b"x" for i in range(200)}, "planted.gpkg": planted})

    result = process_upload(upload, storage, instance, leaf_user_id="grower", provider="AgLeader")

    assert instance.get_runs_count(dg.RunsFilter(job_name=BATCH_JOB)) == 1
    assert instance.get_runs_count(dg.RunsFilter(job_name=FILE_JOB)) == 0  # the upload's run ran planted.gpkg
    files = {f["fileName"]: f for f in result["files"]}
    assert instance.get_dynamic_partitions("machine_files") == [files["planted"]["id"]]
    assert instance.get_materialized_partitions(dg.AssetKey("zippedPNGs")) == {files["planted"]["id"]}
    assert len(files) == 201
    yld = files["000.yld"]
    assert yld["status"] == "failed"
    assert yld["steps"]["originalFile"] == {"status": "failed", "message": "Ag Leader yld files are not supported"}
    assert [yld["steps"][s]["status"] for s in STEP_ORDER[1:]] == ["skipped"] * (len(STEP_ORDER) - 1)
    assert (storage.original_dir(yld["id"]) / "000.yld").read_bytes() == b"x"
    _, rows = query(storage, f"select step, status from file_status where \"fileId\" = '{yld['id']}'")
    assert ("originalFile", "failed") in rows and ("zippedPNGs", "skipped") in rows
    assert files["planted"]["status"] == "processed"
    assert result["batch"]["status"] == "PROCESSED"

    only_yld = make_zip(tmp_path / "only.zip", {f"{i}.yld": b"x" for i in range(5)})
    result = process_upload(only_yld, storage, instance, leaf_user_id="grower", provider="AgLeader")
    assert result["batch"]["status"] == "FAILED" and result["batch"]["statusDetails"] == UNREADABLE
    assert instance.get_dynamic_partitions("machine_files") == [files["planted"]["id"]]
