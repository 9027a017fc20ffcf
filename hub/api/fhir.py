"""The FHIR REST blueprint (``/fhir``): HTTP in, :class:`hub.fhir.service.FhirService` calls, HTTP out.

Nothing FHIR-semantic lives here: routes read the URL, headers and body,
call the service, and render its :class:`Result` in the negotiated format.
"""

from __future__ import annotations

import datetime as dt
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from flask import Blueprint
from flask import Response
from flask import g
from flask import request

from hub import outcomes
from hub.api import binary
from hub.api import bulk as bulk_api
from hub.api.context import get_hub
from hub.config import setting
from hub.fhir import binaries
from hub.fhir import bundles
from hub.fhir import formats
from hub.fhir import operation_definitions
from hub.fhir.capabilities import capability_statement
from hub.fhir.limits import FORBIDDEN
from hub.fhir.limits import Limits
from hub.fhir.limits import check_params
from hub.fhir.parameters import check_parameters
from hub.fhir.searching import search_bytes
from hub.fhir.service import Result
from hub.fhir.service import WriteOptions
from hub.fhir.service import check_type
from hub.operations import OperationCall
from hub.security import audit_search
from hub.security import guard
from hub.security.principal import current
from hub.storage import repository
from hub.terminology.operations import terminology_capabilities

bp = Blueprint("fhir", __name__, url_prefix="/fhir")

# Operations whose POST body is a raw payload, not a FHIR resource.
RAW_BODY_OPERATIONS = ("ingest",)
# The LSN of a write, sent back by the client to read its own writes (docs/scaling.md).
WRITE_LSN_HEADER = "X-Hub-Write-LSN"

# Parameters that shape the response, not the search.
FORMAT_PARAMS = ("_format", "_pretty")


def base_url() -> str:
    configured = get_hub().config.get("BASE_URL")
    return configured.rstrip("/") if configured else request.url_root.rstrip("/") + "/fhir"


def query_params() -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.args.items(multi=True) if k not in FORMAT_PARAMS]


def response_format() -> str:
    return formats.choose_format(request.args.get("_format"), request.headers.get("Accept"))


def pretty() -> bool:
    return request.args.get("_pretty", "").lower() == "true"


def render(result: Result) -> Response:
    fmt = response_format()
    headers = dict(result.headers)
    if result.body is None:
        return Response(status=result.status, headers=headers)
    body = result.body
    if "Content-Type" in headers and isinstance(body, bytes):
        return Response(body, status=result.status, headers=headers)  # a non-FHIR payload (CDA XML)
    if _wants_elements() and result.status == 200:
        body = _shape(body)
    payload = formats.render(body, fmt, pretty())
    return Response(
        payload,
        status=result.status,
        headers=headers,
        mimetype=None,
        content_type=formats.MIME[fmt],
    )


def _wants_elements() -> bool:
    return "_elements" in request.args or "_summary" in request.args


def _shape(body: Any) -> Any:
    """Apply ``_summary``/``_elements`` on a read."""
    from hub.search.elements import apply_elements
    from hub.search.elements import apply_summary

    resource = orjson.loads(body) if isinstance(body, (str, bytes)) else body
    if resource.get("resourceType") in ("Bundle", "OperationOutcome"):
        return resource
    summary = request.args.get("_summary")
    if summary:
        resource = apply_summary(resource, summary)
    elements = request.args.get("_elements")
    if elements:
        resource = apply_elements(resource, [e.strip() for e in elements.split(",") if e.strip()])
    return resource


def body_limits() -> Limits:
    return Limits.from_config(get_hub().config)


def body_resource() -> dict[str, Any]:
    return formats.parse_body(request.get_data(cache=True), request.content_type, body_limits())


def write_options() -> WriteOptions:
    prefer = _prefer()
    ret = prefer.get("return", "representation")
    if ret not in ("minimal", "representation", "OperationOutcome"):
        ret = "representation"
    return WriteOptions(prefer_return=ret, if_match=request.headers.get("If-Match"))


def _prefer() -> dict[str, str]:
    out = {}
    for part in request.headers.get("Prefer", "").split(";"):
        for item in part.split(","):
            if "=" in item:
                k, v = item.split("=", 1)
                out[k.strip()] = v.strip().strip('"')
    return out


def not_modified(result: Result) -> Response | None:
    """304 for a matching ``If-None-Match`` or a not-newer ``If-Modified-Since``."""
    stored = result.stored
    if stored is None:
        return None
    inm = request.headers.get("If-None-Match")
    if inm and stored.etag in [t.strip() for t in inm.split(",")] + ["*"]:
        return Response(status=304, headers={"ETag": stored.etag})
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return None
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        if stored.last_updated.replace(microsecond=0) <= since:
            return Response(status=304, headers={"ETag": stored.etag})
    return None


@bp.before_request
def _no_control_characters():
    """Ids, search parameters and their values are FHIR strings: no NUL or other C0 control
    (PostgreSQL could not even store them). Bodies are checked as they are parsed."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and FORBIDDEN.search(value):
            raise outcomes.bad_request(
                f"The {name.replace('res_', '')} in the URL holds a control character", name
            )
    check_params([*request.args.items(multi=True), *_form_params()])


@bp.before_request
def _read_after_write():
    """With a read replica: a client sends back the ``X-Hub-Write-LSN`` of its last write and
    reads from the primary until the replica has replayed it (docs/scaling.md)."""
    repository.written_lsn.set(None)
    repository.wanted_lsn.set(request.headers.get(WRITE_LSN_HEADER) or None)


@bp.after_request
def _report_write_lsn(response):
    lsn = repository.written_lsn.get()
    if lsn:
        response.headers[WRITE_LSN_HEADER] = lsn
    return response


@bp.before_request
def _audit_trail_is_read_only():
    """AuditEvents come only from the hub's audit table; the API never writes them."""
    args = request.view_args or {}
    if (
        args.get("res_type") == "AuditEvent"
        and request.method not in ("GET", "HEAD")
        and not request.path.endswith("/_search")
    ):
        raise outcomes.error(
            405, "not-supported", "AuditEvents are recorded by the hub and cannot be written"
        )


# -- system level ---------------------------------------------------------------


@bp.get("/metadata")
def metadata():
    hub = get_hub()
    if request.args.get("mode") == "terminology":
        return render(Result(200, terminology_capabilities(hub, base_url())))
    return render(Result(200, capability_statement(hub, base_url())))


@bp.post("")
@bp.post("/")
def system_bundle():
    hub = get_hub()
    bundle = body_resource()
    opts = write_options()
    info = g.get("hub_audit")
    if (
        info is not None
        and isinstance(bundle, dict)
        and bundle.get("type") in ("batch", "transaction")
    ):
        info["interaction"] = bundle["type"]
    out = bundles.process(hub.service, bundle, base_url(), opts, spliced=True)
    return render(Result(200, orjson.dumps(out)))


@bp.get("")
@bp.get("/")
@bp.get("/_search")
@bp.post("/_search")
def system_search():
    hub = get_hub()
    params = query_params() + _form_params()
    if bulk_api.wants_async():
        return bulk_api.async_search(None, params, None)
    return render(
        Result(200, search_bytes(hub.service, None, params, base_url(), strict=_strict()))
    )


@bp.get("/_history")
def system_history():
    hub = get_hub()
    return render(Result(200, hub.service.history(base_url(), None, None, query_params())))


# -- type level -----------------------------------------------------------------


@bp.get("/<res_type>")
def search_type(res_type: str):
    if res_type.startswith("$"):
        return operation(None, None, res_type[1:])
    check_type(res_type)
    hub = get_hub()
    if res_type == "AuditEvent":
        return audit_events(query_params())
    if bulk_api.wants_async():
        return bulk_api.async_search(res_type, query_params(), None)
    return render(
        Result(
            200, search_bytes(hub.service, res_type, query_params(), base_url(), strict=_strict())
        )
    )


def audit_events(params: list[tuple[str, str]]) -> Response:
    """The audit trail, from the audit table (``hub.security.audit_search``), for auditors."""
    hub = get_hub()
    audit_search.require_auditor(current())
    body = audit_search.search(
        hub.engine, params, base_url(), int(setting(hub.config, "MAX_COUNT"))
    )
    return render(Result(200, body))


@bp.post("/<res_type>/_search")
def search_type_post(res_type: str):
    check_type(res_type)
    hub = get_hub()
    params = query_params() + _form_params()
    if res_type == "AuditEvent":
        return audit_events(params)
    if bulk_api.wants_async():
        return bulk_api.async_search(res_type, params, None)
    return render(
        Result(200, search_bytes(hub.service, res_type, params, base_url(), strict=_strict()))
    )


def _form_params() -> list[tuple[str, str]]:
    if request.mimetype == "application/x-www-form-urlencoded":
        return [(k, v) for k, v in request.form.items(multi=True) if k not in FORMAT_PARAMS]
    return []


def _strict() -> bool:
    return _prefer().get("handling") == "strict"


@bp.post("/<res_type>")
def create(res_type: str):
    if res_type.startswith("$"):
        return operation(None, None, res_type[1:])
    hub = get_hub()
    check_type(res_type)
    if res_type == "Binary" and binary.is_raw_upload():
        resource = binary.raw_resource()
    else:
        resource = body_resource()
    result = hub.service.create(
        res_type,
        resource,
        write_options(),
        base_url(),
        if_none_exist=request.headers.get("If-None-Exist"),
    )
    return render(binary.shown(result) if res_type == "Binary" else result)


@bp.put("/<res_type>")
def conditional_update(res_type: str):
    hub = get_hub()
    check_type(res_type)
    if not request.query_string:
        raise outcomes.bad_request(
            "PUT on a type needs search criteria (conditional update) or an id"
        )
    result = hub.service.conditional_update(
        res_type, request.query_string.decode(), body_resource(), write_options(), base_url()
    )
    return render(result)


@bp.delete("/<res_type>")
def conditional_delete(res_type: str):
    hub = get_hub()
    check_type(res_type)
    return render(
        hub.service.conditional_delete(res_type, request.query_string.decode(), write_options())
    )


@bp.get("/<res_type>/_history")
def type_history(res_type: str):
    hub = get_hub()
    check_type(res_type)
    return render(Result(200, hub.service.history(base_url(), res_type, None, query_params())))


# -- instance level ---------------------------------------------------------------


@bp.get("/<res_type>/<res_id>")
def read(res_type: str, res_id: str):
    if res_id.startswith("$"):
        return operation(res_type, None, res_id[1:])
    hub = get_hub()
    if res_type == "AuditEvent":
        audit_search.require_auditor(current())
        return render(Result(200, audit_search.read(hub.engine, res_id)))
    if res_type == "OperationDefinition":
        # The definitions of the hub's own operations (named by /metadata) are generated
        # from the operation registry and shown to every authenticated caller; other ids
        # are stored OperationDefinitions, read as any resource.
        definition = operation_definitions.served(hub, base_url()).get(res_id)
        if definition is not None:
            return render(Result(200, definition))
    if res_type == "Binary":
        return binary_read(res_id)
    result = hub.service.read(res_type, res_id)
    return not_modified(result) or render(result)


def binary_read(res_id: str, version: str | None = None) -> Response:
    """A Binary's raw bytes or its FHIR resource, as the client asks (``hub.api.binary``)."""
    result, resource, data = get_hub().service.binary(res_id, version)
    unchanged = not_modified(result)
    if unchanged is not None:
        return unchanged
    if binary.wants_raw(str(resource.get("contentType") or "")):
        return binary.raw_response(result, resource, data)
    return render(Result(200, binaries.with_data(resource, data), result.headers, result.stored))


@bp.put("/<res_type>/<res_id>")
def update(res_type: str, res_id: str):
    hub = get_hub()
    if res_type == "Binary" and binary.is_raw_upload():
        resource = binary.raw_resource(res_id)
    else:
        resource = body_resource()
    result = hub.service.update(res_type, res_id, resource, write_options(), base_url())
    return render(binary.shown(result) if res_type == "Binary" else result)


@bp.patch("/<res_type>/<res_id>")
def patch(res_type: str, res_id: str):
    hub = get_hub()
    mime = request.mimetype
    if mime in ("application/json-patch+json", "application/json"):
        ops = formats.parse_json(request.get_data(cache=True), body_limits())
    elif mime in formats.JSON_TYPES + formats.XML_TYPES:
        ops = body_resource()  # FHIRPath Patch: a Parameters resource
    else:
        raise outcomes.error(
            415,
            "not-supported",
            f"PATCH takes a JSON Patch or a FHIRPath Patch Parameters resource, not {mime!r}",
        )
    return render(hub.service.patch(res_type, res_id, ops, write_options(), base_url()))


@bp.delete("/<res_type>/<res_id>")
def delete(res_type: str, res_id: str):
    hub = get_hub()
    return render(hub.service.delete(res_type, res_id, write_options()))


@bp.get("/<res_type>/<res_id>/_history")
def instance_history(res_type: str, res_id: str):
    hub = get_hub()
    return render(Result(200, hub.service.history(base_url(), res_type, res_id, query_params())))


@bp.get("/<res_type>/<res_id>/_history/<version>")
def vread(res_type: str, res_id: str, version: str):
    hub = get_hub()
    if res_type == "Binary":
        return binary_read(res_id, version)
    result = hub.service.vread(res_type, res_id, version)
    return not_modified(result) or render(result)


@bp.route("/<res_type>/<res_id>/<name>", methods=["GET", "POST"])
def instance_op_or_compartment(res_type: str, res_id: str, name: str):
    if name.startswith("$"):
        return operation(res_type, res_id, name[1:])
    hub = get_hub()
    check_type(res_type)
    check_type(name)
    params = query_params() + _form_params()
    if bulk_api.wants_async():
        return bulk_api.async_search(name, params, (res_type, res_id))
    body = search_bytes(
        hub.service, name, params, base_url(), compartment=(res_type, res_id), strict=_strict()
    )
    return render(Result(200, body))


# -- operations -------------------------------------------------------------------


@bp.route("/$<name>", methods=["GET", "POST"])
def system_operation(name: str):
    return operation(None, None, name)


@bp.route("/<res_type>/$<name>", methods=["GET", "POST"])
def type_operation(res_type: str, name: str):
    return operation(res_type, None, name)


def _body_params(body: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A Parameters body's simple values as query parameters (``$everything``'s)."""
    if not body or body.get("resourceType") != "Parameters":
        return []
    out = []
    for p in body.get("parameter") or []:
        for key, value in p.items():
            if key.startswith("value") and isinstance(value, (str, int)):
                out.append((p.get("name"), str(value)))
    return out


def operation(res_type: str | None, res_id: str | None, name: str) -> Response:
    hub = get_hub()
    if res_type is not None:
        check_type(res_type)
        # Type and instance operations read their type at least; handlers that read or
        # write more go through the service, which checks each access again.
        guard.require(res_type, "r", f"invoking ${name} on")
        if res_id is not None:
            # An instance outside a user's jurisdiction is as absent as on a read.
            hub.service.check_jurisdiction(res_type, res_id)
    level = "instance" if res_id else "type" if res_type else "system"
    op = hub.operations.find(name, level, res_type)
    if op is None:
        where = "/".join(p for p in (res_type, res_id) if p) or "the system level"
        raise outcomes.error(404, "not-supported", f"Operation ${name} is not supported on {where}")
    if request.method not in op.methods:
        raise outcomes.error(405, "not-supported", f"${name} does not accept {request.method}")
    body = None
    raw = op.name in RAW_BODY_OPERATIONS
    if request.method == "POST" and not raw and request.get_data(cache=True).strip():
        if request.mimetype in formats.JSON_TYPES + formats.XML_TYPES or not request.mimetype:
            body = body_resource()
            check_parameters(body)
    if op.name == "everything" and res_id is not None and bulk_api.wants_async():
        return bulk_api.async_everything(res_id, query_params() + _body_params(body))
    call = OperationCall(
        name, res_type, res_id, query_params(), body, request.method, base_url(), hub, request
    )
    result = op.handler(call)
    if isinstance(result, Response):  # a page (``$lifetime-file?_format=html``), sent as is
        return result
    return render(result)
