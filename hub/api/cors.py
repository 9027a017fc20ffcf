"""Cross-origin requests from browser apps (docs/security.md#cors).

Origins listed in ``CORS_ORIGINS`` (comma-separated, exact ``scheme://host[:port]``; ``*``
for any) may call the FHIR API, the SMART discovery document and the token endpoint from
a browser. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from such an
origin is answered here, before authentication (browsers send no token with it), with 204
and the methods, request headers and max age the hub allows; a preflight from any other
origin gets no CORS headers, and the browser stops. Real responses to an allowed origin
name it in ``Access-Control-Allow-Origin`` and expose the headers a FHIR client reads. No
cookies are involved (tokens travel in ``Authorization``), so credentials are not allowed.
"""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import request

from hub.config import setting

METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
REQUEST_HEADERS = (
    "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, If-None-Match,"
    " If-Modified-Since, X-Request-Id, X-Security-Context"
)
EXPOSED_HEADERS = "Location, ETag, Content-Location, Last-Modified, X-Progress, Retry-After"
# What browser apps call: the FHIR API and the SMART endpoints (not /ui, not /api).
CORS_PREFIXES = ("/fhir/", "/.well-known/", "/auth/token")


def allowed_origins(config) -> frozenset[str]:
    value = setting(config, "CORS_ORIGINS")
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return frozenset(o.strip().rstrip("/").lower() for o in items if o and o.strip())


def _applies() -> bool:
    path = request.path
    return path == "/fhir" or path.startswith(CORS_PREFIXES)


def _allowed(origins: frozenset[str]) -> str | None:
    """The request's ``Origin`` when it may be answered, else ``None``."""
    origin = request.headers.get("Origin")
    if not origin or not _applies():
        return None
    if "*" in origins or origin.rstrip("/").lower() in origins:
        return origin
    return None


def init_app(app: Flask) -> None:
    origins = allowed_origins(app.config)
    if not origins:
        return
    max_age = str(int(setting(app.config, "CORS_MAX_AGE")))

    @app.before_request
    def _preflight():
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = _allowed(origins)
        if origin is None:
            return None
        return Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": METHODS,
                "Access-Control-Allow-Headers": REQUEST_HEADERS,
                "Access-Control-Max-Age": max_age,
                "Vary": "Origin",
            },
        )

    @app.after_request
    def _cors_headers(response):
        if not _applies():
            return response
        response.vary.add("Origin")
        origin = _allowed(origins)
        if origin is not None and "Access-Control-Allow-Origin" not in response.headers:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
