"""OAuth2 clients (one per site system): registration, authentication, revocation.

A client has granted scopes, label grants and optionally a site; the token
endpoint issues tokens for any subset of the granted scopes. Only an scrypt
hash of the secret is stored; the secret is shown once, when the client is
added. Revocation takes effect for new tokens at once and for issued tokens
within ``CLIENT_STATUS_SECONDS`` (each process caches a client's status
briefly so that requests need no database round trip).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid
from typing import Any

from hub.security import hashing
from hub.security import labels as lbl
from hub.security.scopes import is_valid_scope_string
from hub.storage.accounts import ClientStore


@dataclasses.dataclass
class Client:
    client_id: str
    name: str
    site: str | None
    scopes: str
    grants: frozenset[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "site": self.site,
            "scopes": self.scopes,
            "grants": sorted(self.grants),
            "created": self.created_at.isoformat(),
            "revoked": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _from_row(row) -> Client:
    return Client(
        row.client_id,
        row.name,
        row.site,
        row.scopes,
        frozenset((row.grants or "").split()),
        row.created_at,
        row.revoked_at,
    )


def add_client(
    conn, name: str, scopes: str, site: str | None = None, grants: list[str] | None = None
) -> tuple[Client, str]:
    """Register a client; returns it with its secret (shown once, stored only as a hash)."""
    bad = is_valid_scope_string(scopes)
    if bad:
        raise ValueError(f"invalid scopes: {' '.join(bad)}")
    unknown = lbl.validate_grants(grants or ())
    if unknown:
        raise ValueError(f"unknown label grants: {' '.join(unknown)} (known: {sorted(lbl.GRANTS)})")
    if ClientStore.name_taken(conn, name):
        raise ValueError(f"a client named {name!r} exists already")
    secret = hashing.new_client_secret()
    client = Client(
        uuid.uuid4().hex,
        name,
        site,
        " ".join(scopes.split()),
        frozenset(grants or ()),
        dt.datetime.now(dt.UTC),
        None,
    )
    ClientStore.add(
        conn,
        client_id=client.client_id,
        name=name,
        site=site,
        scopes=client.scopes,
        grants=" ".join(sorted(client.grants)),
        secret_hash=hashing.hash_client_secret(secret),
        created_at=client.created_at,
    )
    return client, secret


def get_client(conn, client_id_or_name: str) -> Client | None:
    row = ClientStore.find(conn, client_id_or_name)
    return _from_row(row) if row else None


def list_clients(conn) -> list[Client]:
    return [_from_row(r) for r in ClientStore.all(conn)]


def revoke_client(conn, client_id_or_name: str) -> bool:
    client = get_client(conn, client_id_or_name)
    if client is None or not client.active:
        return False
    ClientStore.set(conn, client.client_id, revoked_at=dt.datetime.now(dt.UTC))
    return True


def authenticate(conn, client_id: str, secret: str) -> Client | None:
    """The active client whose id and secret match, else ``None`` (constant work either way)."""
    row = ClientStore.by_id(conn, client_id)
    if row is None:
        hashing.check_client_secret(_DUMMY_HASH, secret)
        return None
    if not hashing.check_client_secret(row.secret_hash, secret):
        return None
    client = _from_row(row)
    return client if client.active else None


_DUMMY_HASH = hashing.hash_client_secret("unknown client")


class StatusCache:
    """Whether a client is still active, cached per process for ``ttl`` seconds."""

    def __init__(self, engine: Any, ttl: float = 30.0, clock=time.monotonic):
        self.engine = engine
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def active(self, client_id: str) -> bool:
        hit = self._cache.get(client_id)
        now = self.clock()
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        ok = ClientStore(self.engine).active(client_id)
        with self._lock:
            self._cache[client_id] = (ok, now)
        return ok

    def forget(self, client_id: str | None = None) -> None:
        with self._lock:
            if client_id is None:
                self._cache.clear()
            else:
                self._cache.pop(client_id, None)
