"""OAuth2 clients (one per site system or app): registration, authentication, revocation.

A client has granted scopes, label grants and optionally a site; the token
endpoint issues tokens for any subset of the granted scopes. Only an scrypt
hash of the secret is stored; the secret is shown once, when the client is
added. A SMART app also has redirect URIs (matched exactly) and may be public
(no secret: it proves itself with PKCE); a backend service may authenticate
with a JWT signed by its own key (``private_key_jwt``), whose public JWK Set is
registered or fetched from its ``jwks_uri`` (:mod:`hub.security.assertions`). Revocation takes effect for new tokens at once and for issued tokens
within ``CLIENT_STATUS_SECONDS`` (each process caches a client's status
briefly so that requests need no database round trip).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
import urllib.parse
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
    redirect_uris: tuple[str, ...] = ()
    public: bool = False
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def asymmetric(self) -> bool:
        """Whether the client authenticates with signed assertions (``private_key_jwt``)."""
        return self.jwks is not None or bool(self.jwks_uri)

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "site": self.site,
            "scopes": self.scopes,
            "grants": sorted(self.grants),
            "created": self.created_at.isoformat(),
            "revoked": self.revoked_at.isoformat() if self.revoked_at else None,
            "redirect_uris": list(self.redirect_uris),
            "public": self.public,
            "jwks_uri": self.jwks_uri,
            "jwks_kids": [k.get("kid") for k in (self.jwks or {}).get("keys", [])],
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
        tuple(row.redirect_uris.split()),
        row.public,
        json.loads(row.jwks) if row.jwks else None,
        row.jwks_uri,
    )


def get_client_row(row) -> Client:
    """The :class:`Client` of a stored row (``hub.storage.accounts.ClientRow``)."""
    return _from_row(row)


# The stored "hash" of a client without a secret: no secret ever checks against it.
NO_SECRET = "!"


def add_client(
    conn,
    name: str,
    scopes: str,
    site: str | None = None,
    grants: list[str] | None = None,
    *,
    redirect_uris: list[str] | tuple[str, ...] = (),
    public: bool = False,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
) -> tuple[Client, str | None]:
    """Register a client; returns it with its secret (shown once, stored only as a hash).

    A public app (``public``) and a client with public keys (``jwks``/``jwks_uri``) get no
    secret (``None``): the first proves itself with PKCE, the second with signed assertions.
    """
    from hub.security import assertions

    if public and (jwks is not None or jwks_uri):
        raise ValueError("a public app has no keys: register either --public or --jwks")
    if public and not redirect_uris:
        raise ValueError("a public app needs a --redirect-uri")
    for uri in redirect_uris:
        problem = _redirect_problem(uri)
        if problem:
            raise ValueError(f"redirect URI {uri!r}: {problem}")
    if jwks is not None:
        assertions.check_jwks(jwks)
    if jwks_uri:
        # Whether the hub may fetch it is decided when it does (JWKS_URI_ALLOWED).
        if urllib.parse.urlsplit(jwks_uri).scheme not in ("https", "http"):
            raise ValueError(f"jwks_uri {jwks_uri!r}: an https URL is needed")
    bad = is_valid_scope_string(scopes)
    if bad:
        raise ValueError(f"invalid scopes: {' '.join(bad)}")
    unknown = lbl.validate_grants(grants or ())
    if unknown:
        raise ValueError(f"unknown label grants: {' '.join(unknown)} (known: {sorted(lbl.GRANTS)})")
    if ClientStore.name_taken(conn, name):
        raise ValueError(f"a client named {name!r} exists already")
    secret = None if public or jwks is not None or jwks_uri else hashing.new_client_secret()
    client = Client(
        uuid.uuid4().hex,
        name,
        site,
        " ".join(scopes.split()),
        frozenset(grants or ()),
        dt.datetime.now(dt.UTC),
        None,
        tuple(redirect_uris),
        public,
        jwks,
        jwks_uri or None,
    )
    ClientStore.add(
        conn,
        client_id=client.client_id,
        name=name,
        site=site,
        scopes=client.scopes,
        grants=" ".join(sorted(client.grants)),
        secret_hash=hashing.hash_client_secret(secret) if secret else NO_SECRET,
        created_at=client.created_at,
        redirect_uris=" ".join(redirect_uris),
        public=public,
        jwks=json.dumps(jwks) if jwks is not None else None,
        jwks_uri=jwks_uri or None,
    )
    return client, secret


def _redirect_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a redirect URI: absolute, no fragment (RFC 6749 3.1.2)."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme or (parts.scheme in ("http", "https") and not parts.netloc):
        return "an absolute URI is needed"
    if parts.fragment or "#" in uri:
        return "a redirect URI has no fragment"
    if any(ch.isspace() for ch in uri):
        return "a redirect URI has no spaces"
    return None


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
    if row is None or row.secret_hash == NO_SECRET:
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
