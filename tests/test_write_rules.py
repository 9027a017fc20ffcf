"""Every write rule, whichever way the write arrives: REST, batch, transaction, ingestion.

The four routes run the same service method (``FhirService.*_with``) in a unit of work:
REST one of its own per call, a batch one per entry, a transaction and an ingested
message one shared by all their entries. Each rule must answer the same status and the
same OperationOutcome text on every route (a Bundle prefixes the entry it concerns).
The ingestion route is the pipeline's: one message's entries in a group writer's segment,
written as the hub (no caller's token), with the site's validation policy.
"""

from __future__ import annotations

import base64
import types

import orjson
import pytest

from hub import outcomes
from hub.app import get_hub
from hub.codesystems import RESTRICTED
from hub.codesystems import VETERAN_SENSITIVITY
from hub.fhir import bundles
from hub.fhir.service import WriteOptions

ROUTES = ("rest", "batch", "transaction", "ingestion")
JSON_PATCH = "application/json-patch+json"
IDENT = "urn:test:mrn|"


def _texts(oo: dict | None) -> list[str]:
    return [i.get("diagnostics", "") for i in (oo or {}).get("issue", [])]


def _entry(method, url, body, if_match, if_none_exist) -> dict:
    request = {"method": method, "url": url}
    if if_match:
        request["ifMatch"] = if_match
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    entry: dict = {"request": request}
    if method == "PATCH":
        data = base64.b64encode(orjson.dumps(body)).decode()
        entry["resource"] = {"resourceType": "Binary", "contentType": JSON_PATCH, "data": data}
    elif body is not None:
        entry["resource"] = body
    return entry


def send(ctx, route, method, url, body=None, headers=None, if_match=None, if_none_exist=None):
    """``(status, diagnostics)`` of one write sent by ``route``."""
    headers = dict(headers if headers is not None else ctx.auth())
    if route == "rest":
        if if_match:
            headers["If-Match"] = if_match
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist
        if method == "PATCH":
            headers["Content-Type"] = JSON_PATCH
            resp = ctx.anon.open(
                f"/fhir/{url}", method=method, data=orjson.dumps(body), headers=headers
            )
        else:
            resp = ctx.anon.open(f"/fhir/{url}", method=method, json=body, headers=headers)
        data = resp.get_json()
        return resp.status_code, _texts(
            data if data and data.get("resourceType") == "OperationOutcome" else None
        )
    entry = _entry(method, url, body, if_match, if_none_exist)
    if route == "ingestion":
        hub = ctx.hub
        try:

            def message(writer):
                writer.begin_segment()  # as each message of a group (hub.ingest.pipeline)
                prepared = bundles.prepare_transaction([entry])
                opts = WriteOptions(site=ctx.site)
                return bundles.run_transaction(hub.service, writer, prepared, "", opts, False)

            got = hub.repo.write(message, site=ctx.site.name)[0]
        except outcomes.OperationOutcomeError as err:
            return err.status, _texts(err.outcome)
        return _entry_status(got)
    bundle = {"resourceType": "Bundle", "type": route, "entry": [entry]}
    resp = ctx.anon.post("/fhir", json=bundle, headers=headers)
    data = resp.get_json()
    if data.get("resourceType") == "OperationOutcome":
        return resp.status_code, _texts(data)
    return _entry_status(data["entry"][0])


def _entry_status(entry: dict) -> tuple[int, list[str]]:
    response = entry["response"]
    texts = _texts(response.get("outcome"))
    if (entry.get("resource") or {}).get("resourceType") == "OperationOutcome":
        texts += _texts(entry["resource"])
    return int(response["status"].split()[0]), texts


def assert_same(ctx, routes, status, text, *args, **kw):
    """Every route answers ``status`` with an issue saying ``text``."""
    for route in routes:
        got, texts = send(ctx, route, *args, **kw)
        assert got == status, (route, got, texts)
        if text is not None:
            assert any(t.endswith(text) for t in texts), (route, texts)


@pytest.fixture
def ctx(app, client, anon_client, auth_headers):
    hub = get_hub(app)
    site = types.SimpleNamespace(name="county-hospital-a", validation="reject")
    return types.SimpleNamespace(
        hub=hub, client=client, anon=anon_client, auth=auth_headers, site=site
    )


def _patient(ctx, **fields) -> str:
    resp = ctx.client.post("/fhir/Patient", json={"resourceType": "Patient", **fields})
    assert resp.status_code == 201, resp.data
    return resp.get_json()["id"]


# -- each rule ----------------------------------------------------------------------


def rule_scope(ctx):
    reader = ctx.auth("system/Patient.rs")
    assert_same(
        ctx,
        ("rest", "batch", "transaction"),
        403,
        None,
        "POST",
        "Patient",
        {"resourceType": "Patient"},
        headers=reader,
    )
    texts = {
        r: send(ctx, r, "POST", "Patient", {"resourceType": "Patient"}, reader)[1][0]
        for r in ("rest", "batch", "transaction")
    }
    assert texts["batch"] == texts["rest"] and texts["transaction"].endswith(texts["rest"])


def rule_site_source(ctx):
    his1 = ctx.auth("system/*.cruds", site="his1")
    body = {"resourceType": "Patient", "meta": {"source": "urn:fhirhub:site:his2"}}
    rest = send(ctx, "rest", "POST", "Patient", body, his1)[1][0]
    assert_same(ctx, ("rest", "batch", "transaction"), 403, rest, "POST", "Patient", body, his1)
    pid = _patient(ctx)
    put = {"resourceType": "Patient", "id": pid, "gender": "male"}
    text = send(ctx, "rest", "PUT", f"Patient/{pid}", put, his1)[1][0]
    assert "was not written by site 'his1'" in text
    assert_same(
        ctx, ("rest", "batch", "transaction"), 403, text, "PUT", f"Patient/{pid}", put, his1
    )
    assert_same(
        ctx, ("rest", "batch", "transaction"), 403, None, "DELETE", f"Patient/{pid}", None, his1
    )


def rule_hidden_label(ctx):
    obs = {
        "resourceType": "Observation",
        "meta": {"security": [VETERAN_SENSITIVITY, RESTRICTED]},
        "status": "final",
        "code": {"text": "veteran status"},
    }
    oid = ctx.client.post("/fhir/Observation", json=obs).get_json()["id"]
    bare = ctx.auth("system/*.cruds", labels=())
    text = f"Observation/{oid} is not known"
    routes = ("rest", "batch", "transaction")
    assert_same(ctx, routes, 404, text, "PUT", f"Observation/{oid}", {**obs, "id": oid}, bare)
    patch = [{"op": "test", "path": "/status", "value": "final"}]
    assert_same(ctx, routes, 404, text, "PATCH", f"Observation/{oid}", patch, bare)
    assert_same(ctx, routes, 404, text, "DELETE", f"Observation/{oid}", None, bare)


def rule_if_match(ctx):
    pid = _patient(ctx)
    body = {"resourceType": "Patient", "id": pid, "gender": "male"}
    text = f"Patient/{pid} is at version 1, not 9"
    assert_same(ctx, ROUTES, 412, text, "PUT", f"Patient/{pid}", body, if_match='W/"9"')
    text = f"Patient/{pid} is not at version 9"
    assert_same(ctx, ROUTES, 412, text, "DELETE", f"Patient/{pid}", None, if_match='W/"9"')


def rule_id_in_body(ctx):
    pid = _patient(ctx)
    body = {"resourceType": "Patient", "id": "other", "gender": "male"}
    text = f"The resource id 'other' does not match the URL id {pid!r}"
    assert_same(ctx, ROUTES, 400, text, "PUT", f"Patient/{pid}", body)
    text = "The resource in an update must have an id"
    assert_same(ctx, ROUTES, 400, text, "PUT", f"Patient/{pid}", {"resourceType": "Patient"})
    _patient(ctx, identifier=[{"system": "urn:test:mrn", "value": "ID-1"}])
    text = "differs from the matching Patient/"
    for route in ROUTES:
        got, texts = send(ctx, route, "PUT", f"Patient?identifier={IDENT}ID-1", body)
        assert got == 400 and any(text in t for t in texts), (route, got, texts)


def rule_patch_id(ctx):
    pid = _patient(ctx)
    patch = [{"op": "replace", "path": "/id", "value": "other"}]
    text = f"A patch may not change resourceType or id (of Patient/{pid})"
    assert_same(ctx, ROUTES, 422, text, "PATCH", f"Patient/{pid}", patch)


def rule_required_binding(ctx):
    body = {"resourceType": "Patient", "gender": "bogus"}
    status, texts = send(ctx, "rest", "POST", "Patient", body)
    assert status == 422 and texts
    assert_same(ctx, ROUTES, 422, texts[0], "POST", "Patient", body)


def rule_conditional_create(ctx):
    criteria = f"identifier={IDENT}CC-1"
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": "CC-1"}]}
    for route in ROUTES:  # the first creates, the others find it
        status, _ = send(ctx, route, "POST", "Patient", body, if_none_exist=criteria)
        assert status == (201 if route == "rest" else 200), route
    _patient(ctx, identifier=body["identifier"])
    text = f"If-None-Exist {criteria!r} matches 2 Patient resources"
    assert_same(ctx, ROUTES, 412, text, "POST", "Patient", body, if_none_exist=criteria)


def rule_delete_missing(ctx):
    text = "Patient/nobody was not there; nothing to delete"
    for route in ROUTES:
        status, texts = send(ctx, route, "DELETE", "Patient/nobody")
        assert status == 200 and text in texts, (route, status, texts)


def rule_conditional_delete(ctx):
    ident = [{"system": "urn:test:mrn", "value": "CD-1"}]
    for route in ROUTES:  # every match goes, as HAPI with multiple-delete enabled
        _patient(ctx, identifier=ident)
        _patient(ctx, identifier=ident)
        status, texts = send(ctx, route, "DELETE", f"Patient?identifier={IDENT}CD-1")
        assert status == 200 and "2 Patient resource(s) deleted" in texts, (route, status, texts)


RULES = [
    rule_scope,
    rule_site_source,
    rule_hidden_label,
    rule_if_match,
    rule_id_in_body,
    rule_patch_id,
    rule_required_binding,
    rule_conditional_create,
    rule_delete_missing,
    rule_conditional_delete,
]


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__[5:] for r in RULES])
def test_write_rule_is_the_same_on_every_route(ctx, rule):
    rule(ctx)
