"""Time-series storage: TimescaleDB hypertables when available, native partitions otherwise.

This is the one place that decides. Production runs TimescaleDB: hypertables with
a retention policy and compression. Where the extension is not installed (the
local stack, the test suite), the same tables are PostgreSQL declarative range
partitions by month plus a DEFAULT partition, and `vigil db maintain` creates
future partitions and drops those past retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from sqlalchemy import Connection, text

RETENTION_DAYS_DEFAULT: Final = 90
MONTHS_AHEAD: Final = 3
MONTHS_BEHIND: Final = 4  # covers the default 90-day retention


@dataclass(frozen=True, slots=True)
class TimeSeriesTable:
    name: str
    time_column: str
    segment_by: str


TIME_SERIES_TABLES: Final = (
    TimeSeriesTable("transactions", "occurred_at", "tenant_id"),
    TimeSeriesTable("anomalies", "event_time", "tenant_id"),
)
# Created by migration 0010 (not 0001, which creates TIME_SERIES_TABLES); maintained like them.
ANOMALY_FEATURES: Final = TimeSeriesTable("anomaly_features", "event_time", "tenant_id")
MAINTAINED_TABLES: Final = (*TIME_SERIES_TABLES, ANOMALY_FEATURES)


def has_timescaledb(connection: Connection) -> bool:
    query = text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return connection.execute(query).first() is not None


def partition_clause(connection: Connection, table: TimeSeriesTable) -> str:
    """`PARTITION BY` suffix for CREATE TABLE: empty on TimescaleDB (hypertable instead)."""
    if has_timescaledb(connection):
        return ""
    return f" PARTITION BY RANGE ({table.time_column})"


def finish_time_series(
    connection: Connection, table: TimeSeriesTable, *, retention_days: int = RETENTION_DAYS_DEFAULT
) -> str:
    """Turn a freshly created table into a hypertable or give it its partitions; returns the mode."""
    if has_timescaledb(connection):
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
        connection.execute(
            text(f"SELECT create_hypertable('{table.name}', by_range('{table.time_column}', INTERVAL '1 day'))")
        )
        connection.execute(
            text(
                f"ALTER TABLE {table.name} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = '{table.segment_by}')"
            )
        )
        connection.execute(text(f"SELECT add_compression_policy('{table.name}', INTERVAL '7 days')"))
        connection.execute(text(f"SELECT add_retention_policy('{table.name}', INTERVAL '{int(retention_days)} days')"))
        return "timescaledb"
    connection.execute(text(f"CREATE TABLE IF NOT EXISTS {table.name}_default PARTITION OF {table.name} DEFAULT"))
    ensure_partitions(connection, table)
    return "native"


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def ensure_partitions(
    connection: Connection,
    table: TimeSeriesTable,
    *,
    today: date | None = None,
    months_behind: int = MONTHS_BEHIND,
    months_ahead: int = MONTHS_AHEAD,
) -> list[str]:
    """Create missing monthly partitions around today (native mode); returns names created."""
    today = today or datetime.now(UTC).date()
    created = []
    existing = {
        row[0]
        for row in connection.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent"
            ),
            {"parent": table.name},
        )
    }
    start = _add_months(_month_start(today), -months_behind)
    for offset in range(months_behind + months_ahead + 1):
        lower = _add_months(start, offset)
        upper = _add_months(lower, 1)
        name = f"{table.name}_{lower:%Y%m}"
        if name in existing:
            continue
        # A row already in DEFAULT for this range would block the new partition; move it there.
        connection.execute(text(f"CREATE TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
        moved = connection.execute(
            text(
                f"WITH moved AS (DELETE FROM {table.name}_default WHERE {table.time_column} >= :lo "
                f"AND {table.time_column} < :hi RETURNING *) INSERT INTO {name} SELECT * FROM moved"
            ),
            {"lo": lower, "hi": upper},
        )
        del moved
        connection.execute(
            text(
                f"ALTER TABLE {table.name} ATTACH PARTITION {name} "
                f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
            )
        )
        created.append(name)
    return created


def drop_expired_partitions(
    connection: Connection, table: TimeSeriesTable, *, retention_days: int, today: date | None = None
) -> list[str]:
    """Drop monthly partitions entirely older than the retention window (native mode)."""
    today = today or datetime.now(UTC).date()
    cutoff = today - timedelta(days=retention_days)
    dropped = []
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent"
        ),
        {"parent": table.name},
    )
    for (name,) in rows.all():
        suffix = name.removeprefix(f"{table.name}_")
        if not (len(suffix) == 6 and suffix.isdigit()):
            continue
        upper = _add_months(date(int(suffix[:4]), int(suffix[4:]), 1), 1)
        if upper <= cutoff:
            connection.execute(text(f"DROP TABLE {name}"))
            dropped.append(name)
    return dropped


def maintain(connection: Connection, *, retention_days: int = RETENTION_DAYS_DEFAULT) -> dict[str, list[str]]:
    """Native mode housekeeping (TimescaleDB runs its own policies): returns what changed."""
    if has_timescaledb(connection):
        return {}
    report: dict[str, list[str]] = {}
    for table in MAINTAINED_TABLES:
        report[f"{table.name}:created"] = ensure_partitions(connection, table)
        report[f"{table.name}:dropped"] = drop_expired_partitions(connection, table, retention_days=retention_days)
    return report
