"""Reading the change feed after a named cursor (outbound dispatch, Subscription matching).

One definition of how a consumer takes its next changes: the cursor row is locked on
PostgreSQL (one consumer of a name at a time; two workers' first read waits on the row
instead of failing on its key), and moves past the changes only when the caller's work in
the same transaction succeeded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from hub.storage import schema as s


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def next_changes(conn: Connection, cursor: str, batch: int) -> Iterator[list]:
    """The next ``batch`` change rows after ``cursor``, in feed order; the cursor moves past
    them when the block ends without an error (in ``conn``'s transaction)."""
    fc = s.feed_cursor
    query = select(fc.c.seq).where(fc.c.name == cursor)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # one consumer of this cursor at a time
    after = conn.execute(query).scalar()
    if after is None and conn.dialect.name == "postgresql":
        conn.execute(
            pg_insert(fc)
            .values(name=cursor, seq=0, updated_at=_now())
            .on_conflict_do_nothing(index_elements=[fc.c.name])
        )
        after = conn.execute(query).scalar()
    elif after is None:
        conn.execute(insert(fc).values(name=cursor, seq=0, updated_at=_now()))
        after = 0
    changes = list(
        conn.execute(
            select(s.change).where(s.change.c.seq > after).order_by(s.change.c.seq).limit(batch)
        )
    )
    yield changes
    if changes:
        conn.execute(
            update(fc).where(fc.c.name == cursor).values(seq=changes[-1].seq, updated_at=_now())
        )
