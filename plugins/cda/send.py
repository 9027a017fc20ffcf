"""HTTP delivery of a generated document to the county platform, with retries.

The delivery queue (change feed, back-off between attempts, dead letters) is
the hub's; this module makes one delivery attempt robust: it retries
connection errors, timeouts and 5xx/429 answers a few times with a short
exponential back-off, and never retries a 4xx (the platform refused the
document; sending it again cannot help).
"""

from __future__ import annotations

import dataclasses
import time

import requests

from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import issue
from hub.plugin_api import outcome

RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclasses.dataclass
class Delivery:
    """What the platform answered: ``ok``, its status, body text and attempts used."""

    ok: bool
    status: int | None
    body: str
    attempts: int


def post_document(
    url: str,
    body: bytes,
    timeout: float = 30.0,
    *,
    retries: int = 3,
    backoff: float = 0.5,
    session: requests.Session | None = None,
    headers: dict | None = None,
    sleep=time.sleep,
) -> Delivery:
    """POST one CDA document; retry transient failures; raise an outcome on refusal.

    :param url: the platform's document-upload endpoint (site manifest ``outbound.url``).
    :param body: the document bytes from :func:`from_fhir.build_document`.
    :param timeout: seconds for connect and read.
    :param retries: extra attempts after the first for transient failures.
    :returns: a :class:`Delivery` for a 2xx answer.
    :raises OperationOutcomeError: 4xx from the platform (``processing``, with
        its answer), or transient failures outlasting the retries (``timeout``
        or ``transient``, status 503/504) so the queue can try again later.
    """
    http = session or requests.Session()
    charset = "GB18030" if body[:100].upper().find(b"GB18030") >= 0 else "UTF-8"
    send_headers = {"Content-Type": f"application/xml; charset={charset}"}
    send_headers.update(headers or {})
    last_error = "no attempt made"
    for attempt in range(1, retries + 2):
        try:
            response = http.post(url, data=body, headers=send_headers, timeout=timeout)
        except requests.Timeout:
            last_error, code = f"timed out after {timeout}s", "timeout"
        except requests.ConnectionError as exc:
            last_error, code = f"connection failed: {exc.__class__.__name__}", "transient"
        else:
            if 200 <= response.status_code < 300:
                return Delivery(True, response.status_code, response.text, attempt)
            if response.status_code not in RETRY_STATUS:
                raise OperationOutcomeError(
                    outcome(
                        issue(
                            "error",
                            "processing",
                            f"platform refused the document: HTTP {response.status_code} {response.text[:500]}",
                            url,
                        )
                    ),
                    422,
                )
            last_error, code = f"HTTP {response.status_code}", "transient"
        if attempt <= retries:
            sleep(backoff * (2 ** (attempt - 1)))
    status = 504 if code == "timeout" else 503
    raise OperationOutcomeError(
        outcome(
            issue("error", code, f"delivery failed after {retries + 1} attempts: {last_error}", url)
        ),
        status,
    )
