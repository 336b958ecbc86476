"""The large-shapefile measurements: the pyogrio -> GeoParquet baseline and every per-file step via FileSteps.

Each measurement runs in a fresh spawned process (see `in_child`), so its peak resident memory is its own:
the child reads VmHWM (the kernel's high-water mark of its resident set) from /proc/self/status, and resets it
between steps (`5 > /proc/self/clear_refs`) to also give each step's own peak.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Leaf's step names, in run order; the end-to-end time is their sum.
STEPS = ("originalFile", "rawGeojson", "standardGeojson", "filteredGeojson", "summary", "units", "propertiesPNGs",
         "zippedPNGs")


# -- memory ---------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    """This process's peak resident set since start (or the last reset), in MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return kb / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


# -- child processes ------------------------------------------------------------------------------------------
_progress_conn: Any = None  # the child's end of the pipe to its parent, for `report_progress`


def report_progress(payload: dict[str, Any]) -> None:
    """Send `payload` to the parent now (from inside `in_child`'s target): what a child finished before it died
    still reaches the report. Does nothing outside a child."""
    if _progress_conn is not None:
        _progress_conn.send(("progress", payload))


def _child_main(conn: Any, target: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    global _progress_conn
    _progress_conn = conn
    try:
        result = target(*args)
        result.setdefault("peak_rss_mb", peak_rss_mb())
        message: tuple[str, Any] = ("ok", result)
    except BaseException as exc:  # report anything to the parent rather than dying silently
        message = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    try:
        conn.send(message)
    except OSError:  # the parent is gone: nobody to report to
        pass
    finally:
        conn.close()


def error_line(exc: BaseException) -> str:
    """`Type: first line of the message`, what a report shows for a failure."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class ChildDied(RuntimeError):
    """A child that gave no result: it raised, was killed at the memory cap or by a signal, or timed out.

    `progress` holds what it reported before (`report_progress`); `seen_rss_mb` the largest resident set the
    parent saw while watching it (a lower bound of its peak)."""

    def __init__(self, reason: str, progress: list[dict[str, Any]], seen_rss_mb: float | None = None,
                 detail: str = ""):
        super().__init__(reason + (f"\n{detail}" if detail else ""))
        self.reason, self.progress, self.seen_rss_mb = reason, progress, seen_rss_mb


def rss_mb(pid: int) -> float | None:
    """The resident set of process `pid` now (VmRSS), in MiB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        why = " (the kernel's OOM killer sends it when memory runs out)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{why}"
    return f"exited with code {exitcode}"


def in_child(target: Callable[..., dict[str, Any]], *args: Any, timeout: float | None = None,
             memory_cap_mb: float | None = None,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run `target(*args)` in a freshly spawned interpreter and return its dict (with `peak_rss_mb`).

    The parent watches the child's resident set every 0.1 s and kills it at `memory_cap_mb`, so one oversized
    measurement cannot take the machine down; any way of ending without a result raises ChildDied. What the
    child reports on the way (`report_progress`) is handed to `on_progress` as it comes."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child_main, args=(child, target, args), name=f"bench-{target.__name__}")
    process.start()
    child.close()
    progress: list[dict[str, Any]] = []
    seen = 0.0
    deadline = None if timeout is None else time.monotonic() + timeout
    name = target.__name__

    def died(reason: str, detail: str = "") -> ChildDied:
        return ChildDied(f"{name}: {reason}", progress, seen or None, detail)

    try:
        while True:
            if parent.poll(0.1):
                try:
                    status, payload = parent.recv()
                except EOFError:
                    process.join(5)
                    raise died(_exit_reason(process.exitcode) + " before giving a result") from None
                if status == "progress":
                    progress.append(payload)
                    if on_progress:
                        on_progress(payload)
                    continue
                if status != "ok":
                    first = (payload.strip().splitlines() or ["no message"])[0]
                    raise died(f"failed: {first}", payload)
                return payload
            rss = rss_mb(process.pid) if process.pid is not None else None
            seen = max(seen, rss or 0.0)
            if memory_cap_mb is not None and rss is not None and rss >= memory_cap_mb:
                process.kill()
                raise died(f"killed at the memory cap: resident {rss:,.0f} MiB >= cap {memory_cap_mb:,.0f} MiB")
            if deadline is not None and time.monotonic() > deadline:
                raise died(f"did not finish within {timeout} s")
    finally:
        if process.is_alive():
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()


# -- baseline -------------------------------------------------------------------------------------------------
def baseline(shp: str, out_dir: str, repeats: int = 1) -> dict[str, Any]:
    """Read the shapefile with pyogrio (Arrow) and write it as GeoParquet with geopandas; best of `repeats`."""
    import pyogrio

    target = Path(out_dir) / "baseline.parquet"
    best: dict[str, float] | None = None
    rows = 0
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        frame = pyogrio.read_dataframe(shp, use_arrow=True)
        read = time.perf_counter() - started
        frame.to_parquet(target, index=False)
        total = time.perf_counter() - started
        rows = len(frame)
        del frame
        if best is None or total < best["seconds"]:
            best = {"seconds": total, "read_seconds": read, "write_seconds": total - read}
        target.unlink()
    assert best is not None
    return {**best, "points": rows, "how": "pyogrio.read_dataframe(use_arrow=True) + GeoDataFrame.to_parquet() "
                                          "(geopandas defaults: snappy, GeoParquet 1.0)"}


# -- the per-file steps ---------------------------------------------------------------------------------------
def _profiler(profile_dir: str | None):
    if not profile_dir:
        return None
    from pyinstrument import Profiler

    return Profiler(interval=0.005)


def _save_profile(profiler: Any, profile_dir: str, step: str) -> dict[str, list[dict[str, Any]]]:
    folder = Path(profile_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{step}.txt").write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    (folder / f"{step}.html").write_text(profiler.output_html())
    return top_functions(profiler)


def top_functions(profiler: Any, count: int = 6) -> dict[str, list[dict[str, Any]]]:
    """Where a step's time goes, from the pyinstrument call tree:

    - `project`: time attributed to the innermost leaf_dagster function on the stack (what to change);
    - `self`: the functions (C functions included) that were on top of the stack, with that project caller.
    """
    session = profiler.last_session
    root = session.root_frame() if session else None
    if root is None:
        return {"project": [], "self": []}
    project: dict[str, float] = {}
    own: dict[tuple[str, str], float] = {}

    def name(frame: Any) -> str:
        where = (frame.file_path_short or frame.file_path or "?").lstrip("./")
        return f"{frame.function} ({where}:{frame.line_no})" if frame.line_no else f"{frame.function} ({where})"

    def walk(frame: Any, parent: Any, caller: str) -> None:
        if frame.is_synthetic:  # pyinstrument's "[self]" leaf: time spent in `parent` itself
            if parent is not None:
                key = (name(parent), caller)
                own[key] = own.get(key, 0.0) + frame.time
                project[caller] = project.get(caller, 0.0) + frame.time
            return
        path = frame.file_path or ""
        if "leaf_dagster" in path and "benchmarks" not in path:
            caller = name(frame)
        for child in frame.children:
            walk(child, frame, caller)

    walk(root, None, "outside leaf_dagster")
    rank = lambda d: sorted(d.items(), key=lambda kv: kv[1], reverse=True)[:count]  # noqa: E731
    return {"project": [{"function": k, "seconds": round(v, 3)} for k, v in rank(project)],
            "self": [{"function": f, "called_from": c, "seconds": round(v, 3)} for (f, c), v in rank(own)]}


class MemoryTrace:
    """Where a step's memory goes: a thread samples this process's resident set and the main thread's stack every
    `interval` s, so each step gets the stack at its peak and the code its resident set grew under.

    Only with `--memory-trace`: the sampling takes the GIL 20 times a second, which the timed runs should not pay."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.samples: list[tuple[float, str, str]] = []  # (rss MiB, leaf_dagster stack, innermost frame)
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-trace", daemon=True)

    @staticmethod
    def _where(frame: Any) -> tuple[str, str]:
        project: list[str] = []
        top = f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})" if frame else "?"
        while frame is not None:
            path = frame.f_code.co_filename
            if "leaf_dagster" in path and "benchmarks" not in path:
                project.append(f"{frame.f_code.co_name} ({Path(path).name}:{frame.f_lineno})")
            frame = frame.f_back
        return " < ".join(project[:4]) or "outside leaf_dagster", top

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.wait(self.interval):
            rss = rss_mb(pid)
            # a frame held keeps its locals alive: held past this line, it would keep, say, an array over an
            # mmap the main thread is about to close (BufferError); a few microseconds, well inside the GIL's
            # switch interval, are safe
            where = self._where(sys._current_frames().get(self._main))  # type: ignore[arg-type]
            if rss is not None:
                self.samples.append((rss, *where))

    def __enter__(self) -> MemoryTrace:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, start_rss: float | None, count: int = 5) -> dict[str, Any]:
        """The samples so far as: start, peak (with the stack there) and the code under which the resident set
        grew most (increases between consecutive samples, summed by leaf_dagster stack); then forgets them."""
        samples, self.samples = self.samples, []
        if not samples:
            return {}
        peak = max(samples, key=lambda s: s[0])
        growth: dict[str, float] = {}
        previous = start_rss if start_rss is not None else samples[0][0]
        for rss, stack, top in samples:
            if rss > previous:
                key = f"{stack} | {top}"
                growth[key] = growth.get(key, 0.0) + rss - previous
            previous = rss
        ranked = sorted(growth.items(), key=lambda kv: kv[1], reverse=True)[:count]
        return {"start_rss_mb": start_rss, "peak_rss_mb": peak[0], "peak_at": peak[1], "peak_top": peak[2],
                "grew_under": [{"where": k, "mb": round(v, 1)} for k, v in ranked]}


def retained_mb(tables: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tables the steps hand on, as they stand after a step: rows, columns, and their size (pandas' deep
    size of the properties, and of a GeoDataFrame's geometry the Python wrappers only: the GEOS coordinates
    behind them are not included)."""
    from leaf_dagster.model import PointTable

    out: dict[str, dict[str, Any]] = {}
    for step, table in tables.items():
        if isinstance(table, PointTable):  # properties and encoded points, or the row mask of a subset
            wkb, bounds, _ = table.points
            size = float(table.properties.memory_usage(deep=True).sum()) + wkb.nbytes + bounds.nbytes \
                if table.keep is None else float(table.keep.nbytes)  # a subset shares its table's values
            out[step] = {"rows": table.point_count, "columns": len(table.properties.columns) + 1,
                         "mb": round(size / 2**20, 1)}
            continue
        frame = getattr(table, "frame", None)
        if frame is None:
            continue
        out[step] = {"rows": len(frame), "columns": len(frame.columns),
                     "mb": round(float(frame.memory_usage(deep=True).sum()) / 2**20, 1)}
    return out


def step_calls(steps: Any, tables: dict[str, Any] | None = None) -> dict[str, Callable[[], Any]]:
    """Each step of a file as a call, in the file job's order, with its table written and handed on (in
    `tables`, when given, to see what is held) as the IO manager does (`defs/io_manager.py`), and the
    standard step's plausibility check run after it, as the pipeline runs it; a step's call returns what the
    step returns. The raw records are let go once standardised, as the upload's run lets them go."""

    tables = {} if tables is None else tables

    def table(step: str, value: Any) -> Any:
        tables[step] = value if step != "standardGeojson" else value.table
        if step != "standardGeojson" or steps.schema_failure(value) is None:
            steps.write_table(step, tables[step])
            if step == "standardGeojson":  # the step's plausibility check runs with it in the pipeline
                steps.plausibility(tables[step])
        return value

    return {
        "originalFile": steps.store_original,
        "rawGeojson": lambda: table("rawGeojson", steps.read_raw()),
        # the raw records are let go once standardised, as the upload's run does (`defs/assets/files.py`)
        "standardGeojson": lambda: table("standardGeojson", steps.standardize(tables.pop("rawGeojson"))),
        "filteredGeojson": lambda: table("filteredGeojson", steps.filter(tables["standardGeojson"])),
        "summary": lambda: steps.summarize(tables["standardGeojson"]),
        "units": lambda: steps.write_units(tables["standardGeojson"]),
        "propertiesPNGs": lambda: steps.render_images(tables["filteredGeojson"], tables["standardGeojson"]),
        "zippedPNGs": steps.zip_images,
    }


def run_steps(upload: str, data_dir: str, profile_dir: str | None = None, trace: bool = False) -> dict[str, Any]:
    """Register and extract the upload, then run every per-file step of its (single) machine file in order,
    timing each; the owner config turns polygon output on so `standardGeojson` writes it.

    Each finished step is reported to the parent at once (`report_progress`). A step that raises (MemoryError
    included) is recorded with its error and ends the run: the steps after it need its output."""
    from leaf_dagster.config import save
    from leaf_dagster.files import FileSteps
    from leaf_dagster.ingest.batch import batch_id_for, ingest_batch, new_batch
    from leaf_dagster.storage import Storage

    storage = Storage(data_dir)
    save(storage, {"enablePolygonOutput": True})
    upload_path = Path(upload)
    batch_id = batch_id_for(upload_path, "bench", "JohnDeere")
    new_batch(storage, batch_id, upload_path, "bench", "JohnDeere", move=False)
    started = time.perf_counter()
    outcome = ingest_batch(storage, batch_id)
    ingest_seconds = time.perf_counter() - started
    if outcome.error or len(outcome.files) != 1:
        raise RuntimeError(f"the upload did not yield one machine file: {outcome.error or len(outcome.files)}")
    report_progress({"event": "ingested", "ingest_seconds": ingest_seconds})
    file_id = outcome.files[0]["id"]
    tables: dict[str, Any] = {}
    calls = step_calls(FileSteps(storage, file_id), tables)
    peak_before_steps = peak_rss_mb()
    per_step_peak = reset_peak_rss()
    timings: dict[str, dict[str, Any]] = {}
    results: dict[str, Any] = {}
    tracer = MemoryTrace() if trace else None
    if tracer:
        tracer.__enter__()
    try:
        for step in STEPS:
            profiler = _profiler(profile_dir)
            if per_step_peak:
                reset_peak_rss()
            report_progress({"event": "start", "step": step})
            start_rss = rss_mb(os.getpid()) if tracer else None
            if profiler:
                profiler.start()
            began = time.perf_counter()
            try:
                results[step] = calls[step]()
                if step == "rawGeojson":  # its count is all the report needs: the table goes with its step
                    results[step] = results[step].point_count
                if step == "standardGeojson":  # its gate is all the report needs: its points are handed on
                    results[step] = FileSteps.schema_failure(results[step])  # in `tables`, as a run's are
            except Exception as exc:  # MemoryError too: the step's failure is the figure
                timings[step] = {"seconds": None, "peak_rss_mb": peak_rss_mb() if per_step_peak else None,
                                 "error": error_line(exc)}
                report_progress({"event": "failed", "step": step, **timings[step]})
                break
            finally:
                if profiler:
                    profiler.stop()
            timings[step] = {"seconds": time.perf_counter() - began}
            if profiler:
                timings[step]["hot_spots"] = _save_profile(profiler, profile_dir, step)  # type: ignore[arg-type]
            if per_step_peak:
                timings[step]["peak_rss_mb"] = peak_rss_mb()
            if tracer:
                timings[step]["memory"] = {**tracer.summary(start_rss), "retained": retained_mb(tables)}
            report_progress({"event": "done", "step": step, **timings[step]})
            del profiler
    finally:
        if tracer:
            tracer.__exit__()
    peaks = [peak_before_steps or 0.0] + [t.get("peak_rss_mb") or 0.0 for t in timings.values()] + [peak_rss_mb() or 0.0]
    out: dict[str, Any] = {"peak_rss_mb": max(peaks), "file_id": file_id, "ingest_seconds": ingest_seconds,
                           "steps": timings, "per_step_peak_rss": per_step_peak}
    if len(results) < len(STEPS):
        return out
    failure = results["standardGeojson"]
    if failure:
        raise RuntimeError(f"standardGeojson failed its gate: {failure}")
    record = storage.records.get("files", file_id) or {}
    outputs = {table: storage.parquet_path(table, file_id) for table in ("raw", "standard", "filtered", "polygons")}
    return {
        **out, "raw_points": results["rawGeojson"], "standard_points": record.get("pointCount"),
        "filtered_points": record.get("filteredPointCount"), "images": len(results["propertiesPNGs"]),
        "operation_type": record.get("operationType"), "crops": record.get("crops"),
        "output_bytes": {t: p.stat().st_size for t, p in outputs.items() if p.exists()},
        "images_zip_bytes": results["zippedPNGs"].stat().st_size,
    }


def steps_from_progress(progress: list[dict[str, Any]], reason: str) -> dict[str, dict[str, Any]]:
    """The step figures a child sent before it died: finished steps as reported, the step it died in with
    `reason`, and nothing for the steps it never started."""
    steps: dict[str, dict[str, Any]] = {}
    for event in progress:
        if event.get("event") == "start":
            steps[event["step"]] = {"seconds": None, "peak_rss_mb": None, "error": reason}
        elif event.get("event") in ("done", "failed"):
            steps[event["step"]] = {k: v for k, v in event.items() if k not in ("event", "step")}
    return steps


def measure(shp: Path, upload: Path, work: Path, points: int, profile_dir: Path | None = None,
            log: Callable[[str], None] = lambda _: None, memory_cap_mb: float | None = None,
            trace: bool = False) -> dict[str, Any]:
    """Baseline and steps, each in its own spawned child (killed at `memory_cap_mb`); the figures the report
    needs. A measurement that dies leaves its figures None, with the reason in `errors`, and never raises."""
    errors: dict[str, str] = {}
    log(f"baseline: pyogrio (Arrow) read + GeoParquet write of {points:,} points")
    try:
        base = in_child(baseline, str(shp), str(work), memory_cap_mb=memory_cap_mb)
        log(f"  {base['seconds']:.2f} s, peak {base['peak_rss_mb']:,.0f} MiB")
    except ChildDied as exc:
        base = {"seconds": None, "read_seconds": None, "write_seconds": None, "peak_rss_mb": None,
                "error": exc.reason, "seen_rss_mb": exc.seen_rss_mb}
        errors["baseline"] = exc.reason
        log(f"  baseline died: {exc.reason}")
    data = work / f"data-steps-{points}"
    log(f"per-file steps of the {points:,}-point shapefile (FileSteps, in-process, polygon output on)")
    seen_rss: float | None = None

    def step_done(event: dict[str, Any]) -> None:
        if event.get("event") in ("done", "failed"):
            log(f"  {event['step']:16s} " + (f"{event['seconds']:8.2f} s, peak {event.get('peak_rss_mb') or 0:,.0f} MiB"
                                              if event.get("seconds") is not None else f"n/a: {event.get('error')}"))

    try:
        run = in_child(run_steps, str(upload), str(data), None, trace, memory_cap_mb=memory_cap_mb,
                       on_progress=step_done)
    except ChildDied as exc:
        steps = steps_from_progress(exc.progress, exc.reason)
        ingested = [e for e in exc.progress if e.get("event") == "ingested"]
        run = {"steps": steps, "peak_rss_mb": None,
               "ingest_seconds": ingested[0]["ingest_seconds"] if ingested else None}
        seen_rss = exc.seen_rss_mb
        errors["steps"] = exc.reason
        log(f"  the steps' process died: {exc.reason}")
    failed = [name for name, step in run["steps"].items() if step.get("seconds") is None]
    for name in failed:
        errors.setdefault("steps", f"{name}: {run['steps'][name].get('error')}")
    for name in STEPS:
        run["steps"].setdefault(name, {"seconds": None, "peak_rss_mb": None,
                                       "error": f"not run: {failed[0]} did not finish" if failed else "not run"})
    for name, step in run["steps"].items():
        step["points_per_s"] = points / step["seconds"] if step.get("seconds") else None
    complete = all(step.get("seconds") is not None for step in run["steps"].values())
    end_to_end = sum(s["seconds"] for s in run["steps"].values()) if complete else None
    result = {
        "points": points, "baseline": base, "steps": {name: run["steps"][name] for name in STEPS},
        "end_to_end_seconds": end_to_end, "end_to_end_points_per_s": points / end_to_end if end_to_end else None,
        "ratio": end_to_end / base["seconds"] if end_to_end and base.get("seconds") else None,
        "peak_rss_mb": run["peak_rss_mb"] if complete else None, "ingest_seconds": run.get("ingest_seconds"),
        "details": {k: v for k, v in run.items() if k not in ("steps", "peak_rss_mb", "ingest_seconds")},
    }
    if memory_cap_mb is not None:
        result["memory_cap_mb"] = memory_cap_mb
    if seen_rss is not None:
        result["seen_rss_mb"] = seen_rss
    if errors:
        result["errors"] = errors
    if profile_dir is not None:
        log("profiling the same steps once more with pyinstrument (not timed)")
        try:
            profiled = in_child(run_steps, str(upload), str(work / f"data-profile-{points}"), str(profile_dir),
                                memory_cap_mb=memory_cap_mb)
            result["hot_spots"] = {name: s.get("hot_spots", []) for name, s in profiled["steps"].items()}
            result["profile_dir"] = str(profile_dir)
        except (RuntimeError, ImportError) as exc:
            result["hot_spots_error"] = str(exc).splitlines()[0]
    return result


if __name__ == "__main__":  # pragma: no cover - a manual entry point for one measurement
    import argparse
    import json
    import tempfile

    from .generate import write_harvest_zip

    parser = argparse.ArgumentParser(description="Per-file steps of a generated JD shapefile")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--profile", metavar="DIR")
    parser.add_argument("--memory-cap-mb", type=float, help="kill a measurement whose resident set reaches this")
    parser.add_argument("--memory-trace", action="store_true", help="sample memory and stacks during the steps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leaf-bench-") as tmp:
        folder = Path(tmp)
        archive, shapefile = write_harvest_zip(folder, args.points)
        assert shapefile is not None
        figures = measure(shapefile, archive, folder, args.points, Path(args.profile) if args.profile else None,
                          log=lambda m: print(m, flush=True), memory_cap_mb=args.memory_cap_mb,
                          trace=args.memory_trace)
        print(json.dumps(figures, indent=2, default=str))
