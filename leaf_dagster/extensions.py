"""DuckDB extensions from their PyPI packages (`duckdb-extension-NAME`, pinned to the DuckDB release), never
downloaded: a host with no network to DuckDB's extension repository still loads them, and installing puts
them in DuckDB's extension folder, so any DuckDB session of this user, a SQL user's included, loads them by
itself afterwards."""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Install the extension `name` (e.g. sqlite_scanner, ducklake, postgres_scanner) from the package
    `duckdb_extension_<name>` and load it."""
    package = importlib.import_module(f"duckdb_extension_{name}")
    (extension,) = Path(str(package.__file__)).parent.glob(f"extensions/*/{name}.duckdb_extension")
    con.execute(f"INSTALL '{extension.as_posix()}'")
    con.execute(f"LOAD {name}")
