"""Accounts: signing keys, authentication failures (lockout counters), clients, users,
SMART authorization grants and the ``jti`` of client assertions.

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


@dataclasses.dataclass(frozen=True)
class ClientRow:
    client_id: str
    name: str
    site: str | None
    scopes: str
    grants: str | None  # space-separated
    secret_hash: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    redirect_uris: str = ""  # space-separated
    public: bool = False
    jwks: str | None = None  # a JWK Set, JSON
    jwks_uri: str | None = None


def _client(row) -> ClientRow:
    return ClientRow(
        row.client_id,
        row.name,
        row.site,
        row.scopes,
        row.grants,
        row.secret_hash,
        row.created_at,
        row.revoked_at,
        row.redirect_uris or "",
        bool(row.public),
        row.jwks,
        row.jwks_uri,
    )


C = s.oauth_client


class ClientStore:
    """OAuth clients (``oauth_client``). The methods taking ``conn`` work in its transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def active(self, client_id: str) -> bool:
        """Whether ``client_id`` is registered and not revoked."""
        with self.engine.connect() as conn:
            row = conn.execute(select(C.c.revoked_at).where(C.c.client_id == client_id)).first()
        return row is not None and row.revoked_at is None

    @staticmethod
    def by_id(conn: Connection, client_id: str) -> ClientRow | None:
        row = conn.execute(select(C).where(C.c.client_id == client_id)).first()
        return _client(row) if row else None

    @staticmethod
    def find(conn: Connection, client_id_or_name: str) -> ClientRow | None:
        """The client with this id, or else this name."""
        row = conn.execute(
            select(C).where((C.c.client_id == client_id_or_name) | (C.c.name == client_id_or_name))
        ).first()
        return _client(row) if row else None

    @staticmethod
    def name_taken(conn: Connection, name: str) -> bool:
        return conn.execute(select(C.c.name).where(C.c.name == name)).first() is not None

    @staticmethod
    def all(conn: Connection) -> list[ClientRow]:
        """Every client, by name."""
        return [_client(r) for r in conn.execute(select(C).order_by(C.c.name))]

    @staticmethod
    def add(conn: Connection, **values: Any) -> None:
        conn.execute(insert(C).values(**values))

    @staticmethod
    def set(conn: Connection, client_id: str, **values: Any) -> None:
        conn.execute(update(C).where(C.c.client_id == client_id).values(**values))


@dataclasses.dataclass(frozen=True)
class UserRow:
    username: str
    password_hash: str
    roles: str  # space-separated
    grants: str | None  # space-separated
    jurisdiction: str | None
    locked_until: dt.datetime | None  # as stored (naive UTC on SQLite)
    failed_logins: int | None
    disabled: bool
    patient: str | None = None  # a person's own Patient id


def _user(row) -> UserRow:
    return UserRow(
        row.username,
        row.password_hash,
        row.roles,
        row.grants,
        row.jurisdiction,
        row.locked_until,
        row.failed_logins,
        row.disabled,
        row.patient,
    )


U = s.users


class UserStore:
    """Web-page user accounts (``users``). The methods taking ``conn`` work in its transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def jurisdiction(self, username: str) -> str | None:
        """The user's administrative division code; None for none or an unknown user."""
        with self.engine.connect() as conn:
            row = conn.execute(select(U.c.jurisdiction).where(U.c.username == username)).first()
        return (row.jurisdiction or None) if row is not None else None

    @staticmethod
    def get(conn: Connection, username: str) -> UserRow | None:
        row = conn.execute(select(U).where(U.c.username == username)).first()
        return _user(row) if row else None

    @staticmethod
    def all(conn: Connection) -> list[UserRow]:
        """Every account, by username."""
        return [_user(r) for r in conn.execute(select(U).order_by(U.c.username))]

    @staticmethod
    def add(conn: Connection, **values: Any) -> None:
        conn.execute(insert(U).values(**values))

    @staticmethod
    def set(conn: Connection, username: str, **values: Any) -> bool:
        """Update the account's columns; True if it exists."""
        return bool(
            conn.execute(update(U).where(U.c.username == username).values(**values)).rowcount
        )


@dataclasses.dataclass(frozen=True)
class GrantRow:
    """An authorization code or a refresh token (``oauth_grant``), found by its hash."""

    kind: str
    client_id: str
    username: str
    patient: str
    scope: str
    consent: str
    redirect_uri: str | None
    code_challenge: str | None
    nonce: str | None
    expires_at: dt.datetime  # timezone-aware


G = s.oauth_grant


class GrantStore:
    """SMART authorization codes and refresh tokens."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def add(self, token_hash: str, now: dt.datetime, **values: Any) -> None:
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            conn.execute(delete(G).where(G.c.expires_at < now))
            conn.execute(insert(G).values(token_hash=token_hash, created_at=now, **values))

    def spend(self, token_hash: str, kind: str, now: dt.datetime) -> GrantRow | None:
        """The grant, marked used by this call alone; ``None`` when unknown, of another kind,
        expired or already used (two requests racing with one code: one wins)."""
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            spent = conn.execute(
                update(G)
                .where(
                    G.c.token_hash == token_hash,
                    G.c.kind == kind,
                    G.c.used_at.is_(None),
                    G.c.expires_at > now,
                )
                .values(used_at=now)
            ).rowcount
            if not spent:
                return None
            row = conn.execute(select(G).where(G.c.token_hash == token_hash)).one()
        return GrantRow(
            row.kind,
            row.client_id,
            row.username,
            row.patient,
            row.scope,
            row.consent,
            row.redirect_uri,
            row.code_challenge,
            row.nonce,
            _aware(row.expires_at),
        )

    def revoke_consent(self, consent: str) -> int:
        """Spend every unused grant made under ``consent``; how many there were."""
        now = dt.datetime.now(dt.UTC)
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            return conn.execute(
                update(G).where(G.c.consent == consent, G.c.used_at.is_(None)).values(used_at=now)
            ).rowcount


J = s.assertion_jti


class JtiStore:
    """The ``jti`` of client assertions seen, kept until each assertion expires."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def first_use(self, key: str, expires_at: dt.datetime, now: dt.datetime) -> bool:
        """Record ``key``; False when it was recorded already (a replay). Two requests racing
        with one assertion insert the same primary key: only one insert takes effect."""
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            conn.execute(delete(J).where(J.c.expires_at < now))
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            inserted = conn.execute(
                dialect.insert(J)
                .values(key=key, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(J.c.key)
            ).first()
        return inserted is not None
