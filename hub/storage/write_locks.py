"""Locks on the resources a group of messages will write, taken once, in one order, up front.

Several ``hub worker`` processes store groups of messages at the same time, and
the groups of a feed share resources: the sending Organization, a Practitioner,
a Patient seen in two messages. Row locks alone do not order them: a resource
that does not exist yet has no row to lock, so two groups creating it both
insert and one fails on the unique key (the whole group is retried, and after
several losses stored message by message), and locks taken as each message is
stored come in a different order in each group, so two groups can wait for
each other (a deadlock PostgreSQL breaks after ``deadlock_timeout``).

:func:`lock_resources` takes a transaction-scoped advisory lock per resource
the group is about to write (existing or not), all in one statement and in
ascending key order, at the start of the group's transaction: a second group
needing any of them waits for the first to commit, then sees its rows, and two
groups can never hold each other's locks in opposite orders. The locks end
with the transaction (commit or rollback). SQLite has a single writer and needs
none.

A key is the CRC-32 of ``Type/id`` in the two-integer advisory key space under
:data:`NAMESPACE`, apart from the single-``bigint`` keys the hub's other
advisory locks use. Two resources sharing a CRC only share a lock: a group
then waits where it need not, never deadlocks (the order stays one order).

Most messages of a feed name resources that are already stored as they are
(the sending Organization of MSH-4, the attending Practitioner): the update is a
no-op and writes nothing, yet an exclusive lock on them would make every group
of every worker wait for the one before. :func:`unchanged` finds the resources
the group would rewrite with the content they already have (an unlocked read),
and :func:`lock_resources` takes those locks *shared*: groups that only read
the same Organization run side by side, and a group that changes it waits for
them (and they for it). Should a resource found unchanged have changed after
all (another writer got in between, or the message's own processing altered
it), its update still takes the row's lock when it is written; at worst two
such groups wait for each other and PostgreSQL breaks the deadlock, which the
write path retries like any lost race.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from hub.storage.repository import Writer
from hub.storage.repository import same_content

# The first key of the resource locks ("FHIR" in ASCII, an int4).
NAMESPACE = 0x46484952

# ``unnest`` yields the array in order and the aggregate calls the function row by
# row, so the locks are taken in the order of the (sorted) array.
# Each key shared or exclusive as its flag says (``unnest`` of two arrays pairs them).
_LOCK = text(
    "SELECT count(CASE WHEN s THEN pg_advisory_xact_lock_shared(:ns, k)"
    " ELSE pg_advisory_xact_lock(:ns, k) END)"
    " FROM unnest(CAST(:keys AS integer[]), CAST(:shared AS boolean[])) AS t(k, s)"
)


def resource_key(res_type: str, res_id: str) -> int:
    """The advisory lock key (a signed 32-bit integer) of one resource."""
    crc = zlib.crc32(f"{res_type}/{res_id}".encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def lock_resources(
    conn: Connection,
    keys: Iterable[tuple[str, str]],
    shared: Iterable[tuple[str, str]] = (),
) -> int:
    """Lock ``(type, id)`` for the rest of ``conn``'s transaction; returns how many locks.

    Call it once, before the transaction reads or writes any of them, with every
    resource the transaction may create or change that another writer may too.
    The keys of ``shared`` (those :func:`unchanged` found) are locked shared,
    unless another key of ``keys`` has the same lock key.
    """
    if conn.dialect.name != "postgresql":
        return 0
    share = set(shared)
    exclusive = {resource_key(t, i) for t, i in keys if (t, i) not in share}
    ordered = sorted(exclusive | {resource_key(t, i) for t, i in share})
    if ordered:
        conn.execute(
            _LOCK,
            {"ns": NAMESPACE, "keys": ordered, "shared": [k not in exclusive for k in ordered]},
        )
    return len(ordered)


def unchanged(
    writer: Writer, planned: dict[tuple[str, str], list[dict[str, Any]]]
) -> set[tuple[str, str]]:
    """The keys of ``planned`` stored (not deleted) with the content of each planned version.

    ``planned`` maps a resource to the contents the transaction is about to
    write to it. Read without a lock, so the answer is a forecast (see the
    module's notes); on SQLite, with its single writer, nothing is forecast.
    """
    if writer.conn.dialect.name != "postgresql" or not planned:
        return set()
    stored = writer.repo.read_many(planned, writer.conn)
    return {
        key
        for key, current in stored.items()
        if not current.deleted
        and current.content is not None
        and all(same_content(current.content, content) for content in planned[key])
    }
