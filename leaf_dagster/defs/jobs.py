"""Jobs: one run per upload (batch partition: the upload and every step of each of its files), one run per
machine file (machine_files partition: retries, merges, re-runs) and the batch overview once a batch is settled.

Each executes its steps in the run's own process: a file's steps are short and sequential, and starting
a process per step would cost more than the steps themselves.
"""

import dagster as dg

from ..status import BATCH_JOB, FILE_JOB, OVERVIEW_JOB

ingest_batch_job = dg.define_asset_job(BATCH_JOB, selection=dg.AssetSelection.groups("uploads"),
                                       description="Store, extract and scan one upload, then run every step of each of its files.",
                                       executor_def=dg.in_process_executor)
process_file_job = dg.define_asset_job(FILE_JOB, selection=dg.AssetSelection.groups("machine_files"),
                                       description="Every step of one machine file.", executor_def=dg.in_process_executor)
batch_overview_job = dg.define_asset_job(OVERVIEW_JOB, selection=dg.AssetSelection.groups("overview"),
                                        description="The table of a settled batch's files.",
                                        executor_def=dg.in_process_executor)
