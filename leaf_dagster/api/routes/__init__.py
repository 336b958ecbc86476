"""The API's routers: files, batches, fields, configurations and thumbnails."""
