"""``Prefer: respond-async`` on searches and ``$everything``, and what ``/metadata`` says."""

from __future__ import annotations

import orjson
import pytest
from fhirpy import SyncFHIRClient

from tests.bulk.test_export import ASYNC
from tests.bulk.test_export import finished
from tests.bulk.test_export import kick
from tests.bulk.test_export import run_jobs


@pytest.fixture
def http(live_server):
    return live_server.session()


@pytest.fixture
def base(http, live_server):
    fhir = live_server.fhir
    for pid in ("p1", "p2"):
        http.put(f"{fhir}/Patient/{pid}", json={"resourceType": "Patient", "id": pid})
    for i in range(5):
        http.put(
            f"{fhir}/Observation/o{i}",
            json={
                "resourceType": "Observation",
                "id": f"o{i}",
                "status": "final",
                "code": {"text": "pulse"},
                "subject": {"reference": f"Patient/p{1 + i % 2}"},
            },
        )
    return fhir


def _bundle(http, manifest) -> dict:
    (item,) = manifest["output"]
    assert item["type"] == "Bundle"
    r = http.get(item["url"])
    assert r.status_code == 200
    return orjson.loads(r.content)


def test_async_search_answers_with_a_bundle_file(http, hub, app, base):
    app.config["BULK_PAGE_SIZE"] = 2  # several pages, one Bundle
    url = kick(http, f"{base}/Observation?subject=Patient/p1&_include=Observation:subject")
    bundle = _bundle(http, finished(http, hub, url))
    assert bundle["type"] == "searchset" and bundle["total"] == 3
    matches = sorted(e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match")
    assert matches == ["o0", "o2", "o4"]
    assert {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"} == {
        "p1"
    }
    assert all(e["fullUrl"].startswith(base) for e in bundle["entry"])


def test_async_everything(http, hub, base):
    url = kick(http, f"{base}/Patient/p2/$everything")
    bundle = _bundle(http, finished(http, hub, url))
    assert sorted(e["resource"]["id"] for e in bundle["entry"]) == ["o1", "o3", "p2"]
    assert http.get(f"{base}/Patient/nobody/$everything", headers=ASYNC).status_code == 404


def test_a_failed_async_search_reports_its_outcome(http, hub, base):
    strict = {"Prefer": "respond-async, handling=strict"}
    url = kick(http, f"{base}/Observation?nonsense=1", headers=strict)
    run_jobs(hub)
    r = http.get(url)
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "nonsense" in r.text


def test_capability_statement_lists_export(live_server):
    client = SyncFHIRClient(live_server.fhir, authorization=f"Bearer {live_server.token}")
    cs = client.execute("metadata", method="get")
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cs["instantiates"]
    rest = cs["rest"][0]
    assert "export" in [o["name"] for o in rest["operation"]]
    by_type = {r["type"]: [o["name"] for o in r.get("operation", [])] for r in rest["resource"]}
    assert "export" in by_type["Patient"] and "export" in by_type["Group"]
    bases = set()
    for op in rest["operation"] + [
        o for r in rest["resource"] if r["type"] in ("Patient", "Group") for o in r["operation"]
    ]:
        if op["name"] == "export":
            definition = client.execute(op["definition"].split("/fhir/", 1)[1], method="get")
            assert definition["code"] == "export"
            bases.add(definition["base"])
    assert bases == {
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
    }
