"""The operations the hub itself serves (plugins add theirs via ``register_operations``)."""

from __future__ import annotations

from hub import outcomes
from hub.fhir.service import Result
from hub.ingest import report
from hub.operations import Operation
from hub.operations import OperationCall
from hub.operations import parameter
from hub.security import guard
from hub.security.principal import acting_as


def meta(call: OperationCall) -> Result:
    """``$meta``: the ``meta`` of a resource (instance level)."""
    current = call.hub.service.read(call.res_type, call.res_id).stored
    res = current.resource()
    return Result(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "return", "valueMeta": res.get("meta", {})}],
        },
    )


def ingest(call: OperationCall) -> Result:
    """``$ingest?site=S``: a raw payload (HL7 v2, CDA, CSV, XLSX...) through the pipeline.

    Answers 200 with the outcome when stored (``partial``: some parts refused,
    see the issues), 202 when only queued, and the outcome's 4xx status when the
    message was refused; a refused message stays in the inbox for replay. The
    outcome's last issue is the line ``hub ingest`` prints for the item
    (``inbox item 7 partial: 12 written, 1 error``, :mod:`hub.ingest.report`).
    """
    site = call.param("site")
    if not site:
        raise outcomes.bad_request("$ingest needs the site parameter", "site")
    guard.check_ingest(site)
    req = call.request
    body = req.get_data(cache=True) if req is not None else b""
    if not body:
        raise outcomes.bad_request("$ingest needs the payload as the request body")
    # The pipeline maps and stores as the hub, for the site, the same whether it runs now or
    # later in a worker; the caller was authorized for the site above and the request's
    # audit event names it.
    with acting_as(None, {"interaction": "ingest"}):
        result = call.hub.pipeline.ingest(
            site,
            body,
            content_type=req.content_type if req is not None else None,
            source_key=call.param("key"),
            process=call.param("async", "false") != "true",
        )
    item = result.item
    headers = {"X-Inbox-Item": str(item.id), "X-Inbox-Status": item.status}
    if result.duplicate:
        headers["X-Duplicate"] = "true"
    if item.status == "pending":
        return Result(202, outcomes.ok(f"inbox item {item.id} queued"), headers)
    oo = dict(item.outcome or outcomes.outcome())
    # The summary goes last: a refused message's first issue stays its error.
    oo["issue"] = [
        *(oo.get("issue") or ()),
        outcomes.issue("information", "informational", report.summary(item, result.duplicate)),
    ]
    status = next(
        (
            e.get("valueInteger")
            for e in oo.pop("extension", [])
            if e.get("url") == "urn:fhirhub:http-status"
        ),
        200,
    )
    return Result(status if item.status in ("failed", "quarantined") else 200, oo, headers)


def validate(call: OperationCall) -> Result:
    """``$validate`` (type and instance level): an OperationOutcome, 200 even when invalid."""
    from hub.default_validation import validate_request

    body = call.body
    if body is None and call.res_id:
        body = call.hub.service.read(call.res_type, call.res_id).stored.resource()
    if body is None:
        raise outcomes.bad_request(
            "$validate needs a resource (the body or a Parameters 'resource')"
        )
    if call.res_type and body.get("resourceType") not in (call.res_type, "Parameters"):
        raise outcomes.bad_request(
            f"$validate on {call.res_type} got a {body.get('resourceType')}", "resourceType"
        )
    checker = call.hub.validator
    return Result(200, validate_request(body, call.param("mode"), call.param("profile"), checker))


def operations() -> list[Operation]:
    return [
        Operation(
            "validate",
            validate,
            levels=("type", "instance"),
            definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
            documentation="Validate a resource against the base specification and its profiles",
        ),
        Operation(
            "ingest",
            ingest,
            levels=("system",),
            methods=("POST",),
            affects_state=True,
            documentation="Ingest a raw site payload (HL7 v2, CDA, registry CSV/XLSX) through the"
            " pipeline; the payload is the request body",
            parameters=(
                parameter("site", "string", min_=1, documentation="The sending site"),
                parameter("key", "string", documentation="The source's message key"),
                parameter("async", "boolean", documentation="true: only queue the payload"),
                parameter("return", "OperationOutcome", use="out", min_=1),
            ),
        ),
        Operation(
            "meta",
            meta,
            levels=("instance",),
            definition="http://hl7.org/fhir/OperationDefinition/Resource-meta",
            documentation="The meta of a resource version",
        ),
    ]
