"""The benchmark harness reports what it measured and only that: phases run or skipped on request, the
5,000,000-point case's keys (null when not run), and a measurement that dies as a null figure with its reason,
never a crashed benchmark.

Tiny inputs only; nothing here is timed (performance lives in `leaf-dagster bench`).
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import run
from benchmarks.shapefile import STEPS, ChildDied, MemoryTrace, in_child, report_progress, rss_mb, steps_from_progress

KEYS = ("shapefile_end_to_end_ratio", "shapefile_peak_rss_mb", "big_file_ratio", "big_file_peak_rss_mb",
        "tlg_records_per_s", "dagster_overhead_s_per_file", "files_list_p50_ms", "files_list_p95_ms")


# -- children that die (module level: a spawned child imports them by name) ----------------------------------------
def _report_then_kill_self(steps: int) -> dict[str, Any]:
    for number in range(steps):
        report_progress({"event": "done", "step": f"step{number}", "seconds": 0.5})
    report_progress({"event": "start", "step": f"step{steps}"})
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def _grow_forever(chunk_mb: int) -> dict[str, Any]:
    held = []
    while True:
        held.append(b"\1" * (chunk_mb << 20))  # written bytes: resident, unlike a zeroed allocation
        time.sleep(0.02)


def _raise_memory_error() -> dict[str, Any]:
    raise MemoryError("Unable to allocate 12.0 GiB for an array")


def test_a_child_killed_by_a_signal_keeps_what_it_reported() -> None:
    with pytest.raises(ChildDied) as died:
        in_child(_report_then_kill_self, 2)
    assert "killed by SIGKILL" in died.value.reason
    assert [e["step"] for e in died.value.progress] == ["step0", "step1", "step2"]
    steps = steps_from_progress(died.value.progress, died.value.reason)
    assert steps["step0"] == {"seconds": 0.5} and steps["step1"] == {"seconds": 0.5}
    assert steps["step2"] == {"seconds": None, "peak_rss_mb": None, "error": died.value.reason}


def test_a_child_reaching_the_memory_cap_is_killed_and_says_so() -> None:
    with pytest.raises(ChildDied) as died:
        in_child(_grow_forever, 20, memory_cap_mb=300, timeout=120)
    assert "killed at the memory cap" in died.value.reason and "cap 300 MiB" in died.value.reason
    # seen by the parent every 0.1 s: at the cap, and not far past it
    assert died.value.seen_rss_mb is not None and 300 <= died.value.seen_rss_mb < 300 + 400


def test_an_error_raised_in_the_child_is_its_reason() -> None:
    with pytest.raises(ChildDied) as died:
        in_child(_raise_memory_error)
    assert died.value.reason == "_raise_memory_error: failed: MemoryError: Unable to allocate 12.0 GiB for an array"
    assert died.value.progress == []


# -- the memory trace ------------------------------------------------------------------------------------------------
def _hold_memory(mb: int) -> bytes:
    held = b"\1" * (mb << 20)
    time.sleep(0.4)  # a few samples while it is held
    return held


def test_the_memory_trace_names_the_code_that_grew_the_resident_set() -> None:
    start = rss_mb(os.getpid())
    with MemoryTrace(interval=0.02) as trace:
        held = _hold_memory(200)
        time.sleep(0.1)
    summary = trace.summary(start)
    assert len(held) == 200 << 20 and start is not None
    assert summary["start_rss_mb"] == start and summary["peak_rss_mb"] >= start + 190
    top = summary["grew_under"][0]
    assert top["where"].startswith("outside leaf_dagster | _hold_memory (test_bench_run.py:") and top["mb"] >= 150
    assert trace.samples == []  # handed over once


def _flags(view: mmap.mmap) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).sum())


def test_the_memory_trace_does_not_keep_a_finished_frame_alive(tmp_path: Path) -> None:
    """A sampled frame keeps its locals: held on to, an array over an mmap would stop the map from closing."""
    path = tmp_path / "bytes"
    path.write_bytes(bytes(range(256)) * 64)
    with MemoryTrace(interval=0.001):
        for _ in range(400):
            with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                assert _flags(view) == 64 * sum(range(256))  # closing the map raises BufferError if it is held


# -- phases ---------------------------------------------------------------------------------------------------------
def _plan(*argv: str) -> tuple[list[str], dict[str, str]]:
    args = run.parse_args(list(argv))
    preset = dict(run.QUICK if args.quick else run.FULL)
    if args.big_points:
        preset["big_points"] = args.big_points
    return run.plan_phases(args, preset)


def test_phases_follow_only_and_no_flags() -> None:
    assert _plan() == (list(run.PHASES), {})
    phases, skipped = _plan("--only", "shapefile,big")
    assert phases == ["shapefile", "big"]
    assert skipped == {p: "not in --only" for p in ("tlg", "isoxml", "listing", "batch", "workers")}
    phases, skipped = _plan("--no-listing", "--no-batch")
    assert phases == ["shapefile", "big", "tlg", "isoxml", "workers"]
    assert skipped == {"listing": "--no-listing", "batch": "--no-batch"}
    assert _plan("--no-daemon")[1] == {"workers": "--no-daemon"}
    assert _plan("--quick", "--only", "workers")[0] == ["workers"]


def test_quick_skips_the_5m_case_unless_its_size_is_given() -> None:
    phases, skipped = _plan("--quick")
    assert "big" not in phases and skipped == {"big": "--quick", "workers": "--quick"}
    assert "big" in _plan("--quick", "--big-points", "1000")[0]
    assert run.FULL["big_points"] == 5_000_000


def test_an_unknown_phase_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run.parse_args(["--only", "shapefile,bigg"])
    assert exit_info.value.code == 2
    assert "unknown phase(s) bigg" in capsys.readouterr().err


# -- the report -----------------------------------------------------------------------------------------------------
def _bare_report(**phases: Any) -> dict[str, Any]:
    return {"quick": False, "started": "2026-12-01 00:00 UTC", "machine": run.describe_machine(),
            "load_average": {"start": None}, "phases": list(phases), "skipped": {}, "errors": {},
            "inputs": {"shapefile_points": 1_000_000, "big_file_points": 5_000_000, "batch_files": 100,
                       "batch_points_per_file": 504, "seed": 1}, **phases}


def test_a_step_that_died_leaves_its_figures_null_with_the_reason() -> None:
    reason = "run_steps: killed at the memory cap: resident 14,470 MiB >= cap 14,463 MiB"
    progress = [{"event": "done", "step": "originalFile", "seconds": 0.01, "peak_rss_mb": 180.0},
                {"event": "done", "step": "rawGeojson", "seconds": 20.0, "peak_rss_mb": 4000.0},
                {"event": "start", "step": "standardGeojson"}]
    steps = steps_from_progress(progress, reason)
    for name in STEPS[3:]:
        steps[name] = {"seconds": None, "peak_rss_mb": None, "error": "not run: standardGeojson did not finish"}
    big = {"points": 5_000_000, "baseline": {"seconds": 20.0, "read_seconds": 15.0, "write_seconds": 5.0,
                                              "peak_rss_mb": 4500.0},
           "steps": steps, "end_to_end_seconds": None, "end_to_end_points_per_s": None, "ratio": None,
           "peak_rss_mb": None, "ingest_seconds": 2.0, "details": {}, "memory_cap_mb": 14_463.0,
           "seen_rss_mb": 14_470.0, "errors": {"steps": reason}}
    report = _bare_report(big_file=big)
    report["errors"]["big_file"] = reason
    run.finish(report, 100.0)
    for key in KEYS:
        assert key in report
    assert report["big_file_ratio"] is None and report["big_file_peak_rss_mb"] is None
    assert report["targets_met"]["big_file_ratio"] is None
    assert report["big_file_steps"]["rawGeojson"] == {"seconds": 20.0, "points_per_s": None, "peak_rss_mb": 4000.0}
    assert report["big_file_steps"]["standardGeojson"]["error"] == reason
    text = run.markdown(report)
    assert "## 5,000,000-point John Deere harvest shapefile" in text
    assert "| standardGeojson | n/a | n/a | n/a |" in text
    assert f"- standardGeojson: {reason}" in text and "14,470 MiB" in text
    assert "| 5,000,000-point shapefile peak resident memory | n/a | under 3,072 MiB | n/a |" in text
    json.dumps(report, default=str)


def test_a_measured_big_file_meets_its_targets_by_its_own_figures() -> None:
    steps = {name: {"seconds": 2.0, "points_per_s": 2_500_000.0, "peak_rss_mb": 1000.0 + i}
             for i, name in enumerate(STEPS)}
    big = {"points": 5_000_000, "baseline": {"seconds": 8.0, "read_seconds": 6.0, "write_seconds": 2.0,
                                              "peak_rss_mb": 900.0},
           "steps": steps, "end_to_end_seconds": 16.0, "end_to_end_points_per_s": 312_500.0, "ratio": 2.0,
           "peak_rss_mb": 3100.0, "ingest_seconds": 1.0, "details": {}}
    report = _bare_report(big_file=big)
    run.finish(report, 10.0)
    assert report["big_file_ratio"] == 2.0 and report["targets_met"]["big_file_ratio"] is True
    assert report["big_file_peak_rss_mb"] == 3100.0 and report["targets_met"]["big_file_peak_rss_mb"] is False
    assert report["shapefile_end_to_end_ratio"] is None and report["targets_met"]["shapefile_end_to_end_ratio"] is None
    assert "errors" not in report
    text = run.markdown(report)
    assert "| 5,000,000-point shapefile end-to-end / baseline | 2.00x | at most 3x | yes |" in text
    assert "| 5,000,000-point shapefile peak resident memory | 3,100 MiB | under 3,072 MiB | **no** |" in text


# -- a real (tiny) run ------------------------------------------------------------------------------------------------
def test_only_the_shapefile_phases_run_and_the_big_case_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = run.main(["--only", "shapefile,big", "--points", "1600", "--big-points", "3200", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "benchmarks.json").read_text())
    assert report["phases"] == ["shapefile", "big"]
    assert set(report["skipped"]) == {"tlg", "isoxml", "listing", "batch", "workers"}
    for key in ("tlg_records_per_s", "dagster_overhead_s_per_file", "files_list_p50_ms", "files_list_p95_ms",
                "workers_speedup"):
        assert report[key] is None
    big = report["big_file"]
    assert big["points"] == 3200 and report["inputs"]["big_file_points"] == 3200
    assert list(big["steps"]) == list(STEPS) and all(s["seconds"] is not None for s in big["steps"].values())
    # the top-level figures are the measured ones: the sum of the steps over the same run's baseline
    assert report["big_file_end_to_end_seconds"] == pytest.approx(sum(s["seconds"] for s in big["steps"].values()))
    assert report["big_file_ratio"] == pytest.approx(report["big_file_end_to_end_seconds"]
                                                     / report["big_file_baseline_seconds"])
    assert report["big_file_peak_rss_mb"] >= max(s["peak_rss_mb"] for s in big["steps"].values())
    assert big["details"]["raw_points"] == 3200 and 0 < big["details"]["standard_points"] <= 3200
    assert report["shapefile"]["details"]["raw_points"] == 1600
    assert report["shapefile_end_to_end_ratio"] is not None
    text = (out / "benchmarks.md").read_text()
    assert "## 3,200-point John Deere harvest shapefile" in text and "## 1,600-point John Deere harvest shapefile" in text
    assert "Not run: tlg (not in --only)" in text


def test_a_measurement_over_the_memory_cap_is_an_error_not_a_crash(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = run.main(["--only", "big", "--big-points", "800", "--memory-cap-mb", "120", "--out", str(out)])
    assert code == 1
    report = json.loads((out / "benchmarks.json").read_text())
    assert report["big_file_ratio"] is None and report["big_file_peak_rss_mb"] is None
    assert report["big_file"]["baseline"]["seconds"] is None
    assert "killed at the memory cap" in report["big_file"]["baseline"]["error"]
    assert "killed at the memory cap" in report["errors"]["big_file"]
    assert all(s["seconds"] is None and s["error"] for s in report["big_file_steps"].values())
    assert "Did not finish" in (out / "benchmarks.md").read_text()
