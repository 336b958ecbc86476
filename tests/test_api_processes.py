"""Two API processes behind one load balancer: uploads to either land once, each processed by one run.

Both processes serve the same data directory (the inbox, the record store); each upload is streamed to a name of
its own and registered before its zip appears, so the inbox sensor makes one batch and one run of it whichever
process took it, and either process answers for it.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg

from leaf_dagster.storage import Storage

from .conftest import MONTANA
from .sensor_loop import SensorLoop
from .test_api import ALICE, BASE, Server

UPLOAD = "FarmerI_AA16_AA_N_2016_henrys.zip"
UPLOADS_PER_PROCESS = 4


def test_uploads_to_two_api_processes_at_once_are_each_processed_once(real: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    servers = [Server(data), Server(data)]
    try:
        clients = [server.client(ALICE) for server in servers]

        def post(n: int) -> str:
            with open(real / MONTANA / UPLOAD, "rb") as fh:
                response = clients[n % 2].post(f"{BASE}/batch", params={"leafUserId": f"grower-{n}", "provider": "JohnDeere"},
                                               files={"file": (UPLOAD, fh, "application/zip")})
            assert response.status_code == 200, response.text
            return response.json()["id"]

        with ThreadPoolExecutor(max_workers=2 * UPLOADS_PER_PROCESS) as pool:
            batch_ids = list(pool.map(post, range(2 * UPLOADS_PER_PROCESS)))
        assert len(set(batch_ids)) == len(batch_ids)
        for n, batch_id in enumerate(batch_ids):  # the process that did not take the upload knows it too
            other = clients[(n + 1) % 2].get(f"{BASE}/batch/{batch_id}")
            assert other.status_code == 200 and other.json()["leafUserId"] == f"grower-{n}"

        storage = Storage(data)
        past = time.time() - 60
        for upload in storage.inbox.glob("*.zip"):  # settled: as if written a while ago
            os.utime(upload, (past, past))
        with dg.instance_for_test() as instance:
            loop = SensorLoop(instance, storage)
            while loop.tick():
                pass
            assert loop.tick() == 0  # nothing is asked for twice
            for batch_id in batch_ids:
                runs = instance.get_runs(dg.RunsFilter(job_name="ingest_batch", tags={"leaf/batch_id": batch_id}))
                assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS, batch_id

        for n, batch_id in enumerate(batch_ids):
            status = clients[n % 2].get(f"{BASE}/batch/{batch_id}/status").json()
            assert len(status["converted"]["leafFiles"]) == 1 and not status["processing"]["leafFiles"], status
            assert clients[(n + 1) % 2].get(f"{BASE}/batch/{batch_id}").json()["status"] == "PROCESSED"
        files = storage.records.many("files")
        assert sorted(f["batchId"] for f in files) == sorted(batch_ids)  # one file per upload, none twice
    finally:
        for server in servers:
            server.stop()
