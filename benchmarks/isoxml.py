"""Every per-file step of a generated ISOXML combine card, with and without one no-fix record at 0 / 0.

One record at latitude 0 / longitude 0 once made a 5,800 km swath, a 10,000 x 3,600 pixel grid and a minute
for a 4,500-record card. The case shows the time is proportional to the records whatever the fixes: it
times the steps (FileSteps, in a spawned child) for N records with a no-fix record, 2N with one, and N
without, and reports seconds per 1,000 records and the two ratios (about 2 and about 1 when proportional).

    python -m benchmarks.isoxml [--records N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .shapefile import in_child, run_steps

SEED = 20240611
# (DDI, designator): work state, actual width, yield mass per area, crop moisture, speed
DLVS = ((0x008D, "Work state"), (0x0043, "Working width"), (0x0054, "Yield mass/area"), (0x0063, "Moisture"),
        (0x018D, "Speed"))
TASKDATA = """<?xml version="1.0" encoding="UTF-8"?>
<ISO11783_TaskData VersionMajor="4" VersionMinor="3" DataTransferOrigin="2" TaskControllerManufacturer="bench">
<CTP A="CTP-1" B="Wheat"/>
<PFD A="PFD-1" C="bench field" D="180000" G="CTP-1"/>
<DVC A="DVC-1" B="Combine" D="A00E84000CC00000" F="31" G="FF000000006564">
<DET A="DET-1" B="1" C="1" D="Combine" E="0" F="0">{dors}</DET>
{dpds}
</DVC>
<TSK A="TSK-1" B="bench harvest" E="PFD-1" G="4"><TIM A="2021-04-09T10:00:00Z" D="4"/><TLG A="TLG00001"/></TSK>
</ISO11783_TaskData>
"""
HEADER = ('<?xml version="1.0" encoding="UTF-8"?>\n<TIM A="" D="4">\n  <PTN A="" B="" D=""/>\n'
          + "".join(f'  <DLV A="{ddi:04X}" B="" C="DET-1"/>\n' for ddi, _ in DLVS) + "</TIM>\n")


def taskdata() -> str:
    dors = "".join(f'<DOR A="{i + 10}"/>' for i in range(len(DLVS)))
    dpds = "\n".join(f'<DPD A="{i + 10}" B="{ddi:04X}" C="1" D="1" E="{name}"/>' for i, (ddi, name) in enumerate(DLVS))
    return TASKDATA.format(dors=dors, dpds=dpds)


def binary(records: int, no_fix_at: int | None, seed: int = SEED) -> bytes:
    """A combine at 2 m/s up and down 600 m lanes near 52.36 N 8.03 E, one record a second, every DLV in every record;
    with `no_fix_at`, that record has status 0 and position 0 / 0."""
    rng = np.random.default_rng(seed)
    pairs = [(f"{kind}{k}", fmt) for k in range(len(DLVS)) for kind, fmt in (("i", "u1"), ("v", "<i4"))]
    fields = [("ms", "<u4"), ("days", "<u2"), ("north", "<i4"), ("east", "<i4"), ("status", "u1"), ("n", "u1")] + pairs
    packed = np.dtype({"names": [n for n, _ in fields], "formats": [f for _, f in fields]})  # no padding
    out = np.zeros(records, dtype=packed)
    seconds = np.arange(records, dtype=np.int64)
    out["ms"] = 36_000_000 + seconds * 1000
    out["days"] = 15_074  # 2021-04-09
    along = np.where((seconds // 300) % 2 == 0, seconds % 300, 299 - seconds % 300)  # up one lane, down the next
    out["north"] = 523_600_000 + along * 180 + rng.integers(-20, 20, records)
    out["east"] = 80_300_000 + (seconds // 300) * 1_300 + rng.integers(-20, 20, records)
    out["status"] = 4
    out["n"] = len(DLVS)
    values = (np.ones(records), np.full(records, 9_000), rng.integers(400_000, 1_200_000, records),
              rng.integers(120_000, 180_000, records), rng.integers(1_800, 2_200, records))
    for k, value in enumerate(values):
        out[f"i{k}"] = k
        out[f"v{k}"] = value
    if no_fix_at is not None:
        out["north"][no_fix_at] = out["east"][no_fix_at] = out["status"][no_fix_at] = 0
    return out.tobytes()


def write_card(folder: Path, records: int, no_fix_at: int | None) -> Path:
    """A zip holding TASKDATA/TASKDATA.XML and its time log."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"combine-{records}{'-nofix' if no_fix_at is not None else ''}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("TASKDATA/TASKDATA.XML", taskdata())
        zf.writestr("TASKDATA/TLG00001.XML", HEADER)
        zf.writestr("TASKDATA/TLG00001.BIN", binary(records, no_fix_at))
    return target


def measure(work: Path, records: int) -> dict[str, Any]:
    """Steps of three cards, each in a spawned child: N with a no-fix record, 2N with one, N without."""
    cases = {"no_fix": (records, records // 2), "no_fix_double": (2 * records, records),
             "clean": (records, None)}
    out: dict[str, Any] = {"records": records}
    for name, (count, no_fix_at) in cases.items():
        card = write_card(work / name, count, no_fix_at)
        steps = in_child(run_steps, str(card), str(work / name / "data"), None)
        failed = {step: figures["error"] for step, figures in steps["steps"].items() if figures["seconds"] is None}
        if failed:
            raise RuntimeError(f"{name} card: steps failed: {failed}")
        seconds = sum(s["seconds"] for s in steps["steps"].values())
        out[name] = {"records": count, "seconds": seconds, "seconds_per_1000": 1000 * seconds / count,
                     "standard_points": steps["standard_points"], "peak_rss_mb": steps["peak_rss_mb"]}
    out["double_ratio"] = out["no_fix_double"]["seconds"] / out["no_fix"]["seconds"]
    out["no_fix_ratio"] = out["no_fix"]["seconds"] / out["clean"]["seconds"]
    return out


def line(result: dict[str, Any]) -> str:
    a, b, c = result["no_fix"], result["no_fix_double"], result["clean"]
    return (f"ISOXML card with a no-fix record: {a['records']:,} records {a['seconds']:.2f} s "
            f"({a['seconds_per_1000']:.3f} s per 1,000), {b['records']:,} records {b['seconds']:.2f} s, without the "
            f"record {c['seconds']:.2f} s: 2x records = {result['double_ratio']:.2f}x time, "
            f"no-fix / clean = {result['no_fix_ratio']:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="leaf-bench-isoxml-") as tmp:
        result = measure(Path(tmp), args.records)
    print(json.dumps(result, indent=2) if args.json else line(result))


if __name__ == "__main__":
    main()
