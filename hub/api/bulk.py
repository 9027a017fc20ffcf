"""Bulk data over HTTP: the status URL of a job (poll, cancel) and its files.

``$export`` itself is an operation (:mod:`hub.bulk.operations`); searches and
``$everything`` sent with ``Prefer: respond-async`` become jobs here too. Every request
is authenticated and audited by the security layer as any other ``/fhir`` request; a job
and its files are only for the principal that kicked it off (:mod:`hub.bulk.status`).
"""

from __future__ import annotations

import orjson
from flask import Blueprint
from flask import Response
from flask import g
from flask import request
from flask import send_file

from hub.api.context import get_hub
from hub.bulk import kickoff
from hub.bulk import status
from hub.fhir import formats
from hub.fhir.service import Result
from hub.security import guard
from hub.security.principal import current

bp = Blueprint("bulk", __name__, url_prefix="/fhir")

NDJSON = "application/fhir+ndjson"


def base_url() -> str:
    """The FHIR base (as ``hub.api.fhir.base_url``, which imports this module)."""
    configured = get_hub().config.get("BASE_URL")
    return configured.rstrip("/") if configured else request.host_url.rstrip("/") + "/fhir"


def render(result: Result) -> Response:
    """A kick-off's or a poll's OperationOutcome in the negotiated format."""
    fmt = formats.choose_format(request.args.get("_format"), request.headers.get("Accept"))
    return Response(
        formats.render(result.body, fmt, request.args.get("_pretty") == "true"),
        status=result.status,
        headers=dict(result.headers),
        content_type=formats.MIME[fmt],
    )


def wants_async() -> bool:
    return kickoff.prefers(request.headers, "respond-async")


def _audit(entity: str) -> None:
    info = g.get("hub_audit")
    if info is not None:
        info["entities"] = [entity]


@bp.get(f"/{kickoff.STATUS_PATH}/<job_id>")
def poll(job_id: str):
    _audit(f"{kickoff.STATUS_PATH}/{job_id}")
    result = status.poll(get_hub(), job_id, current(), base_url())
    if result.status == 200:
        return Response(
            orjson.dumps(result.body), status=200, headers=result.headers, mimetype=None
        )
    return render(result)


@bp.delete(f"/{kickoff.STATUS_PATH}/<job_id>")
def cancel(job_id: str):
    _audit(f"{kickoff.STATUS_PATH}/{job_id}")
    return render(status.cancel(get_hub(), job_id, current()))


@bp.get(f"/{kickoff.FILE_PATH}/<job_id>/<name>")
def download(job_id: str, name: str):
    """One NDJSON (or Bundle) file, streamed from disk, for the job's owner only."""
    _audit(f"{kickoff.FILE_PATH}/{job_id}/{name}")
    path = status.file_for(get_hub(), job_id, name, current())
    mimetype = NDJSON if name.endswith(".ndjson") else "application/fhir+json"
    return send_file(path, mimetype=mimetype, conditional=False, etag=False)


def async_search(
    res_type: str | None, params: list[tuple[str, str]], compartment: tuple[str, str] | None
) -> Response:
    """A search sent with ``Prefer: respond-async``: a job whose result is a Bundle file."""
    if res_type is not None:
        guard.require(res_type, "s")
    if compartment is not None:
        guard.require(compartment[0], "r", "searching the compartment of")
    spec = {
        "res_type": res_type,
        "params": [list(p) for p in params],
        "compartment": list(compartment) if compartment else None,
        "strict": kickoff.prefers(request.headers, "handling=strict"),
    }
    hub = get_hub()
    return render(kickoff.async_kickoff(hub, "search", request.url, base_url(), spec))


def async_everything(patient_id: str, params: list[tuple[str, str]]) -> Response:
    """``Patient/{id}/$everything`` with ``Prefer: respond-async``: every page in one Bundle."""
    hub = get_hub()
    hub.service.read("Patient", patient_id)  # 404 now for a Patient the caller cannot see
    spec = {"patient": patient_id, "params": [list(p) for p in params]}
    return render(kickoff.async_kickoff(hub, "everything", request.url, base_url(), spec))
