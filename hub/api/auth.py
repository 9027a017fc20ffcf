"""OAuth2 token endpoint and the SMART discovery document.

Grants: ``client_credentials`` (site systems and backend services), ``authorization_code``
and ``refresh_token`` (patient-facing apps, :mod:`hub.api.authorize` and
:mod:`hub.security.smart`). Clients authenticate with a secret (``client_secret_basic``,
``client_secret_post``), a signed assertion (``private_key_jwt``,
:mod:`hub.security.assertions`), or, public apps, with their ``client_id`` and PKCE alone.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse

import jwt
from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from hub import audit
from hub.api.context import get_hub
from hub.outcomes import OperationOutcomeError
from hub.security import assertions
from hub.security import clients
from hub.security import lockout
from hub.security import smart
from hub.security.scopes import negotiate
from hub.storage.db import reading

bp = Blueprint("auth", __name__)

SCOPES_SUPPORTED = [
    "system/*.cruds",
    "system/*.rs",
    "user/*.cruds",
    "user/*.rs",
    "patient/*.rs",
    "patient/*.read",
    "launch/patient",
    "openid",
    "fhirUser",
    "offline_access",
]
GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")
CAPABILITIES = [
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-standalone-patient",
    "permission-patient",
    "permission-offline",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
]


def _issuer_base() -> str:
    configured = get_hub().config.get("BASE_URL")
    if configured:
        return configured.rstrip("/").removesuffix("/fhir")
    return request.url_root.rstrip("/")  # with a trusted proxy's path prefix


def token_url() -> str:
    """The token endpoint's URL: the ``aud`` of client assertions."""
    return f"{_issuer_base()}/auth/token"


def fhir_base() -> str:
    """The FHIR base URL: the ``aud`` of authorization requests."""
    return f"{_issuer_base()}/fhir"


@bp.get("/.well-known/smart-configuration")
@bp.get("/fhir/.well-known/smart-configuration")
def smart_configuration():
    base = _issuer_base()
    return jsonify(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/auth/authorize",
            "token_endpoint": f"{base}/auth/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(assertions.ALGORITHMS),
            "grant_types_supported": list(GRANT_TYPES),
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": CAPABILITIES,
        }
    )


@bp.get("/.well-known/openid-configuration")
@bp.get("/fhir/.well-known/openid-configuration")
def openid_configuration():
    """OpenID Connect discovery: where apps find the keys that verify ID tokens."""
    base = _issuer_base()
    return jsonify(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/auth/authorize",
            "token_endpoint": f"{base}/auth/token",
            "jwks_uri": f"{base}/auth/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "fhirUser"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
            "code_challenge_methods_supported": ["S256"],
        }
    )


@bp.get("/auth/jwks")
def jwks():
    """The public keys of ID tokens."""
    return jsonify(get_hub().security.keys.public_jwks())


def _oauth_error(status: int, error: str, description: str, basic_challenge: bool = False):
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    if basic_challenge:
        response.headers["WWW-Authenticate"] = 'Basic realm="fhirhub"'
    return response


def _client_credentials() -> tuple[str | None, str | None, str]:
    """(client_id, secret, method) from the Basic header or the form (RFC 6749 2.3.1)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None, "client_secret_basic"
        cid, _, secret = raw.partition(":")
        return (
            urllib.parse.unquote_plus(cid),
            urllib.parse.unquote_plus(secret),
            "client_secret_basic",
        )
    return request.form.get("client_id"), request.form.get("client_secret"), "client_secret_post"


def _lockout_refusal(hub, client_id: str, keys) -> Response | None:
    """429 while the client id or the address is locked out (checked before any credential)."""
    state = lockout.check(hub.engine, keys)
    if not state.retry_after:
        return None
    # Refused before the credential is checked: a right one does not end a lockout.
    _audit_login(hub, client_id[:100], "4", "refused: locked out after failed authentications")
    response = _oauth_error(
        429, "invalid_client", f"Too many failed authentications; retry in {state.retry_after} s"
    )
    response.headers["Retry-After"] = str(state.retry_after)
    return response


def _failed(hub, client_id: str, keys, text: str) -> None:
    who = {"who": f"client {client_id[:100]}", "client": client_id[:100]}
    who["address"] = request.remote_addr
    event = audit.build_event(interaction="login", outcome="4", description=text[:2000], **who)
    lockout.failed(hub.engine, keys, hub.security.client_lockout, event, who)


def _authenticate_client(hub, grant_type: str) -> clients.Client | Response:
    """The client of a token request, or the OAuth error to answer."""
    policy = hub.security.client_lockout
    assertion_type = request.form.get("client_assertion_type")
    assertion = request.form.get("client_assertion")
    if assertion_type is not None or assertion is not None:
        if assertion_type != assertions.ASSERTION_TYPE or not assertion:
            return _oauth_error(
                400,
                "invalid_request",
                f"client_assertion_type must be {assertions.ASSERTION_TYPE}"
                " with a client_assertion",
            )
        try:
            claimed = str(jwt.decode(assertion, options={"verify_signature": False}).get("iss"))
        except jwt.PyJWTError:
            claimed = "(not a JWT)"
        keys = policy.keys(claimed, request.remote_addr)
        refusal = _lockout_refusal(hub, claimed, keys)
        if refusal is not None:
            return refusal
        try:
            client = assertions.verify(
                assertion,
                lookup=_client_by_id,
                token_url=token_url(),
                jwks_cache=hub.security.jwks,
                engine=hub.engine,
            )
        except assertions.InvalidClient as err:
            _failed(hub, claimed, keys, f"invalid client assertion: {err.description}")
            return _oauth_error(401, "invalid_client", err.description)
        lockout.clear(hub.engine, keys)
        return client
    client_id, secret, _method = _client_credentials()
    if client_id and not secret and grant_type != "client_credentials":
        # A public app: its client_id alone (PKCE or its refresh token proves the rest).
        found = _client_by_id(client_id)
        if found is None or not found.active or not found.public:
            return _oauth_error(
                401, "invalid_client", "Only a public app may omit client authentication", True
            )
        return found
    if not client_id or not secret:
        return _oauth_error(401, "invalid_client", "Client authentication is required", True)
    keys = policy.keys(client_id, request.remote_addr)
    refusal = _lockout_refusal(hub, client_id, keys)
    if refusal is not None:
        return refusal
    with reading(hub.engine) as conn:
        client = clients.authenticate(conn, client_id, secret)
    if client is None:
        _failed(hub, client_id, keys, "invalid client credentials")
        return _oauth_error(401, "invalid_client", "Unknown client or wrong secret", True)
    lockout.clear(hub.engine, keys)
    return client


def _client_by_id(client_id: str) -> clients.Client | None:
    from hub.storage.accounts import ClientStore

    with reading(get_hub().engine) as conn:
        row = ClientStore.by_id(conn, client_id)
    return clients.get_client_row(row) if row is not None else None


@bp.post("/auth/token")
def token():
    hub = get_hub()
    if request.mimetype != "application/x-www-form-urlencoded":
        return _oauth_error(
            400, "invalid_request", "Send the request as application/x-www-form-urlencoded"
        )
    grant_type = request.form.get("grant_type")
    if grant_type not in GRANT_TYPES:
        return _oauth_error(
            400, "unsupported_grant_type", f"grant_type must be one of {', '.join(GRANT_TYPES)}"
        )
    client = _authenticate_client(hub, grant_type)
    if isinstance(client, Response):
        return client
    if grant_type == "client_credentials":
        return _client_credentials_grant(hub, client)
    return _app_grant(hub, client, grant_type)


def _client_credentials_grant(hub, client: clients.Client):
    if client.public:
        return _oauth_error(
            400, "unauthorized_client", "A public app cannot use the client-credentials grant"
        )
    requested = request.form.get("scope")
    refused: list[str] = []
    if requested and requested.strip():
        scope, refused = negotiate(requested, client.scopes)
        if not scope:
            shown = requested[:2000]  # echoed in the audit trail and the error
            _audit_login(hub, client.client_id, "4", f"scopes not granted: {shown}")
            return _oauth_error(
                400,
                "invalid_scope",
                f"None of the requested scopes is granted to this client: {shown}"
                f" (granted: {client.scopes})",
            )
    else:
        scope = client.scopes
    lifetime = hub.security.token_lifetime
    access_token = hub.security.mint(
        client.client_id, scope, "client", client.site, client.grants, lifetime
    )
    left_out = f" (not granted: {' '.join(refused)[:2000]})" if refused else ""
    _audit_login(hub, client.client_id, "0", f"token issued for {scope}{left_out}", client.site)
    response = jsonify(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
    )
    return response


def _app_grant(hub, client: clients.Client, grant_type: str):
    """``authorization_code`` and ``refresh_token``: a person's app, in the person's name."""
    try:
        if grant_type == "authorization_code":
            grant = smart.exchange_code(
                hub,
                client,
                request.form.get("code", ""),
                request.form.get("redirect_uri"),
                request.form.get("code_verifier"),
            )
        else:
            grant = smart.refresh(
                hub, client, request.form.get("refresh_token", ""), request.form.get("scope")
            )
        hub.security.patient_compartment(grant.consent, client.client_id, grant.patient)
    except smart.GrantError as err:
        _audit_login(hub, client.client_id, "4", f"{grant_type} refused: {err.description}")
        return _oauth_error(err.status, err.error, err.description)
    except OperationOutcomeError:  # the consent no longer holds (a 401 for bearer tokens)
        _audit_login(hub, client.client_id, "4", f"{grant_type} refused: consent not in force")
        return _oauth_error(400, "invalid_grant", "The person's consent is no longer in force")
    lifetime = hub.security.token_lifetime
    fhir_user = f"Patient/{grant.patient}"
    access_token = hub.security.mint(
        grant.username,
        grant.scope,
        "user",
        None,
        client.grants,
        lifetime,
        client_id=client.client_id,
        patient=grant.patient,
        consent=grant.consent,
    )
    body = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": grant.scope,
        "patient": grant.patient,
    }
    scopes = grant.scope.split()
    if "offline_access" in scopes or "online_access" in scopes:
        body["refresh_token"] = smart.new_refresh_token(hub, grant)
    if "openid" in scopes and "fhirUser" in scopes:
        body["id_token"] = hub.security.id_token(
            grant.username, client.client_id, fhir_user, grant.nonce, _issuer_base()
        )
    _audit_login(
        hub,
        client.client_id,
        "0",
        f"{grant_type}: token issued to {grant.username} for {grant.scope}",
        who=grant.username,
    )
    return jsonify(body)


def _audit_login(
    hub, client_id: str, outcome: str, text: str, site: str | None = None, who: str | None = None
) -> None:
    audit.record_now(
        hub.engine,
        audit.build_event(
            interaction="login",
            outcome=outcome,
            who=who or f"client {client_id}",
            client=client_id,
            site=site,
            description=text,
            address=request.remote_addr,
        ),
    )
