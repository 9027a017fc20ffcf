"""SMART App Launch for patient-facing apps: the authorization request, consent, codes, tokens.

The standalone launch (SMART App Launch 2.x, ``docs/smart.md``):

1. the app sends the person to ``/auth/authorize`` with ``response_type=code``, its
   ``client_id``, a registered ``redirect_uri`` (matched exactly), ``scope``, ``state``,
   ``aud`` (the FHIR base URL) and a PKCE ``code_challenge`` (``S256``; ``plain`` is refused);
   :func:`check_request` decides whether the request may proceed and what it may be granted;
2. the person signs in with their own account (``hub users add NAME --patient ID``) and
   approves the app: :func:`approve` records the permission as a FHIR ``Consent`` (scope
   ``patient-privacy``, ``provision.type`` ``permit``, the app as ``provision.actor``, a
   period of ``SMART_CONSENT_DAYS``) and issues a one-time code;
3. the app exchanges the code with its ``code_verifier`` (:func:`exchange_code`) for an access
   token whose ``patient`` is the person's Patient, plus a refresh token for
   ``offline_access`` (:func:`refresh`; each refresh token is used once and replaced).

Every token of the flow names its Consent; :func:`consent_holds` is checked on each use
(``hub.security.services.Security.authenticate``), so a Consent made inactive, ended or
deleted stops the app at once. Only ``patient/`` data scopes (read and search) and the
scopes that name no resource are ever granted to a person's app.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import orjson

from hub.codesystems import OAUTH_CLIENT
from hub.security.principal import Principal
from hub.security.principal import acting_as
from hub.security.scopes import compile_scopes
from hub.security.scopes import negotiate
from hub.security.scopes import parse_scope
from hub.storage.accounts import ClientStore
from hub.storage.accounts import GrantRow
from hub.storage.accounts import GrantStore

if TYPE_CHECKING:
    from hub.kernel import Hub
    from hub.security.clients import Client
    from hub.security.users import User

# Scopes that name no resource and that a person's app may be granted.
PERSON_NON_DATA = frozenset(
    ("openid", "fhirUser", "profile", "launch/patient", "offline_access", "online_access")
)
CODE_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43,128}$")
CODE_VERIFIER_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOINC = "http://loinc.org"


class AuthorizeError(Exception):
    """An authorization request refused. ``redirect``: whether the error may be sent to the
    app's redirect URI (RFC 6749 4.1.2.1: never when the client or the URI is in doubt)."""

    def __init__(self, error: str, description: str, redirect: bool = True):
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect = redirect
        self.redirect_uri: str | None = None  # the registered URI the error goes back to


class GrantError(Exception):
    """A token request refused (an OAuth error, ``invalid_grant`` and the like)."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclasses.dataclass(frozen=True)
class AuthorizationRequest:
    """What an app asked for, checked, kept in the person's session until they decide."""

    client_id: str
    client_name: str
    redirect_uri: str
    scope: str  # what may be granted (the requested scopes the app and a person may have)
    state: str
    code_challenge: str
    nonce: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def person_scopes(scope: str) -> str:
    """The scopes of ``scope`` a person's app may hold: ``patient/`` read and search, and the
    scopes that name no resource (a person's app never writes and never acts as a user)."""
    kept = []
    for s in scope.split():
        parsed = parse_scope(s)
        if parsed is None:
            if s in PERSON_NON_DATA:
                kept.append(s)
        elif parsed[0] == "patient" and parsed[2] <= frozenset("rs"):
            kept.append(s)
    return " ".join(kept)


def check_request(conn, params: Mapping[str, str], fhir_base: str) -> AuthorizationRequest:
    """The authorization request of ``params``, checked; raises :class:`AuthorizeError`."""
    client_id = params.get("client_id") or ""
    row = ClientStore.by_id(conn, client_id) if client_id else None
    if row is None or row.revoked_at is not None:
        raise AuthorizeError("invalid_request", "Unknown or revoked client_id", redirect=False)
    registered = row.redirect_uris.split()
    redirect_uri = params.get("redirect_uri") or ""
    if not redirect_uri and len(registered) == 1:
        redirect_uri = registered[0]
    if redirect_uri not in registered:
        raise AuthorizeError(
            "invalid_request",
            "redirect_uri is not one the app registered (they are matched exactly)",
            redirect=False,
        )
    try:
        return _check_rest(row, redirect_uri, params, fhir_base)
    except AuthorizeError as err:
        err.redirect_uri = redirect_uri
        raise


def _check_rest(row, redirect_uri: str, params: Mapping[str, str], fhir_base: str):
    if params.get("response_type") != "code":
        raise AuthorizeError("unsupported_response_type", "Only response_type=code is supported")
    if params.get("request") or params.get("request_uri"):
        raise AuthorizeError("request_not_supported", "Request objects are not supported")
    state = params.get("state") or ""
    # The request waits in the person's session cookie: its parts are kept short.
    if not state or len(state) > 256:
        raise AuthorizeError("invalid_request", "state is required (at most 256 characters)")
    if (params.get("aud") or "").rstrip("/") != fhir_base.rstrip("/"):
        raise AuthorizeError(
            "invalid_request", f"aud must be this server's FHIR base URL, {fhir_base}"
        )
    method = params.get("code_challenge_method") or ""
    challenge = params.get("code_challenge") or ""
    if method != "S256":
        raise AuthorizeError(
            "invalid_request", "PKCE is required with code_challenge_method=S256 (plain is refused)"
        )
    if not CODE_CHALLENGE_RE.match(challenge):
        raise AuthorizeError(
            "invalid_request", "code_challenge must be 43-128 base64url characters"
        )
    requested = " ".join((params.get("scope") or "").split())
    granted, _left_out = negotiate(requested, row.scopes)
    scope = person_scopes(granted)
    if not any(parse_scope(s) for s in scope.split()):
        raise AuthorizeError(
            "invalid_scope",
            "None of the requested patient/ scopes is granted to this app"
            f" (it may ask for: {person_scopes(row.scopes) or 'nothing'})",
        )
    nonce = params.get("nonce") or None
    return AuthorizationRequest(
        row.client_id,
        row.name,
        redirect_uri,
        scope,
        state,
        challenge,
        nonce[:256] if nonce else None,
    )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def consent_resource(
    patient: str, client_id: str, client_name: str, now: dt.datetime, days: int
) -> dict[str, Any]:
    """The FHIR Consent a person gives when approving an app."""
    stamp = now.replace(microsecond=0).isoformat()
    end = (now + dt.timedelta(days=days)).replace(microsecond=0).isoformat()
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": stamp,
        "performer": [{"reference": f"Patient/{patient}"}],
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": stamp, "end": end},
            "actor": [
                {
                    "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                    "reference": {
                        "type": "Device",
                        "identifier": {"system": OAUTH_CLIENT, "value": client_id},
                        "display": client_name,
                    },
                }
            ],
            "action": [{"coding": [{"system": CONSENT_ACTION, "code": "access"}]}],
        },
    }


def consent_holds(content: str | None, client_id: str, patient: str, now: dt.datetime) -> bool:
    """Whether the stored Consent ``content`` still lets app ``client_id`` read ``patient``'s
    records: active, a permit for this app, of this patient, within its period."""
    if not content:
        return False
    consent = orjson.loads(content)
    if consent.get("status") != "active":
        return False
    if (consent.get("patient") or {}).get("reference") != f"Patient/{patient}":
        return False
    provision = consent.get("provision") or {}
    if provision.get("type") != "permit":
        return False
    actors = [
        ((a.get("reference") or {}).get("identifier") or {})
        for a in provision.get("actor") or ()
        if isinstance(a, dict)
    ]
    if not any(i.get("system") == OAUTH_CLIENT and i.get("value") == client_id for i in actors):
        return False
    period = provision.get("period") or {}
    return _within(period.get("start"), period.get("end"), now)


def _within(start: Any, end: Any, now: dt.datetime) -> bool:
    try:
        if isinstance(start, str) and _instant(start) > now:
            return False
        if isinstance(end, str) and _instant(end) <= now:
            return False
    except ValueError:
        return False
    return True


def _instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def approve(hub: Hub, user: User, request: AuthorizationRequest, address: str | None) -> str:
    """Record the person's Consent for the app and issue a one-time code; returns the code."""
    from hub.fhir.service import WriteOptions

    assert user.patient is not None
    now = dt.datetime.now(dt.UTC)
    consent = consent_resource(
        user.patient, request.client_id, request.client_name, now, hub.security.smart_consent_days
    )
    person = Principal(
        user.username, "user", compile_scopes("user/Consent.c"), client_id=request.client_id
    )
    with acting_as(person, {"interaction": "create", "address": address}):
        done = hub.service.create("Consent", consent, WriteOptions(prefer_return="minimal"), "")
    consent_id = done.stored.res_id
    code = secrets.token_urlsafe(32)
    GrantStore(hub.engine).add(
        _hash(code),
        now,
        kind="code",
        client_id=request.client_id,
        username=user.username,
        patient=user.patient,
        scope=request.scope,
        consent=consent_id,
        redirect_uri=request.redirect_uri,
        code_challenge=request.code_challenge,
        nonce=request.nonce,
        expires_at=now + dt.timedelta(seconds=hub.security.smart_code_seconds),
    )
    return code


def exchange_code(
    hub: Hub, client: Client, code: str, redirect_uri: str | None, verifier: str | None
) -> GrantRow:
    """The grant of ``code`` (spent now); raises :class:`GrantError` (``invalid_grant``)."""
    if not code:
        raise GrantError("invalid_request", "code is required")
    if not verifier or not CODE_VERIFIER_RE.match(verifier):
        raise GrantError("invalid_request", "code_verifier is required (43-128 characters)")
    grant = GrantStore(hub.engine).spend(_hash(code), "code", dt.datetime.now(dt.UTC))
    if grant is None:
        raise GrantError("invalid_grant", "The code is unknown, expired or already used")
    if grant.client_id != client.client_id:
        raise GrantError("invalid_grant", "The code was issued to another client")
    if (redirect_uri or "") != (grant.redirect_uri or ""):
        raise GrantError("invalid_grant", "redirect_uri differs from the authorization request's")
    digest = hashlib.sha256(verifier.encode()).digest()
    if base64.urlsafe_b64encode(digest).decode().rstrip("=") != grant.code_challenge:
        raise GrantError("invalid_grant", "code_verifier does not match the code_challenge")
    return grant


def refresh(hub: Hub, client: Client, refresh_token: str, scope: str | None) -> GrantRow:
    """The grant of ``refresh_token`` (spent now: a new one is issued with the new access
    token), narrowed to ``scope`` when given; raises :class:`GrantError`."""
    if not refresh_token:
        raise GrantError("invalid_request", "refresh_token is required")
    grant = GrantStore(hub.engine).spend(_hash(refresh_token), "refresh", dt.datetime.now(dt.UTC))
    if grant is None or grant.client_id != client.client_id:
        raise GrantError("invalid_grant", "The refresh token is unknown, expired or already used")
    if scope and scope.strip():
        narrowed, refused = negotiate(scope, grant.scope)
        if refused or not narrowed:
            raise GrantError(
                "invalid_scope", f"Not part of the original grant: {' '.join(refused)}"
            )
        grant = dataclasses.replace(grant, scope=narrowed)
    return grant


def new_refresh_token(hub: Hub, grant: GrantRow) -> str:
    """A refresh token carrying ``grant`` on (stored as a hash)."""
    token = secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    GrantStore(hub.engine).add(
        _hash(token),
        now,
        kind="refresh",
        client_id=grant.client_id,
        username=grant.username,
        patient=grant.patient,
        scope=grant.scope,
        consent=grant.consent,
        redirect_uri=None,
        code_challenge=None,
        nonce=None,
        expires_at=now + dt.timedelta(days=hub.security.smart_refresh_days),
    )
    return token
