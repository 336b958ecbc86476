"""Tests for leaf_dagster.ingest.safe_zip: hostile uploads must never escape or exhaust dest."""

from __future__ import annotations

import io
import random
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from leaf_dagster.ingest.safe_zip import (
    CorruptArchiveError,
    ExtractionLimits,
    UnsafeArchiveError,
    extract_archive,
)

SHP_STEM = "FarmerB Farms Inc.-sec 1 west-Wheat (Hrd Rd Wtr)-1"


Entries = list[tuple[str | zipfile.ZipInfo, bytes]]


def zip_bytes(entries: Entries, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """Build a zip in memory so tests can nest or tamper with the raw bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def write_zip(path: Path, entries: Entries, **kwargs: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes(entries, **kwargs))
    return path


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with file contents, to prove nothing else was touched."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """Upload lives in tmp_path/in, dest is tmp_path/out/dest so its parent can be watched."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "neighbour.txt").write_text("must stay untouched")
    return tmp_path / "in", tmp_path / "out" / "dest"


def test_plain_extraction_keeps_spaces_and_parentheses(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    contents = {
        f"Rx Export (2024)/{SHP_STEM}.shp": b"shp-bytes",
        f"Rx Export (2024)/{SHP_STEM}.dbf": b"dbf-bytes",
        f"Rx Export (2024)/{SHP_STEM}.prj": b'GEOGCS["WGS 84"]',
        "readme (copy).txt": b"hello",
    }
    entries: Entries = [("Rx Export (2024)/", b""), ("empty folder/", b"")]
    entries += list(contents.items())
    archive = write_zip(src / "upload.zip", entries)

    result = extract_archive(archive, dest)

    assert result == sorted(dest.resolve() / name for name in contents)
    assert all(p.is_absolute() for p in result)
    for name, data in contents.items():
        assert (dest / name).read_bytes() == data
    assert (dest / "empty folder").is_dir()
    assert files_under(dest) == sorted(contents)  # no temporary files left behind


def test_macos_junk_is_skipped(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    archive = write_zip(
        src / "upload.zip",
        [
            (f"Field/{SHP_STEM}.shp", b"real"),
            ("Field/.DS_Store", b"finder"),
            (f"Field/._{SHP_STEM}.shp", b"appledouble"),
            ("__MACOSX/", b""),
            ("__MACOSX/Field/", b""),
            (f"__MACOSX/Field/._{SHP_STEM}.shp", b"resource fork"),
        ],
    )

    result = extract_archive(archive, dest)

    assert result == [dest.resolve() / f"Field/{SHP_STEM}.shp"]
    assert files_under(dest) == [f"Field/{SHP_STEM}.shp"]
    assert not (dest / "__MACOSX").exists()


def test_nested_zips_expand_to_max_depth_and_deeper_ones_stay_files(
    layout: tuple[Path, Path],
) -> None:
    src, dest = layout
    level3 = zip_bytes([("l3.txt", b"depth three")])
    level2 = zip_bytes([("l2.txt", b"depth two"), ("level3.zip", level3)])
    level1 = zip_bytes([("inner (1).txt", b"depth one"), ("sub/level2.zip", level2)])
    archive = write_zip(src / "upload.zip", [("top.txt", b"top"), ("data/level1.zip", level1)])

    result = extract_archive(archive, dest)

    root = dest.resolve()
    assert result == sorted(
        [
            root / "top.txt",
            root / "data/level1/inner (1).txt",
            root / "data/level1/sub/level2/l2.txt",
            root / "data/level1/sub/level2/level3.zip",
        ]
    )
    assert (root / "data/level1/sub/level2/l2.txt").read_bytes() == b"depth two"
    assert not (root / "data/level1.zip").exists()
    assert not (root / "data/level1/sub/level2.zip").exists()
    assert (root / "data/level1/sub/level2/level3.zip").read_bytes() == level3
    assert not (root / "data/level1/sub/level2/level3").exists()


def test_max_depth_zero_keeps_nested_zip(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    inner = zip_bytes([("a.txt", b"a")])
    archive = write_zip(src / "upload.zip", [("Inner Data.ZIP", inner)])

    result = extract_archive(archive, dest, ExtractionLimits(max_depth=0))

    assert result == [dest.resolve() / "Inner Data.ZIP"]
    assert (dest / "Inner Data.ZIP").read_bytes() == inner


def test_corrupt_nested_zip_is_kept_as_plain_file(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    junk = random.Random(1).randbytes(2048)
    archive = write_zip(src / "upload.zip", [("broken.zip", junk), ("ok.txt", b"ok")])

    result = extract_archive(archive, dest)

    assert result == [dest.resolve() / "broken.zip", dest.resolve() / "ok.txt"]
    assert (dest / "broken.zip").read_bytes() == junk
    assert not (dest / "broken").exists()


@pytest.mark.parametrize(
    "evil_name",
    [
        "../evil.txt",
        "sub/../../evil.txt",
        "..\\evil.txt",
        "sub\\..\\..\\evil.txt",
        "C:\\evil.txt",
        "\\\\server\\share\\evil.txt",
    ],
)
def test_escaping_entries_are_refused(layout: tuple[Path, Path], evil_name: str) -> None:
    src, dest = layout
    archive = write_zip(src / "upload.zip", [("good.txt", b"fine"), (evil_name, b"pwned")])
    before = tree(dest.parent)

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest)

    message = str(excinfo.value)
    assert message.startswith("upload.zip: entry ")
    assert repr(evil_name) in message
    assert "escapes the extraction folder" in message
    assert "\n" not in message
    assert tree(dest.parent) == before
    assert not dest.exists()


def test_absolute_entry_is_refused(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    # Absolute name aimed at dest's parent, so any write would show up in the tree check.
    evil_name = str(dest.parent / "evil.txt")
    archive = write_zip(src / "upload.zip", [(evil_name, b"pwned")])
    before = tree(dest.parent)

    with pytest.raises(UnsafeArchiveError, match="absolute path") as excinfo:
        extract_archive(archive, dest)

    assert str(excinfo.value) == (
        f"upload.zip: entry {evil_name!r} is an absolute path and escapes the extraction folder"
    )
    assert tree(dest.parent) == before


def test_symlink_entry_is_refused(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    link = zipfile.ZipInfo("Field/link-to-outside")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = write_zip(
        src / "upload.zip", [("Field/ok.txt", b"ok"), (link, b"../../neighbour.txt")]
    )
    before = tree(dest.parent)

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest)

    assert str(excinfo.value) == (
        "upload.zip: entry 'Field/link-to-outside' is a symbolic link, which is not allowed"
    )
    assert tree(dest.parent) == before


def test_existing_dest_content_survives_a_refusal(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    dest.mkdir()
    (dest / "keep.txt").write_text("earlier run")
    archive = write_zip(src / "upload.zip", [("new/ok.txt", b"ok"), ("../evil.txt", b"x")])

    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, dest)

    assert files_under(dest) == ["keep.txt"]
    assert list(dest.iterdir()) == [dest / "keep.txt"]


def test_too_many_entries_is_refused(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    archive = write_zip(src / "upload.zip", [(f"{SHP_STEM}-{i}.shp", b"x") for i in range(5)])

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest, ExtractionLimits(max_entries=4))

    assert str(excinfo.value) == "upload.zip: too many entries (5 in total, limit 4)"
    assert not dest.exists()


def test_entry_limit_counts_nested_members(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    inner = zip_bytes([("a.txt", b"a"), ("b.txt", b"b"), ("c.txt", b"c")])
    archive = write_zip(src / "upload.zip", [("top.txt", b"t"), ("inner.zip", inner)])

    assert len(extract_archive(archive, dest / "roomy", ExtractionLimits(max_entries=5))) == 4

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest / "tight", ExtractionLimits(max_entries=4))
    assert str(excinfo.value) == "upload.zip > inner.zip: too many entries (5 in total, limit 4)"
    assert not (dest / "tight").exists()


def test_total_size_limit_uses_declared_sizes(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    archive = write_zip(src / "upload.zip", [("a.bin", b"a" * 600), ("b.bin", b"b" * 600)])

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest, ExtractionLimits(max_total_bytes=1000))

    assert str(excinfo.value) == (
        "upload.zip: uncompressed size of 1200 bytes in total exceeds the limit of 1000 bytes"
    )
    assert not dest.exists()


def test_high_ratio_member_is_refused(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    archive = write_zip(src / "bomb.zip", [("zeros.bin", bytes(5 * 2**20))])

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest, ExtractionLimits(max_ratio=100))

    message = str(excinfo.value)
    assert message.startswith("bomb.zip: entry 'zeros.bin' expands ")
    assert message.endswith("(limit 100x), refusing a likely zip bomb")
    assert not dest.exists()


def test_small_compressible_member_is_not_ratio_checked(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    archive = write_zip(src / "upload.zip", [(f"{SHP_STEM}.prj", b" " * (512 * 1024))])

    result = extract_archive(archive, dest, ExtractionLimits(max_ratio=2))

    assert result == [dest.resolve() / f"{SHP_STEM}.prj"]
    assert (dest / f"{SHP_STEM}.prj").stat().st_size == 512 * 1024


def set_encrypted_flag(data: bytes) -> bytes:
    """Flip bit 0 of the general purpose flag in every local and central header."""
    patched = bytearray(data)
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = patched.find(signature)
        assert start >= 0
        while start >= 0:
            (flags,) = struct.unpack_from("<H", patched, start + flag_offset)
            struct.pack_into("<H", patched, start + flag_offset, flags | 0x1)
            start = patched.find(signature, start + 4)
    return bytes(patched)


def test_encrypted_member_is_refused(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    archive = src / "upload.zip"
    archive.write_bytes(set_encrypted_flag(zip_bytes([(f"{SHP_STEM}.dbf", b"secret")])))
    with zipfile.ZipFile(archive) as zf:
        assert zf.infolist()[0].flag_bits & 0x1

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest)

    assert str(excinfo.value) == (
        f"upload.zip: entry '{SHP_STEM}.dbf' is password-protected; "
        "upload the files without a password"
    )
    assert not dest.exists()


def test_random_bytes_are_corrupt(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    archive = src / "Field Data (March).zip"
    archive.write_bytes(random.Random(0).randbytes(4096))

    with pytest.raises(CorruptArchiveError) as excinfo:
        extract_archive(archive, dest)

    assert str(excinfo.value) == (
        "Field Data (March).zip: not a readable zip archive (File is not a zip file)"
    )
    assert not dest.exists()


def test_truncated_zip_is_corrupt(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    data = zip_bytes([("a.txt", random.Random(2).randbytes(10_000))])
    archive = src / "truncated.zip"
    archive.write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptArchiveError) as excinfo:
        extract_archive(archive, dest)

    assert str(excinfo.value).startswith("truncated.zip: not a readable zip archive (")
    assert not dest.exists()


def test_bad_crc_midway_is_corrupt_and_cleaned_up(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    data = bytearray(
        zip_bytes(
            [("first/ok.txt", b"fine"), ("second/bad.txt", b"PAYLOAD-" * 100)],
            compression=zipfile.ZIP_STORED,
        )
    )
    position = data.find(b"PAYLOAD-")
    data[position] ^= 0xFF
    archive = src / "upload.zip"
    archive.write_bytes(bytes(data))
    before = tree(dest.parent)

    with pytest.raises(CorruptArchiveError) as excinfo:
        extract_archive(archive, dest)

    assert str(excinfo.value) == (
        "upload.zip: entry 'second/bad.txt' could not be read "
        "(Bad CRC-32 for file 'second/bad.txt')"
    )
    assert tree(dest.parent) == before
    assert not dest.exists()


def test_junk_prefixed_zip_still_opens(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    archive = src / "setup.exe.zip"
    stub = b"MZ" + random.Random(3).randbytes(5000)
    archive.write_bytes(stub + zip_bytes([(f"{SHP_STEM}.shp", b"shape")]))

    result = extract_archive(archive, dest)

    assert result == [dest.resolve() / f"{SHP_STEM}.shp"]
    assert (dest / f"{SHP_STEM}.shp").read_bytes() == b"shape"


def test_duplicate_entries_are_refused(layout: tuple[Path, Path]) -> None:
    src, dest = layout
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zip_bytes([("field.csv", b"one"), ("field.csv", b"two")])
    archive = src / "upload.zip"
    archive.write_bytes(data)

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_archive(archive, dest)

    assert str(excinfo.value) == (
        "upload.zip: entry 'field.csv' would overwrite another extracted file 'field.csv'"
    )
    assert not dest.exists()
