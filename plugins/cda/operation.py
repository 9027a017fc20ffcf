"""``Patient/{id}/$cda-document``: a shared document made from the lifetime file, and its upload.

    GET  /fhir/Patient/{id}/$cda-document?type=HSDB04.01&encounter=Encounter/{eid}&site=county-platform
    POST /fhir/Patient/{id}/$cda-document?type=...&site=...&send=true

``type`` is the document type code (``HSDA00.01`` registration, ``HSDB04.01``
hypertension follow-up, ``HSDB04.02`` diabetes follow-up, ``HSDC00.01``
health examination, ``HSDC00.02`` outpatient and ``HSDC00.03`` inpatient
summary). ``encounter`` picks the event the document records (follow-ups,
examinations and summaries): the document then carries that Encounter and
the resources that refer to it. ``site`` names the receiving CDA site (its
organisation is the custodian). Without ``send`` the XML comes back; with
``send=true`` (POST) the document is queued for the site's outbound endpoint
(``hub worker`` sends it, with retries and dead letters) and an
OperationOutcome names the delivery.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from typing import Any

import orjson

from hub.plugin_api import Operation
from hub.plugin_api import OperationCall
from hub.plugin_api import OutboundMessage
from hub.plugin_api import Result
from hub.plugin_api import compartment_resources
from hub.plugin_api import outcomes
from hub.plugin_api import parameter
from hub.plugin_api import queue_delivery

if TYPE_CHECKING:
    from hub.plugin_api import Hub

# Resources outside the patient compartment that a document header names.
_SUPPORT = ("Organization", "Practitioner", "PractitionerRole", "Location")


def cda_document(call: OperationCall) -> Result:
    from fhirhub_plugins.cda import documents
    from fhirhub_plugins.cda.from_fhir import build_document

    doc_type = call.param("type")
    if doc_type not in documents.DOC_TYPES:
        raise outcomes.bad_request(
            f"type must be one of {', '.join(sorted(documents.DOC_TYPES))}", "type"
        )
    send = call.param("send") == "true"
    if send and call.method != "POST":
        raise outcomes.error(405, "not-supported", "send=true needs POST")
    site = _site(call)
    hub = call.hub
    patient = hub.service.read("Patient", call.res_id).stored.resource()
    with hub.repo.reading() as conn:
        rows = compartment_resources(conn, [call.res_id])
    resources = [orjson.loads(content) for _t, _i, content in rows]
    encounter = call.param("encounter")
    if encounter:
        encounter = encounter if "/" in encounter else f"Encounter/{encounter}"
        chosen = [r for r in resources if f"{r['resourceType']}/{r.get('id')}" == encounter]
        if not chosen:
            raise outcomes.not_found(f"{encounter} is not in Patient/{call.res_id}'s file")
        resources = chosen + [r for r in resources if _refers_to(r, encounter)]
    resources = [patient] + [r for r in resources if r.get("resourceType") != "Patient"]
    resources += _supporting(hub, resources)
    visible = getattr(hub, "visibility_for", None)
    visibility = visible(call) if visible else None
    if visibility is not None:
        resources = visibility.filter(resources)
    issues: list[dict] = []
    body = build_document(doc_type, resources, site, issues=issues)
    if not send:
        return Result(200, body, {"Content-Type": "application/xml; charset=utf-8"})
    if not (getattr(site, "outbound", None) or {}).get("url"):
        raise outcomes.unprocessable(f"site {site.name} has no outbound HTTP endpoint", "site")
    now = dt.datetime.now(dt.UTC)
    message = OutboundMessage(
        body=body,
        content_type="application/xml",
        key=f"{doc_type}-{call.res_id}-{now.isoformat()}",
        description=f"{doc_type} for Patient/{call.res_id}",
    )
    delivery_id = queue_delivery(hub, site, message)
    text = f"{doc_type} for Patient/{call.res_id} queued for {site.name} as delivery {delivery_id}"
    return Result(
        202, outcomes.outcome(outcomes.issue("information", "informational", text), *issues)
    )


def _site(call: OperationCall) -> Any:
    name = call.param("site")
    sites = [s for s in call.hub.sites.values() if s.adapter == "cda"]
    if name:
        sites = [s for s in sites if s.name == name]
    if len(sites) != 1:
        raise outcomes.bad_request("site must name one CDA site (the receiving platform)", "site")
    return sites[0]


def _refers_to(node: Any, target: str) -> bool:
    if isinstance(node, dict):
        return any(
            (k == "reference" and v == target) or _refers_to(v, target) for k, v in node.items()
        )
    if isinstance(node, list):
        return any(_refers_to(v, target) for v in node)
    return False


def _supporting(hub: Hub, resources: list[dict]) -> list[dict]:
    """The organisations and practitioners the resources name (outside the compartment)."""
    wanted: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ref.split("/")[0] in _SUPPORT and ref.count("/") == 1:
                wanted.add(tuple(ref.split("/")))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(resources)
    with hub.repo.reading() as conn:
        found = hub.repo.read_many(wanted, conn)
    return [st.resource() for st in found.values() if not st.deleted]


OPERATION = Operation(
    "cda-document",
    cda_document,
    levels=("instance",),
    types=("Patient",),
    methods=("GET", "POST"),
    documentation="A WS/T 483/500 CDA document from the patient's file; send=true queues it for the platform",
    parameters=(
        parameter("type", "code", min_=1, documentation="The document type"),
        parameter("site", "string", documentation="The CDA site (when several are declared)"),
        parameter("encounter", "string", documentation="Only this Encounter's records"),
        parameter("send", "boolean", documentation="true (POST): queue it for the site"),
    ),
)
