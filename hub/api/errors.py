"""Every error leaves as an OperationOutcome, in the format the client asked for."""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import request
from werkzeug.exceptions import HTTPException

from hub import outcomes
from hub.fhir import formats

# Werkzeug's HTTP errors -> FHIR issue codes.
_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
}


def render_outcome(oo: dict, status: int, headers: dict | None = None) -> Response:
    try:
        fmt = formats.choose_format(request.args.get("_format"), request.headers.get("Accept"))
    except outcomes.OperationOutcomeError:
        fmt = "json"
    try:
        body = formats.render(oo, fmt, request.args.get("_pretty") == "true")
    except Exception:  # noqa: BLE001 - an outcome that cannot be rendered as XML still goes out as JSON
        fmt = "json"
        body = formats.render(oo, fmt)
    return Response(body, status=status, headers=headers or {}, content_type=formats.MIME[fmt])


def register(app: Flask) -> None:
    @app.errorhandler(outcomes.OperationOutcomeError)
    def _outcome(err: outcomes.OperationOutcomeError):
        return render_outcome(err.outcome, err.status, err.headers)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        code = _HTTP_CODES.get(err.code or 500, "processing")
        text = err.description or err.name
        if err.code == 404 and request.path.startswith("/fhir"):
            text = f"No FHIR endpoint at {request.path}"
        headers = dict(err.get_headers()) if err.code == 405 else {}
        headers.pop("Content-Type", None)
        return render_outcome(
            outcomes.outcome(outcomes.issue("error", code, text)), err.code or 500, headers
        )

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        from hub.api.context import get_hub

        oo = get_hub().pm.hook.handle_exception(exception=err)
        return render_outcome(oo, 500)
