"""Dagster's PostgreSQL event log, keeping its connection open between events.

An upload's run records about fourteen events per machine file (a materialisation per step, a check evaluation
per check), each its own write. dagster-postgres opens a new connection for every statement (SQLAlchemy's
NullPool, so that no process holds connections it does not use): two connections per event, the insert and the
asset index, each a TCP handshake, an authentication and a new server process. Measured on the project's
two-core machine, that was 60 % of the time an event costs (50 ms down to 19 ms per event with the connection
kept). This storage is dagster-postgres's own, with a pool keeping the two connections an event is written on (and a
few more for threads that write at the same time), each checked before use so a restarted server costs a
reconnect, not a failed event.

Run and schedule storage keep dagster-postgres's classes: they are written a few times per run, not per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL_SIZE = 2  # kept open: a run worker writes an event on two connections, one after the other (its recorder thread)
MAX_OVERFLOW = 4  # more for threads writing at the same moment (the daemon's), closed once returned
RECYCLE_SECONDS = 3600  # opened again after an hour, before a server or proxy idle timeout drops it


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage whose engine keeps its connections open (see the module docstring)."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider: Any = None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()  # the NullPool engine the tables were checked with
        self._engine = create_pg_engine(self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT",
                                        pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW,
                                        pool_recycle=RECYCLE_SECONDS, pool_pre_ping=True)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Mapping[str, Any]) -> PooledPostgresEventLogStorage:
        return cls(pg_url_from_config(config_value), config_value.get("should_autocreate_tables", True),
                   inst_data, get_token_provider_from_config(config_value))

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()  # the kept connection closed with the instance, not left to the server's timeout
