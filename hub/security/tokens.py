"""Access tokens: HS256-signed JWTs with a rotatable key set.

Signing keys live in the ``signing_key`` table (one HMAC secret per ``kid``).
The newest unretired key signs; every unretired key verifies, so after
``hub keys rotate`` tokens signed with the old key keep working until that key
is retired (``hub keys retire KID``) or they expire. Each process caches the
decoded key set and reloads it when a token names an unknown ``kid`` (at most
once a second) or after ``KEY_CACHE_SECONDS``, so verifying a token costs one
HMAC and no database round trip.

Claims: ``iss``, ``sub`` (client id or username), ``iat``, ``exp``, ``jti``,
``scope``, ``kind`` (client or user), ``site``, ``grants`` (label grants),
optionally ``purpose`` and ``patient``; a patient-facing app's token also
``client_id`` and ``consent`` (``hub.security.smart``).

OpenID Connect ID tokens, which apps verify themselves, are signed with an RSA
key (``RS256``) kept in the same table; its public half is served at
``/auth/jwks``. The RSA key is made on first use and never signs access tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jwt

from hub import outcomes
from hub.storage.accounts import SigningKeyStore

ALGORITHM = "HS256"
ID_TOKEN_ALGORITHM = "RS256"
ISSUER = "fhirhub"
DEFAULT_LIFETIME = 3600


class KeySet:
    """The signing keys of one database, cached in this process."""

    def __init__(self, engine: Any, cache_seconds: float = 60.0, clock=time.monotonic):
        self.engine = engine
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._rsa: dict[str, str] = {}  # kid -> PEM private key (ID tokens)
        self._signing: str | None = None
        self._loaded_at = float("-inf")
        self._miss_at = float("-inf")

    def load(self) -> None:
        now = dt.datetime.now(dt.UTC)
        rows = SigningKeyStore(self.engine).all()
        keys = {}
        rsa_keys = {}
        signing = None
        for row in rows:
            if row.retired_at is not None and row.retired_at <= now:
                continue
            if row.algorithm == ID_TOKEN_ALGORITHM:
                rsa_keys[row.kid] = row.secret
                continue
            keys[row.kid] = _unb64(row.secret)
            signing = row.kid
        with self._lock:
            self._keys, self._signing, self._loaded_at = keys, signing, self.clock()
            self._rsa = rsa_keys

    def _fresh(self) -> None:
        if self.clock() - self._loaded_at > self.cache_seconds:
            self.load()

    def key(self, kid: str) -> bytes | None:
        self._fresh()
        key = self._keys.get(kid)
        if key is None and self.clock() - self._miss_at > 1.0:
            # A key rotated in by another process: reload, but not for every bad token.
            self._miss_at = self.clock()
            self.load()
            key = self._keys.get(kid)
        return key

    def signing_key(self) -> tuple[str, bytes]:
        self._fresh()
        if self._signing is None:
            self.rotate()
        assert self._signing is not None
        return self._signing, self._keys[self._signing]

    def id_token_key(self) -> tuple[str, str]:
        """``(kid, PEM private key)`` of the newest RSA key, made on first use."""
        self._fresh()
        if not self._rsa:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            pem = (
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
                .private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                .decode()
            )
            SigningKeyStore(self.engine).add(
                uuid.uuid4().hex[:16], ID_TOKEN_ALGORITHM, pem, dt.datetime.now(dt.UTC)
            )
            self.load()
        kid = list(self._rsa)[-1]
        return kid, self._rsa[kid]

    def public_jwks(self) -> dict[str, Any]:
        """The public keys that verify ID tokens, as a JWK Set."""
        import json

        from cryptography.hazmat.primitives import serialization

        self.id_token_key()
        keys = []
        for kid, pem in self._rsa.items():
            public = serialization.load_pem_private_key(pem.encode(), None).public_key()
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
            keys.append({**jwk, "kid": kid, "alg": ID_TOKEN_ALGORITHM, "use": "sig"})
        return {"keys": keys}

    def rotate(self) -> str:
        """Add a new signing key; older keys keep verifying until retired."""
        kid = uuid.uuid4().hex[:16]
        SigningKeyStore(self.engine).add(
            kid, ALGORITHM, _b64(secrets.token_bytes(32)), dt.datetime.now(dt.UTC)
        )
        self.load()
        return kid

    def retire(self, kid: str) -> bool:
        retired = SigningKeyStore(self.engine).retire(kid, dt.datetime.now(dt.UTC))
        self.load()
        return retired

    def listing(self) -> list[dict[str, Any]]:
        rows = SigningKeyStore(self.engine).all()
        return [
            {
                "kid": r.kid,
                "algorithm": r.algorithm,
                "created": r.created_at.isoformat(),
                "retired": r.retired_at.isoformat() if r.retired_at else None,
            }
            for r in rows
        ]


def mint(keys: KeySet, claims: dict[str, Any], lifetime: int = DEFAULT_LIFETIME) -> str:
    """A signed token carrying ``claims`` (``sub``, ``scope``, ...) for ``lifetime`` seconds."""
    kid, key = keys.signing_key()
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "iat": now,
        "exp": now + int(lifetime),
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid})


def id_token(keys: KeySet, claims: dict[str, Any], lifetime: int = DEFAULT_LIFETIME) -> str:
    """An OpenID Connect ID token (``iss``, ``sub``, ``aud``, ``fhirUser``...) signed RS256."""
    kid, pem = keys.id_token_key()
    now = int(time.time())
    payload = {"iat": now, "exp": now + int(lifetime), **claims}
    return jwt.encode(payload, pem, algorithm=ID_TOKEN_ALGORITHM, headers={"kid": kid})


class VerifiedTokens:
    """The claims of tokens this process has verified, keyed by the whole token string.

    A client sends the same token on every request until it expires; checking its
    signature again each time (base64, JSON, HMAC: about half a millisecond) proves
    nothing new. Only the signature and the claims' shape are taken from the cache:
    :func:`decode` still checks on every use that the token has not expired and that
    its key is not retired, and the caller checks the client's status, so a revoked
    client or an expired token is refused exactly as without the cache. At most
    ``size`` tokens are kept (the oldest go first); 0 turns the cache off.
    """

    def __init__(self, size: int = 1024, clock=time.time):
        self.size = max(0, int(size))
        self.clock = clock
        self._lock = threading.Lock()
        # token -> (claims, kid, exp)
        self._claims: dict[str, tuple[Mapping[str, Any], str, int]] = {}

    def get(self, token: str) -> tuple[Mapping[str, Any], str, int] | None:
        return self._claims.get(token)

    def put(self, token: str, claims: Mapping[str, Any], kid: str) -> None:
        if self.size <= 0:
            return
        with self._lock:
            while len(self._claims) >= self.size:
                # Dicts keep insertion order: the first key is the oldest token.
                self._claims.pop(next(iter(self._claims)), None)
            self._claims[token] = (claims, kid, int(claims["exp"]))

    def forget(self, token: str) -> None:
        with self._lock:
            self._claims.pop(token, None)

    def __len__(self) -> int:
        return len(self._claims)


def decode(
    keys: KeySet, token: str, leeway: int = 5, verified: VerifiedTokens | None = None
) -> Mapping[str, Any]:
    """The verified claims of ``token``; 401 when it is malformed, unsigned by us or expired.

    With ``verified``, a token verified before is not verified again: its expiry and
    its key (retired keys stop verifying) are still checked on every use.
    """
    hit = verified.get(token) if verified is not None else None
    if hit is not None:
        claims, kid, exp = hit
        if keys.key(kid) is not None:
            # PyJWT's rule for ``exp``, with the same leeway.
            if exp <= verified.clock() - leeway:
                verified.forget(token)
                raise unauthorized("The token has expired", "invalid_token")
            return claims
        verified.forget(token)  # its key was retired: verified afresh, and refused
    claims, kid = _verify(keys, token, leeway)
    if verified is not None:
        # Read-only: the cached claims are shared by every request that sends the token.
        frozen = MappingProxyType(claims)
        verified.put(token, frozen, kid)
        return frozen
    return claims


def _verify(keys: KeySet, token: str, leeway: int) -> tuple[dict[str, Any], str]:
    """The claims and key id of ``token``, its signature and claims checked in full."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise unauthorized("The bearer token is not a JWT", "invalid_token") from None
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str):
        raise unauthorized("The token's algorithm or key id is not accepted", "invalid_token")
    key = keys.key(kid)
    if key is None:
        raise unauthorized("The token was signed with an unknown or retired key", "invalid_token")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            leeway=leeway,
            options={"require": ["exp", "iat", "sub", "scope"]},
        )
        return claims, kid
    except jwt.ExpiredSignatureError:
        raise unauthorized("The token has expired", "invalid_token") from None
    except jwt.PyJWTError as err:
        raise unauthorized(f"The token is not valid: {err}", "invalid_token") from None


def unauthorized(text: str, error: str | None = None) -> outcomes.OperationOutcomeError:
    """401 with an OperationOutcome and a ``WWW-Authenticate: Bearer`` challenge (RFC 6750)."""
    challenge = 'Bearer realm="fhirhub"'
    if error:
        description = text.replace('"', "'").replace("\\", "/")
        challenge += f', error="{error}", error_description="{description}"'
    err = outcomes.error(401, "login", text)
    err.headers = {**(err.headers or {}), "WWW-Authenticate": challenge}
    return err


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
