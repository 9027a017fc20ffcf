"""Audit: an event per access, written with the change, hash-chained, searchable by auditors."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy import update

from hub import audit
from hub.security import audit_verify
from hub.storage import schema as s
from hub.storage.db import writing

AUDITOR = "user/AuditEvent.rs"


def _events(hub) -> list[dict]:
    hub.audit_writer.flush()  # the events of reads are appended off the request path
    with hub.engine.connect() as conn:
        rows = conn.execute(select(s.audit_event.c.content).order_by(s.audit_event.c.seq)).all()
    return [orjson.loads(r.content) for r in rows]


def _interaction(event: dict) -> str:
    return event["subtype"][0]["code"]


def test_read_is_audited_with_who_purpose_and_what(hub, client, anon_client, auth_headers):
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    headers = {**auth_headers("system/Patient.rs", subject="dr-li"), "X-Purpose-Of-Use": "HOPERAT"}
    assert anon_client.get(f"/fhir/Patient/{pid}", headers=headers).status_code == 200
    event = _events(hub)[-1]
    assert _interaction(event) == "read" and event["outcome"] == "0"
    agent = event["agent"][0]
    assert agent["who"]["display"] == "dr-li"
    assert agent["purposeOfUse"][0]["coding"][0]["code"] == "HOPERAT"
    assert event["entity"] == [{"what": {"reference": f"Patient/{pid}"}}]


def test_purpose_defaults_to_treat(hub, client):
    client.get("/fhir/Patient/_history")
    agent = _events(hub)[-1]["agent"][0]
    assert agent["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"


def test_write_is_audited_once_in_its_transaction(hub, client):
    before = len(_events(hub))
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    events = _events(hub)[before:]
    assert len(events) == 1
    assert _interaction(events[0]) == "create"
    assert events[0]["entity"] == [{"what": {"reference": f"Patient/{pid}/_history/1"}}]


def test_transaction_is_one_event_listing_every_version(hub, client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            }
            for _ in range(3)
        ],
    }
    before = len(_events(hub))
    assert client.post("/fhir", json=bundle).status_code == 200
    events = _events(hub)[before:]
    assert len(events) == 1 and _interaction(events[0]) == "transaction"
    assert len(events[0]["entity"]) == 3


def test_a_failed_write_leaves_only_a_failure_event(hub, client, anon_client, auth_headers):
    before = len(_events(hub))
    resp = anon_client.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers=auth_headers("system/Patient.rs")
    )
    assert resp.status_code == 403
    events = _events(hub)[before:]
    assert len(events) == 1
    assert _interaction(events[0]) == "create" and events[0]["outcome"] == "4"


def test_unauthenticated_requests_are_audited(hub, anon_client):
    anon_client.get("/fhir/Patient/x")
    event = _events(hub)[-1]
    assert event["outcome"] == "4" and event["agent"][0]["who"]["display"] == "anonymous"


def test_search_queries_are_audited_with_masked_id_numbers(hub, client):
    client.get("/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.3|11010519491231002X")
    event = _events(hub)[-1]
    assert _interaction(event) == "search"
    assert "11010519491231002X" not in orjson.dumps(event).decode()
    assert "110105********002X" in event["outcomeDesc"]


def test_writes_outside_requests_are_audited_as_the_hub(hub):
    hub.repo.write(lambda w: w.create({"resourceType": "Patient"}), site="his1")
    event = _events(hub)[-1]
    assert event["agent"][0]["who"]["display"] == "site his1"
    assert event["source"]["observer"]["display"] == "his1"


# -- the hash chain ---------------------------------------------------------------------


def _fill(hub, n: int = 5) -> None:
    for i in range(n):
        audit.record_now(hub.engine, audit.build_event(interaction="read", who=f"u{i}"))


def test_chain_verifies(hub):
    _fill(hub)
    result = audit_verify.verify(hub.engine)
    assert result.ok and result.checked == 5


@pytest.mark.parametrize("tamper", ["content", "column", "delete", "rehash-without-chain"])
def test_tampering_is_detected_at_the_first_broken_link(hub, tamper):
    _fill(hub)
    t = s.audit_event
    with writing(hub.engine) as conn:
        seqs = [r.seq for r in conn.execute(select(t.c.seq).order_by(t.c.seq))]
        target = seqs[2]
        row = conn.execute(select(t).where(t.c.seq == target)).one()
        if tamper == "content":
            doc = orjson.loads(row.content)
            doc["outcome"] = "0" if doc["outcome"] != "0" else "8"
            conn.execute(
                update(t).where(t.c.seq == target).values(content=orjson.dumps(doc).decode())
            )
        elif tamper == "column":
            conn.execute(update(t).where(t.c.seq == target).values(who="someone else"))
        elif tamper == "delete":
            conn.execute(t.delete().where(t.c.seq == target))
        else:
            # Edit and recompute this row's hash: the next row's prev_hash no longer matches.
            doc = orjson.loads(row.content)
            doc["agent"][0]["who"]["display"] = "u-edited"
            content = orjson.dumps(doc).decode()
            new_hash = audit.chain_hash(row.prev_hash, row.id, doc["recorded"], content)
            conn.execute(
                update(t)
                .where(t.c.seq == target)
                .values(content=content, who="u-edited", hash=new_hash)
            )
    result = audit_verify.verify(hub.engine)
    assert not result.ok
    assert result.broken_at == target, result


def test_cli_audit_verify_reports_the_broken_link(database_url, tmp_path, hub):
    from click.testing import CliRunner

    from hub.cli import cli

    _fill(hub, 3)
    runner = CliRunner(
        env={
            "HUB_DATABASE_URL": database_url,
            "HUB_INSTANCE_PATH": str(tmp_path),
            "HUB_LOAD_ENTRY_POINTS": "false",
        }
    )
    ok = runner.invoke(cli, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact: 3 events" in ok.output
    with writing(hub.engine) as conn:
        last = conn.execute(
            select(s.audit_event.c.seq).order_by(s.audit_event.c.seq.desc())
        ).scalar()
        conn.execute(update(s.audit_event).where(s.audit_event.c.seq == last).values(outcome="8"))
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1 and f"event {last}: search columns differ" in broken.output
    refused = runner.invoke(cli, ["audit", "prune", "--older-than", "30d"])
    assert refused.exit_code != 0 and "retention" in refused.output


def test_prune_respects_retention_and_keeps_the_chain_verifiable(hub):
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(days=400)
    for i in range(3):
        audit.record_now(hub.engine, audit.build_event(interaction="read", who=f"old{i}", at=old))
    _fill(hub, 2)
    with pytest.raises(audit.RetentionError):
        audit.prune(hub.engine, now - dt.timedelta(days=30), 183, now)
    assert audit.prune(hub.engine, now - dt.timedelta(days=200), 183, now) == 3
    remaining = _events(hub)
    assert [e["agent"][0]["who"]["display"] for e in remaining[:2]] == ["u0", "u1"]
    assert "pruned 3 audit events" in remaining[-1]["outcomeDesc"]
    assert audit_verify.verify(hub.engine).ok


# -- searching the trail --------------------------------------------------------------


def test_audit_trail_is_for_auditors_only(hub, client, anon_client, auth_headers):
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).get_json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    denied = client.get("/fhir/AuditEvent")  # system/*.cruds does not cover AuditEvent
    assert denied.status_code == 403
    auditor = auth_headers(AUDITOR, labels=())
    body = anon_client.get(f"/fhir/AuditEvent?entity=Patient/{pid}", headers=auditor).get_json()
    kinds = sorted(_interaction(e["resource"]) for e in body["entry"])
    assert kinds == ["create", "read"]
    event_id = body["entry"][0]["resource"]["id"]
    one = anon_client.get(f"/fhir/AuditEvent/{event_id}", headers=auditor)
    assert one.status_code == 200 and one.get_json()["id"] == event_id
    assert anon_client.get("/fhir/Patient/_history", headers=auditor).status_code == 403
    write = client.post("/fhir/AuditEvent", json={"resourceType": "AuditEvent"})
    assert write.status_code == 405


def test_audit_search_filters_and_paging(hub, anon_client, auth_headers):
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for i in range(5):
        audit.record_now(
            hub.engine,
            audit.build_event(
                interaction="read",
                who="alice" if i % 2 else "bob",
                outcome="0" if i < 4 else "4",
                at=t0 + dt.timedelta(days=i),
                entity=[f"Patient/{i}"],
            ),
        )
    auditor = auth_headers(AUDITOR, labels=())

    def ids(query: str) -> list[str]:
        body = anon_client.get(f"/fhir/AuditEvent?{query}", headers=auditor).get_json()
        return [e["resource"]["entity"][0]["what"]["reference"] for e in body.get("entry", [])]

    assert ids("agent=alice") == ["Patient/3", "Patient/1"]
    assert ids("outcome=4") == ["Patient/4"]
    assert ids("date=ge2026-03-03&date=lt2026-03-05") == ["Patient/3", "Patient/2"]
    assert ids("date=2026-03-02") == ["Patient/1"]
    assert ids("entity=Patient/2&subtype=read") == ["Patient/2"]
    page = anon_client.get(
        "/fhir/AuditEvent?date=ge2026-03-01&_count=2", headers=auditor
    ).get_json()
    assert len(page["entry"]) == 2
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = anon_client.get(nxt[nxt.index("/fhir") :], headers=auditor).get_json()
    assert len(rest["entry"]) == 2  # three remain of five; two per page
    bad = anon_client.get("/fhir/AuditEvent?patient=x", headers=auditor)
    assert bad.status_code == 400
