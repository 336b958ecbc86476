"""The TLG decoder on hostile input: random and truncated binaries, random header XML.

It may only raise ReaderError, and must always finish: every record advances the walk by at least one
byte, so the time is bounded by the input size.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.tlg import HEADER, generate
from leaf_dagster.errors import ReaderError
from leaf_dagster.readers.isoxml.tlg import PTN_FIELDS, TlgHeader, decode, decode_log, parse_header

FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
PTN_NAMES = [name for _, name, _, _ in PTN_FIELDS]


@st.composite
def headers(draw: st.DrawFn) -> TlgHeader:
    ptn = tuple(n for n in PTN_NAMES if draw(st.booleans()))
    count = draw(st.integers(0, 12))
    header_xml = ('<TIM A="{}" D="4"><PTN {}/>{}</TIM>'.format(
        "" if draw(st.booleans()) else "2020-01-01T00:00:00",
        " ".join(f'{a}=""' for a, n, _, _ in PTN_FIELDS if n in ptn),
        "".join(f'<DLV A="{draw(st.integers(0, 0xFFFF)):04X}" B="" C="DET-{i}"/>' for i in range(count))))
    return parse_header(header_xml.encode(), "TLG00001")


@FUZZ
@given(header=headers(), data=st.binary(max_size=4000))
def test_random_binary_never_crashes(header: TlgHeader, data: bytes) -> None:
    log = decode(header, data)
    assert log.trailing_bytes >= 0 and log.count >= 0
    assert (log.entry_dlv < max(len(header.dlvs), 1)).all() or len(log.entry_dlv) == 0
    for index in range(len(header.dlvs)):
        assert len(log.column(index)) == log.count
    decode_log(header, data, version_major=3)  # the v2/v3 retry path too


@FUZZ
@given(cut=st.integers(0, 4000), flips=st.lists(st.tuples(st.integers(0, 3999), st.integers(0, 255)), max_size=20))
def test_truncated_and_damaged_real_layout(cut: int, flips: list[tuple[int, int]]) -> None:
    header = parse_header(HEADER.encode(), "TLG00001")
    data = bytearray(generate(100, seed=7))
    full = decode(header, bytes(data))
    assert full.count == 100 and full.trailing_bytes == 0
    truncated = decode(header, bytes(data[: min(cut, len(data))]))
    assert truncated.count <= 100
    # records before the cut are decoded unchanged
    assert np.array_equal(truncated.ptn["north"], full.ptn["north"][: truncated.count])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    decode(header, bytes(data))


@FUZZ
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_random_header_text_raises_only_reader_error(text: str) -> None:
    for payload in (text.encode("utf-8"), f"<TIM A=''>{text}</TIM>".encode("utf-8", "surrogatepass")):
        try:
            parse_header(payload, "TLG00001")
        except ReaderError:
            pass


@FUZZ
@given(attrs=st.dictionaries(st.sampled_from(list("ABCDEFGHI")), st.text(max_size=12), max_size=9),
       ddi=st.text(max_size=6), value=st.text(max_size=14))
def test_random_header_attributes_raise_only_reader_error(attrs: dict[str, str], ddi: str, value: str) -> None:
    def esc(s: str) -> str:
        return s.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")

    ptn = " ".join(f'{k}="{esc(v)}"' for k, v in attrs.items())
    xml = f'<TIM A="" D="4"><PTN {ptn}/><DLV A="{esc(ddi)}" B="{esc(value)}" C="DET-1"/></TIM>'
    try:
        header = parse_header(xml.encode("utf-8", "surrogatepass"), "TLG00001")
    except ReaderError:
        return
    decode(header, bytes(range(256)) * 3)


def test_decoder_matches_struct_on_generated_log() -> None:
    header = parse_header(HEADER.encode(), "TLG00001")
    data = generate(3000, seed=11)
    log = decode(header, data)
    pos, values = 0, {}
    for i in range(3000):
        ms, days, north, east, up, status, pdop, hdop, sats, gps_ms, gps_days, n = struct.unpack_from("<IHiiiBHHBIHB", data, pos)
        pos += 31
        assert (log.time_ms[i], log.time_days[i], log.ptn["north"][i], log.ptn["east"][i], log.ptn["up"][i]) == (ms, days, north, east, up)
        assert (log.ptn["status"][i], log.ptn["pdop"][i], log.ptn["hdop"][i], log.ptn["satellites"][i]) == (status, pdop, hdop, sats)
        assert (log.ptn["gps_time"][i], log.ptn["gps_date"][i]) == (gps_ms, gps_days)
        for _ in range(n):
            index, value = struct.unpack_from("<Bi", data, pos)
            pos += 5
            values.setdefault(index, {})[i] = value
    assert pos == len(data)
    for index, logged in values.items():
        records, raw = log.entries(index)
        assert dict(zip(records.tolist(), raw.tolist())) == logged


def test_benchmark_module_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.tlg import main

    main(["--records", "20000"])
    assert "records/s" in capsys.readouterr().out


def test_header_tlg_path(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="not <TIM>"):
        parse_header(b"<ISO11783_TaskData/>", "TLG00001")
    with pytest.raises(ReaderError, match="not hexadecimal"):
        parse_header(b'<TIM A=""><DLV A="XYZ" B="" C="DET-1"/></TIM>', "TLG00001")
