"""``/ui/patients/<id>/lifetime-file``: the printable resident health record page."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from hub.api.context import get_hub
from hub.lifetime import html
from hub.lifetime.operations import HTML_TYPE
from hub.lifetime.operations import build_document
from hub.lifetime.visibility import EVERYTHING

bp = Blueprint("lifetime_file", __name__)


@bp.get("/ui/patients/<patient_id>/lifetime-file")
def lifetime_file_page(patient_id: str):
    the_hub = get_hub()
    the_hub.service.read("Patient", patient_id)  # 404/410 as an OperationOutcome
    visibility = EVERYTHING
    if the_hub.visibility_for is not None:
        visibility = the_hub.visibility_for(_PageCall(the_hub)) or EVERYTHING
    base = request.url_root.rstrip("/") + "/fhir"
    bundle = build_document(the_hub, patient_id, base, visibility)
    return Response(html.render(bundle), content_type=HTML_TYPE)


class _PageCall:
    """What the visibility hook reads from a call, for the page (no FHIR operation)."""

    name = "lifetime-file"
    res_type = "Patient"

    def __init__(self, the_hub):
        self.hub = the_hub
        self.request = request
