"""Run an upload through the same Dagster assets in this process (the CLI's `process`, and tests).

The daemon path (inbox sensor -> one run per upload; a run per file for retries and merges) and this path
execute the same jobs; here they run in-process instead of being launched by sensors.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from .. import merge, run_requests
from ..catalog import refresh_catalog
from ..ingest.batch import batch_id_for, new_batch
from ..objects import batch_object, file_object
from ..status import BATCH_JOB, FILE_JOB, OVERVIEW_JOB, update_batch_status
from ..storage import Storage
from .recovery import SHARD_TAG, settle_batch
from .resources import bound_to
from .run_status import record_file_status

Progress = Callable[[str], None]
# Dagster's per-event console log would drown the caller's own progress output.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# The upload's run says which file it starts ("[3/40] CSV name"); the caller's progress shows these lines.
FILE_PROGRESS = re.compile(r"^\[\d+/\d+\] ")


def instance_for_cli() -> DagsterInstance:
    """The persistent instance when DAGSTER_HOME is set (runs show in the UI), else a throwaway one.

    Telemetry is off in the configuration this process uses (the user's dagster.yaml is read, not changed),
    so a first command does not print Dagster's telemetry banner or write an id into DAGSTER_HOME."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return DagsterInstance.ephemeral()
    return DagsterInstance.from_ref(InstanceRef.from_dir(os.path.expanduser(home),
                                                         overrides={"telemetry": {"enabled": False}}))


def load_definitions(storage: Storage, progress: Progress | None = None) -> dg.Definitions:
    """The code location's definitions with the storage resource on `storage`'s data directory and working
    folder (the code location's own resource reads LEAF_DATA_DIR; an in-process caller names its directory
    explicitly), and with `progress` as the `progress` logger, which `run_config` turns on."""
    from ..definitions import defs

    loaded = defs()
    loggers = {**(loaded.loggers or dg.default_loggers()), **({"progress": progress_logger(progress)} if progress else {})}
    return dg.Definitions(assets=loaded.assets, asset_checks=loaded.asset_checks, jobs=loaded.jobs,
                          sensors=loaded.sensors, schedules=loaded.schedules, executor=loaded.executor,
                          loggers=loggers, metadata=loaded.metadata,
                          resources={**(loaded.resources or {}), **bound_to(storage.url, storage.work_dir)})


def progress_logger(progress: Progress) -> dg.LoggerDefinition:
    """A Dagster logger handing a run's per-file progress lines to `progress` (the CLI's stderr)."""

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = getattr(record, "dagster_meta", {}).get("orig_message", "")
            if FILE_PROGRESS.match(message):
                progress(message)

    @dg.logger
    def forward(_: dg.InitLoggerContext) -> logging.Logger:
        logger = logging.getLogger(f"leaf_dagster.progress.{id(progress)}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.handlers = [Forward()]
        return logger

    return forward


def run_config(definitions: dg.Definitions) -> dict[str, Any]:
    """Dagster's console log at warnings only, and the progress logger when the definitions have one."""
    loggers = {**QUIET["loggers"], **({"progress": {}} if "progress" in (definitions.loggers or {}) else {})}
    return {"loggers": loggers}


def process_upload(upload: Path, storage: Storage, instance: DagsterInstance, *, leaf_user_id: str | None = None,
                   provider: str | None = None, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Register, extract and process one zip; returns {"batch": ..., "files": [...]} as Leaf objects."""
    definitions = load_definitions(storage, progress)
    batch_id = batch_id_for(upload, leaf_user_id, provider)
    new_batch(storage, batch_id, upload, leaf_user_id, provider, move=False)
    progress(f"batch {batch_id}: extracting {upload.name}")
    return _run_batch(storage, instance, definitions, batch_id, progress)


def _run_batch(storage: Storage, instance: DagsterInstance, definitions: dg.Definitions, batch_id: str,
               progress: Progress) -> dict[str, Any]:
    """The upload's run (the batch step and every step of its files), whole: tagged as the one shard of its
    upload, as this one process would gain nothing from LEAF_FILES_PER_RUN's shards. The batch's partition is
    added first: a throwaway instance (no DAGSTER_HOME) knows no batch received before it."""
    instance.add_dynamic_partitions("batches", [batch_id])
    result = definitions.resolve_job_def(BATCH_JOB).execute_in_process(
        partition_key=batch_id, instance=instance, raise_on_error=False,
        tags={"leaf/batch_id": batch_id, SHARD_TAG: run_requests.shard_name(0, 1)},
        run_config=run_config(definitions))
    settle_batch(instance, storage, result.dagster_run)
    refresh_catalog(storage)  # a view for a point table that got its first output
    batch = storage.records.get("batches", batch_id) or {}
    files = [file_object(r) for r in storage.records.many("files", batch.get("leafFiles", []))]
    _overview(storage, instance, definitions, batch_id)
    return {"batch": batch_object(storage.records.get("batches", batch_id) or batch), "files": files}


def _overview(storage: Storage, instance: DagsterInstance, definitions: dg.Definitions, batch_id: str) -> None:
    """The batch's overview table in the UI, as the status sensor materialises it for daemon runs (its
    partition added first, as in `_run_batch`)."""
    instance.add_dynamic_partitions("batches", [batch_id])
    definitions.resolve_job_def(OVERVIEW_JOB).execute_in_process(
        partition_key=batch_id, instance=instance, raise_on_error=False, run_config=QUIET,
        tags={"leaf/batch_id": batch_id})


def run_files(storage: Storage, instance: DagsterInstance, definitions: dg.Definitions, file_ids: list[str],
              progress: Progress = lambda _: None) -> list[dict[str, Any]]:
    """One in-process run per file, its status recorded; returns the file objects. The files' partitions are
    added first: a throwaway instance (no DAGSTER_HOME) knows none of the files registered before it."""
    instance.add_dynamic_partitions("machine_files", file_ids)
    file_job = definitions.resolve_job_def(FILE_JOB)
    files = []
    for number, file_id in enumerate(file_ids, start=1):
        record = storage.records.get("files", file_id) or {}
        progress(f"[{number}/{len(file_ids)}] {record.get('fileFormat')} {record.get('fileName')}")
        file_job.execute_in_process(partition_key=file_id, instance=instance, raise_on_error=False, run_config=QUIET,
                                    tags={"leaf/batch_id": str(record.get("batchId")),
                                          "leaf/file_name": str(record.get("fileName"))[:200]})
        files.append(file_object(record_file_status(instance, storage, file_id) or record))
    refresh_catalog(storage)  # a view for a point table that got its first output
    return files


def merge_files(storage: Storage, instance: DagsterInstance, ids: list[str]) -> dict[str, Any]:
    """Validate, register (SENT_TO_MERGE) and process a merged file to completion."""
    record = merge.create(storage, ids)
    (merged,) = run_files(storage, instance, load_definitions(storage), [record["id"]])
    return merged


def retry_batch(storage: Storage, instance: DagsterInstance, batch_id: str,
                progress: Progress = lambda _: None) -> dict[str, Any]:
    """Reprocess what did not succeed: the batch step when it registered no files (a refused zip, a full
    disk, a killed run), else the files that failed; converted files are left alone."""
    batch = storage.records.get("batches", batch_id)
    if batch is None:
        raise KeyError(f"batch {batch_id} not found")
    plan = run_requests.retry_plan(storage, batch)
    progress(f"batch {batch_id}: {plan.message}")
    if not plan.runs:  # returned unchanged
        return {"batch": batch_object(batch), "files": [], "message": plan.message}
    run_requests.mark_retried(storage, batch, plan)
    definitions = load_definitions(storage, progress)
    if plan.rerun_batch:
        return _run_batch(storage, instance, definitions, batch_id, progress)
    files = run_files(storage, instance, definitions, plan.file_ids, progress)
    update_batch_status(storage, batch_id)
    _overview(storage, instance, definitions, batch_id)
    return {"batch": batch_object(storage.records.get("batches", batch_id) or batch), "files": files}
