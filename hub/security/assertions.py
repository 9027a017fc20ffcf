"""``private_key_jwt`` client authentication (SMART Backend Services, RFC 7523 section 2.2).

A backend service registers the public half of its key as a JWK Set (``hub clients add
--jwks FILE``) or an https ``jwks_uri``, and authenticates at the token endpoint with a JWT it
signs itself (``client_assertion``). The assertion is accepted when:

* its header names ``RS384`` or ``ES384`` (no other algorithm, never ``none`` or HMAC) and, if
  it carries ``jku``, that is the registered ``jwks_uri`` (the hub never fetches a URL an
  assertion names);
* it verifies with one of the client's keys (the ``kid`` of the header, else every key of the
  algorithm's type);
* ``iss`` and ``sub`` are both the client id, ``aud`` is the token endpoint's URL, ``exp`` is in
  the future and at most five minutes away, and ``jti`` has not been seen before from this
  client: the ``jti`` is stored until the assertion expires (``assertion_jti``, shared by every
  process), so a replay is refused, two concurrent ones included.

``jwks_uri`` fetching is restricted against server-side request forgery: https only, hosts
that resolve to loopback, private or link-local addresses refused, no redirects, a size limit
and a timeout, unless the URL starts with a prefix listed in ``JWKS_URI_ALLOWED``. A fetched
set is cached for ``JWKS_CACHE_SECONDS`` and fetched again, at most once a minute, when an
assertion names a ``kid`` the cached set lacks (the partner rotated its key).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

import jwt

from hub.storage.accounts import JtiStore

if TYPE_CHECKING:
    from hub.security.clients import Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
KEY_TYPES = {"RS384": "RSA", "ES384": "EC"}
MAX_LIFETIME = 300  # seconds between now and an assertion's exp (SMART Backend Services)
LEEWAY = 5  # seconds of clock skew tolerated
MAX_JWKS_BYTES = 64 * 1024
FETCH_TIMEOUT = 5.0
REFETCH_AFTER = 60.0  # seconds between fetches for an unknown kid


class InvalidClient(Exception):
    """The assertion does not authenticate a client (the OAuth error ``invalid_client``)."""

    def __init__(self, description: str, client_id: str | None = None):
        super().__init__(description)
        self.description = description
        self.client_id = client_id


def check_jwks(jwks: Any) -> None:
    """Raise ``ValueError`` unless ``jwks`` is a JWK Set of public RSA or EC keys."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError('a JWK Set is a JSON object {"keys": [...]} with at least one key')
    for key in jwks["keys"]:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ValueError("each key must be an RSA or EC JWK")
        if any(private in key for private in ("d", "p", "q", "dp", "dq", "qi")):
            raise ValueError("the JWK Set holds a private key: register only the public keys")
        try:
            jwt.PyJWK(key, "RS384" if key["kty"] == "RSA" else "ES384")
        except jwt.PyJWTError as err:
            raise ValueError(f"key {key.get('kid')!r} is not usable: {err}") from None


def jwks_uri_problem(uri: str, allowed: Iterable[str]) -> str | None:
    """Why the hub will not fetch ``uri`` (``None``: it may). ``allowed``: URL prefixes
    fetched even when plain http or on a private network."""
    if any(uri.startswith(prefix) for prefix in allowed if prefix):
        return None
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "https" or not parts.hostname:
        return "only https URLs are fetched (or a prefix listed in JWKS_URI_ALLOWED)"
    return None


def _public_host(host: str, port: int) -> str | None:
    """Why ``host`` may not be contacted: it resolves to an internal address."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as err:
        return f"the host does not resolve ({err})"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return f"the host resolves to a non-public address ({address})"
    return None


class JwksCache:
    """JWK Sets fetched from ``jwks_uri``, cached per process."""

    def __init__(
        self,
        ttl: float = 300.0,
        allowed: Iterable[str] = (),
        fetch: Callable[[str], bytes] | None = None,
        clock=time.monotonic,
    ):
        self.ttl = ttl
        self.allowed = tuple(p for p in allowed if p)
        self.clock = clock
        self._fetch = fetch or _http_get
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[dict[str, Any], float]] = {}

    def get(self, uri: str, want_kid: str | None = None) -> dict[str, Any]:
        """The JWK Set at ``uri``: cached, or fetched again when stale or lacking ``want_kid``."""
        hit = self._sets.get(uri)
        now = self.clock()
        if hit is not None:
            jwks, at = hit
            fresh = now - at < self.ttl
            known = want_kid is None or any(k.get("kid") == want_kid for k in jwks["keys"])
            if fresh and (known or now - at < REFETCH_AFTER):
                return jwks
        problem = jwks_uri_problem(uri, self.allowed)
        if problem is None and not any(uri.startswith(p) for p in self.allowed):
            parts = urllib.parse.urlsplit(uri)
            problem = _public_host(parts.hostname or "", parts.port or 443)
        if problem:
            raise InvalidClient(f"The client's jwks_uri is not fetched: {problem}")
        try:
            jwks = json.loads(self._fetch(uri))
            check_jwks(jwks)
        except (OSError, ValueError) as err:
            raise InvalidClient(f"The client's JWK Set could not be read: {err}") from None
        with self._lock:
            self._sets[uri] = (jwks, now)
        return jwks


def _http_get(uri: str) -> bytes:
    import requests

    try:
        with requests.get(
            uri, timeout=FETCH_TIMEOUT, allow_redirects=False, stream=True
        ) as response:
            if response.status_code != 200:
                raise OSError(f"HTTP {response.status_code}")
            body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
    except requests.RequestException as err:
        raise OSError(str(err)) from None
    if len(body) > MAX_JWKS_BYTES:
        raise OSError(f"larger than {MAX_JWKS_BYTES} bytes")
    return body


def verify(
    assertion: str,
    *,
    lookup: Callable[[str], Client | None],
    token_url: str,
    jwks_cache: JwksCache,
    engine: Any,
    now: float | None = None,
) -> Client:
    """The client ``assertion`` authenticates; raises :class:`InvalidClient` otherwise."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise InvalidClient("client_assertion is not a JWT") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidClient(f"client_assertion must be signed with {' or '.join(ALGORITHMS)}")
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or not client_id:
        raise InvalidClient("client_assertion has no iss (the client id)")
    client = lookup(client_id)
    if client is None or not client.active or not client.asymmetric:
        raise InvalidClient("Unknown client, revoked, or without registered keys", client_id)
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_uri:
        raise InvalidClient(
            "The assertion's jku is not the client's registered jwks_uri", client_id
        )
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    jwks = client.jwks if client.jwks is not None else jwks_cache.get(client.jwks_uri or "", kid)
    keys = [
        k
        for k in jwks["keys"]
        if k.get("kty") == KEY_TYPES[alg]
        and (kid is None or k.get("kid") == kid)
        and k.get("alg") in (None, alg)
    ]
    if not keys:
        raise InvalidClient(f"No registered {KEY_TYPES[alg]} key matches kid {kid!r}", client_id)
    claims = None
    for key in keys:
        try:
            claims = jwt.decode(
                assertion,
                jwt.PyJWK(key, alg).key,
                algorithms=[alg],
                audience=token_url,
                leeway=LEEWAY,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise InvalidClient("client_assertion has expired", client_id) from None
        except jwt.InvalidAudienceError:
            raise InvalidClient(
                f"client_assertion's aud must be the token endpoint {token_url}", client_id
            ) from None
        except jwt.PyJWTError as err:
            raise InvalidClient(f"client_assertion is not valid: {err}", client_id) from None
    if claims is None:
        raise InvalidClient("client_assertion's signature does not verify", client_id)
    if claims["sub"] != client_id:
        raise InvalidClient("client_assertion's sub must equal its iss (the client id)", client_id)
    now = time.time() if now is None else now
    exp = claims["exp"]
    if not isinstance(exp, (int, float)) or exp > now + MAX_LIFETIME + LEEWAY:
        raise InvalidClient(
            f"client_assertion's exp is more than {MAX_LIFETIME} s in the future", client_id
        )
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise InvalidClient(
            "client_assertion's jti must be a string of 1-255 characters", client_id
        )
    expires = dt.datetime.fromtimestamp(exp + LEEWAY, dt.UTC)
    if not JtiStore(engine).first_use(f"{client_id} {jti}", expires, dt.datetime.now(dt.UTC)):
        raise InvalidClient("client_assertion's jti was used before (replay)", client_id)
    return client
