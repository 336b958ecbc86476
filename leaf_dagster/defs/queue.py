"""Tags that place a run in the fair run queue.

Dagster's QueuedRunCoordinator launches queued runs by `dagster/priority` (highest first), then in the
order they were queued, skipping runs that a tag concurrency limit blocks (dagster.yaml). Every run of
ours carries its API owner (`leaf/owner`) and batch (`leaf/batch_id`), which dagster.yaml limits per
value, and a priority of minus the number of runs its owner already has waiting: an owner's n-th waiting
run has priority -n. Owners' runs therefore interleave, so an upload of 200 files delays another owner's
upload by at most the run in progress, not by 200 runs, while an owner alone still uses every slot.
"""

from __future__ import annotations

import dagster as dg

from ..storage import DEFAULT_OWNER

OWNER_TAG = "leaf/owner"
BATCH_TAG = "leaf/batch_id"
PRIORITY_TAG = "dagster/priority"


class FairQueue:
    """Hands out run tags for one sensor tick, counting the runs this tick adds to each owner's queue."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self.waiting: dict[str, int] = {}

    def tags(self, owner: str | None, batch_id: str, **extra: str) -> dict[str, str]:
        owner = owner or DEFAULT_OWNER
        if owner not in self.waiting:
            self.waiting[owner] = self.instance.get_runs_count(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED], tags={OWNER_TAG: owner}))
        priority = -self.waiting[owner]
        self.waiting[owner] += 1
        return {OWNER_TAG: owner, BATCH_TAG: batch_id, PRIORITY_TAG: str(priority), **extra}
