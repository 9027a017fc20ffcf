"""The security services of one hub: key set, client status cache, rate limiter, principals,
the JWK Sets of backend services and the consent behind patient-facing apps' tokens."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from typing import Any

from hub import outcomes
from hub.config import setting
from hub.lifetime.links import linked_patient_ids
from hub.security import lockout
from hub.security import tokens
from hub.security.assertions import JwksCache
from hub.security.clients import StatusCache
from hub.security.principal import DEFAULT_PURPOSE
from hub.security.principal import Principal
from hub.security.ratelimit import RateLimiter
from hub.security.scopes import compile_scopes
from hub.storage.accounts import UserStore
from hub.storage.db import reading

PURPOSE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,31}$")


class Security:
    """Per-hub security state (also used by the CLI, without Flask)."""

    def __init__(self, engine: Any, config: dict, repo: Any = None):
        self.engine = engine
        self.config = config
        self.repo = repo  # the resources (a patient-facing app's Consent is read on each use)
        self.keys = tokens.KeySet(engine, float(setting(config, "KEY_CACHE_SECONDS")))
        # Tokens verified before are not verified again (expiry and status still are).
        self.verified_tokens = tokens.VerifiedTokens(int(setting(config, "TOKEN_CACHE_SIZE")))
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
        self.jwks = JwksCache(
            float(setting(config, "JWKS_CACHE_SECONDS")),
            str(setting(config, "JWKS_URI_ALLOWED") or "").split(),
        )
        self.smart_code_seconds = int(setting(config, "SMART_CODE_SECONDS"))
        self.smart_refresh_days = int(setting(config, "SMART_REFRESH_DAYS"))
        self.smart_consent_days = int(setting(config, "SMART_CONSENT_DAYS"))

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

    def id_token(
        self, username: str, client_id: str, fhir_user: str, nonce: str | None, issuer: str
    ) -> str:
        """An OpenID Connect ID token for a person signed in to an app."""
        claims = {"iss": issuer, "sub": username, "aud": client_id, "fhirUser": fhir_user}
        if nonce:
            claims["nonce"] = nonce
        return tokens.id_token(self.keys, claims, self.token_lifetime)

    def authenticate(self, authorization: str | None, purpose_header: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer`` header; 401 when absent or invalid."""
        if not authorization:
            raise tokens.unauthorized("This endpoint needs a bearer token (POST /auth/token)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise tokens.unauthorized("Use an Authorization: Bearer token", "invalid_request")
        claims = tokens.decode(self.keys, token.strip(), verified=self.verified_tokens)
        kind = claims.get("kind", "client")
        subject = str(claims["sub"])
        if kind == "client" and not self.client_status.active(subject):
            raise tokens.unauthorized("The client has been revoked", "invalid_token")
        via = claims.get("client_id")
        if kind == "user" and isinstance(via, str) and not self.client_status.active(via):
            raise tokens.unauthorized("The app has been revoked", "invalid_token")
        linked: frozenset[str] = frozenset()
        consent = claims.get("consent")
        if consent is not None:
            linked = self.patient_compartment(str(consent), str(via), str(claims.get("patient")))
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
            linked=linked,
            consent=consent,
        )

    def patient_compartment(self, consent: str, client_id: str, patient: str) -> frozenset[str]:
        """The Patient records linked to ``patient``, when the Consent behind a patient-facing
        app's token still holds (read on every use: revoking it stops the app at once);
        401 when it does not."""
        from hub.security.smart import consent_holds

        with reading(self.engine) as conn:
            stored = self.repo.read("Consent", consent, conn) if self.repo is not None else None
            content = None if stored is None or stored.deleted else stored.content
            if not consent_holds(content, client_id, patient, dt.datetime.now(dt.UTC)):
                raise tokens.unauthorized(
                    "The person's consent for this app is no longer in force", "invalid_token"
                )
            return frozenset(linked_patient_ids(conn, patient)) - {patient}


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
