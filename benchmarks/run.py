"""`leaf-dagster bench`: how fast the pipeline is, against what reading the data costs.

    python -m benchmarks.run [--quick] [--json] [--out bench-out/] [--only PHASES] [--no-PHASE] [--profile]

Phases (all by default; `--only shapefile,big`, `--no-listing`, ...), each generating only the inputs it needs,
deterministically, in a temporary folder:

1. shapefile: a John Deere-style harvest shapefile of 1,000,000 points (100,000 with --quick). Baseline: pyogrio
   (Arrow) read + GeoParquet write of it, in the same run. Then every per-file step through FileSteps (polygon
   output on), timed step by step, in a spawned child whose peak resident memory is read from the kernel (VmHWM).
2. big: the same with 5,000,000 points (not with --quick), for `big_file_ratio` and `big_file_peak_rss_mb`.
   Every shapefile child is killed at --memory-cap-mb; a step that dies is reported with its reason and null
   figures, and the benchmark goes on.
3. tlg: TLG decoding records/s (benchmarks.tlg, 1,000,000 records).
4. isoxml: every per-file step of a generated ISOXML card with one no-fix record at 0 / 0 against twice the
   records and against the same card without it (benchmarks.isoxml, 5,000 records): the time must follow the
   records, not the bad fix.
5. listing: `GET /files` through the API (benchmarks.listing): p50/p95 latency over 1,000 and 10,000 copies of a
   real file record (200 and 2,000 with --quick), and `leaf.duckdb` neither created nor changed by the requests.
6. batch: one upload of small JD exports (100 files of 504 points; 20 with --quick) through FileSteps in-process,
   Dagster in-process (process_upload; not with --quick), then the inbox sensor + dagster-daemon on each instance
   of --instance (sqlite, postgres or both, one after the other; postgres in a database of its own on
   LEAF_PG_ADMIN_URL's server, created and dropped); overhead per file = (daemon end-to-end - FileSteps time) /
   files, for each; `dagster_overhead_s_per_file` is PostgreSQL's when it was measured, else SQLite's.
7. workers: the same upload through the daemon with runs executed by Celery workers, on one worker and then on
   two, split into runs of --files-per-run files (LEAF_FILES_PER_RUN, default 50), on PostgreSQL (LEAF_PG_ADMIN_URL),
   RabbitMQ and Redis (LEAF_CELERY_BROKER_URL, LEAF_CELERY_BACKEND_URL; default on this machine): seconds and
   files/s for each, and `workers_speedup`, two workers' files/s over one's. Not with --no-daemon, nor with --quick
   unless named in --only.

Writes OUT/benchmarks.md and OUT/benchmarks.json; prints the table (or the JSON with --json). Performance is
measured here, never in timed tests. Progress goes to stderr.
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
from . import postgres as postgres_bench
from . import shapefile as shapefile_bench
from .generate import SEED, batch_input, harvest_input

FULL = {"points": 1_000_000, "big_points": 5_000_000, "files": 100, "file_points": 504, "tlg_records": 1_000_000, "isoxml_records": 5_000,
        "listed_files": 10_000, "listed_files_small": 1_000, "list_requests": 300}
QUICK = {"points": 100_000, "big_points": 0, "files": 20, "file_points": 504, "tlg_records": 1_000_000, "isoxml_records": 5_000,
         "listed_files": 2_000, "listed_files_small": 200, "list_requests": 100}
TARGETS = {"shapefile_end_to_end_ratio": 3.0, "shapefile_peak_rss_mb": 3072.0, "big_file_ratio": 3.0,
           "big_file_peak_rss_mb": 3072.0, "tlg_records_per_s": 3_000_000.0, "dagster_overhead_s_per_file": 0.25}
# What can be run on its own (--only, --no-PHASE): the big shapefile, the 5M one, TLG decoding, the ISOXML card,
# GET /files, the batch (FileSteps, Dagster in-process, sensor + daemon), the batch on one and two Celery workers.
PHASES = ("shapefile", "big", "tlg", "isoxml", "listing", "batch", "workers")
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
def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}x"


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MiB"


def _on(instance: str | None) -> str:
    """" on PostgreSQL" / " on SQLite": which Dagster instance a daemon figure is of."""
    return {"postgres": " on PostgreSQL", "sqlite": " on SQLite"}.get(instance or "", "")


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _met(key: str, value: float | None) -> bool | None:
    if value is None:
        return None
    target = TARGETS[key]
    if key == "tlg_records_per_s":
        return value >= target
    if key.endswith("peak_rss_mb"):
        return value < target
    return value <= target


def shapefile_markdown(s: dict[str, Any], points: int) -> list[str]:
    """The table of one shapefile measurement (benchmarks.shapefile.measure): baseline, every step, end to end;
    a step that did not finish shows n/a, with its reason under the table."""
    base = s["baseline"]
    per_s = lambda seconds: _rate(points / seconds if seconds else None)  # noqa: E731
    lines = [
        "Every per-file step through `FileSteps` in one spawned process, polygon output on; points/s is the "
        f"shapefile's {points:,} points over the step's wall time; peak RSS is the step's own high-water mark.", "",
        "| step | seconds | points/s | peak RSS (MiB) |", "|---|---:|---:|---:|",
        f"| *baseline: pyogrio (Arrow) read + GeoParquet write* | {_num(base.get('seconds'))} | "
        f"{per_s(base.get('seconds'))} | {_num(base.get('peak_rss_mb'), 0)} |",
    ]
    for name, step in s["steps"].items():
        lines.append(f"| {name} | {_num(step.get('seconds'))} | {_rate(step.get('points_per_s'))} | "
                     f"{_num(step.get('peak_rss_mb'), 0)} |")
    lines += [
        f"| **end to end (sum of the steps)** | **{_num(s.get('end_to_end_seconds'))}** | "
        f"**{_rate(s.get('end_to_end_points_per_s'))}** | **{_num(s.get('peak_rss_mb'), 0)}** |",
        f"| **ratio to the baseline** | **{_times(s.get('ratio'))}** | | |", "",
    ]
    failures = [f"baseline: {base['error']}"] if base.get("error") else []
    failures += [f"{name}: {step['error']}" for name, step in s["steps"].items() if step.get("error")]
    if failures:
        seen = f" (the most the parent saw it hold: {_num(s['seen_rss_mb'], 0)} MiB)" if s.get("seen_rss_mb") else ""
        lines += ["Did not finish" + seen + ":", "", *[f"- {line}" for line in failures], ""]
    details = s.get("details") or {}
    outputs = (f" Outputs: {details['standard_points']:,} standard points, {details['filtered_points']:,} filtered, "
               f"{details.get('images')} property PNGs, crop {details.get('crops')}."
               if details.get("standard_points") is not None else "")
    lines.append(f"Baseline split: read {_num(base.get('read_seconds'))} s, write {_num(base.get('write_seconds'))} s. "
                 "Not in the sum: registering and extracting the upload (batch step) "
                 f"{_num(s.get('ingest_seconds'))} s.{outputs}")
    if any(step.get("memory") for step in s["steps"].values()):
        lines += ["", "Memory trace (resident set sampled every 0.05 s with the main thread's stack; not the timed "
                  "run's figures): the leaf_dagster code on the stack at each step's peak, and the code under which "
                  "the resident set grew most.", "",
                  "| step | start (MiB) | peak (MiB) | at the peak | grew most under (MiB) |", "|---|---:|---:|---|---|"]
        for name, step in s["steps"].items():
            trace = step.get("memory") or {}
            grew = "<br>".join(f"`{g['where']}` +{g['mb']:,.0f}" for g in trace.get("grew_under", [])[:3])
            lines.append(f"| {name} | {_num(trace.get('start_rss_mb'), 0)} | {_num(trace.get('peak_rss_mb'), 0)} | "
                         f"`{trace.get('peak_at', 'n/a')}` | {grew or 'n/a'} |")
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
    return lines


def markdown(report: dict[str, Any]) -> str:
    s, b, m = report.get("shapefile") or {}, report.get("batch") or {}, report["machine"]
    big = report.get("big_file") or {}
    points, files = report["inputs"]["shapefile_points"], report["inputs"]["batch_files"]
    big_points = report["inputs"].get("big_file_points") or 0
    yes = {True: "yes", False: "**no**", None: "n/a"}
    lines = [
        f"# leaf-dagster benchmark ({'quick' if report['quick'] else 'full'} run)", "",
        f"Run {report['started']}; phases {', '.join(report['phases']) or 'none'} ("
        + ", ".join({"batch": f"{count}-file batch", "workers": f"{count}-file batch on Celery workers"}.get(
                        phase, f"{count:,}-point shapefile")
                    for phase, count in (("shapefile", points), ("big", big_points), ("batch", files),
                                         ("workers", files))
                    if phase in report["phases"])
        + f"), seed {report['inputs']['seed']}; "
        f"the whole benchmark took {report['duration_s']:.0f} s. Load average (1/5/15 min) at start "
        f"{report['load_average']['start']}, at end {report['load_average']['end']}.", "",
        "## Key figures", "",
        "| figure | value | target | met |", "|---|---:|---:|:---:|",
        f"| shapefile end-to-end / baseline | {_times(report['shapefile_end_to_end_ratio'])} | at most 3x | "
        f"{yes[_met('shapefile_end_to_end_ratio', report['shapefile_end_to_end_ratio'])]} |",
        f"| shapefile peak resident memory | {_mib(report['shapefile_peak_rss_mb'])} | under 3,072 MiB | "
        f"{yes[_met('shapefile_peak_rss_mb', report['shapefile_peak_rss_mb'])]} |",
        f"| {big_points or 5_000_000:,}-point shapefile end-to-end / baseline | {_times(report['big_file_ratio'])} | "
        f"at most 3x | {yes[_met('big_file_ratio', report['big_file_ratio'])]} |",
        f"| {big_points or 5_000_000:,}-point shapefile peak resident memory | "
        f"{_mib(report['big_file_peak_rss_mb'])} | under 3,072 MiB | "
        f"{yes[_met('big_file_peak_rss_mb', report['big_file_peak_rss_mb'])]} |",
        f"| TLG decoding | {_rate(report['tlg_records_per_s'])} records/s | at least {_rate(TARGETS['tlg_records_per_s'])} | "
        f"{yes[_met('tlg_records_per_s', report['tlg_records_per_s'])]} |",
        f"| Dagster overhead (sensor + daemon{_on(report.get('dagster_overhead_instance'))}) | "
        f"{_num(report['dagster_overhead_s_per_file'])} s/file | "
        f"at most {TARGETS['dagster_overhead_s_per_file']} s | "
        f"{yes[_met('dagster_overhead_s_per_file', report['dagster_overhead_s_per_file'])]} |",
    ]
    if s:
        lines += ["", f"## {points:,}-point John Deere harvest shapefile", "", *shapefile_markdown(s, points)]
    if big:
        lines += ["", f"## {big_points:,}-point John Deere harvest shapefile", "",
                  f"The same generator and steps as above, {big_points:,} points; each measurement ran in a child "
                  f"killed if its resident set reached {_num(big.get('memory_cap_mb'), 0)} MiB.", "",
                  *shapefile_markdown(big, big_points)]
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
        daemons = b.get("daemons") or ({"sqlite": dm} if dm else {})
        paths = [("FileSteps in-process, no Dagster (register, extract, every step, catalog once)", fs),
                 ("Dagster in-process: `process_upload` (the upload's run, execute_in_process)", dp)]
        paths += [(f"inbox sensor + `dagster-daemon`{_on(kind)} (drop in the inbox -> every status final)", part)
                  for kind, part in daemons.items()]
        for label, part in paths:
            if part.get("seconds") is not None:
                lines.append(f"| {label} | {_num(part['seconds'])} | {_num(part['seconds'] / n)} | "
                             f"{part.get('processed', 'n/a')} of {part.get('files', n)} |")
            elif part:
                lines.append(f"| {label} | n/a | | {part.get('error', 'not run')} |")
        by_instance = report.get("dagster_overhead_s_per_file_by_instance") or {}
        for kind, value in by_instance.items():
            chosen = " (the reported figure)" if len(by_instance) > 1 and kind == b.get("overhead_instance") else ""
            lines.append(f"| **Dagster overhead (daemon{_on(kind)} - FileSteps) per file**{chosen} | | "
                         f"**{_num(value)}** | |")
        if not by_instance:
            lines.append("| **Dagster overhead (daemon - FileSteps) per file** | | n/a | |")
        if len(daemons) > 1:
            lines += ["", "The daemon ran the same upload on each instance, one after the other, with the same "
                      "deploy/dagster.yaml settings; only run, event-log and schedule storage differ. The "
                      "figures below are of the run on " + (b.get("overhead_instance") or "n/a") + "."]
        if dm.get("timeline"):
            t = dm["timeline"]
            runs = dm.get("runs", {})
            fr, br = runs.get("process_file", {}), runs.get("ingest_batch", {})
            lines += ["", "Daemon timeline (seconds after the upload landed in the inbox): the upload's run created "
                      f"{_num(t['batch_run_created'], 1)} (the inbox sensor's tick), ended "
                      f"{_num(t['batch_run_ended'], 1)}; every status final {_num(t['all_statuses_final'], 1)}. "
                      f"Upload runs: {br.get('runs')} ({br.get('statuses')}), wait in the queue "
                      f"{_num(br.get('mean_queue_seconds'), 1)} s; file runs: {fr.get('runs') or 0}."]
            parts = br.get("mean_breakdown") or {}
            if parts.get("runs"):
                files_step = parts.get("step:batchFiles")
                per_file = f" ({_num(files_step / n, 2)} s per file)" if files_step else ""
                lines += ["", f"Inside the upload's run (from the event log): launching the run worker process "
                          f"(RUN_STARTING -> RUN_START) {_num(parts['worker_start'], 1)} s; the run "
                          f"{_num(parts['run_total'], 1)} s from start to end, of which the batch step (store, extract, "
                          f"detect) {_num(parts.get('step:batch'), 1)} s and every file's steps (`batchFiles`) "
                          f"{_num(files_step, 1)} s{per_file}; {_num(parts['events'] / n, 1)} events written per file "
                          f"({_num(parts['events'], 0)} in all)."]
        if dm.get("launch"):
            launch = dm["launch"]
            limits = (launch.get("concurrency") or {}).get("runs") or {}
            lines += ["", f"How runs are launched: `{dm.get('command')}` (daemon start-up "
                      f"{_num(dm.get('startup_seconds'), 1)} s, not counted) runs the sensors; "
                      f"{launch.get('run_coordinator')} (max_concurrent_runs {limits.get('max_concurrent_runs')}, "
                      f"tag limit {[(t['key'], t['limit']) for t in limits.get('tag_concurrency_limits', [])]}) hands "
                      f"queued runs to the {launch.get('run_launcher')}, which has the code server start one run worker "
                      f"process per run; the upload's run takes every file through its steps in that process."]
    if report.get("workers"):
        lines += ["", *workers_markdown(report["workers"], m)]
    lines += ["", "## Machine", "",
              f"- CPU: {m['cpu_model']}, nproc {m['nproc']}; memory {m['memory_gb']} GB; {m['os']}",
              f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)]
    if report.get("skipped"):
        lines += ["", "Not run: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items()) + "."]
    if report.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in report["errors"].items()]
    return "\n".join(lines) + "\n"


def workers_markdown(w: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    """The batch on one and on two Celery workers: a row per number of workers, its runs, and the ratio."""
    lines = [f"## {w['files']}-file batch on Celery workers (LEAF_FILES_PER_RUN={w['files_per_run']})", "",
             "| workers | seconds (drop -> every status final) | files/s | runs: shard, worker, start -> end (s) |",
             "|---:|---:|---:|---|"]
    for count, part in w["by_workers"].items():
        runs = "<br>".join(f"{r['shard']} {'+'.join(r['workers']) or '?'} {_num(r['started_s'], 1)} -> "
                           f"{_num(r['ended_s'], 1)}" for r in part.get("upload_runs") or [])
        lines.append(f"| {count} | {_num(part.get('seconds'), 1)} | {_num(part.get('files_per_s'), 2)} | "
                     f"{runs or part.get('error', 'n/a')} |")
    lines += ["", f"Two workers against one: **{_times(w.get('speedup'))}** the files/s, on a machine with "
              f"{machine.get('nproc')} cores that the workers share with the daemon, its code server, PostgreSQL, "
              "RabbitMQ and Redis."]
    return lines


# -- main -------------------------------------------------------------------------------------------------------
def default_memory_cap_mb() -> float | None:
    """60 % of the machine's memory: a shapefile measurement that grows past it is killed (and reported) before
    it can take the machine, and whatever else runs on it, down."""
    mem_kb = _proc_field("/proc/meminfo", "MemTotal")
    return round(0.6 * int(mem_kb.split()[0]) / 1024) if mem_kb else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="leaf-dagster bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="100,000-point shapefile, no 5,000,000-point one, a 20-file batch and GET /files over "
                             "2,000 files (about 5 minutes on 2 cores)")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the Markdown table")
    parser.add_argument("--out", default="bench-out", metavar="DIR", help="where benchmarks.md/.json go (bench-out/)")
    parser.add_argument("--points", type=int, help="points in the big shapefile (overrides the preset)")
    parser.add_argument("--big-points", type=int, help="points in the biggest shapefile (5,000,000; with --quick "
                                                       "it is only run when given)")
    parser.add_argument("--files", type=int, help="files in the batch (overrides the preset)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--only", metavar="PHASES", help="run only these phases, comma-separated, of: "
                                                         + ", ".join(PHASES))
    for phase in PHASES:
        parser.add_argument(f"--no-{phase}", action="append_const", const=phase, dest="skip",
                            help=f"skip the {phase} phase")
    parser.add_argument("--no-daemon", action="store_true", help="skip the sensor + daemon run (no overhead figure)")
    parser.add_argument("--instance", metavar="KINDS",
                        help="the Dagster instance(s) the daemon runs the batch on, comma-separated, of: "
                             + ", ".join(daemon_bench.INSTANCES) + " (default: both when PostgreSQL answers at "
                             "LEAF_PG_ADMIN_URL, else sqlite)")
    parser.add_argument("--files-per-run", type=int, default=50, metavar="N",
                        help="LEAF_FILES_PER_RUN of the workers phase: files of the upload per run (default 50)")
    parser.add_argument("--daemon-timeout", type=float, help="seconds to wait for the daemon (default 120 per file, "
                                                             "170 in total with --quick)")
    parser.add_argument("--memory-cap-mb", type=float, default=default_memory_cap_mb(),
                        help="kill a shapefile measurement whose resident set reaches this many MiB "
                             "(default: 60%% of the machine's memory)")
    parser.add_argument("--memory-trace", action="store_true",
                        help="also sample memory and stacks during the shapefile steps (slower; where memory goes)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the shapefile steps once with pyinstrument (OUT/profile/, not timed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder and print its path")
    args = parser.parse_args(argv)
    unknown_instances = sorted(set((args.instance or "sqlite").split(",")) - set(daemon_bench.INSTANCES))
    if unknown_instances:
        parser.error(f"--instance: unknown {', '.join(unknown_instances)}; the instances are "
                     + ", ".join(daemon_bench.INSTANCES))
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(PHASES))
        if unknown:
            parser.error(f"--only: unknown phase(s) {', '.join(unknown)}; the phases are {', '.join(PHASES)}")
    return args


def plan_phases(args: argparse.Namespace, preset: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The phases to run, in order, and why each other one is not."""
    wanted = set(args.only.split(",")) if args.only else set(PHASES)
    skipped = {phase: "not in --only" for phase in PHASES if phase not in wanted}
    skipped.update({phase: f"--no-{phase}" for phase in args.skip or []})
    if "big" not in skipped and not preset["big_points"]:
        skipped["big"] = "--quick"
    if "workers" not in skipped and args.no_daemon:
        skipped["workers"] = "--no-daemon"
    elif "workers" not in skipped and args.quick and "workers" not in (args.only or "").split(","):
        skipped["workers"] = "--quick"
    return [phase for phase in PHASES if phase not in skipped], {p: skipped[p] for p in PHASES if p in skipped}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = dict(QUICK if args.quick else FULL)
    for key, value in (("points", args.points), ("big_points", args.big_points), ("files", args.files)):
        if value:
            preset[key] = value
    phases, skipped = plan_phases(args, preset)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started, clock = datetime.now(timezone.utc), time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - clock:7.1f}s] {message}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "quick": args.quick, "started": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": describe_machine(),
        "load_average": {"start": load_average()}, "phases": phases, "skipped": skipped,
        "inputs": {"shapefile_points": preset["points"], "big_file_points": preset["big_points"] if "big" in phases
                   else None, "batch_files": preset["files"], "batch_points_per_file": preset["file_points"],
                   "seed": args.seed},
        "targets": TARGETS, "memory_cap_mb": args.memory_cap_mb, "errors": {},
    }
    work = Path(tempfile.mkdtemp(prefix="leaf-bench-"))
    try:
        for phase, key, points in (("shapefile", "shapefile", preset["points"]),
                                   ("big", "big_file", preset["big_points"])):
            if phase not in phases:
                continue
            prefix = "harvest" if phase == "shapefile" else key
            log(f"generating the {points:,}-point shapefile in {work / phase}")
            try:
                made = shapefile_bench.in_child(harvest_input, str(work / phase), points, args.seed)
            except shapefile_bench.ChildDied as exc:
                report["errors"][key] = f"generating the input: {exc.reason}"
                log(f"  failed: {exc.reason}")
                continue
            report["inputs"].update({f"{prefix}_seconds": made["seconds"], f"{prefix}_bytes": made["bytes"],
                                     f"{prefix}_zip_bytes": made["zip_bytes"]})
            log(f"  {made['seconds']:.1f} s")
            try:
                report[key] = measured = shapefile_bench.measure(
                    Path(made["shp"]), Path(made["zip"]), work / phase, points,
                    out_dir / "profile" / phase if args.profile else None, log=log,
                    memory_cap_mb=args.memory_cap_mb, trace=args.memory_trace)
                if measured.get("errors"):
                    report["errors"][key] = "; ".join(f"{k}: {v}" for k, v in measured["errors"].items())
            except Exception as exc:
                report["errors"][key] = _first_line(exc)
                log(f"  {phase} measurement failed: {_first_line(exc)}")
            if not args.keep:  # the 5M case's inputs and outputs take gigabytes
                import shutil

                shutil.rmtree(work / phase, ignore_errors=True)

        if "tlg" in phases:
            log(f"TLG decoding, {preset['tlg_records']:,} records")
            report["tlg"] = tlg_decoding(preset["tlg_records"])
            if "error" in report["tlg"]:
                report["errors"]["tlg"] = report["tlg"]["error"]
            log(f"  {_rate(report['tlg'].get('records_per_s'))} records/s")

        if "isoxml" in phases:
            log(f"ISOXML card with a no-fix record, {preset['isoxml_records']:,} records")
            try:
                report["isoxml_no_fix"] = isoxml_bench.measure(work / "isoxml", preset["isoxml_records"])
                log(f"  {isoxml_bench.line(report['isoxml_no_fix'])}")
            except Exception as exc:
                report["errors"]["isoxml_no_fix"] = _first_line(exc)
                log(f"  ISOXML measurement failed: {_first_line(exc)}")

        if "listing" in phases:
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
        batch_zip: dict[str, Any] = {}

        def batch_upload() -> Path:
            """The batch's upload, generated once for the phases that run it."""
            if not batch_zip:
                log(f"generating the {preset['files']}-file batch")
                made = shapefile_bench.in_child(batch_input, str(work / "batch"), preset["files"],
                                                preset["file_points"], args.seed)
                report["inputs"].update(batch_seconds=made["seconds"], batch_zip_bytes=made["zip_bytes"])
                batch_zip.update(made)
            return Path(batch_zip["zip"])

        if "batch" in phases:
            instances = args.instance.split(",") if args.instance else ["sqlite"]
            if not args.instance and not args.no_daemon:
                unreachable = postgres_bench.reachable()
                if unreachable:
                    report["skipped"]["batch on postgres"] = unreachable
                else:
                    instances.append("postgres")
            try:
                report["batch"] = daemon_bench.measure(batch_upload(), work, preset["files"],
                                                       not args.no_daemon, timeout, log,
                                                       dagster_in_process=not args.quick,
                                                       instances=tuple(instances))
                for kind, daemon in (report["batch"].get("daemons") or {}).items():
                    name = "daemon" if kind == "sqlite" else f"daemon_{kind}"
                    if daemon.get("error"):
                        report["errors"][name] = daemon["error"]
                    elif daemon.get("timed_out"):
                        report["errors"][name] = (f"timed out after {timeout:.0f} s with {daemon.get('processed', 0)} "
                                                  f"processed and {daemon.get('failed', 0)} failed of "
                                                  f"{daemon.get('files')}")
            except Exception as exc:
                report["errors"]["batch"] = _first_line(exc)
                log(f"  batch measurement failed: {_first_line(exc)}")

        if "workers" in phases:
            try:
                report["workers"] = measured_workers = daemon_bench.measure_workers(
                    batch_upload(), work, preset["files"], timeout, log, args.files_per_run)
                for count, part in measured_workers["by_workers"].items():
                    if part.get("error") or part.get("timed_out"):
                        report["errors"][f"workers_{count}"] = part.get("error") or f"timed out after {timeout:.0f} s"
            except Exception as exc:
                report["errors"]["workers"] = _first_line(exc)
                log(f"  workers measurement failed: {_first_line(exc)}")
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)

    finish(report, time.perf_counter() - clock)
    text = markdown(report)
    write_atomically(out_dir / "benchmarks.md", text)
    write_atomically(out_dir / "benchmarks.json", json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str) if args.json else text)
    log(f"wrote {out_dir / 'benchmarks.md'} and {out_dir / 'benchmarks.json'}")
    return 1 if report.get("errors") else 0


def finish(report: dict[str, Any], duration_s: float) -> None:
    """The report's top-level figures, from the phases' raw ones (None for a phase not run or a figure not
    measured), and which targets they meet."""
    shp, big = report.get("shapefile") or {}, report.get("big_file") or {}
    report["shapefile_end_to_end_ratio"] = shp.get("ratio")
    report["shapefile_peak_rss_mb"] = shp.get("peak_rss_mb")
    report["shapefile_end_to_end_seconds"] = shp.get("end_to_end_seconds")
    report["baseline_seconds"] = (shp.get("baseline") or {}).get("seconds")
    report["steps"] = step_figures(shp)
    report["big_file_ratio"] = big.get("ratio")
    report["big_file_peak_rss_mb"] = big.get("peak_rss_mb")
    report["big_file_end_to_end_seconds"] = big.get("end_to_end_seconds")
    report["big_file_baseline_seconds"] = (big.get("baseline") or {}).get("seconds")
    report["big_file_steps"] = step_figures(big)
    report["tlg_records_per_s"] = (report.get("tlg") or {}).get("records_per_s")
    report["dagster_overhead_s_per_file"] = (report.get("batch") or {}).get("overhead_s_per_file")
    report["dagster_overhead_instance"] = (report.get("batch") or {}).get("overhead_instance")
    report["dagster_overhead_s_per_file_by_instance"] = (report.get("batch") or {}).get(
        "overhead_s_per_file_by_instance") or {}
    report["workers_speedup"] = (report.get("workers") or {}).get("speedup")
    report["files_list_p50_ms"] = (report.get("listing") or {}).get("files_list_p50_ms")
    report["files_list_p95_ms"] = (report.get("listing") or {}).get("files_list_p95_ms")
    report["targets_met"] = {key: _met(key, report[key]) for key in TARGETS}
    report["load_average"]["end"] = load_average()
    report["duration_s"] = duration_s
    if not report["errors"]:
        del report["errors"]


def step_figures(measured: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Seconds, points/s and peak RSS of each step (and why a step has none)."""
    return {name: {"seconds": s.get("seconds"), "points_per_s": s.get("points_per_s"),
                   "peak_rss_mb": s.get("peak_rss_mb"), **({"error": s["error"]} if s.get("error") else {})}
            for name, s in (measured.get("steps") or {}).items()}


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


if __name__ == "__main__":
    sys.exit(main())
