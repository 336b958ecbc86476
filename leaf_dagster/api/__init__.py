"""The Leaf-compatible HTTP API over the pipeline's data directory."""
