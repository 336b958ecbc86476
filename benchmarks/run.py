"""`leaf-dagster bench`: how fast the pipeline is, against what reading the data costs.

    python -m benchmarks.run [--quick] [--json] [--out bench-out/] [--profile]

1. Generates deterministic inputs in a temporary folder: a John Deere-style harvest shapefile (1,000,000 points;
   100,000 with --quick) and one upload of small JD exports (100 files of 504 points; 20 with --quick).
2. Baseline: pyogrio (Arrow) read of that shapefile + GeoParquet write, in the same run.
3. Every per-file step of the big shapefile through FileSteps (polygon output on), timed step by step, in a
   spawned child whose peak resident memory is read from the kernel (VmHWM).
4. TLG decoding records/s (benchmarks.tlg, 1,000,000 records), and every per-file step of a generated
   ISOXML card with one no-fix record at 0 / 0 against twice the records and against the same card without it
   (benchmarks.isoxml, 5,000 records): the time must follow the records, not the bad fix.
5. `GET /files` through the API (benchmarks.listing): p50/p95 latency over 1,000 and 10,000 copies of a real
   file record (200 and 2,000 with --quick), and `leaf.duckdb` neither created nor changed by the requests.
6. The batch: FileSteps in-process, Dagster in-process (process_upload; not with --quick), then the inbox sensor
   + dagster-daemon; overhead per file = (daemon end-to-end - FileSteps time) / files.
7. Writes OUT/benchmarks.md and OUT/benchmarks.json; prints the table (or the JSON with --json).

Performance is measured here, never in timed tests. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from . import daemon as daemon_bench
from . import isoxml as isoxml_bench
from . import listing as listing_bench
from . import shapefile as shapefile_bench
from .generate import SEED, generate_inputs

FULL = {"points": 1_000_000, "files": 100, "file_points": 504, "tlg_records": 1_000_000, "isoxml_records": 5_000,
        "listed_files": 10_000, "listed_files_small": 1_000, "list_requests": 300}
QUICK = {"points": 100_000, "files": 20, "file_points": 504, "tlg_records": 1_000_000, "isoxml_records": 5_000,
         "listed_files": 2_000, "listed_files_small": 200, "list_requests": 100}
TARGETS = {"shapefile_end_to_end_ratio": 3.0, "shapefile_peak_rss_mb": 3072.0, "tlg_records_per_s": 1_000_000.0,
           "dagster_overhead_s_per_file": 1.0}
PACKAGES = ("dagster", "geopandas", "shapely", "pyogrio", "pyarrow", "pandas", "numpy", "pyproj", "duckdb", "rasterio",
            "pillow", "pint")


# -- machine ----------------------------------------------------------------------------------------------------
def _proc_field(path: str, key: str) -> str | None:
    try:
        with open(path) as handle:
            for line in handle:
                if line.split(":")[0].strip() == key:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def describe_machine() -> dict[str, Any]:
    mem_kb = _proc_field("/proc/meminfo", "MemTotal")
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import pyogrio
        import shapely

        versions["GDAL"] = pyogrio.__gdal_version_string__
        versions["GEOS"] = shapely.geos_version_string
    except Exception:  # informational
        pass
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "nproc": affinity, "cpu_count": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory_gb": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "packages": versions,
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# -- phases -----------------------------------------------------------------------------------------------------
_TLG_LINE = re.compile(r"([\d,]+) records.*?best of (\d+) ([\d.]+) s = ([\d,]+) records/s")


def tlg_decoding(records: int) -> dict[str, Any]:
    """The TLG benchmark (benchmarks.tlg) in a subprocess started in the checkout; its printed line parsed."""
    command = [sys.executable, "-m", "benchmarks.tlg", "--records", str(records)]
    out: dict[str, Any] = {"command": "python -m benchmarks.tlg --records " + str(records)}
    try:
        done = subprocess.run(command, cwd=daemon_bench.PROJECT_ROOT, capture_output=True, text=True, timeout=900,
                              check=False)
    except subprocess.TimeoutExpired:
        return {**out, "error": "timed out after 900 s"}
    text = (done.stdout or "").strip()
    out["output"] = text.splitlines()[-1] if text else ""
    match = _TLG_LINE.search(text)
    if done.returncode != 0 or not match:
        tail = (done.stderr or text).strip().splitlines()[-1:] or ["no output"]
        return {**out, "error": f"exit code {done.returncode}: {tail[0]}"}
    out.update(records=int(match.group(1).replace(",", "")), repeats=int(match.group(2)),
               best_seconds=float(match.group(3)), records_per_s=float(match.group(4).replace(",", "")))
    return out


# -- report -----------------------------------------------------------------------------------------------------
def _executor_text(executor: str | None) -> str:
    if executor and "in_process" in executor and "multi" not in executor:
        return f"the file job's executor ({executor}) runs every step inside that run worker process."
    return (f"the file job's executor ({executor}: multiprocess by default) starts every step in a subprocess of "
            "its own.")


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _met(key: str, value: float | None) -> bool | None:
    if value is None:
        return None
    target = TARGETS[key]
    if key == "tlg_records_per_s":
        return value >= target
    if key == "shapefile_peak_rss_mb":
        return value < target
    return value <= target


def markdown(report: dict[str, Any]) -> str:
    s, b, m = report.get("shapefile") or {}, report.get("batch") or {}, report["machine"]
    points, files = report["inputs"]["shapefile_points"], report["inputs"]["batch_files"]
    yes = {True: "yes", False: "**no**", None: "n/a"}
    lines = [
        f"# leaf-dagster benchmark ({'quick' if report['quick'] else 'full'} run)", "",
        f"Run {report['started']}; {points:,}-point shapefile, {files}-file batch, seed {report['inputs']['seed']}; "
        f"the whole benchmark took {report['duration_s']:.0f} s. Load average (1/5/15 min) at start "
        f"{report['load_average']['start']}, at end {report['load_average']['end']}.", "",
        "## Key figures", "",
        "| figure | value | target | met |", "|---|---:|---:|:---:|",
        f"| shapefile end-to-end / baseline | {_num(report['shapefile_end_to_end_ratio'])}x | at most 3x | "
        f"{yes[_met('shapefile_end_to_end_ratio', report['shapefile_end_to_end_ratio'])]} |",
        f"| shapefile peak resident memory | {_num(report['shapefile_peak_rss_mb'], 0)} MiB | under 3,072 MiB | "
        f"{yes[_met('shapefile_peak_rss_mb', report['shapefile_peak_rss_mb'])]} |",
        f"| TLG decoding | {_rate(report['tlg_records_per_s'])} records/s | at least 1,000,000 | "
        f"{yes[_met('tlg_records_per_s', report['tlg_records_per_s'])]} |",
        f"| Dagster overhead (sensor + daemon) | {_num(report['dagster_overhead_s_per_file'])} s/file | at most 1 s | "
        f"{yes[_met('dagster_overhead_s_per_file', report['dagster_overhead_s_per_file'])]} |",
    ]
    if s:
        base = s["baseline"]
        lines += [
            "", f"## {points:,}-point John Deere harvest shapefile", "",
            "Every per-file step through `FileSteps` in one spawned process, polygon output on; points/s is the "
            f"shapefile's {points:,} points over the step's wall time; peak RSS is the step's own high-water mark.", "",
            "| step | seconds | points/s | peak RSS (MiB) |", "|---|---:|---:|---:|",
            f"| *baseline: pyogrio (Arrow) read + GeoParquet write* | {_num(base['seconds'])} | "
            f"{_rate(points / base['seconds'])} | {_num(base.get('peak_rss_mb'), 0)} |",
        ]
        for name, step in s["steps"].items():
            lines.append(f"| {name} | {_num(step['seconds'])} | {_rate(step.get('points_per_s'))} | "
                         f"{_num(step.get('peak_rss_mb'), 0)} |")
        lines += [
            f"| **end to end (sum of the steps)** | **{_num(s['end_to_end_seconds'])}** | "
            f"**{_rate(s['end_to_end_points_per_s'])}** | **{_num(s['peak_rss_mb'], 0)}** |",
            f"| **ratio to the baseline** | **{_num(s['ratio'])}x** | | |", "",
            f"Baseline split: read {_num(base['read_seconds'])} s, write {_num(base['write_seconds'])} s. Not in the "
            f"sum: registering and extracting the upload (batch step) {_num(s['ingest_seconds'])} s. Outputs: "
            f"{s['details'].get('standard_points'):,} standard points, {s['details'].get('filtered_points'):,} "
            f"filtered, {s['details'].get('images')} property PNGs, crop {s['details'].get('crops')}.",
        ]
        if s.get("hot_spots"):
            lines += ["", "Profile (pyinstrument, a second untimed run of the same steps): the leaf_dagster function "
                      "that owns most of each step's time, and the function (C included) on top of the stack.", "",
                      "| step | most time under (project function) | most self time |", "|---|---|---|"]
            for name, spots in s["hot_spots"].items():
                top = spots.get("project", [])[:2]
                own = spots.get("self", [])[:2]
                lines.append(f"| {name} | " + ("<br>".join(f"`{h['function']}` {h['seconds']:.2f} s" for h in top)
                                                 or "n/a") + " | "
                             + ("<br>".join(f"`{h['function']}` {h['seconds']:.2f} s" for h in own) or "n/a") + " |")
    if report.get("isoxml_no_fix"):
        lines += ["", "## ISOXML card with a no-fix record", "", isoxml_bench.line(report["isoxml_no_fix"]) + "."]
    if report.get("listing"):
        listed = report["listing"]
        lines += ["", f"## GET /files over {listed['sizes'][-1]['files']:,} files", "",
                  f"`GET /files` as one API owner through FastAPI's TestClient, {listed['requests']} timed requests per "
                  "size round robin over the kinds below (after two warm-up rounds), on copies of the record of "
                  f"{listed['sample']} as the pipeline wrote it.", "", *listing_bench.markdown(listed)]
    if b:
        fs, dp, dm = b.get("file_steps") or {}, b.get("dagster_in_process") or {}, b.get("daemon") or {}
        n = b.get("files") or 1
        lines += ["", f"## {files}-file batch ({report['inputs']['batch_points_per_file']} points per file)", "",
                  "| path | seconds | seconds per file | files processed |", "|---|---:|---:|---:|"]
        for label, part in (("FileSteps in-process, no Dagster (register, extract, every step, catalog once)", fs),
                            ("Dagster in-process: `process_upload` (execute_in_process per job)", dp),
                            ("inbox sensor + `dagster-daemon` (drop in the inbox -> every status final)", dm)):
            if part.get("seconds") is not None:
                lines.append(f"| {label} | {_num(part['seconds'])} | {_num(part['seconds'] / n)} | "
                             f"{part.get('processed', 'n/a')} of {part.get('files', n)} |")
            elif part:
                lines.append(f"| {label} | n/a | | {part.get('error', 'not run')} |")
        lines.append(f"| **Dagster overhead (daemon - FileSteps) per file** | | "
                     f"**{_num(report['dagster_overhead_s_per_file'])}** | |")
        if dm.get("timeline"):
            t = dm["timeline"]
            runs = dm.get("runs", {})
            fr, br = runs.get("process_file", {}), runs.get("ingest_batch", {})
            lines += ["", "Daemon timeline (seconds after the upload landed in the inbox): batch run created "
                      f"{_num(t['batch_run_created'], 1)}, ended {_num(t['batch_run_ended'], 1)}; first file run created "
                      f"{_num(t['first_file_run_created'], 1)}; last file run ended {_num(t['last_file_run_ended'], 1)}; "
                      f"every status final {_num(t['all_statuses_final'], 1)}. File runs: {fr.get('runs')} "
                      f"({fr.get('statuses')}), mean {_num(fr.get('mean_run_seconds'), 1)} s each (max "
                      f"{_num(fr.get('max_run_seconds'), 1)} s), mean wait in the queue "
                      f"{_num(fr.get('mean_queue_seconds'), 1)} s; batch run {_num(br.get('mean_run_seconds'), 1)} s."]
            parts = fr.get("mean_breakdown") or {}
            if parts.get("runs"):
                spawn = (f"; starting step subprocesses {_num(parts['step_subprocess_start'], 1)} s summed over the "
                         "steps (two steps may run at once, so sums can exceed the run)"
                         if parts.get("step_subprocess_start") else "")
                lines += ["", f"Inside a file run (means over {parts['runs']} runs, from the event log): launching the "
                          f"run worker process (RUN_STARTING -> RUN_START) {_num(parts['worker_start'], 1)} s; the run "
                          f"{_num(parts['run_total'], 1)} s from start to end, of which the step bodies "
                          f"{_num(parts['step_bodies'], 1)} s{spawn}."]
                slots = ((dm.get("launch") or {}).get("concurrency") or {}).get("runs", {}).get("max_concurrent_runs")
                window = (t["last_file_run_ended"] or 0) - (t["first_file_run_created"] or 0)
                if slots and fr.get("runs"):
                    cycle = window * slots / fr["runs"]
                    gap = cycle - parts["worker_start"] - parts["run_total"]
                    lines += ["", f"Each of the {slots} run slots took {_num(cycle, 1)} s per file ({_num(window, 0)} s "
                              f"x {slots} slots / {fr['runs']} runs): {_num(parts['worker_start'], 1)} s starting the "
                              f"worker + {_num(parts['run_total'], 1)} s running + {_num(gap, 1)} s between one run "
                              "ending and the next being launched (the run coordinator's tick, process exit)."]
        if dm.get("launch"):
            launch = dm["launch"]
            limits = (launch.get("concurrency") or {}).get("runs") or {}
            lines += ["", f"How runs are launched: `{dm.get('command')}` (daemon start-up "
                      f"{_num(dm.get('startup_seconds'), 1)} s, not counted) runs the sensors; "
                      f"{launch.get('run_coordinator')} (max_concurrent_runs {limits.get('max_concurrent_runs')}, "
                      f"tag limit {[(t['key'], t['limit']) for t in limits.get('tag_concurrency_limits', [])]}) hands "
                      f"queued runs to the {launch.get('run_launcher')}, which has the code server start one run worker "
                      f"process per run; {_executor_text(launch.get('file_job_executor'))}"]
    lines += ["", "## Machine", "",
              f"- CPU: {m['cpu_model']}, nproc {m['nproc']}; memory {m['memory_gb']} GB; {m['os']}",
              f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)]
    if report.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in report["errors"].items()]
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="leaf-dagster bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="100,000-point shapefile, a 20-file batch and GET /files over 2,000 files "
                             "(about 5 minutes on 2 cores)")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the Markdown table")
    parser.add_argument("--out", default="bench-out", metavar="DIR", help="where benchmarks.md/.json go (bench-out/)")
    parser.add_argument("--points", type=int, help="points in the big shapefile (overrides the preset)")
    parser.add_argument("--files", type=int, help="files in the batch (overrides the preset)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-daemon", action="store_true", help="skip the sensor + daemon run (no overhead figure)")
    parser.add_argument("--daemon-timeout", type=float, help="seconds to wait for the daemon (default 120 per file, "
                                                             "170 in total with --quick)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the shapefile steps once with pyinstrument (OUT/profile/, not timed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder and print its path")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = dict(QUICK if args.quick else FULL)
    if args.points:
        preset["points"] = args.points
    if args.files:
        preset["files"] = args.files
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started, clock = datetime.now(timezone.utc), time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {message}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "quick": args.quick, "started": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": describe_machine(),
        "load_average": {"start": load_average()},
        "inputs": {"shapefile_points": preset["points"], "batch_files": preset["files"],
                   "batch_points_per_file": preset["file_points"], "seed": args.seed},
        "targets": TARGETS, "errors": {},
    }
    work = Path(tempfile.mkdtemp(prefix="leaf-bench-"))
    try:
        log(f"generating inputs in {work}")
        inputs = shapefile_bench.in_child(generate_inputs, str(work), preset["points"], preset["files"],
                                          preset["file_points"], args.seed)
        report["inputs"].update({k: v for k, v in inputs.items() if not k.endswith(("_zip", "_shp"))})
        log(f"  shapefile {inputs['harvest_seconds']:.1f} s, batch {inputs['batch_seconds']:.1f} s")

        try:
            report["shapefile"] = shapefile_bench.measure(
                Path(inputs["harvest_shp"]), Path(inputs["harvest_zip"]), work, preset["points"],
                out_dir / "profile" if args.profile else None, log=log)
        except Exception as exc:
            report["errors"]["shapefile"] = _first_line(exc)
            log(f"  shapefile measurement failed: {_first_line(exc)}")

        log(f"TLG decoding, {preset['tlg_records']:,} records")
        report["tlg"] = tlg_decoding(preset["tlg_records"])
        if "error" in report["tlg"]:
            report["errors"]["tlg"] = report["tlg"]["error"]
        log(f"  {_rate(report['tlg'].get('records_per_s'))} records/s")

        log(f"ISOXML card with a no-fix record, {preset['isoxml_records']:,} records")
        try:
            report["isoxml_no_fix"] = isoxml_bench.measure(work / "isoxml", preset["isoxml_records"])
            log(f"  {isoxml_bench.line(report['isoxml_no_fix'])}")
        except Exception as exc:
            report["errors"]["isoxml_no_fix"] = _first_line(exc)
            log(f"  ISOXML measurement failed: {_first_line(exc)}")

        log(f"GET /files over {preset['listed_files_small']:,} and {preset['listed_files']:,} file records")
        try:
            report["listing"] = shapefile_bench.in_child(
                listing_bench.measure, str(work / "listing"), preset["listed_files"], preset["listed_files_small"],
                preset["list_requests"])
            if not report["listing"]["catalog_untouched"]:
                report["errors"]["listing"] = "leaf.duckdb was created or changed by GET /files"
            log(f"  p50 {_num(report['listing']['files_list_p50_ms'], 1)} ms, "
                f"p95 {_num(report['listing']['files_list_p95_ms'], 1)} ms")
        except Exception as exc:
            report["errors"]["listing"] = _first_line(exc)
            log(f"  listing measurement failed: {_first_line(exc)}")

        timeout = args.daemon_timeout or (170.0 if args.quick else max(600.0, 120.0 * preset["files"]))
        try:
            report["batch"] = daemon_bench.measure(Path(inputs["batch_zip"]), work, preset["files"],
                                                   not args.no_daemon, timeout, log,
                                                   dagster_in_process=not args.quick)
            daemon = report["batch"].get("daemon") or {}
            if daemon.get("timed_out"):
                report["errors"]["daemon"] = (f"timed out after {timeout:.0f} s with {daemon.get('processed', 0)} "
                                              f"processed and {daemon.get('failed', 0)} failed of {daemon.get('files')}")
        except Exception as exc:
            report["errors"]["batch"] = _first_line(exc)
            log(f"  batch measurement failed: {_first_line(exc)}")
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)

    shp = report.get("shapefile") or {}
    report["shapefile_end_to_end_ratio"] = shp.get("ratio")
    report["shapefile_peak_rss_mb"] = shp.get("peak_rss_mb")
    report["shapefile_end_to_end_seconds"] = shp.get("end_to_end_seconds")
    report["baseline_seconds"] = (shp.get("baseline") or {}).get("seconds")
    report["steps"] = {name: {"seconds": s["seconds"], "points_per_s": s.get("points_per_s"),
                              "peak_rss_mb": s.get("peak_rss_mb")} for name, s in (shp.get("steps") or {}).items()}
    report["tlg_records_per_s"] = (report.get("tlg") or {}).get("records_per_s")
    report["dagster_overhead_s_per_file"] = (report.get("batch") or {}).get("overhead_s_per_file")
    report["files_list_p50_ms"] = (report.get("listing") or {}).get("files_list_p50_ms")
    report["files_list_p95_ms"] = (report.get("listing") or {}).get("files_list_p95_ms")
    report["targets_met"] = {key: _met(key, report[key]) for key in TARGETS}
    report["load_average"]["end"] = load_average()
    report["duration_s"] = time.perf_counter() - clock
    if not report["errors"]:
        del report["errors"]

    text = markdown(report)
    (out_dir / "benchmarks.md").write_text(text)
    (out_dir / "benchmarks.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str) if args.json else text)
    log(f"wrote {out_dir / 'benchmarks.md'} and {out_dir / 'benchmarks.json'}")
    return 1 if report.get("errors") else 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


if __name__ == "__main__":
    sys.exit(main())
