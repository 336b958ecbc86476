"""One dynamic partition per upload and one per machine file, so every step has a status per file."""

import dagster as dg

batches = dg.DynamicPartitionsDefinition(name="batches")
machine_files = dg.DynamicPartitionsDefinition(name="machine_files")
