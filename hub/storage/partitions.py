"""The search index tables partitioned by resource type (PostgreSQL declarative partitioning).

The index tables are keyed by ``(res_type, param, …)`` and every search
filters on ``res_type``, so LIST partitions by ``res_type`` let PostgreSQL
prune a search to its type's partition (smaller indexes, vacuum per type)
without any change to the queries: the partitioned table keeps the name,
columns and indexes of the plain one. See docs/scaling.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.engine import Connection

from hub.storage import schema as s


def partition_name(table: str, res_type: str | None) -> str:
    """The partition of ``table`` holding ``res_type`` (None: the default partition)."""
    return f"{table}_{(res_type or 'other').lower()}"


def partition_index_tables(conn: Connection, res_types: Iterable[str]) -> None:
    """Make each empty index table a table partitioned by ``res_type``.

    One partition per type in ``res_types`` and a default one for every other
    type. The tables must be empty (a new database, before any write): the
    rows of a filled one would have to be moved, which is a maintenance job
    of its own.
    """
    if conn.dialect.name != "postgresql":
        raise ValueError("partitioned index tables need PostgreSQL")
    types = sorted(set(res_types))
    for name in s.INDEX_TABLES:
        if conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {name})")).scalar_one():
            raise ValueError(f"{name} is not empty; partition it before the first write")
        old = f"{name}_unpartitioned"
        conn.execute(text(f"ALTER TABLE {name} RENAME TO {old}"))
        conn.execute(
            text(
                f"CREATE TABLE {name} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
                "PARTITION BY LIST (res_type)"
            )
        )
        definitions = conn.execute(
            text(
                "SELECT indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = :t"
            ),
            {"t": old},
        ).scalars()
        definitions = list(definitions)
        statistics = conn.execute(
            text(
                "SELECT pg_get_statisticsobjdef(oid) FROM pg_statistic_ext "
                "WHERE stxrelid = CAST(:t AS regclass)"
            ),
            {"t": old},
        ).scalars()
        statistics = list(statistics)
        conn.execute(text(f"DROP TABLE {old}"))
        on_old = re.compile(rf"\bON (\S+\.)?{re.escape(old)}\b")
        # The same indexes (and extended statistics) on the parent: each
        # partition gets its own copy of the indexes.
        for definition in definitions:
            conn.execute(text(on_old.sub(f"ON {name}", definition)))
        from_old = re.compile(rf"\bFROM (\S+\.)?{re.escape(old)}\b")
        for definition in statistics:
            conn.execute(text(from_old.sub(f"FROM {name}", definition)))
        for res_type in types:
            conn.execute(
                text(
                    f"CREATE TABLE {partition_name(name, res_type)} PARTITION OF {name} "
                    f"FOR VALUES IN ('{_literal(res_type)}')"
                )
            )
        conn.execute(text(f"CREATE TABLE {partition_name(name, None)} PARTITION OF {name} DEFAULT"))


def _literal(res_type: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", res_type):
        raise ValueError(f"not a resource type: {res_type!r}")
    return res_type
