"""The change-feed consumer that keeps derived lifetime data current.

``hub worker`` calls :func:`run` every round. It reads the change feed after its cursor
(``feed_cursor`` row ``lifetime``) and, in one write transaction that also moves the cursor:

* recomputes the five-colour Flags of every person whose evidence changed (a ``Patient``,
  ``Condition``, ``EpisodeOfCare`` or ``Observation`` in their compartment);
* recomputes the household and village Groups of every changed ``Patient``.

The ingestion pipeline does the same inline for what it stores (so a message's colours are
right when ``$ingest`` answers); the consumer then finds nothing to change. REST writes,
transactions and deletes are picked up here. Its own writes (Flags, Groups, Provenance) do
not feed back. Only one consumer runs at a time on PostgreSQL (the cursor row is locked).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from hub.lifetime import colours as live_colours
from hub.lifetime import groups
from hub.storage import schema as s
from hub.storage.repository import Writer

if TYPE_CHECKING:
    from hub.kernel import Hub

CURSOR = "lifetime"


def run(hub: Hub, batch: int = 500) -> int:
    """One round: handle up to ``batch`` changes; returns how many were read."""

    def step(writer: Writer) -> int:
        conn = writer.conn
        cursor = s.feed_cursor
        query = sa.select(cursor.c.seq).where(cursor.c.name == CURSOR)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        after = conn.execute(query).scalar()
        if after is None:
            conn.execute(
                sa.insert(cursor).values(name=CURSOR, seq=0, updated_at=dt.datetime.now(dt.UTC))
            )
            after = 0
        changes = list(
            conn.execute(
                sa.select(
                    s.change.c.seq,
                    s.change.c.res_type,
                    s.change.c.res_id,
                    s.change.c.version,
                    s.change.c.op,
                    s.change.c.patient_id,
                )
                .where(s.change.c.seq > after)
                .order_by(s.change.c.seq)
                .limit(batch)
            )
        )
        if not changes:
            return 0
        evidence, patients = affected(changes, conn)
        if evidence:
            live_colours.refresh(writer, sorted(evidence))
        if patients:
            groups.refresh(writer, sorted(patients))
        conn.execute(
            sa.update(cursor)
            .where(cursor.c.name == CURSOR)
            .values(seq=changes[-1].seq, updated_at=dt.datetime.now(dt.UTC))
        )
        return len(changes)

    return hub.repo.write(step)


def affected(changes, conn) -> tuple[set[str], set[str]]:
    """(people whose colours may have changed, Patients whose Groups may have changed)."""
    evidence: set[str] = set()
    patients: set[str] = set()
    deleted: list[tuple[str, str, int]] = []
    for change in changes:
        if change.res_type == "Patient":
            patients.add(change.res_id)
            evidence.add(change.res_id)
        elif change.res_type in live_colours.EVIDENCE_TYPES:
            if change.patient_id:
                evidence.add(change.patient_id)
            elif change.op == "delete":
                deleted.append((change.res_type, change.res_id, change.version - 1))
    if deleted:
        # A deletion's row has no compartment: the version it deleted knows the person.
        h = s.resource_history
        for i in range(0, len(deleted), 300):
            rows = conn.execute(
                sa.select(h.c.patient_id).where(
                    sa.tuple_(h.c.res_type, h.c.res_id, h.c.version).in_(deleted[i : i + 300])
                )
            )
            evidence.update(pid for (pid,) in rows if pid)
    return evidence, patients


def drain(hub: Hub, batch: int = 500) -> int:
    """Run rounds until the feed is consumed (tests, ``hub groups``)."""
    total = 0
    while True:
        n = run(hub, batch)
        total += n
        if n < batch:
            return total
