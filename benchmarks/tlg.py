"""Decode speed of the TLG binary decoder on a generated 1,000,000-record time log.

The log looks like a real one: TimeStart, all nine PTN fields, a header of 12 DLVs (speed, width, work state,
yield, moisture, distance and fuel totals ...), and 0 to 6 values per record chosen at random with a fixed seed,
so record lengths vary the way sparse logging makes them vary. Prints records/s, best of three.

    python -m benchmarks.tlg [--records N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from leaf_dagster.readers.isoxml.tlg import decode, parse_header

SEED = 20240611
DDIS = (0x018D, 0x0043, 0x008D, 0x0054, 0x0057, 0x005A, 0x0063, 0x0075, 0x0076, 0x0094, 0x0090, 0x00A1)

HEADER = ('<?xml version="1.0" encoding="UTF-8"?>\n<TIM A="" D="4">\n'
          '  <PTN A="" B="" C="" D="" E="" F="" G="" H="" I=""/>\n'
          + "".join(f'  <DLV A="{ddi:04X}" B="" C="DET-1"/>\n' for ddi in DDIS) + "</TIM>\n")


def generate(records: int, seed: int = SEED) -> bytes:
    """A TLG binary matching HEADER: a tractor driving 2 m/s in lines near 52.36 N 8.03 E, one record a second."""
    rng = np.random.default_rng(seed)
    fixed = np.zeros(records, dtype=np.dtype([
        ("ms", "<u4"), ("days", "<u2"), ("north", "<i4"), ("east", "<i4"), ("up", "<i4"), ("status", "u1"),
        ("pdop", "<u2"), ("hdop", "<u2"), ("sats", "u1"), ("gps_ms", "<u4"), ("gps_days", "<u2"), ("n", "u1")]))
    seconds = np.arange(records, dtype=np.int64)
    fixed["ms"] = (36_000_000 + seconds * 1000) % 86_400_000
    fixed["days"] = 15_074 + (36_000_000 + seconds * 1000) // 86_400_000
    fixed["gps_ms"] = (fixed["ms"].astype(np.int64) - 7_200_000) % 86_400_000
    fixed["gps_days"] = fixed["days"]
    fixed["north"] = 523_600_000 + (seconds % 600) * 180 + rng.integers(-20, 20, records)
    fixed["east"] = 80_300_000 + (seconds // 600) * 900 + rng.integers(-20, 20, records)
    fixed["up"] = 45_000 + rng.integers(-300, 300, records)
    fixed["status"] = rng.choice([1, 2, 4, 5], records, p=[0.05, 0.15, 0.7, 0.1])
    fixed["pdop"] = rng.integers(8, 25, records)
    fixed["hdop"] = rng.integers(5, 15, records)
    fixed["sats"] = rng.integers(6, 20, records)
    counts = rng.integers(0, 7, records)
    fixed["n"] = counts
    total = int(counts.sum())
    # each record logs `n` distinct DLV indices
    keys = rng.random((records, len(DDIS))).argsort(axis=1)[:, :6]
    take = np.arange(6)[None, :] < counts[:, None]
    indices = keys[take].astype(np.uint8)
    values = rng.integers(0, 5_000_000, total).astype("<i4")

    sizes = fixed.itemsize + 5 * counts
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.zeros(int(sizes.sum()), dtype=np.uint8)
    head = fixed.view(np.uint8).reshape(records, fixed.itemsize)
    for j in range(fixed.itemsize):
        out[offsets + j] = head[:, j]
    starts = np.repeat(offsets + fixed.itemsize, counts) + 5 * (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    out[starts] = indices
    value_bytes = values.view(np.uint8).reshape(total, 4)
    for j in range(4):
        out[starts + 1 + j] = value_bytes[:, j]
    return out.tobytes()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "TLG00001.XML").write_text(HEADER, encoding="utf-8")
        (folder / "TLG00001.BIN").write_bytes(generate(args.records))
        size = (folder / "TLG00001.BIN").stat().st_size
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            header = parse_header((folder / "TLG00001.XML").read_bytes(), "TLG00001")
            decoded = decode(header, (folder / "TLG00001.BIN").read_bytes())
            best = min(best, time.perf_counter() - started)
        assert decoded.count == args.records, (decoded.count, args.records)
        assert decoded.trailing_bytes == 0 and decoded.skipped_bytes == 0  # every record passed the checks
        print(f"TLG decode: {decoded.count:,} records, {size / 1e6:.1f} MB, {len(decoded.entry_value):,} values: "
              f"best of 3 {best:.3f} s = {decoded.count / best:,.0f} records/s")


if __name__ == "__main__":
    main()
