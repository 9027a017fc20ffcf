"""Accounts: signing keys and authentication failures (lockout counters).

The rules (how long a lockout lasts, what a key signs) are the security
modules'; these stores hold the rows. A failure is counted under a row lock
(``FOR UPDATE``), its row created with ``ON CONFLICT DO NOTHING`` spelt per
backend, inside a transaction the caller also audits in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.storage import schema as s


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives naive datetimes back: they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


@dataclasses.dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    secret: str  # base64url
    created_at: dt.datetime
    retired_at: dt.datetime | None


class SigningKeyStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def all(self) -> list[SigningKey]:
        """Every key, oldest first."""
        k = s.signing_key
        with self.engine.connect() as conn:
            rows = conn.execute(select(k).order_by(k.c.created_at)).all()
        return [SigningKey(r.kid, r.algorithm, r.secret, r.created_at, r.retired_at) for r in rows]

    def add(self, kid: str, algorithm: str, secret: str, now: dt.datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(s.signing_key).values(
                    kid=kid, algorithm=algorithm, secret=secret, created_at=now
                )
            )

    def retire(self, kid: str, now: dt.datetime) -> bool:
        """Retire a key not yet retired; True if it was."""
        k = s.signing_key
        with self.engine.begin() as conn:
            n = conn.execute(
                update(k).where(k.c.kid == kid, k.c.retired_at.is_(None)).values(retired_at=now)
            ).rowcount
        return bool(n)


@dataclasses.dataclass(frozen=True)
class FailureCount:
    failures: int
    lockouts: int
    locked_until: dt.datetime | None  # timezone-aware


F = s.auth_failure


class LockoutStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def locked_until(self, keys: list[str]) -> list[dt.datetime | None]:
        """The ``locked_until`` of each of ``keys`` that has a row (timezone-aware)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(F.c.locked_until).where(F.c.key.in_(keys))).scalars()
            return [_aware(u) for u in rows]

    @contextmanager
    def counting(self) -> Iterator[Connection]:
        """A write transaction to count failures in (and audit them with)."""
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            yield conn

    @staticmethod
    def forget(conn: Connection, updated_before: dt.datetime, now: dt.datetime) -> None:
        """Drop unlocked rows not touched since ``updated_before``."""
        conn.execute(
            delete(F).where(
                F.c.updated_at < updated_before,
                (F.c.locked_until.is_(None)) | (F.c.locked_until < now),
            )
        )

    @staticmethod
    def take(conn: Connection, key: str, now: dt.datetime) -> FailureCount:
        """``key``'s counters, created at zero if new, locked until the transaction ends."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(F).on_conflict_do_nothing(index_elements=["key"]),
            {"key": key, "failures": 0, "lockouts": 0, "locked_until": None, "updated_at": now},
        )
        row = conn.execute(
            select(F.c.failures, F.c.lockouts, F.c.locked_until)
            .where(F.c.key == key)
            .with_for_update()
        ).one()
        return FailureCount(row.failures, row.lockouts, _aware(row.locked_until))

    @staticmethod
    def set(conn: Connection, key: str, **values: Any) -> None:
        conn.execute(update(F).where(F.c.key == key).values(**values))

    def clear(self, keys) -> None:
        """Forget ``keys``' failures and lockouts."""
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            conn.execute(delete(F).where(F.c.key.in_(list(keys))))


class ClientStore:
    """OAuth clients (``oauth_client``)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def active(self, client_id: str) -> bool:
        """Whether ``client_id`` is registered and not revoked."""
        c = s.oauth_client
        with self.engine.connect() as conn:
            row = conn.execute(select(c.c.revoked_at).where(c.c.client_id == client_id)).first()
        return row is not None and row.revoked_at is None


class UserStore:
    """Web-page user accounts (``users``)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def jurisdiction(self, username: str) -> str | None:
        """The user's administrative division code; None for none or an unknown user."""
        u = s.users
        with self.engine.connect() as conn:
            row = conn.execute(select(u.c.jurisdiction).where(u.c.username == username)).first()
        return (row.jurisdiction or None) if row is not None else None
