"""`make run` as a newcomer starts it: the samples reach their final status, only what matters is printed, and
SIGTERM to make stops every process it started (code server, webserver, daemon, run workers, the API) within 10 s.
Also scripts/supervise.py alone: Ctrl-C on a process tree that ignores SIGTERM, one command ending, and the signal
dispositions its commands start with.

Every process of a test is found by a marker in its environment (a unique LEAF_DATA_DIR or SUPERVISE_TEST), which
every descendant inherits whatever its parent, so nothing started here can escape the checks or the clean-up.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from leaf_dagster.storage import Storage

from .conftest import REPO

SUPERVISE = REPO / "scripts" / "supervise.py"
SAMPLES = sorted(p.name for p in (REPO / "data" / "samples").glob("*.zip"))
# The README's word on the samples: the SMS CSV names no crop, so Leaf's default cleanup drops every point.
FAILING_SAMPLE = ("sms-yield-csv-victoria.zip", "standardGeojson", "no points passed the filter")
FINAL_BATCH = {"PROCESSED", "FAILED"}
FINAL_FILE = {"processed", "failed"}
STOP_SECONDS = 10.0
# Every sensor ticks at least once in this window (the slowest, recovery_sensor, every 15 s) with nothing to do.
QUIET_WINDOW_SECONDS = 20.0
# Lines that are warnings, or the routine DEBUG/INFO messages of Dagster's loggers, which must not be printed.
WARNING_LINE = re.compile(r"\bWARNING\b|[A-Za-z]Warning\b")
ROUTINE_LINE = re.compile(r" - dagster[\w.-]* - (DEBUG|INFO) - ")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def processes_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment holds `marker` (a `NAME=value` entry)."""
    needle = marker.encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile, or not ours
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def kill_all(marker: str) -> None:
    """SIGKILL whatever still carries `marker`, until nothing does."""
    for _ in range(50):
        pids = processes_with(marker)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def wait_until(condition: Callable[[], bool], seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Output:
    """The merged stdout and stderr of a process, line by line (without colours) with the time each arrived."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.lines.append((time.monotonic(), COLOUR.sub("", raw.decode(errors="replace").rstrip("\n"))))

    def between(self, start: float, end: float) -> list[str]:
        return [line for at, line in list(self.lines) if start <= at < end]

    def tail(self, count: int = 60) -> str:
        return "\n".join(line for _, line in self.lines[-count:])


def final_state(data: Path) -> dict[str, dict] | None:
    """Each sample's batch and files once every one has reached a final status, else None."""
    storage = Storage(data)
    batches = {b["fileName"]: b for b in storage.records.many("batches")}
    if sorted(batches) != SAMPLES or any(b["status"] not in FINAL_BATCH for b in batches.values()):
        return None
    state = {}
    for name, batch in batches.items():
        files = [storage.records.get("files", fid) or {} for fid in batch["leafFiles"]]
        if any(f.get("status") not in FINAL_FILE for f in files):
            return None
        state[name] = {"batch": batch, "files": files}
    return state


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Output, Path, int, str]]:
    """`make run` on free ports with its own data directory and DAGSTER_HOME, as a user starts it."""
    data, home = tmp_path / "data", tmp_path / "dagster_home"
    port, api_port, code_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DAGSTER_HOME")}
    env["LEAF_DATA_DIR"] = str(data)
    marker = f"LEAF_DATA_DIR={data}"
    # -o: the virtualenv these tests run from counts as installed, even when pyproject.toml is newer
    command = ["make", "--no-print-directory", "-o", ".venv/bin/leaf-dagster", "run", f"DAGSTER_HOME={home}",
               "HOST=127.0.0.1", f"PORT={port}", f"API_PORT={api_port}", f"CODE_PORT={code_port}"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, Output(process), data, port, marker
    finally:
        kill_all(marker)
        process.wait(timeout=30)


def test_make_run_processes_the_samples_quietly_and_stops_on_sigterm(make_run) -> None:
    process, output, data, port, marker = make_run
    started = time.monotonic()

    def ui_up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    assert wait_until(lambda: process.poll() is not None or ui_up(), 300, step=0.5) and process.poll() is None, \
        f"the Dagster UI did not come up:\n{output.tail()}"
    ui_seconds = time.monotonic() - started

    state: dict[str, dict] = {}

    def all_final() -> bool:
        nonlocal state
        state = final_state(data) or {}
        return bool(state) or process.poll() is not None

    assert wait_until(all_final, 480, step=1.0) and state, \
        f"the samples did not all reach a final status:\n{output.tail()}"
    final_at = time.monotonic()
    time.sleep(QUIET_WINDOW_SECONDS)  # idle sensor ticks, queue passes and catalog refreshes
    quiet_end = time.monotonic()
    running = output.between(0, final_at)
    idle = output.between(final_at, quiet_end)

    # SIGTERM to make alone, as `kill PID` or a service manager sends it
    alive_before = len(processes_with(marker))
    stop_sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stopped = wait_until(lambda: not processes_with(marker), STOP_SECONDS)
    stop_seconds = time.monotonic() - stop_sent
    left = processes_with(marker)

    printed = running + idle
    summary = (f"UI up after {ui_seconds:.1f} s; all {len(SAMPLES)} samples final after {final_at - started:.1f} s; "
               f"{len(running)} lines printed until then, {len(idle)} in the next {QUIET_WINDOW_SECONDS:.0f} s idle; "
               f"{alive_before} processes stopped in {stop_seconds:.1f} s")
    print(summary)

    # every sample ended as the README says: the SMS CSV fails its cleanup, every other file is processed
    name, step, message = FAILING_SAMPLE
    for sample, result in state.items():
        for record in result["files"]:
            if sample == name:
                assert record["status"] == "failed" and record["steps"][step]["message"] == message, record
            else:
                assert record["status"] == "processed", (sample, record.get("steps"))
        assert result["batch"]["status"] == ("FAILED" if sample == name else "PROCESSED"), result["batch"]

    assert not [line for line in printed if WARNING_LINE.search(line)], summary + "\n" + "\n".join(printed)
    assert not [line for line in printed if ROUTINE_LINE.search(line)], summary + "\n" + "\n".join(printed)
    assert idle == [], "idle sensors printed:\n" + "\n".join(idle)
    assert stopped, f"{len(left)} processes still alive {STOP_SECONDS:.0f} s after SIGTERM: {left}\n{summary}"
    assert alive_before >= 7  # make, the supervisor, the code server (a proxy and the server), webserver, daemon, API


@contextmanager
def supervised(grace: float, *commands: str, **popen: Any) -> Iterator[tuple[subprocess.Popen, str]]:
    """scripts/supervise.py running `commands`; whatever it leaves behind is killed at the end."""
    marker = f"SUPERVISE_TEST={uuid.uuid4().hex}"
    env = {**os.environ, "SUPERVISE_TEST": marker.split("=", 1)[1]}
    process = subprocess.Popen([sys.executable, str(SUPERVISE), "--grace", str(grace), *commands], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, **popen)
    try:
        yield process, marker
    finally:
        kill_all(marker)
        process.wait(timeout=30)


def test_supervisor_stops_trees_that_ignore_sigterm_on_ctrl_c() -> None:
    """Ctrl-C reaches the supervisor's group only; it stops each command's tree, orphans included, and kills
    what ignores SIGTERM once the grace period is over."""
    with supervised(1.0,
                    "sh -c '(sleep 300 &); sleep 300 & wait'",  # an orphaned sleep (its subshell exits) and a child
                    "sh -c 'trap \"\" TERM; sleep 300; true'") as (process, marker):  # ignores SIGTERM, as its sleep
        assert wait_until(lambda: len(processes_with(marker)) == 6, 20), processes_with(marker)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=STOP_SECONDS) == 0
        assert processes_with(marker) == []
        assert "stopped in" in process.stderr.read().decode()


def test_supervisor_stops_the_others_when_one_command_ends() -> None:
    with supervised(5.0, "sleep 300", "sh -c 'sleep 1; exit 3'") as (process, marker):
        assert process.wait(timeout=30) == 3
        assert processes_with(marker) == []
        assert "sh ended with status 3" in process.stderr.read().decode()


def test_commands_start_with_sigint_at_its_default_when_the_supervisor_ignores_it() -> None:
    """`make run` started in the background of a script ignores SIGINT, and so would its commands; Dagster's processes
    handle SIGTERM as SIGINT, so they would ignore SIGTERM too and stop only when killed."""
    probe = f"{sys.executable} -c 'import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)'"
    with supervised(5.0, probe, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) as (process, _):
        out, _ = process.communicate(timeout=30)
        assert out.decode().split() == ["True"] and process.returncode == 0
