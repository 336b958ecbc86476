"""Runs that ended without doing their work: dead workers failed, lost runs queued again once, and the
batch of a failed batch run settled FAILED with the reason.

When the daemon's whole process group is killed, its code server and every run worker die with it, and
their runs stay STARTED: Dagster's run monitoring cannot tell, because the DefaultRunLauncher has no
worker health check (`supports_check_run_worker_health` is False in 1.13; monitoring only fails runs
stuck STARTING past `start_timeout_seconds` and runs over `max_runtime_seconds`). Those STARTED runs
still count against `max_concurrent_runs`, so the queue stops for every owner. The worker of a run
records its pid in the run's first engine event ("Started process for run (pid: N)", or the in-process
executor's event for a run executed in the CLI's process); a run whose pid is gone, or now belongs to a
process started after that event, is marked failed here. This holds for the DefaultRunLauncher, which
starts run workers on the machine of the code server evaluating this sensor; other launchers are left
to their own health checks.

A run is *lost* when it failed for a reason other than a failed step (its process died, it never
started, an error in Dagster's machinery): it is queued again once, with a run key naming the lost run
so that repeated ticks, a restarted daemon or a lost cursor never queue it twice. A run that was itself
such a second attempt is not queued again; its file then fails with the run's message.

An upload split over several runs (LEAF_FILES_PER_RUN) has one run per shard on its batch partition, each tagged
`leaf/shard`: a shard run is the latest of its partition and shard, is queued again with its shard and its asset
selection (so it takes the same files), and when it fails it settles only its own files.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import dagster as dg
from dagster import DagsterEventType
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.launcher import DefaultRunLauncher

from ..run_requests import asked_shards, parse_shard, shard_name, shard_records
from ..status import BATCH_JOB, FILE_JOB, record_steps, set_batch_state, steps_without_run, update_batch_status
from ..storage import Storage
from .queue import BATCH_TAG, OWNER_TAG, PRIORITY_TAG
from .run_status import latest_run, run_failure_message

JOBS = (FILE_JOB, BATCH_JOB)
RECOVERS_TAG = "leaf/recovers"
SHARD_TAG = "leaf/shard"  # `i/n`: the run takes shard i of its upload's n (run_requests.py)
WORKER_GONE = "The run's process stopped unexpectedly (pid {pid} is gone: the daemon or the machine was " \
              "killed or restarted)"


# -- dead workers ---------------------------------------------------------------------------------------------
def worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the run's main process and when it reported it, from the run's first engine event with one."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = (data.metadata or {}).get("pid") if data else None
        if pid is not None:
            try:
                value: Any = getattr(pid, "value", pid)
                return int(value), entry.timestamp
            except (TypeError, ValueError):
                return None
    return None


def process_alive(pid: int, reported_at: float) -> bool:
    """Is `pid` still the process that reported itself at `reported_at`? Zombies and reused pids are not."""
    if not os.path.exists("/proc/self/stat"):  # no procfs (not Linux): existence is all we can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    if fields[0] in ("Z", "X"):
        return False
    started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    # a process started after the report is another one with the same pid; the minute of slack covers a wall
    # clock stepped after the report (the kernel then shifts btime), and pids are not reused that fast
    return started <= reported_at + 60.0


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every in-progress run of ours whose process is gone; returns their run ids."""
    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return []
    failed = []
    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
    for run in runs:
        if run.job_name not in JOBS:
            continue
        reported = worker_pid(instance, run.run_id)
        if reported is None or process_alive(*reported):
            continue  # not started yet (run monitoring's start timeout covers that) or alive
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.is_finished:
            continue
        instance.report_run_failed(current, WORKER_GONE.format(pid=reported[0]),
                                   JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
        failed.append(run.run_id)
    return failed


# -- lost runs ------------------------------------------------------------------------------------------------
def failure_reason(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunFailureReason | None:
    events = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    data = events[-1].dagster_event.event_specific_data if events and events[-1].dagster_event else None
    return data.failure_reason if isinstance(data, JobFailureData) else None


def is_latest(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """The newest run of its job on its partition doing the same share of it: a shard run (`i/n`, i > 0) among
    that shard's runs; an upload's own run (untagged, or tagged `0/n` once it has split the upload) among the
    upload's own runs, so that the shard runs it asked for before tagging itself do not hide it."""
    partition = {"dagster/partition": run.tags.get("dagster/partition", "")}
    if _shard_index(run) > 0:
        newest = instance.get_runs(dg.RunsFilter(job_name=run.job_name, tags={**partition, SHARD_TAG: run.tags[SHARD_TAG]}),
                                   limit=1)
        return bool(newest) and newest[0].run_id == run.run_id
    if run.job_name != BATCH_JOB:  # a file's runs have no shards
        newest = instance.get_runs(dg.RunsFilter(job_name=run.job_name, tags=partition), limit=1)
        return bool(newest) and newest[0].run_id == run.run_id
    own = next((other for other in instance.get_runs(dg.RunsFilter(job_name=run.job_name, tags=partition))
                if _shard_index(other) <= 0), None)  # an upload's runs: a few attempts and their shard runs
    return own is not None and own.run_id == run.run_id


def _shard_index(run: dg.DagsterRun) -> int:
    """The run's shard index; -1 for a run without a shard tag, or with one that is no shard name."""
    try:
        return parse_shard(run.tags[SHARD_TAG])[0] if SHARD_TAG in run.tags else -1
    except ValueError:
        return -1


def first_attempt(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The id of the first attempt of `run`, which names its upload's shard requests: a run queued again after
    its attempt was lost, or re-executed from the UI (and then perhaps lost and queued again), asks for the
    shards that first attempt asked for, under the same run keys, so none starts twice."""
    lost_id = run.tags.get(RECOVERS_TAG)
    lost = instance.get_run_by_id(lost_id) if lost_id else None
    if lost is not None:
        return first_attempt(instance, lost)
    return lost_id or run.root_run_id or run.run_id


def will_requeue(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """A lost run of ours, the latest of its partition, not itself a second attempt."""
    return (run.job_name in JOBS and run.status == dg.DagsterRunStatus.FAILURE and RECOVERS_TAG not in run.tags
            and "dagster/partition" in run.tags and failure_reason(instance, run) != RunFailureReason.STEP_FAILURE
            and is_latest(instance, run))


def requeue_request(run: dg.DagsterRun) -> dg.RunRequest:
    """The same job, partition and assets again (a shard run: its shard's files only), in the same place of the
    fair queue, naming the lost run."""
    keep = (OWNER_TAG, BATCH_TAG, PRIORITY_TAG)
    tags = {k: v for k, v in run.tags.items() if k in keep or (k.startswith("leaf/") and k != RECOVERS_TAG)}
    return dg.RunRequest(run_key=f"recover:{run.run_id}", job_name=run.job_name,
                         partition_key=run.tags["dagster/partition"], tags={**tags, RECOVERS_TAG: run.run_id},
                         **selection_of(run))


def selection_of(run: dg.DagsterRun) -> dict[str, Any]:
    """The run's asset (and check) selection as RunRequest arguments; none for a run of the whole job."""
    if not run.asset_selection:
        return {}
    return {"asset_selection": list(run.asset_selection), "asset_check_keys": list(run.asset_check_selection or [])}


# -- batches of failed batch runs -----------------------------------------------------------------------------
def settle_batch(instance: dg.DagsterInstance, storage: Storage, run: dg.DagsterRun) -> dict[str, Any] | None:
    """After a batch run failed or was canceled (and will not run again): its batch ends FAILED with the
    reason, so a retry re-runs it. Files it registered before failing that have no run of their own fail
    with the same reason: for a shard run, only its shard's files (the other shards' runs settle theirs, and
    the batch stays PROCESSING until they have), as for an upload's run that asked for its shards and failed
    before tagging itself shard 0. Returns the batch record when it changed."""
    if run.status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED) or not is_latest(instance, run):
        return None
    batch = storage.records.get("batches", run.tags.get("dagster/partition", ""))
    if batch is None or batch.get("status") == "FAILED":
        return None
    reason = run_failure_message(instance, run)
    if not batch.get("leafFiles"):
        shutil.rmtree(storage.extracted_dir(batch["id"]), ignore_errors=True)  # the stored zip stays for a retry
        return set_batch_state(storage, batch["id"], "FAILED", f"{batch['fileName']}: the batch could not be "
                               f"processed ({reason}); retry the batch")
    listed = storage.records.many("files", batch["leafFiles"], sections=("registration", "status"))
    shard = run.tags.get(SHARD_TAG)
    if shard is None and run.job_name == BATCH_JOB:  # an upload's run that split the upload and died untagged
        count = asked_shards(storage, batch["id"], first_attempt(instance, run))
        shard = shard_name(0, count) if count > 1 else None
    for record in shard_records(listed, shard):
        file_id = record["id"]
        if record.get("status") == "processing" and latest_run(instance, FILE_JOB, file_id) is None:
            record_steps(storage, file_id, steps_without_run(f"the batch run failed ({reason})"), run.run_id,
                         update_batch=False)
    return update_batch_status(storage, batch["id"])
