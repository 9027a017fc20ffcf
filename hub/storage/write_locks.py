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
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.engine import Connection

# The first key of the resource locks ("FHIR" in ASCII, an int4).
NAMESPACE = 0x46484952

# ``unnest`` yields the array in order and the aggregate calls the function row by
# row, so the locks are taken in the order of the (sorted) array.
_LOCK = text(
    "SELECT count(pg_advisory_xact_lock(:ns, k)) FROM unnest(CAST(:keys AS integer[])) AS k"
)


def resource_key(res_type: str, res_id: str) -> int:
    """The advisory lock key (a signed 32-bit integer) of one resource."""
    crc = zlib.crc32(f"{res_type}/{res_id}".encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def lock_resources(conn: Connection, keys: Iterable[tuple[str, str]]) -> int:
    """Lock ``(type, id)`` for the rest of ``conn``'s transaction; returns how many locks.

    Call it once, before the transaction reads or writes any of them, with every
    resource the transaction may create or change that another writer may too.
    """
    if conn.dialect.name != "postgresql":
        return 0
    ordered = sorted({resource_key(t, i) for t, i in keys})
    if ordered:
        conn.execute(_LOCK, {"ns": NAMESPACE, "keys": ordered})
    return len(ordered)
