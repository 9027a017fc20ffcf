"""``$export`` end to end over real HTTP: kick-off, poll, download, on both backends.

The worker's step (``hub.bulk.status.run_due``) is called in the test's process where
``hub worker`` would run it.
"""

from __future__ import annotations

import datetime as dt
import threading

import orjson
import pytest
import requests
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from hub.bulk import status
from hub.codesystems import HOUSEHOLD_NUMBER
from hub.codesystems import SENSITIVITY
from hub.identity.ids import stable_id
from hub.lifetime import groups as lifetime_groups
from hub.storage.jobs import JobStore
from tests.fixtures import mint_token

ASYNC = {"Prefer": "respond-async"}
LOINC = "http://loinc.org"


def _patient(pid: str, household: str | None = None, **extra) -> dict:
    out = {"resourceType": "Patient", "id": pid, "name": [{"family": f"Fam{pid}"}], **extra}
    if household:
        out["identifier"] = [{"system": HOUSEHOLD_NUMBER, "value": household}]
    return out


def _obs(oid: str, pid: str, code: str = "8867-4", **extra) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 70, "unit": "/min"},
        **extra,
    }


def _put(http, base: str, resource: dict) -> None:
    r = http.put(f"{base}/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


@pytest.fixture
def http(live_server):
    return live_server.session()


@pytest.fixture
def data(http, live_server):
    """Three patients (a and b in household H1) and their observations."""
    base = live_server.fhir
    for p in (_patient("a", "H1"), _patient("b", "H1"), _patient("c", "H2")):
        _put(http, base, p)
    _put(http, base, _obs("oa1", "a"))
    _put(http, base, _obs("oa2", "a", code="29463-7"))
    _put(http, base, _obs("ob1", "b"))
    _put(http, base, _obs("oc1", "c"))
    _put(http, base, {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Li"}]})
    return base


def kick(http, url: str, **kw) -> str:
    r = http.get(url, headers={**ASYNC, **kw.pop("headers", {})}, **kw)
    assert r.status_code == 202, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    return r.headers["Content-Location"]


def run_jobs(hub) -> int:
    done = 0
    while status.run_due(hub):
        done += 1
    return done


def finished(http, hub, status_url: str) -> dict:
    run_jobs(hub)
    r = http.get(status_url)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def ndjson(http, url: str) -> list[dict]:
    r = http.get(url, headers={"Accept": "application/fhir+ndjson"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/fhir+ndjson"
    return [orjson.loads(line) for line in r.content.splitlines()]


def exported(http, manifest: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in manifest["output"]:
        rows = ndjson(http, item["url"])
        assert len(rows) == item["count"]
        assert all(r["resourceType"] == item["type"] for r in rows)
        out.setdefault(item["type"], []).extend(r["id"] for r in rows)
    return {t: sorted(ids) for t, ids in out.items()}


def test_system_export_poll_download(http, hub, data):
    url = kick(http, f"{data}/$export")
    polled = http.get(url)
    assert polled.status_code == 202
    assert polled.headers["X-Progress"] == "queued"
    assert int(polled.headers["Retry-After"]) > 0
    manifest = finished(http, hub, url)
    assert manifest["request"] == f"{data}/$export"
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert dt.datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00"))
    assert exported(http, manifest) == {
        "Observation": ["oa1", "oa2", "ob1", "oc1"],
        "Patient": ["a", "b", "c"],
        "Practitioner": ["doc"],
    }


def test_files_and_status_are_the_owners_only(http, hub, data, app, live_server):
    url = kick(http, f"{data}/$export?_type=Patient")
    manifest = finished(http, hub, url)
    file_url = manifest["output"][0]["url"]
    other = {"Authorization": f"Bearer {mint_token(app, subject='someone-else')}"}
    assert requests.get(url, headers=other).status_code == 404
    assert requests.get(file_url, headers=other).status_code == 404
    assert requests.delete(url, headers=other).status_code == 404
    assert requests.get(file_url).status_code == 401
    assert http.get(file_url.rsplit("/", 1)[0] + "/..%2F..%2Fhub.db").status_code == 404
    assert http.get(f"{data}/$bulk-status/%00nul").status_code == 404
    assert http.get(f"{data}/$bulk-file/{'0' * 32}/Patient-1.ndjson").status_code == 404


def test_kickoff_with_fhirpy(live_server, data):
    plain = SyncFHIRClient(live_server.fhir, authorization=f"Bearer {live_server.token}")
    with pytest.raises(OperationOutcome) as err:
        plain.execute("$export", method="get")
    assert "respond-async" in str(err.value)
    asking = SyncFHIRClient(
        live_server.fhir,
        authorization=f"Bearer {live_server.token}",
        extra_headers={"Prefer": "respond-async"},
    )
    body, code = asking._do_request("get", "Patient/$export", returning_status=True)
    assert code == 202
    assert body["resourceType"] == "OperationOutcome"
    body, code = asking._do_request(
        "post",
        "Patient/$export",
        data={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "_type", "valueString": "Observation"},
                {"name": "patient", "valueReference": {"reference": "Patient/a"}},
            ],
        },
        returning_status=True,
    )
    assert code == 202


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("_outputFormat=text/csv", "_outputFormat"),
        ("_since=yesterday", "_since"),
        ("_type=Nonsense", "_type"),
        ("_typeFilter=Observation?nonsense=1", "nonsense"),
        ("_typeFilter=not-a-query", "_typeFilter"),
    ],
)
def test_bad_parameters_are_400(http, data, query, where):
    r = http.get(f"{data}/$export?{query}", headers=ASYNC)
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert where in r.text


def test_output_formats_and_type_filter(http, hub, data):
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        kick(http, f"{data}/$export", params={"_outputFormat": fmt, "_type": "Patient"})
    url = kick(
        http,
        f"{data}/$export",
        params={
            "_type": "Observation,Patient",
            "_typeFilter": f"Observation?code={LOINC}|29463-7,Patient?_id=a,c",
        },
    )
    run_jobs(hub)
    assert exported(http, finished(http, hub, url)) == {
        "Observation": ["oa2"],
        "Patient": ["a", "c"],
    }


def test_files_split_at_the_configured_size(http, hub, data, app):
    app.config["BULK_FILE_MAX_BYTES"] = 300
    manifest = finished(http, hub, kick(http, f"{data}/$export?_type=Observation"))
    names = [i["url"].rsplit("/", 1)[1] for i in manifest["output"]]
    assert len(names) == 4 and names[:2] == ["Observation-1.ndjson", "Observation-2.ndjson"]
    assert sum(i["count"] for i in manifest["output"]) == 4


def test_patient_and_group_export(http, hub, data):
    hub.repo.write(lifetime_groups.rebuild)
    household, other = stable_id("household", "H1"), stable_id("household", "H2")
    url = kick(http, f"{data}/Patient/$export")
    # Group is in the Patient compartment (Group.member): the household Groups come too,
    # the Practitioner (in no patient's compartment) does not.
    assert exported(http, finished(http, hub, url)) == {
        "Group": sorted([household, other]),
        "Observation": ["oa1", "oa2", "ob1", "oc1"],
        "Patient": ["a", "b", "c"],
    }
    url = kick(http, f"{data}/Group/{household}/$export")
    assert exported(http, finished(http, hub, url)) == {
        "Group": [household],
        "Observation": ["oa1", "oa2", "ob1"],
        "Patient": ["a", "b"],
    }
    r = http.post(
        f"{data}/Group/{household}/$export",
        headers=ASYNC,
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/b"}}],
        },
    )
    assert r.status_code == 202
    assert exported(http, finished(http, hub, r.headers["Content-Location"])) == {
        "Group": [household],
        "Observation": ["ob1"],
        "Patient": ["b"],
    }
    missing = http.get(f"{data}/Group/nope/$export", headers=ASYNC)
    assert missing.status_code == 404


def test_labels_hide_lines_as_in_a_search(http, hub, data, app, live_server):
    label = {"security": [{"system": SENSITIVITY, "code": "mental-health"}]}
    _put(http, data, _obs("secret", "a", meta=label))
    limited = requests.Session()
    token = mint_token(app, labels=(), subject="partner")
    limited.headers["Authorization"] = f"Bearer {token}"
    url = kick(limited, f"{data}/$export?_type=Observation")
    got = exported(limited, finished(limited, hub, url))
    assert got == {"Observation": ["oa1", "oa2", "ob1", "oc1"]}
    searched = limited.get(f"{data}/Observation?_count=100").json()
    assert sorted(e["resource"]["id"] for e in searched["entry"]) == got["Observation"]
    full = exported(http, finished(http, hub, kick(http, f"{data}/$export?_type=Observation")))
    assert "secret" in full["Observation"]


def test_scopes_limit_types(http, hub, data, app):
    narrow = requests.Session()
    token = mint_token(app, scopes="system/Patient.rs", subject="narrow")
    narrow.headers["Authorization"] = f"Bearer {token}"
    assert narrow.get(f"{data}/$export?_type=Observation", headers=ASYNC).status_code == 403
    url = kick(narrow, f"{data}/$export")
    assert exported(narrow, finished(narrow, hub, url)) == {"Patient": ["a", "b", "c"]}


def test_since_exports_changes_and_deletions(http, hub, data):
    first = finished(http, hub, kick(http, f"{data}/$export"))
    since = first["transactionTime"]
    _put(http, data, _obs("oa1", "a", code="29463-7"))
    assert http.delete(f"{data}/Observation/oc1").status_code in (200, 204)
    manifest = finished(http, hub, kick(http, f"{data}/$export", params={"_since": since}))
    assert exported(http, manifest) == {"Observation": ["oa1"]}
    deleted = [line for item in manifest["deleted"] for line in ndjson(http, item["url"])]
    assert [e["request"] for b in deleted for e in b["entry"]] == [
        {"method": "DELETE", "url": "Observation/oc1"}
    ]


def test_cancel_removes_the_job_and_its_files(http, hub, data):
    url = kick(http, f"{data}/$export")
    manifest = finished(http, hub, url)
    file_url = manifest["output"][0]["url"]
    job_id = url.rsplit("/", 1)[1]
    folder = status.files.job_dir(hub.config, job_id)
    assert folder.is_dir()
    r = http.delete(url)
    assert r.status_code == 202
    assert http.get(url).status_code == 404
    assert http.get(file_url).status_code == 404
    assert not folder.exists()
    # A queued job cancelled before any worker took it is never run.
    queued = kick(http, f"{data}/$export")
    assert http.delete(queued).status_code == 202
    assert run_jobs(hub) == 0


def test_a_job_cancelled_while_running_stops(http, hub, data):
    url = kick(http, f"{data}/$export")
    store = JobStore(hub.engine)
    job = store.claim("w1", 60)
    assert http.delete(url).status_code == 202
    assert status.export.run(hub, store, job) == "lost"
    assert not status.files.job_dir(hub.config, job.id).exists()


def test_expired_jobs_are_deleted(http, hub, data):
    url = kick(http, f"{data}/$export?_type=Patient")
    finished(http, hub, url)
    job_id = url.rsplit("/", 1)[1]
    assert status.expire(hub, now=dt.datetime.now(dt.UTC)) == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
    assert status.expire(hub, now=later) == 1
    assert http.get(url).status_code == 404
    assert not status.files.job_dir(hub.config, job_id).exists()


def test_two_workers_racing_for_one_job(http, hub, data):
    url = kick(http, f"{data}/$export")
    barrier = threading.Barrier(2)
    ran: list[int] = []

    def work(name):
        barrier.wait()
        ran.append(status.run_due(hub, worker=name))

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ran) == [0, 1]
    job = JobStore(hub.engine).get(url.rsplit("/", 1)[1])
    assert job.status == "done" and job.attempts == 1
    assert http.get(url).status_code == 200


def test_a_stale_claim_is_taken_over(http, hub, data):
    url = kick(http, f"{data}/$export?_type=Patient")
    store = JobStore(hub.engine)
    first = store.claim("dead-worker", 60)
    assert store.claim("w2", 60) is None  # the lease still holds
    second = store.claim("w2", 0)
    assert second is not None and second.attempts == 2
    assert status.export.run(hub, store, first) == "lost"  # the first worker woke up late
    assert status.export.run(hub, store, second) == "done"
    assert exported(http, http.get(url).json()) == {"Patient": ["a", "b", "c"]}


def test_kickoff_and_downloads_are_audited(http, hub, data):
    from hub.storage import schema as S

    url = kick(http, f"{data}/$export?_type=Patient")
    manifest = finished(http, hub, url)
    ndjson(http, manifest["output"][0]["url"])
    hub.audit_writer.flush()  # the events of reads are appended off the request path
    with hub.engine.connect() as conn:
        entities = [row.entity for row in conn.execute(S.audit_event.select())]
    job_id = url.rsplit("/", 1)[1]
    assert any("$export" in (e or "") for e in entities)
    assert any(f"$bulk-file/{job_id}/Patient-1.ndjson" in (e or "") for e in entities)
