"""OperationOutcome builders and the one exception type that carries them.

Every failure in the hub leaves as an ``OperationOutcome``: code raises
:class:`OperationOutcomeError`, and the API's error handler renders it with the
status from :func:`status_for` (or the status the raiser chose).
"""

from __future__ import annotations

from typing import Any

# FHIR issue-type codes -> HTTP status, used when the raiser does not choose.
_STATUS_BY_CODE = {
    "not-found": 404,
    "deleted": 410,
    "conflict": 409,
    "duplicate": 409,
    "security": 403,
    "login": 401,
    "unknown": 401,
    "forbidden": 403,
    "suppressed": 403,
    "not-supported": 400,
    "too-costly": 413,
    "too-long": 413,
    "invalid": 400,
    "structure": 400,
    "required": 400,
    "value": 400,
    "invariant": 422,
    "processing": 422,
    "business-rule": 422,
    "code-invalid": 422,
    "exception": 500,
    "timeout": 504,
    "throttled": 429,
    "informational": 200,
}


def issue(
    severity: str,
    code: str,
    diagnostics: str | None = None,
    expression: str | list[str] | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    """One ``OperationOutcome.issue``.

    ``expression`` is a FHIRPath location (``Patient.name[0].family``) or, for
    source formats, the source position (``PID-8``); give lists for several.
    """
    out: dict[str, Any] = {"severity": severity, "code": code}
    if details:
        out["details"] = {"text": details}
    if diagnostics:
        out["diagnostics"] = diagnostics
    if expression:
        out["expression"] = [expression] if isinstance(expression, str) else list(expression)
    return out


def outcome(*issues: dict[str, Any]) -> dict[str, Any]:
    """An ``OperationOutcome`` resource holding ``issues``."""
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def ok(text: str = "All OK") -> dict[str, Any]:
    return outcome(issue("information", "informational", text))


def status_for(oo: dict[str, Any]) -> int:
    """The HTTP status an outcome deserves: that of its first error or fatal issue."""
    for iss in oo.get("issue", []):
        if iss.get("severity") in ("error", "fatal"):
            return _STATUS_BY_CODE.get(iss.get("code", ""), 400)
    return 200


class OperationOutcomeError(Exception):
    """A failure that carries the ``OperationOutcome`` to send back.

    ``status`` is the HTTP status; when omitted it follows the first error's code.
    """

    def __init__(self, oo: dict[str, Any], status: int | None = None, headers: dict | None = None):
        self.outcome = oo
        self.status = status if status is not None else status_for(oo)
        self.headers = headers or {}
        first = next(iter(oo.get("issue", [])), {})
        super().__init__(first.get("diagnostics") or first.get("code") or "error")

    @property
    def issues(self) -> list[dict[str, Any]]:
        return self.outcome.get("issue", [])


def error(
    status: int,
    code: str,
    diagnostics: str,
    expression: str | list[str] | None = None,
    headers: dict | None = None,
) -> OperationOutcomeError:
    """An :class:`OperationOutcomeError` with one error issue (raise it)."""
    return OperationOutcomeError(
        outcome(issue("error", code, diagnostics, expression)), status, headers
    )


def bad_request(
    diagnostics: str, expression: str | list[str] | None = None
) -> OperationOutcomeError:
    return error(400, "invalid", diagnostics, expression)


def not_found(diagnostics: str) -> OperationOutcomeError:
    return error(404, "not-found", diagnostics)


def gone(diagnostics: str, headers: dict | None = None) -> OperationOutcomeError:
    return error(410, "deleted", diagnostics, headers=headers)


def conflict(diagnostics: str) -> OperationOutcomeError:
    return error(409, "conflict", diagnostics)


def precondition_failed(diagnostics: str) -> OperationOutcomeError:
    return error(412, "conflict", diagnostics)


def unprocessable(
    diagnostics: str, expression: str | list[str] | None = None
) -> OperationOutcomeError:
    return error(422, "processing", diagnostics, expression)
