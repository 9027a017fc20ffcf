"""Recompute search-index rows, e.g. after a custom SearchParameter is added.

Works in batches of resources (ordered by pk), one transaction per batch, so
a long reindex can run beside normal traffic and be resumed.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.search.indexer import Indexer
from hub.storage import schema as S
from hub.storage.db import reading
from hub.storage.db import writing


def write_index(conn: Connection, pk: int, result) -> None:
    """Insert ``result``'s rows for the resource ``pk`` (one executemany per table)."""
    from hub.storage.repository import bulk_insert

    for table_name, rows in result.rows.items():
        if rows:
            bulk_insert(
                conn, S.INDEX_TABLES[table_name], [{"resource_pk": pk, **row} for row in rows]
            )


def delete_index(conn: Connection, pks: Iterable[int]) -> None:
    pks = list(pks)
    for table in S.INDEX_TABLES.values():
        conn.execute(table.delete().where(table.c.resource_pk.in_(pks)))


def reindex(
    engine_or_conn: Engine | Connection,
    indexer: Indexer,
    res_types: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 500,
) -> int:
    """Re-index current resources (of ``res_types``, or all); returns how many.

    ``progress(done, total)`` is called after each batch.
    """
    import orjson

    r = S.resource
    where = [r.c.deleted == sa.false()]
    if res_types:
        where.append(r.c.res_type.in_(list(res_types)))

    def run(conn: Connection, after: int) -> tuple[int, int]:
        rows = list(
            conn.execute(
                sa.select(r.c.pk, r.c.content)
                .where(*where, r.c.pk > after)
                .order_by(r.c.pk)
                .limit(batch_size)
            )
        )
        if not rows:
            return 0, after
        delete_index(conn, [pk for pk, _ in rows])
        for pk, content in rows:
            result = indexer.index(orjson.loads(content))
            write_index(conn, pk, result)
            conn.execute(r.update().where(r.c.pk == pk).values(patient_id=result.patient_id))
        return len(rows), rows[-1][0]

    def count(conn: Connection) -> int:
        return conn.execute(sa.select(sa.func.count()).select_from(r).where(*where)).scalar()

    done, after = 0, 0
    if isinstance(engine_or_conn, Engine):
        with reading(engine_or_conn) as conn:
            total = count(conn)
        while True:
            with writing(engine_or_conn) as conn:
                n, after = run(conn, after)
            if not n:
                break
            done += n
            if progress:
                progress(done, total)
    else:
        total = count(engine_or_conn)
        while True:
            n, after = run(engine_or_conn, after)
            if not n:
                break
            done += n
            if progress:
                progress(done, total)
    return done
