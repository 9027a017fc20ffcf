"""The security services of one hub: key set, client status cache, rate limiter, principals."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from typing import Any

from hub import outcomes
from hub.config import setting
from hub.security import lockout
from hub.security import tokens
from hub.security.clients import StatusCache
from hub.security.principal import DEFAULT_PURPOSE
from hub.security.principal import Principal
from hub.security.ratelimit import RateLimiter
from hub.security.scopes import compile_scopes
from hub.storage.accounts import UserStore

PURPOSE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,31}$")


class Security:
    """Per-hub security state (also used by the CLI, without Flask)."""

    def __init__(self, engine: Any, config: dict):
        self.engine = engine
        self.config = config
        self.keys = tokens.KeySet(engine, float(setting(config, "KEY_CACHE_SECONDS")))
        self.client_status = StatusCache(engine, float(setting(config, "CLIENT_STATUS_SECONDS")))
        # A changed account jurisdiction reaches issued tokens as a new key set does.
        self.accounts = AccountJurisdictions(engine, float(setting(config, "KEY_CACHE_SECONDS")))
        self.limiter = RateLimiter(
            float(setting(config, "RATE_LIMIT_PER_SECOND")),
            float(setting(config, "RATE_LIMIT_BURST")),
        )
        self.token_lifetime = int(setting(config, "TOKEN_LIFETIME"))
        self.retention_days = int(setting(config, "AUDIT_RETENTION_DAYS"))
        self.max_failures = int(setting(config, "LOGIN_MAX_FAILURES"))
        self.lockout = dt.timedelta(minutes=float(setting(config, "LOGIN_LOCKOUT_MINUTES")))
        self.client_lockout = lockout.Policy(
            int(setting(config, "CLIENT_AUTH_MAX_FAILURES")),
            int(setting(config, "CLIENT_AUTH_MAX_FAILURES_PER_ADDRESS")),
            float(setting(config, "CLIENT_AUTH_LOCKOUT_SECONDS")),
            float(setting(config, "CLIENT_AUTH_LOCKOUT_MAX_SECONDS")),
        )

    def mint(
        self,
        subject: str,
        scopes: str,
        kind: str = "client",
        site: str | None = None,
        grants=(),
        lifetime: int | None = None,
        **extra: Any,
    ) -> str:
        claims = {"sub": subject, "scope": " ".join(scopes.split()), "kind": kind}
        if site:
            claims["site"] = site
        if grants:
            claims["grants"] = sorted(grants)
        claims.update({k: v for k, v in extra.items() if v is not None})
        return tokens.mint(self.keys, claims, lifetime or self.token_lifetime)

    def authenticate(self, authorization: str | None, purpose_header: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer`` header; 401 when absent or invalid."""
        if not authorization:
            raise tokens.unauthorized("This endpoint needs a bearer token (POST /auth/token)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise tokens.unauthorized("Use an Authorization: Bearer token", "invalid_request")
        claims = tokens.decode(self.keys, token.strip())
        kind = claims.get("kind", "client")
        subject = str(claims["sub"])
        if kind == "client" and not self.client_status.active(subject):
            raise tokens.unauthorized("The client has been revoked", "invalid_token")
        purpose = purpose_header or claims.get("purpose") or DEFAULT_PURPOSE
        if not PURPOSE_RE.match(purpose):
            raise outcomes.bad_request(
                "X-Purpose-Of-Use must be a v3-ActReason code such as TREAT", "X-Purpose-Of-Use"
            )
        grants = claims.get("grants") or ()
        # A person's token is bound to the jurisdiction of the token, else of the account
        # (the dashboard's boundary, applied to every FHIR route: docs/security.md).
        jurisdiction = claims.get("jurisdiction") or None
        if kind == "user" and jurisdiction is None:
            jurisdiction = self.accounts.jurisdiction(subject)
        return Principal(
            subject,
            kind,
            compile_scopes(str(claims["scope"])),
            frozenset(grants) if isinstance(grants, list) else frozenset(),
            site=claims.get("site"),
            purpose=purpose,
            patient=claims.get("patient"),
            jurisdiction=jurisdiction,
            client_id=claims.get("client_id") or (subject if kind == "client" else None),
        )


class AccountJurisdictions:
    """The jurisdiction of each user account, cached per process for ``ttl`` seconds."""

    def __init__(self, engine: Any, ttl: float = 30.0, clock=time.monotonic):
        self.engine = engine
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def jurisdiction(self, username: str) -> str | None:
        hit = self._cache.get(username)
        now = self.clock()
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        code = UserStore(self.engine).jurisdiction(username)
        with self._lock:
            self._cache[username] = (code, now)
        return code
