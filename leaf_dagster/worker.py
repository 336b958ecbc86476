"""The Celery app of run workers: `celery -A leaf_dagster.worker worker` on any host executes the instance's runs.

The instance's `run_launcher` (a dagster_celery CeleryRunLauncher, written into dagster.yaml by
leaf_dagster.instance when LEAF_CELERY_BROKER_URL is set) sends each run as an `execute_job` task; this module
builds the worker's app from the same launcher settings (read from $DAGSTER_HOME/dagster.yaml, so broker, result
backend, queue and acknowledgement settings cannot differ between the daemon and its workers) and registers the
tasks that execute runs.

Why not dagster_celery's own `execute_job` task: when a worker dies holding a run (SIGKILL, out of memory, its
host gone), the broker gives the task to another worker (late acknowledgement, rejected on worker loss), but the
run is then already STARTED, and Dagster's run body ignores a second worker of a STARTED run ("Ignoring a
duplicate run that was started from somewhere other than the run monitor daemon"): the task ends successfully,
run monitoring reads that success as a healthy worker, and the run stays STARTED until `max_runtime_seconds`
(three hours) fails it. Here a task the broker delivers again for a run that is STARTED resumes the run in the
new worker instead: the upload's run takes up its files again, skipping those already settled (`batchFiles`),
and each step writes its outputs under a temporary name before renaming them, so the file whose worker died
lands once. A first delivery for a STARTED run (the launcher never sends one twice) is left to Dagster, which
ignores it.

Every worker needs the instance's environment (DAGSTER_HOME with the same dagster.yaml, DAGSTER_PG_URL, the
LEAF_CELERY_* variables) and the data directory all machines share (LEAF_DATA_DIR); its working folder (the
worker's `--workdir`, TMPDIR) is its own.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from dagster import DagsterInstance, DagsterRunStatus
from dagster._cli.api import _execute_run_command_body, _resume_run_command_body
from dagster._core.events import EngineEventData
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import unpack_value
from dagster_celery.config import TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.launcher import CeleryRunLauncher
from kombu import Queue

# Dagster's message of the engine event naming the worker that executes (or resumes) a run.
EXECUTED_BY = "Run executed by Celery worker {worker}"
RESUMED_BY = "Run resumed by Celery worker {worker}: the broker delivered its task again after the worker " \
             "holding it was lost"


def _ignore(_event: Any) -> None:
    """Run events go to the instance's event log; the task's caller reads nothing from a stream."""


def _report(instance: DagsterInstance, run_id: str, message: str, worker: str) -> None:
    run = instance.get_run_by_id(run_id)
    if run is not None:
        instance.report_engine_event(message, run, EngineEventData({"Celery worker": worker}))


def execute_run(run_id: str, worker: str, redelivered: bool) -> int:
    """Execute the run, or resume it when the broker delivered its task again to this worker after the worker
    that held it was lost. Returns the run body's exit code."""
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status == DagsterRunStatus.STARTED and redelivered:
            _report(instance, run_id, RESUMED_BY.format(worker=worker), worker)
            return _resume_run_command_body(run_id, instance, _ignore, set_exit_code_on_failure=True)
        if run is not None and not run.is_finished:  # a finished run's task delivered again is only ignored
            _report(instance, run_id, EXECUTED_BY.format(worker=worker), worker)
        return _execute_run_command_body(run_id, instance, _ignore, set_exit_code_on_failure=True)


def resume_run(run_id: str, worker: str) -> int:
    """Resume the run (run monitoring asked for it: `max_resume_run_attempts` above 0)."""
    with DagsterInstance.get() as instance:
        _report(instance, run_id, RESUMED_BY.format(worker=worker), worker)
        return _resume_run_command_body(run_id, instance, _ignore, set_exit_code_on_failure=True)


def make_app() -> Celery:
    """The launcher's Celery app (its broker, backend and settings), consuming its queue, with the run tasks."""
    with DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        if not isinstance(launcher, CeleryRunLauncher):
            raise RuntimeError(f"the Dagster instance in DAGSTER_HOME launches runs with {type(launcher).__name__}, "
                               "not Celery: set LEAF_CELERY_BROKER_URL and LEAF_CELERY_BACKEND_URL and write "
                               "dagster.yaml again (python -m leaf_dagster.instance $DAGSTER_HOME)")
        app, queue = launcher.celery, launcher.default_queue
    # the launcher publishes to the queue with routing key `<queue>.execute_job`; dagster_celery declares only
    # `dagster` (priorities up to 10, as its launcher sends them)
    app.conf.task_queues = [Queue(queue, routing_key=f"{queue}.#", queue_arguments={"x-max-priority": 10})]

    @app.task(bind=True, name=TASK_EXECUTE_JOB_NAME, track_started=True)
    def execute_job(task: Any, execute_job_args_packed: Any) -> int:
        args = unpack_value(execute_job_args_packed, as_type=ExecuteRunArgs)
        redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
        return execute_run(args.run_id, task.request.hostname, redelivered)

    @app.task(bind=True, name=TASK_RESUME_JOB_NAME, track_started=True)
    def resume_job(task: Any, execute_job_args_packed: Any) -> int:
        args = unpack_value(execute_job_args_packed, as_type=ResumeRunArgs)
        return resume_run(args.run_id, task.request.hostname)

    return app


_app: Celery | None = None


def __getattr__(name: str) -> Celery:
    """`leaf_dagster.worker.app`, what `celery -A leaf_dagster.worker` looks for: built on first use, so that
    importing the module (for its functions) needs no instance."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = make_app()
    return _app
