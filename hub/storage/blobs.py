"""The bytes of Binary resources: one ``binary_blob`` row per distinct content.

Rows are keyed by the SHA-256 of the bytes, so storing the same content twice (a
re-sent document, a new version of a Binary whose bytes did not change) writes
nothing. A put runs in the caller's transaction (the unit of work writing the
Binary), so the bytes commit or roll back with the resource naming them. Rows are
never deleted by a write: every version in the history may still name them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from hub.storage import schema as s


@dataclasses.dataclass(frozen=True)
class Blob:
    sha256: str
    size: int
    data: bytes


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(conn: Connection, data: bytes) -> str:
    """Store ``data`` (once) inside ``conn``'s transaction; returns its SHA-256 (hex)."""
    key = digest(data)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(s.binary_blob)
        .values(sha256=key, size=len(data), data=data, created_at=dt.datetime.now(dt.UTC))
        .on_conflict_do_nothing(index_elements=["sha256"])
    )
    return key


def get(conn: Connection, key: str) -> Blob | None:
    t = s.binary_blob
    row = conn.execute(select(t.c.sha256, t.c.size, t.c.data).where(t.c.sha256 == key)).first()
    return Blob(row.sha256, row.size, bytes(row.data)) if row else None


def exists(conn: Connection, key: str) -> bool:
    t = s.binary_blob
    return conn.execute(select(t.c.sha256).where(t.c.sha256 == key)).first() is not None
