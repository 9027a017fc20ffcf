"""The security layer of the Flask app: authentication, rate limits, audit, headers.

Before each request outside the open paths (``/fhir/metadata``, the discovery
documents, ``/auth/token`` and the web pages, which keep their own login
sessions) the bearer token is verified and the request's principal set; after
it, the request is audited unless its write transaction already recorded the
event. Responses get security headers (strict ones on ``/ui``).
"""

from __future__ import annotations

import logging

from flask import Flask
from flask import g
from flask import request
from flask.sessions import SecureCookieSessionInterface

from hub import outcomes
from hub.security import csrf
from hub.security import guard
from hub.security import logmask
from hub.security.auditing import request_event
from hub.security.principal import reset_current
from hub.security.principal import set_current

log = logging.getLogger("hub.security")

OPEN_PATHS = frozenset(
    (
        "/",
        "/fhir/metadata",
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
        "/fhir/openapi.json",
        "/auth/token",
        "/.well-known/openid-configuration",
        "/fhir/.well-known/openid-configuration",
        "/auth/jwks",
    )
)
# The pages of SMART App Launch (hub.api.authorize): a person's own login session.
AUTHORIZE_PATHS = frozenset(("/auth/authorize", "/auth/login", "/auth/consent"))
# Their headers: as strict as /ui's, but without form-action, which browsers also apply to the
# redirect that takes the person back to the app after the consent form.
AUTHORIZE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
        " script-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Non-FHIR operator APIs (raw payloads): hub.security.guard.require_operator.
OPERATOR_PREFIXES = ("/api/",)
# Prefixes served with their own authentication (web pages use login sessions).
OWN_AUTH_PREFIXES = ("/ui", "/static")

UI_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with nothing to open when no cookie came.

    API clients send no session cookie, yet Flask builds the cookie's signing
    serializer (key derivation included) for every request before finding that out;
    here a request without the cookie gets an empty session at once, as Flask would
    have given it.
    """

    def open_session(self, app, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    from hub.api.context import get_hub

    logmask.install()
    app.session_interface = CookieSessions()
    app.jinja_env.globals.setdefault("csrf_token", csrf.token)

    @app.before_request
    def _authenticate():
        path = request.path
        if path == "/auth/token" or (path == "/auth/login" and request.method == "POST"):
            # Secret and password guessing is throttled per network address (the caller is
            # not known yet).
            _throttle(get_hub().security.limiter.take(f"addr {request.remote_addr}"))
            return None
        if path in AUTHORIZE_PATHS:
            return None
        if path in OPEN_PATHS or path.startswith(OWN_AUTH_PREFIXES):
            return None
        hub = get_hub()
        info = classify(request.method, path)
        info["address"] = request.remote_addr
        g.hub_audit = info
        principal = hub.security.authenticate(
            request.headers.get("Authorization"), request.headers.get("X-Purpose-Of-Use")
        )
        g.hub_principal = principal
        g.hub_context = set_current(principal, info)
        _throttle(hub.security.limiter.take(principal.subject))
        if path.startswith(OPERATOR_PREFIXES):
            guard.require_operator(write=request.method not in ("GET", "HEAD"))
        return None

    @app.after_request
    def _audit_and_headers(response):
        info = g.get("hub_audit")
        if info is not None and not (info.get("audited") and response.status_code < 400):
            event = request_event(response.status_code, info, _failure_text(response))
            # Appended by the batching writer, not before the answer (hub.security.audit_writer).
            get_hub().audit_writer.submit(event)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path.startswith("/ui"):
            for name, value in UI_HEADERS.items():
                response.headers.setdefault(name, value)
        elif request.path.startswith("/auth"):
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
            if request.path in AUTHORIZE_PATHS:
                for name, value in AUTHORIZE_HEADERS.items():
                    response.headers.setdefault(name, value)
        return response

    @app.teardown_request
    def _reset(_exc):
        tokens = g.pop("hub_context", None)
        if tokens is not None:
            try:
                reset_current(tokens)
            except ValueError:  # set in another context (cannot happen in sync views)
                pass


def _throttle(wait: float) -> None:
    """429 with ``Retry-After`` when the caller's bucket is empty."""
    if wait <= 0:
        return
    retry = max(1, int(wait + 0.999))
    raise outcomes.OperationOutcomeError(
        outcomes.outcome(
            outcomes.issue("error", "throttled", f"Too many requests; retry in {retry} s")
        ),
        429,
        {"Retry-After": str(retry)},
    )


def _failure_text(response) -> str | None:
    if response.status_code < 400:
        return None
    return f"HTTP {response.status_code}"


def classify(method: str, path: str) -> dict:
    """The audit interaction and entities of a request, from its method and path."""
    parts = [p for p in path.split("/") if p]
    info: dict = {"interaction": "operation", "entities": []}
    if not parts or parts[0] != "fhir":
        info["entities"] = [path]
        return info
    parts = parts[1:]
    query = request.query_string.decode("utf-8", "replace")
    if query:
        info["query"] = query
    if any(p.startswith("$") for p in parts):
        info["interaction"] = "operation"
        info["entities"] = ["/".join(parts)]
        return info
    n = len(parts)
    if n == 0:
        info["interaction"] = "transaction" if method == "POST" else "search"
    elif parts[-1] == "_history" or (n >= 3 and parts[-2] == "_history"):
        info["interaction"] = "vread" if parts[-1] != "_history" else "history"
        info["entities"] = ["/".join(parts[: parts.index("_history")])] if n > 1 else []
    elif parts[-1] == "_search":
        info["interaction"] = "search"
        info["entities"] = parts[:1] if n > 1 else []
    elif n == 1:
        info["interaction"] = {
            "GET": "search",
            "POST": "create",
            "PUT": "update",
            "DELETE": "delete",
        }.get(method, "operation")
        info["entities"] = [parts[0]]
    elif n == 2:
        info["interaction"] = {
            "GET": "read",
            "HEAD": "read",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method, "operation")
        info["entities"] = ["/".join(parts)]
    else:
        info["interaction"] = "search"
        info["entities"] = ["/".join(parts)]
    return info
