"""OAuth2 token endpoint (client credentials) and the SMART discovery document."""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from flask import Blueprint
from flask import jsonify
from flask import request

from hub import audit
from hub.api.context import get_hub
from hub.security import clients
from hub.security import lockout
from hub.security.scopes import negotiate
from hub.storage.db import reading

bp = Blueprint("auth", __name__)

SCOPES_SUPPORTED = ["system/*.cruds", "system/*.rs", "user/*.cruds", "user/*.rs"]


def _issuer_base() -> str:
    configured = get_hub().config.get("BASE_URL")
    if configured:
        return configured.rstrip("/").removesuffix("/fhir")
    return request.host_url.rstrip("/")


@bp.get("/.well-known/smart-configuration")
@bp.get("/fhir/.well-known/smart-configuration")
def smart_configuration():
    base = _issuer_base()
    return jsonify(
        {
            "issuer": base,
            "token_endpoint": f"{base}/auth/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": SCOPES_SUPPORTED,
            "capabilities": ["client-confidential-symmetric", "permission-v1", "permission-v2"],
            "response_types_supported": ["token"],
        }
    )


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


@bp.post("/auth/token")
def token():
    hub = get_hub()
    if request.mimetype != "application/x-www-form-urlencoded":
        return _oauth_error(
            400, "invalid_request", "Send the request as application/x-www-form-urlencoded"
        )
    if request.form.get("grant_type") != "client_credentials":
        return _oauth_error(
            400, "unsupported_grant_type", "Only grant_type=client_credentials is supported"
        )
    client_id, secret, _method = _client_credentials()
    if not client_id or not secret:
        return _oauth_error(401, "invalid_client", "Client authentication is required", True)
    policy = hub.security.client_lockout
    keys = policy.keys(client_id, request.remote_addr)
    state = lockout.check(hub.engine, keys)
    if state.retry_after:
        # Refused before the secret is checked: a right secret does not end a lockout.
        _audit_login(hub, client_id[:100], "4", "refused: locked out after failed authentications")
        response = _oauth_error(
            429,
            "invalid_client",
            f"Too many failed authentications; retry in {state.retry_after} s",
        )
        response.headers["Retry-After"] = str(state.retry_after)
        return response
    with reading(hub.engine) as conn:
        client = clients.authenticate(conn, client_id, secret)
    if client is None:
        who = {
            "who": f"client {client_id[:100]}",
            "client": client_id[:100],
            "address": request.remote_addr,
        }
        event = audit.build_event(
            interaction="login", outcome="4", description="invalid client credentials", **who
        )
        lockout.failed(hub.engine, keys, policy, event, who)
        return _oauth_error(401, "invalid_client", "Unknown client or wrong secret", True)
    if state.known:
        lockout.clear(hub.engine, keys)
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


def _audit_login(hub, client_id: str, outcome: str, text: str, site: str | None = None) -> None:
    audit.record_now(
        hub.engine,
        audit.build_event(
            interaction="login",
            outcome=outcome,
            who=f"client {client_id}",
            client=client_id,
            site=site,
            description=text,
            address=request.remote_addr,
        ),
    )
