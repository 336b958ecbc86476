"""The batch of small files three ways: plain FileSteps, Dagster in-process, and the real sensor + daemon.

Dagster overhead per file = (daemon end-to-end - plain FileSteps time for the same upload) / files.

The daemon path is the production one: a temporary DAGSTER_HOME holding the project's dagster.yaml (written by
leaf_dagster.instance: SQLite as `make run` has it, or PostgreSQL storage in a database of the benchmark's own,
created and dropped around the run; `measure` can run both, one after the other), LEAF_DATA_DIR
pointing at a temporary data directory, and `dagster-daemon run -w workspace.yaml` started from the project
root in its own session (process group). The upload is dropped into the inbox once the sensor daemon has
ticked; the clock stops when the batch record is PROCESSED/FAILED and every file record has a final status
(both written by status_sensor). The daemon's whole process group is then stopped: SIGTERM, a grace period,
then SIGKILL to every process left in the group or descended from the daemon, by pid.

`workers` runs the same upload through the daemon with runs executed by Celery workers (`celery -A
leaf_dagster.worker worker --concurrency 1`, as on several machines), on one worker and then on two, each time
with LEAF_FILES_PER_RUN set so that the upload is split over several runs, on a PostgreSQL instance of its own,
RabbitMQ with a queue of its own (deleted at the end) and Redis as the result backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from leaf_dagster.instance import (CELERY_BACKEND_ENV, CELERY_BROKER_ENV, CELERY_QUEUE_ENV, FILES_PER_RUN_ENV,
                                   PG_PARTS_ENV, PG_URL_ENV)

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: dagster.yaml, workspace.yaml
FINAL_FILE_STATES = {"processed", "failed"}
FINAL_BATCH_STATES = {"PROCESSED", "FAILED"}
READY_MARKERS = ("Checking for new runs for sensor: inbox_sensor", "Sensor inbox_sensor skipped")
WORKER_READY = (" ready.",)  # celery's line once a worker consumes its queue
# The broker and result backend of the workers' measurement: LEAF_CELERY_BROKER_URL and LEAF_CELERY_BACKEND_URL
# when set, else RabbitMQ and Redis on this machine.
LOCAL_BROKER, LOCAL_BACKEND = "pyamqp://guest:guest@127.0.0.1:5672//", "redis://127.0.0.1:6379/0"
LEAF_USER, PROVIDER = "bench", "JohnDeere"

Log = Callable[[str], None]


def _prepare(storage_root: Path) -> Any:
    from leaf_dagster.config import save
    from leaf_dagster.storage import Storage

    storage = Storage(storage_root)
    save(storage, {"enablePolygonOutput": True})
    return storage


# -- (i) the same work without Dagster --------------------------------------------------------------------------
def run_file(storage: Any, file_id: str) -> str:
    """Every step of one file in the order the file job runs them, stopping where a gate would stop Dagster."""
    from leaf_dagster.files import FileSteps
    from leaf_dagster.errors import ReaderError

    from .shapefile import STEPS, step_calls

    steps = FileSteps(storage, file_id)
    calls = step_calls(steps)
    record, _ = calls["originalFile"]()
    if record.get("unsupportedReason"):
        return "failed"
    try:
        calls["rawGeojson"]()
    except ReaderError:
        return "failed"
    if FileSteps.schema_failure(calls["standardGeojson"]()):
        return "failed"
    for step in STEPS[3:]:
        calls[step]()
    return "processed"


def batch_file_steps(upload: str, data_dir: str) -> dict[str, Any]:
    """Register + extract the upload, run every file's steps with FileSteps, refresh the SQL catalog once."""
    from leaf_dagster.catalog import refresh_catalog
    from leaf_dagster.ingest.batch import batch_id_for, ingest_batch, new_batch

    storage = _prepare(Path(data_dir))
    path = Path(upload)
    started = time.perf_counter()
    batch_id = batch_id_for(path, LEAF_USER, PROVIDER)
    new_batch(storage, batch_id, path, LEAF_USER, PROVIDER, move=False)
    outcome = ingest_batch(storage, batch_id)
    ingest = time.perf_counter() - started
    states = [run_file(storage, record["id"]) for record in outcome.files]
    refresh_catalog(storage)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "ingest_seconds": ingest, "files": len(states),
            "processed": states.count("processed"), "failed": states.count("failed")}


# -- (i') the same jobs in-process through Dagster (pipeline.process_upload) -------------------------------------
def batch_dagster_in_process(upload: str, data_dir: str, dagster_home: str) -> dict[str, Any]:
    """pipeline.process_upload: the batch job then each file job with execute_in_process, on a sqlite instance
    made from the project's dagster.yaml (the storage the daemon uses)."""
    from dagster import DagsterInstance

    from leaf_dagster.defs.in_process import process_upload

    storage = _prepare(Path(data_dir))
    home = Path(dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.from_config(str(home)) as instance:
        started = time.perf_counter()
        result = process_upload(Path(upload), storage, instance, leaf_user_id=LEAF_USER, provider=PROVIDER)
        seconds = time.perf_counter() - started
    states = [f.get("status") for f in result["files"]]
    return {"seconds": seconds, "files": len(states), "processed": states.count("processed"),
            "failed": states.count("failed"), "batch_status": result["batch"].get("status")}


# -- (ii) the sensor and the daemon ------------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _process_group(pgid: int) -> set[int]:
    members = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    members.add(int(entry))
            except OSError:
                pass
    return members


def _descendants(pid: int) -> set[int]:
    children, found, todo = _children_map(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def stop_daemon(process: subprocess.Popen, grace: float = 20.0) -> dict[str, Any]:
    """SIGTERM the daemon's process group, wait, then SIGKILL whatever is left of it, pid by pid."""
    pgid = process.pid  # started with start_new_session=True: its own session and group
    tracked = _descendants(process.pid) | _process_group(pgid) | {process.pid}
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # let the code server and run workers see their parent go
    left = {p for p in (tracked | _descendants(process.pid) | _process_group(pgid)) if _alive(p)}
    for pid in sorted(left):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    still = {p for p in left if _alive(p)}
    return {"exit_code": process.returncode, "killed_after_sigterm": len(left), "still_alive": sorted(still)}


def _die_with_parent() -> None:
    """In the daemon (before exec): get SIGTERM if the benchmark dies, so no daemon outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(log_path: Path, markers: tuple[str, ...], timeout: float, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if any(marker in text for marker in markers):
            return True
        time.sleep(0.5)
    return False


def launch_settings(home: Path) -> dict[str, Any]:
    """How the instance launches runs: coordinator, launcher and run limits."""
    from dagster import DagsterInstance

    settings = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
    out: dict[str, Any] = {"concurrency": settings.get("concurrency")}
    with DagsterInstance.from_config(str(home)) as instance:
        out["run_coordinator"] = type(instance.run_coordinator).__name__
        out["run_launcher"] = type(instance.run_launcher).__name__
    return out


def run_timings(home: Path) -> dict[str, Any]:
    """Per-run figures from the instance's run storage: queue wait (created -> started) and run duration."""
    from dagster import DagsterInstance

    from leaf_dagster.status import BATCH_JOB, FILE_JOB

    out: dict[str, Any] = {}
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
        breakdown = run_breakdown(instance, [r.dagster_run.run_id for r in records
                                             if r.dagster_run.job_name == BATCH_JOB])
    for job in (BATCH_JOB, FILE_JOB):
        runs = [r for r in records if r.dagster_run.job_name == job]
        durations = [r.end_time - r.start_time for r in runs if r.start_time and r.end_time]
        waits = [r.start_time - r.create_timestamp.timestamp() for r in runs if r.start_time]
        statuses: dict[str, int] = {}
        for r in runs:
            statuses[r.dagster_run.status.value] = statuses.get(r.dagster_run.status.value, 0) + 1
        out[job] = {
            "runs": len(runs), "statuses": statuses,
            "mean_run_seconds": sum(durations) / len(durations) if durations else None,
            "max_run_seconds": max(durations) if durations else None,
            "mean_queue_seconds": sum(waits) / len(waits) if waits else None,
            "first_created": min((r.create_timestamp.timestamp() for r in runs), default=None),
            "last_ended": max((r.end_time for r in runs if r.end_time), default=None),
        }
    out[BATCH_JOB]["mean_breakdown"] = breakdown
    return out


def run_breakdown(instance: Any, run_ids: list[str]) -> dict[str, float]:
    """Mean seconds per run, from its event log: in the queue (enqueued -> launched: RUN_STARTING, the
    coordinator handing it to the launcher), starting the run worker process (launched -> run start), starting
    step subprocesses (worker starting -> step start, summed over steps), step bodies (step start ->
    success/failure, summed, and each step's own as `step:<key>`), the run (run start -> end) and the events
    it wrote (all, and of each type as `events:<TYPE>`)."""
    from dagster import DagsterEventType as E

    sums: dict[str, float] = {}
    counted = 0
    for run_id in run_ids:
        first: dict[Any, float] = {}
        worker_start: dict[str, float] = {}
        step_start: dict[str, float] = {}
        spawn = body = 0.0
        own: dict[str, float] = {}
        entries = instance.all_logs(run_id)
        for entry in entries:
            event = entry.dagster_event
            if event is None:
                continue
            kind, ts = event.event_type, entry.timestamp
            first.setdefault(kind, ts)
            own[f"events:{kind.value}"] = own.get(f"events:{kind.value}", 0.0) + 1
            if kind == E.STEP_WORKER_STARTING:
                worker_start[entry.step_key] = ts
            elif kind == E.STEP_START:
                step_start[entry.step_key] = ts
                if entry.step_key in worker_start:
                    spawn += ts - worker_start[entry.step_key]
            elif kind in (E.STEP_SUCCESS, E.STEP_FAILURE) and entry.step_key in step_start:
                body += ts - step_start[entry.step_key]
                own[f"step:{entry.step_key}"] = ts - step_start[entry.step_key]
        end = first.get(E.RUN_SUCCESS) or first.get(E.RUN_FAILURE)
        launched = first.get(E.RUN_DEQUEUED) or first.get(E.RUN_STARTING)
        if not (E.RUN_ENQUEUED in first and launched and E.RUN_START in first and end):
            continue
        counted += 1
        parts = {"queued": launched - first[E.RUN_ENQUEUED],
                 "worker_start": first[E.RUN_START] - launched,
                 "step_subprocess_start": spawn, "step_bodies": body, "run_total": end - first[E.RUN_START],
                 "events": float(len(entries)), **own}
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
    return {key: value / counted for key, value in sums.items()} | {"runs": counted} if counted else {"runs": 0}


INSTANCES = ("sqlite", "postgres")


def through_daemon(upload: Path, work: Path, expected_files: int, timeout: float, log: Log,
                   instance: str = "sqlite") -> dict[str, Any]:
    """Drop `upload` into the inbox of a daemon-run instance and time it until every file has a final status.

    `instance`: "sqlite" (`make run`'s default: deploy/dagster.yaml as it is) or "postgres" (the same settings with
    run, event-log and schedule storage in a database of its own, created here and dropped at the end)."""
    if instance not in INSTANCES:
        raise ValueError(f"unknown instance {instance!r}; expected one of {', '.join(INSTANCES)}")
    env = {k: v for k, v in os.environ.items() if k != PG_URL_ENV and k not in PG_PARTS_ENV.values()}
    if instance == "sqlite":
        return _through_daemon(upload, work / "daemon-sqlite", expected_files, timeout, log, env)
    from .postgres import scratch_database

    with scratch_database("leaf_bench") as url:
        result = _through_daemon(upload, work / "daemon-postgres", expected_files, timeout, log,
                                 {**env, PG_URL_ENV: url})
    result["database"] = url.rsplit("/", 1)[1]  # created for this run, and now dropped
    return result


def through_workers(upload: Path, work: Path, expected_files: int, timeout: float, log: Log, workers: int,
                    files_per_run: int) -> dict[str, Any]:
    """The upload through the daemon, its runs executed by `workers` Celery workers, split into runs of
    `files_per_run` files at most; on a PostgreSQL database and a broker queue of its own, both removed at the end."""
    from .postgres import scratch_database

    base = {k: v for k, v in os.environ.items() if k != PG_URL_ENV and k not in PG_PARTS_ENV.values()}
    broker = base.get(CELERY_BROKER_ENV) or LOCAL_BROKER
    queue = f"leaf_bench_{uuid.uuid4().hex[:12]}"
    env = {**base, CELERY_BROKER_ENV: broker, CELERY_BACKEND_ENV: base.get(CELERY_BACKEND_ENV) or LOCAL_BACKEND,
           CELERY_QUEUE_ENV: queue, FILES_PER_RUN_ENV: str(files_per_run)}
    try:
        with scratch_database("leaf_bench") as url:
            result = _through_daemon(upload, work / f"workers-{workers}", expected_files, timeout, log,
                                     {**env, PG_URL_ENV: url}, workers=workers)
    finally:
        delete_queue(broker, queue)
    return {**result, "workers": workers, "files_per_run": files_per_run, "queue": queue}


def delete_queue(broker: str, name: str) -> None:
    """Delete the broker queue `name` (declared by the first worker; absent if none started)."""
    from kombu import Connection

    with Connection(broker, connect_timeout=5) as connection:
        try:
            connection.default_channel.queue_delete(name)
        except Exception:  # never declared: nothing to delete
            pass


def _start_workers(count: int, work: Path, env: dict[str, str], log: Log) -> list[subprocess.Popen]:
    """`count` Celery workers, one run at a time each, each in its own session and working folder; returned once
    every one consumes its queue."""
    processes = []
    for number in range(1, count + 1):
        folder = work / "workers" / f"w{number}"
        (folder / "tmp").mkdir(parents=True)
        command = [sys.executable, "-m", "celery", "-A", "leaf_dagster.worker", "worker", "--concurrency", "1",
                   "--hostname", f"w{number}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        with open(folder / "worker.log", "wb") as out:
            processes.append(subprocess.Popen(command, cwd=folder, env={**env, "TMPDIR": str(folder / "tmp")},
                                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True, preexec_fn=_die_with_parent))
    for number, process in enumerate(processes, start=1):
        if not _wait_for(work / "workers" / f"w{number}" / "worker.log", WORKER_READY, 300, process):
            raise RuntimeError(f"Celery worker w{number} did not start (exit code {process.poll()}); see "
                               f"{work / 'workers' / f'w{number}' / 'worker.log'}")
    log(f"  {count} Celery worker(s) up")
    return processes


def worker_runs(home: Path, dropped_at: float) -> list[dict[str, Any]]:
    """Each upload run: its shard, the Celery worker that executed it, and when it started and ended (seconds
    after the drop), from the instance's run storage and event log."""
    from dagster import DagsterEventType, DagsterInstance

    from leaf_dagster.defs.recovery import SHARD_TAG
    from leaf_dagster.status import BATCH_JOB

    out = []
    with DagsterInstance.from_config(str(home)) as instance:
        for record in instance.get_run_records(ascending=True, order_by="create_timestamp"):
            run = record.dagster_run
            if run.job_name != BATCH_JOB:
                continue
            workers = []
            for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
                data = entry.dagster_event.engine_event_data if entry.dagster_event else None
                worker = (data.metadata or {}).get("Celery worker") if data else None
                if worker is not None:
                    workers.append(str(getattr(worker, "value", worker)).split("@", 1)[0])
            out.append({"shard": run.tags.get(SHARD_TAG, "all"), "workers": workers, "status": run.status.value,
                        "started_s": record.start_time - dropped_at if record.start_time else None,
                        "ended_s": record.end_time - dropped_at if record.end_time else None})
    return out


def _through_daemon(upload: Path, work: Path, expected_files: int, timeout: float, log: Log,
                    env: dict[str, str], workers: int = 0) -> dict[str, Any]:
    from leaf_dagster.instance import write

    home, data = work / "dagster_home", work / "data"
    write(home, env)
    storage = _prepare(data)
    storage.inbox.mkdir(parents=True, exist_ok=True)
    env = {**env, "DAGSTER_HOME": str(home), "LEAF_DATA_DIR": str(data)}
    daemon_bin = Path(sys.executable).with_name("dagster-daemon")
    command = [str(daemon_bin)] if daemon_bin.exists() else [sys.executable, "-m", "dagster._daemon"]
    command += ["run", "-w", "workspace.yaml"]
    log_path = work / "daemon.log"
    result: dict[str, Any] = {"command": " ".join(["dagster-daemon", *command[1:]]), "log": str(log_path)}
    with _environment(env):  # this process reads the same instance: its yaml refers to the environment
        result["storage"] = instance_storage(home)
        pool: list[subprocess.Popen] = []
        with open(log_path, "wb") as log_file:
            try:
                pool = _start_workers(workers, work, env, log) if workers else []
                started = time.perf_counter()
                process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log_file,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                           preexec_fn=_die_with_parent)
                try:
                    if not _wait_for(log_path, READY_MARKERS, 300, process):
                        raise RuntimeError(f"dagster-daemon did not tick the inbox sensor (exit code "
                                           f"{process.poll()}); see {log_path}")
                    result["startup_seconds"] = time.perf_counter() - started
                    log(f"  daemon up in {result['startup_seconds']:.1f} s (pid {process.pid}); dropping the upload")
                    result.update(_drop_and_wait(upload, storage, expected_files, timeout, log))
                finally:
                    result["stop"] = stop_daemon(process)
            finally:
                for worker in pool:
                    stop_daemon(worker)
        result["launch"] = launch_settings(home)
        result["runs"] = run_timings(home)
        if workers and "dropped_at" in result:
            result["upload_runs"] = worker_runs(home, result["dropped_at"])
    if "dropped_at" in result:
        result["timeline"] = timeline(result)
    return result


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ set to `env` for the block, then restored."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def instance_storage(home: Path) -> dict[str, str]:
    """The classes of the instance's run, event-log and schedule storage (which database the figures are of)."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        return {"run_storage": type(instance.run_storage).__name__,
                "event_log_storage": type(instance.event_log_storage).__name__,
                "schedule_storage": type(instance.schedule_storage).__name__}


def timeline(result: dict[str, Any]) -> dict[str, float | None]:
    """Where the daemon path's time goes, in seconds after the upload landed in the inbox."""
    from leaf_dagster.status import BATCH_JOB

    t0 = result["dropped_at"]
    batch = result["runs"].get(BATCH_JOB, {})

    def since(value: float | None) -> float | None:
        return None if value is None else value - t0

    return {"batch_run_created": since(batch.get("first_created")), "batch_run_ended": since(batch.get("last_ended")),
            "all_statuses_final": result.get("seconds")}


def _drop_and_wait(upload: Path, storage: Any, expected_files: int, timeout: float, log: Log) -> dict[str, Any]:
    partial = storage.inbox / f".{upload.name}.partial"
    shutil.copy2(upload, partial)  # its time kept: the same upload gets the same batch id on every instance
    os.replace(partial, storage.inbox / upload.name)
    t0, dropped_at = time.perf_counter(), time.time()
    done_at: dict[str, float] = {}
    batch: dict[str, Any] = {}
    last_note = t0
    while True:
        now = time.perf_counter()
        batch = next(iter(storage.records.many("batches")), {})
        file_ids = batch.get("leafFiles") or []
        for record in storage.records.many("files", [f for f in file_ids if f not in done_at]):
            if record.get("status") in FINAL_FILE_STATES:
                done_at[record["id"]] = now - t0
        finished = batch.get("status") in FINAL_BATCH_STATES and len(done_at) == len(file_ids)
        if finished or now - t0 > timeout:
            break
        if now - last_note >= 60:
            log(f"  daemon: {len(done_at)}/{len(file_ids) or expected_files} files final after {now - t0:.0f} s "
                f"(batch {batch.get('status', 'not registered yet')})")
            last_note = now
        time.sleep(0.5)
    elapsed = time.perf_counter() - t0
    states = [r.get("status") for r in storage.records.many("files", batch.get("leafFiles") or [])]
    out = {"seconds": elapsed, "dropped_at": dropped_at, "timed_out": not finished, "batch_status": batch.get("status"),
           "files": len(states), "processed": states.count("processed"), "failed": states.count("failed"),
           "first_file_final_s": min(done_at.values(), default=None),
           "last_file_final_s": max(done_at.values(), default=None)}
    if len(states) != expected_files:
        out["warning"] = f"expected {expected_files} files, the batch registered {len(states)}"
    return out


def measure(upload: Path, work: Path, files: int, daemon: bool, timeout: float, log: Log,
            dagster_in_process: bool = True, instances: tuple[str, ...] = ("sqlite",)) -> dict[str, Any]:
    """The batch through FileSteps, Dagster in-process, then the daemon on each of `instances`, one after the
    other. The overhead per file of each instance is in `overhead_s_per_file_by_instance`; the one reported as
    `overhead_s_per_file` (and its run as `daemon`) is PostgreSQL's when measured, the storage a deployment past
    one machine runs on, else SQLite's."""
    from .shapefile import in_child

    out: dict[str, Any] = {"files": files}
    log(f"batch of {files} files in-process with FileSteps (no Dagster)")
    out["file_steps"] = in_child(batch_file_steps, str(upload), str(work / "data-filesteps"))
    log(f"  {out['file_steps']['seconds']:.2f} s ({out['file_steps']['processed']} processed)")
    if dagster_in_process:
        log(f"batch of {files} files in-process through Dagster (pipeline.process_upload, execute_in_process)")
        try:
            out["dagster_in_process"] = in_child(batch_dagster_in_process, str(upload), str(work / "data-inprocess"),
                                                 str(work / "dagster_home_inprocess"))
            log(f"  {out['dagster_in_process']['seconds']:.2f} s")
        except RuntimeError as exc:
            out["dagster_in_process"] = {"error": str(exc).splitlines()[0]}
    if not daemon:
        return out
    out["daemons"], out["overhead_s_per_file_by_instance"] = {}, {}
    for kind in instances:
        log(f"batch of {files} files through the inbox sensor and dagster-daemon on {kind} storage "
            f"(timeout {timeout:.0f} s)")
        try:
            d = through_daemon(upload, work, files, timeout, log, instance=kind)
        except Exception as exc:  # an unreachable server: reported, the other instance still measured
            out["daemons"][kind] = {"error": (str(exc).strip().splitlines() or [type(exc).__name__])[0]}
            log(f"  failed: {out['daemons'][kind]['error']}")
            continue
        out["daemons"][kind] = d
        log(f"  {d['seconds']:.1f} s, {d['processed']} processed, {d['failed']} failed"
            + (" (TIMED OUT)" if d["timed_out"] else ""))
        if not d["timed_out"] and d["files"]:
            out["overhead_s_per_file_by_instance"][kind] = (d["seconds"] - out["file_steps"]["seconds"]) / d["files"]
    measured = out["overhead_s_per_file_by_instance"]
    chosen = next((k for k in ("postgres", "sqlite") if k in measured), None) or next(iter(out["daemons"]), None)
    if chosen is not None:
        out["overhead_instance"] = chosen
        out["daemon"] = out["daemons"][chosen]
        if chosen in measured:
            out["overhead_s_per_file"] = measured[chosen]
    return out


def measure_workers(upload: Path, work: Path, files: int, timeout: float, log: Log, files_per_run: int,
                    counts: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """The upload through the daemon and Celery workers, on each number of workers of `counts`, one after the
    other, with the same LEAF_FILES_PER_RUN: seconds and files/s for each, and how many times faster the most
    workers were than one."""
    out: dict[str, Any] = {"files": files, "files_per_run": files_per_run, "by_workers": {}}
    for count in counts:
        log(f"batch of {files} files through the daemon and {count} Celery worker(s), LEAF_FILES_PER_RUN="
            f"{files_per_run} (timeout {timeout:.0f} s)")
        try:
            d = through_workers(upload, work, files, timeout, log, count, files_per_run)
        except Exception as exc:  # a service down: reported, the other count still measured
            out["by_workers"][count] = {"error": (str(exc).strip().splitlines() or [type(exc).__name__])[0]}
            log(f"  failed: {out['by_workers'][count]['error']}")
            continue
        if not d["timed_out"] and d["seconds"]:
            d["files_per_s"] = d["files"] / d["seconds"]
        out["by_workers"][count] = d
        log(f"  {d['seconds']:.1f} s, {d['processed']} processed, {d['failed']} failed"
            + (" (TIMED OUT)" if d["timed_out"] else "") + f"; runs {d.get('upload_runs')}")
    one, most = out["by_workers"].get(min(counts), {}), out["by_workers"].get(max(counts), {})
    if one.get("files_per_s") and most.get("files_per_s") and len(counts) > 1:
        out["speedup"] = most["files_per_s"] / one["files_per_s"]
    return out
