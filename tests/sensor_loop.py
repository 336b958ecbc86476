"""The daemon's part, in-process: evaluate the sensors and execute the runs they request, until idle."""

from __future__ import annotations

import dagster as dg

from leaf_dagster.defs.resources import LeafStorage
from leaf_dagster.defs.sensors import inbox_sensor, requested_runs_sensor, status_sensor
from leaf_dagster.defs.in_process import QUIET, load_definitions
from leaf_dagster.storage import Storage


class SensorLoop:
    def __init__(self, instance: dg.DagsterInstance, storage: Storage):
        self.instance, self.storage = instance, storage
        self.cursors: dict[str, str | None] = {}
        self.definitions = load_definitions(storage)

    def _evaluate(self, sensor: dg.SensorDefinition) -> int:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor.name),
                                          resources={"storage": LeafStorage(data_dir=self.storage.url,
                                                                         work_dir=self.storage.work_dir)})
        result = sensor(context)
        if not isinstance(result, dg.SensorResult):
            return 0
        self.cursors[sensor.name] = result.cursor or self.cursors.get(sensor.name)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for run in result.run_requests or []:
            job_name = run.job_name or sensor.job_name
            self.definitions.resolve_job_def(job_name).execute_in_process(
                partition_key=run.partition_key, instance=self.instance, tags=run.tags, raise_on_error=False,
                run_config=QUIET, asset_selection=run.asset_selection)
        return len(result.run_requests or [])

    def tick(self) -> int:
        """One pass over every sensor; returns how many runs were executed."""
        ran = sum(self._evaluate(s) for s in (inbox_sensor, requested_runs_sensor))
        self._evaluate(status_sensor)
        return ran
