"""The large-shapefile measurements: the pyogrio -> GeoParquet baseline and every per-file step via FileSteps.

Each measurement runs in a fresh spawned process (see `in_child`), so its peak resident memory is its own:
the child reads VmHWM (the kernel's high-water mark of its resident set) from /proc/self/status, and resets it
between steps (`5 > /proc/self/clear_refs`) to also give each step's own peak.
"""

from __future__ import annotations

import multiprocessing as mp
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
def _child_main(conn: Any, target: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
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


def in_child(target: Callable[..., dict[str, Any]], *args: Any, timeout: float | None = None) -> dict[str, Any]:
    """Run `target(*args)` in a freshly spawned interpreter and return its dict (with `peak_rss_mb`)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child_main, args=(child, target, args), name=f"bench-{target.__name__}")
    process.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(f"{target.__name__} did not finish within {timeout} s")
        status, payload = parent.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"{target.__name__} died (exit code {process.exitcode}) without a result") from None
    finally:
        if process.is_alive() and not parent.closed:
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()
    if status != "ok":
        raise RuntimeError(f"{target.__name__} failed in the child process: {payload}")
    return payload


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


def step_calls(steps: Any) -> dict[str, Callable[[], Any]]:
    """Each step of a file as a call, in the file job's order, with its table written and handed on as the
    IO manager does (`defs/io_manager.py`); a step's call returns what the step returns."""
    from leaf_dagster.model import PointTable

    tables: dict[str, Any] = {}

    def table(step: str, value: Any) -> Any:
        tables[step] = value if step != "standardGeojson" else PointTable(value.frame, value.units)
        if step != "standardGeojson" or steps.schema_failure(value) is None:
            steps.write_table(step, tables[step])
        return value

    return {
        "originalFile": steps.store_original,
        "rawGeojson": lambda: table("rawGeojson", steps.read_raw()),
        "standardGeojson": lambda: table("standardGeojson", steps.standardize(tables["rawGeojson"])),
        "filteredGeojson": lambda: table("filteredGeojson", steps.filter(tables["standardGeojson"])),
        "summary": lambda: steps.summarize(tables["standardGeojson"]),
        "units": lambda: steps.write_units(tables["standardGeojson"]),
        "propertiesPNGs": lambda: steps.render_images(tables["filteredGeojson"], tables["standardGeojson"]),
        "zippedPNGs": steps.zip_images,
    }


def run_steps(upload: str, data_dir: str, profile_dir: str | None = None) -> dict[str, Any]:
    """Register and extract the upload, then run every per-file step of its (single) machine file in order,
    timing each; the owner config turns polygon output on so `standardGeojson` writes it."""
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
    file_id = outcome.files[0]["id"]
    calls = step_calls(FileSteps(storage, file_id))
    peak_before_steps = peak_rss_mb()
    per_step_peak = reset_peak_rss()
    timings: dict[str, dict[str, Any]] = {}
    results: dict[str, Any] = {}
    for step in STEPS:
        profiler = _profiler(profile_dir)
        if per_step_peak:
            reset_peak_rss()
        if profiler:
            profiler.start()
        began = time.perf_counter()
        results[step] = calls[step]()
        seconds = time.perf_counter() - began
        timings[step] = {"seconds": seconds}
        if profiler:
            profiler.stop()
            timings[step]["hot_spots"] = _save_profile(profiler, profile_dir, step)  # type: ignore[arg-type]
        if per_step_peak:
            timings[step]["peak_rss_mb"] = peak_rss_mb()
        del profiler
    standard = results["standardGeojson"]
    failure = FileSteps.schema_failure(standard)
    if failure:
        raise RuntimeError(f"standardGeojson failed its gate: {failure}")
    record = storage.records.get("files", file_id) or {}
    peaks = [peak_before_steps or 0.0] + [t.get("peak_rss_mb") or 0.0 for t in timings.values()] + [peak_rss_mb() or 0.0]
    outputs = {table: storage.parquet_path(table, file_id) for table in ("raw", "standard", "filtered", "polygons")}
    return {
        "peak_rss_mb": max(peaks), "file_id": file_id, "ingest_seconds": ingest_seconds, "steps": timings, "per_step_peak_rss": per_step_peak,
        "raw_points": results["rawGeojson"].point_count, "standard_points": record.get("pointCount"),
        "filtered_points": record.get("filteredPointCount"), "images": len(results["propertiesPNGs"]),
        "operation_type": record.get("operationType"), "crops": record.get("crops"),
        "output_bytes": {t: p.stat().st_size for t, p in outputs.items() if p.exists()},
        "images_zip_bytes": results["zippedPNGs"].stat().st_size,
    }


def measure(shp: Path, upload: Path, work: Path, points: int, profile_dir: Path | None = None,
            log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Baseline and steps, each in its own spawned child; the figures the report needs."""
    log(f"baseline: pyogrio (Arrow) read + GeoParquet write of {points:,} points")
    base = in_child(baseline, str(shp), str(work))
    log(f"  {base['seconds']:.2f} s")
    data = work / "data-steps"
    log(f"per-file steps of the {points:,}-point shapefile (FileSteps, in-process, polygon output on)")
    steps = in_child(run_steps, str(upload), str(data), None)
    end_to_end = sum(s["seconds"] for s in steps["steps"].values())
    for name, step in steps["steps"].items():
        step["points_per_s"] = points / step["seconds"] if step["seconds"] > 0 else None
        log(f"  {name:16s} {step['seconds']:8.2f} s")
    result = {
        "points": points, "baseline": base, "steps": steps["steps"], "end_to_end_seconds": end_to_end,
        "end_to_end_points_per_s": points / end_to_end, "ratio": end_to_end / base["seconds"],
        "peak_rss_mb": steps["peak_rss_mb"], "ingest_seconds": steps["ingest_seconds"],
        "details": {k: v for k, v in steps.items() if k not in ("steps", "peak_rss_mb", "ingest_seconds")},
    }
    if profile_dir is not None:
        log("profiling the same steps once more with pyinstrument (not timed)")
        try:
            profiled = in_child(run_steps, str(upload), str(work / "data-profile"), str(profile_dir))
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leaf-bench-") as tmp:
        folder = Path(tmp)
        archive, shapefile = write_harvest_zip(folder, args.points)
        assert shapefile is not None
        figures = measure(shapefile, archive, folder, args.points,
                          Path(args.profile) if args.profile else None, log=lambda m: print(m, flush=True))
        print(json.dumps(figures, indent=2, default=str))

