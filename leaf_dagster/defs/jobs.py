"""Two jobs: one run per upload (batch partition) and one run per machine file (machine_files partition)."""

import dagster as dg

from ..status import BATCH_JOB, FILE_JOB

ingest_batch_job = dg.define_asset_job(BATCH_JOB, selection=dg.AssetSelection.groups("uploads"),
                                       description="Store, extract and scan one upload.")
process_file_job = dg.define_asset_job(FILE_JOB, selection=dg.AssetSelection.groups("machine_files"),
                                       description="Every step of one machine file.")
