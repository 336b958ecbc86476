"""The TLG decoder record for record against `tlg_oracle`, and the lane walk against the plain loop.

Every time log of both real corpora decodes exactly as the oracle's struct walk reads it (times, positions,
every DLV value), and so do truncated copies (the oracle drops a cut last record, as the decoder must). The
lane walk (`framing.follow`), which the decoder uses on long stretches, must find exactly the record starts of
the plain loop (`framing.walk`): it is checked on the real logs and on copies damaged here (bytes overwritten,
cut out, inserted, zeroed), with segments small enough that every log is cut into many lanes, and the whole
decoder forced onto lanes must return what it returns with the plain loop alone.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaf_dagster.errors import ReaderError
from leaf_dagster.readers.isoxml import framing
from leaf_dagster.readers.isoxml.tlg import PTN_FIELDS, TlgData, decode, parse_header

from .tlg_oracle import Tlg, read_tlg

LogBytes = tuple[str, bytes, bytes]  # name, header XML, binary


def real_logs(*roots: Path) -> list[LogBytes]:
    """Every TLG header + binary pair under `roots`, in folders or zip archives, each distinct binary once."""
    found: dict[bytes, LogBytes] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() == ".bin" and path.name.upper().startswith("TLG"):
                xml = [p for p in path.parent.iterdir() if p.stem == path.stem and p.suffix.lower() == ".xml"]
                if xml:
                    found.setdefault(path.read_bytes(), (path.name, xml[0].read_bytes(), path.read_bytes()))
            elif path.suffix.lower() == ".zip":
                with zipfile.ZipFile(path) as archive:
                    names = archive.namelist()
                    for name in names:
                        if name.lower().endswith(".bin") and Path(name).name.upper().startswith("TLG"):
                            xml_names = [n for n in names if n.lower() == name[:-4].lower() + ".xml"]
                            if xml_names:
                                binary = archive.read(name)
                                found.setdefault(binary, (f"{path.name}!{name}", archive.read(xml_names[0]), binary))
    return list(found.values())


def readable(log: LogBytes) -> bool:
    """Has the log a header at all (one real archive holds an empty header file, tested elsewhere)?"""
    try:
        parse_header(log[1], log[0])
    except ReaderError:
        return False
    return True


@pytest.fixture(scope="module")
def logs(real: Path, real2: Path) -> list[LogBytes]:
    out = [log for log in real_logs(real, real2) if readable(log)]
    assert len(out) >= 40 and max(len(raw) for _, _, raw in out) > 2_000_000  # small and multi-MB logs alike
    return out


def oracle(tmp_path: Path, xml: bytes, raw: bytes) -> Tlg:
    (tmp_path / "TLG.xml").write_bytes(xml)
    (tmp_path / "TLG.bin").write_bytes(raw)
    return read_tlg(tmp_path / "TLG.xml", tmp_path / "TLG.bin")


def assert_same_records(log: TlgData, tlg: Tlg) -> None:
    """The decoded log holds the oracle's records: times, PTN fields, and each record's DLV values."""
    assert log.count == len(tlg.records)
    if tlg.time_in_binary:
        assert log.time_ms is not None and log.time_days is not None
        assert log.time_ms.tolist() == [r.time[0] for r in tlg.records if r.time]
        assert log.time_days.tolist() == [r.time[1] for r in tlg.records if r.time]
    for attr, name, _, _ in PTN_FIELDS:
        if attr in tlg.ptn_fields:
            assert log.ptn[name].tolist() == [r.ptn[attr] for r in tlg.records], name
    decoded: dict[tuple[int, int], int] = {}
    for record, index, value in zip(log.entry_record.tolist(), log.entry_dlv.tolist(), log.entry_value.tolist()):
        decoded[(record, index)] = value  # a DLV logged twice in a record: the last value, as the oracle keeps it
    assert decoded == {(k, i): v for k, r in enumerate(tlg.records) for i, v in r.values.items()}


def test_real_logs_decode_as_the_oracle_reads_them(logs: list[LogBytes], tmp_path: Path) -> None:
    for name, xml, raw in logs:
        log = decode(parse_header(xml, name), raw)
        assert (log.trailing_bytes, log.skipped_bytes, log.resyncs) == (0, 0, 0), name
        assert_same_records(log, oracle(tmp_path, xml, raw))


def test_truncated_real_logs_keep_every_whole_record(logs: list[LogBytes], tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    for name, xml, raw in logs:
        header = parse_header(xml, name)
        for cut in sorted(set(rng.integers(1, len(raw), 3).tolist())):
            log = decode(header, raw[:cut])
            tlg = oracle(tmp_path, xml, raw[:cut])
            assert_same_records(log, tlg)
            whole = sum(header.fixed_size + 1 + 5 * len(r.values) for r in tlg.records)
            assert (log.skipped_bytes, log.trailing_bytes) == (0, cut - whole), name


def damaged(raw: bytes, rng: np.random.Generator) -> list[bytes]:
    """Copies of `raw` with bytes overwritten, a stretch cut out, garbage inserted, a stretch zeroed."""
    out = []
    size = len(raw)
    flipped = bytearray(raw)
    for position in rng.integers(0, size, 4).tolist():
        flipped[position] = int(rng.integers(0, 256))
    out.append(bytes(flipped))
    at = int(rng.integers(0, size))
    out.append(raw[:at] + raw[at + int(rng.integers(1, 200)):])
    out.append(raw[:at] + rng.integers(0, 256, int(rng.integers(1, 200))).astype(np.uint8).tobytes() + raw[at:])
    out.append(raw[:at] + bytes(len(raw[at:at + 3000])) + raw[at + 3000:])
    return out


def lanes_only(segment: int) -> functools.partial[tuple[np.ndarray, int]]:
    return functools.partial(framing.follow, segment=segment, lanes_from=0)


def test_lanes_find_the_record_starts_of_the_plain_walk(logs: list[LogBytes]) -> None:
    rng = np.random.default_rng(17)
    for name, xml, raw in logs:
        header = parse_header(xml, name)
        for binary in [raw, *damaged(raw, rng)]:
            data = np.frombuffer(binary, dtype=np.uint8)
            for limit in (len(binary) + 1, 5000):
                expected = framing.walk(binary, header.fixed_size, 0, limit)
                for segment in (97, 4096):
                    starts, stop = lanes_only(segment)(binary, data, header.layout, 0, limit)
                    assert stop == expected[1] and np.array_equal(starts, expected[0]), (name, limit, segment)


def same_log(a: TlgData, b: TlgData) -> bool:
    arrays = ("time_ms", "time_days", "entry_record", "entry_dlv", "entry_value")
    return (a.count, a.trailing_bytes, a.skipped_bytes, a.rejected_records, a.resyncs) \
        == (b.count, b.trailing_bytes, b.skipped_bytes, b.rejected_records, b.resyncs) \
        and all(np.array_equal(getattr(a, n), getattr(b, n)) and getattr(a, n).dtype == getattr(b, n).dtype
                for n in arrays if getattr(a, n) is not None) \
        and a.ptn.keys() == b.ptn.keys() and all(np.array_equal(a.ptn[n], b.ptn[n]) for n in a.ptn)


def test_decoder_on_lanes_returns_what_the_plain_walk_gives(logs: list[LogBytes],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Damaged logs too: resynchronisation walks on from wherever the damage ends, on lanes or not (every
    third log, to keep the test short; the lane walk itself is checked on all of them above)."""
    rng = np.random.default_rng(19)
    plain = functools.partial(framing.follow, lanes_from=1 << 62)
    resynced = 0
    for name, xml, raw in logs[::3]:
        header = parse_header(xml, name)
        for binary in damaged(raw, rng):
            monkeypatch.setattr(framing, "follow", plain)
            expected = decode(header, binary)
            monkeypatch.setattr(framing, "follow", lanes_only(1024))
            assert same_log(decode(header, binary), expected), name
            resynced += expected.resyncs > 0
    assert resynced > 10  # the damage made here did send the walk looking for sound records


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(time=st.booleans(), ptn=st.integers(0, 9), dlvs=st.integers(0, 12), data=st.binary(max_size=3000),
       segment=st.integers(1, 300), start=st.integers(0, 50), limit=st.integers(1, 400))
def test_lanes_on_any_bytes(time: bool, ptn: int, dlvs: int, data: bytes, segment: int, start: int,
                            limit: int) -> None:
    layout = framing.RecordLayout(time, tuple(n for _, n, _, _ in PTN_FIELDS)[:ptn], dlvs)
    expected = framing.walk(data, layout.fixed, start, limit)
    starts, stop = lanes_only(segment)(data, np.frombuffer(data, dtype=np.uint8), layout, start, limit)
    assert stop == expected[1] and np.array_equal(starts, expected[0])
